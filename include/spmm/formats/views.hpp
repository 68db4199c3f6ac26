// Non-owning views of the operands, as the Python layer hands them over.
//
// Every offset is computed in std::int64_t, whatever the index type: with int32 indices a
// row offset `row * ld` can exceed 2^31 long before any single index does.
#pragma once

#include <cstdint>
#include <type_traits>

namespace spmm {

// The type of a CSR's row pointers for column indices of type I: I itself, except for the
// 16-bit indices of a prepared matrix (at most 65,536 columns), whose row pointers are 64-bit:
// the number of entries is not bounded by the number of columns.
template <class I>
using offset_t = std::conditional_t<std::is_same_v<I, std::uint16_t>, std::int64_t, I>;

// A CSR matrix borrowed from numpy arrays.
//   indptr  : rows + 1 entries (of offset_t<I>), indptr[0] == 0, non-decreasing
//   indices : indptr[rows] entries, the column of each stored value, in [0, cols)
//   data    : indptr[rows] entries
// Indices need not be sorted and may repeat within a row: every kernel sums what is stored,
// which is what scipy does with a non-canonical matrix.
template <class I, class T>
struct CsrView {
    const offset_t<I>* indptr;
    const I* indices;
    const T* data;
    std::int64_t rows;
    std::int64_t cols;

    std::int64_t row_begin(std::int64_t i) const { return static_cast<std::int64_t>(indptr[i]); }
    std::int64_t row_end(std::int64_t i) const { return static_cast<std::int64_t>(indptr[i + 1]); }
    std::int64_t nnz() const { return rows == 0 ? 0 : static_cast<std::int64_t>(indptr[rows]); }
};

// A read-only dense matrix whose rows are contiguous: element (r, j) is data[r * ld + j].
// ld may be anything (padding, zero for a broadcast row, negative for a reversed view).
template <class T>
struct DenseView {
    const T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t ld;

    const T* row(std::int64_t r) const { return data + r * ld; }
};

// The output, with arbitrary strides (in elements): element (r, j) is
// data[r * row_stride + j * col_stride]. For A @ B it is C itself (col_stride == 1); for
// X @ W it is C transposed (row_stride == 1), because that product is computed as (W^T X^T)^T.
template <class T>
struct OutView {
    T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t row_stride;
    std::int64_t col_stride;

    T& at(std::int64_t r, std::int64_t j) const { return data[r * row_stride + j * col_stride]; }
    bool rows_contiguous() const { return col_stride == 1; }
};

// X (batch x rows) with any element strides, read only.
template <class T>
struct StridedView {
    const T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t row_stride;
    std::int64_t col_stride;

    const T& at(std::int64_t r, std::int64_t j) const { return data[r * row_stride + j * col_stride]; }
};

// Y (batch x cols): rows of unit column stride, any row stride.
template <class T>
struct RowsView {
    T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t ld;

    T* row(std::int64_t r) const { return data + r * ld; }
};

}  // namespace spmm
