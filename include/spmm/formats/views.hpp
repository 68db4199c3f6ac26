// Non-owning views of the operands, as the Python layer hands them over.
//
// Every offset is computed in std::int64_t, whatever the index type: with int32 indices a
// row offset `row * ld` can exceed 2^31 long before any single index does.
//
// Views are small and passed by reference; a kernel body copies the ones it reads in its inner
// loop into locals first (`const CsrView<I, T> a = a_ref;`): the compiler then knows that a
// store into C cannot change them and keeps their fields in registers. Read through the
// references, they were reloaded after every store (twice the time of a scatter loop).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "values.hpp"

namespace spmm {

// ---- Checks fused into the kernels -------------------------------------------------------
// A user's scipy matrix is checked on every call, where the kernels read it: each row's
// pointers as the row starts, each index before it is used. A kernel with Check = false
// trusts its operand (a prepared matrix, validated once). The failures are cold calls that
// throw std::invalid_argument (a ValueError in Python); the output is then unspecified.

[[noreturn]] inline void corrupt_pointers(const char* what, std::int64_t i, std::int64_t lo,
                                          std::int64_t hi, std::int64_t stored) {
    const std::string name(what);
    const std::string first = name + "[" + std::to_string(i) + "] = " + std::to_string(lo);
    const std::string next = name + "[" + std::to_string(i + 1) + "] = " + std::to_string(hi);
    std::string problem;
    if (lo < 0) {
        problem = first + " is negative";
    } else if (hi < lo) {
        problem = name + " must be non-decreasing, but " + first + " > " + next;
    } else {
        problem = next + " exceeds the " + std::to_string(stored) + " stored entries";
    }
    throw std::invalid_argument("corrupt sparse matrix: " + problem);
}

[[noreturn]] inline void corrupt_index(const char* what, std::int64_t p, std::int64_t value,
                                       std::int64_t bound) {
    throw std::invalid_argument(
        "corrupt sparse matrix: " + std::string(what) + " " + std::to_string(value) +
        " at position " + std::to_string(p) + " is out of range (valid: 0 to " +
        std::to_string(bound - 1) + ")");
}

// indptr[0] must be 0 (the rows' own pointers are checked as each row starts, by
// CsrView::row: 0 <= indptr[i] <= indptr[i + 1] <= the stored entries).
template <class O>
void check_first_pointer(const O* indptr) {
    if (indptr[0] != 0) {
        throw std::invalid_argument("corrupt sparse matrix: indptr[0] must be 0, got " +
                                    std::to_string(static_cast<std::int64_t>(indptr[0])));
    }
}

// Whether 0 <= value < bound, in one unsigned comparison.
inline bool in_range(std::int64_t value, std::int64_t bound) {
    return static_cast<std::uint64_t>(value) < static_cast<std::uint64_t>(bound);
}

// The type of a CSR's row pointers for column indices of type I: I itself, except for the
// 16-bit indices of a prepared matrix (at most 65,536 columns), whose row pointers are 64-bit:
// the number of entries is not bounded by the number of columns.
template <class I>
using offset_t = std::conditional_t<std::is_same_v<I, std::uint16_t>, std::int64_t, I>;

// A CSR matrix borrowed from numpy arrays. A CSC matrix is the CSR matrix of its transpose:
// the same view, with rows = the CSC matrix's columns.
//   indptr  : rows + 1 entries (of offset_t<I>), indptr[0] == 0, non-decreasing
//   indices : indptr[rows] entries, the column of each stored value, in [0, cols)
//   data    : indptr[rows] entries
//   stored  : the entries indices and data both hold (indptr[rows] may not exceed it); the
//             bound the fused checks use
//   scale   : int8 values (formats/values.hpp) only: rows entries, row i's sum is scaled by
//             scale[i]; null otherwise
// T is the type of the stored values: float, double, or a reduced format (bfloat16, float16,
// int8) of a prepared matrix, whose products compute in float.
// Indices need not be sorted and may repeat within a row: every kernel sums what is stored,
// which is what scipy does with a non-canonical matrix.
template <class I, class T>
struct CsrView {
    const offset_t<I>* indptr;
    const I* indices;
    const T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t stored = -1;  // -1: indptr[rows], for a trusted matrix
    const float* scale = nullptr;

    std::int64_t row_begin(std::int64_t i) const { return static_cast<std::int64_t>(indptr[i]); }
    std::int64_t row_end(std::int64_t i) const { return static_cast<std::int64_t>(indptr[i + 1]); }
    std::int64_t nnz() const { return rows == 0 ? 0 : static_cast<std::int64_t>(indptr[rows]); }

    // Row i's entries [p0, p1), checked when Check: 0 <= p0 <= p1 <= stored.
    template <bool Check>
    void row(std::int64_t i, std::int64_t& p0, std::int64_t& p1) const {
        p0 = row_begin(i);
        p1 = row_end(i);
        if constexpr (Check) {
            if (!(p0 >= 0 && p0 <= p1 && p1 <= stored)) corrupt_pointers("indptr", i, p0, p1, stored);
        }
    }

    // The column of entry p, checked when Check: in [0, cols).
    template <bool Check>
    std::int64_t column(std::int64_t p) const {
        const auto j = static_cast<std::int64_t>(indices[p]);
        if constexpr (Check) {
            if (!in_range(j, cols)) corrupt_index("index", p, j, cols);
        }
        return j;
    }
};

// Whether some index[p], p in [p0, p1), is outside [0, bound). A signed index j is inside
// when neither j nor last - j is negative (last = bound - 1), so one OR of both over the
// entries has its sign bit set exactly when some index is outside: a reduction with no
// compare, which the compiler vectorizes with any instruction set.
template <class I>
__attribute__((always_inline)) inline bool any_outside(const I* index, std::int64_t p0, std::int64_t p1, std::int64_t bound) {
    if (p1 <= p0) return false;
    if constexpr (std::is_unsigned_v<I>) {  // (a prepared matrix's 16-bit indices)
        I largest = 0;
        for (std::int64_t p = p0; p < p1; ++p) largest = std::max(largest, index[p]);
        return static_cast<std::int64_t>(largest) >= bound;
    } else {
        using U = std::make_unsigned_t<I>;  // last - j wraps (no signed overflow) for a negative j
        const auto last = static_cast<U>(std::min<std::int64_t>(bound - 1, std::numeric_limits<I>::max()));
        I any = 0;
        for (std::int64_t p = p0; p < p1; ++p) any |= index[p] | static_cast<I>(last - static_cast<U>(index[p]));
        return any < 0;
    }
}

// Checks the columns of entries [p0, p1) of a, all at once, before a kernel reads them (the
// portable one-column loop), naming the first bad one (the gather kernel's check, when a
// register fails): forced inline, so that any_outside is vectorized with the calling kernel's
// instruction set (out of line, it is compiled for the baseline one).
template <class I, class T>
__attribute__((always_inline)) inline void check_columns(const CsrView<I, T>& a, std::int64_t p0, std::int64_t p1) {
    if (any_outside(a.indices, p0, p1, a.cols)) {
        for (std::int64_t p = p0; p < p1; ++p) a.template column<true>(p);
    }
}

// Whether one of the n indices at idx is negative or above last: the portable form of the
// check the one-column gather kernel makes on each register of indices (simd/*.hpp have
// their instruction set's).
template <class I>
bool lanes_outside(const I* idx, std::int64_t n, std::int64_t last) {
    return any_outside(idx, 0, n, last + 1);
}

// The whole structure checked, for a product that reads none of it (an empty output): a
// corrupt matrix is an error whatever the shape of the other operand.
template <class I, class T>
void check_structure(const CsrView<I, T>& a) {
    check_first_pointer(a.indptr);
    for (std::int64_t i = 0; i < a.rows; ++i) {
        std::int64_t p0, p1;
        a.template row<true>(i, p0, p1);
        for (std::int64_t p = p0; p < p1; ++p) a.template column<true>(p);
    }
}

// A COO matrix: entry q is (row[q], col[q], data[q]), in any order, duplicates summed.
template <class I, class T>
struct CooView {
    const I* row;
    const I* col;
    const T* data;
    std::int64_t nnz;
    std::int64_t rows;
    std::int64_t cols;
    bool transposed = false;  // the view of Wᵀ for X @ W: row holds W's columns

    // Entry q's row and column, checked (named as the user's matrix names them).
    std::int64_t row_of(std::int64_t q) const {
        const auto i = static_cast<std::int64_t>(row[q]);
        if (!in_range(i, rows)) corrupt_index(transposed ? "column coordinate" : "row coordinate", q, i, rows);
        return i;
    }
    std::int64_t col_of(std::int64_t q) const {
        const auto k = static_cast<std::int64_t>(col[q]);
        if (!in_range(k, cols)) corrupt_index(transposed ? "row coordinate" : "column coordinate", q, k, cols);
        return k;
    }
};

// A BSR matrix of rows x cols in blocks of r x c: a CSR matrix of blocks (indptr over the
// rows / r block rows, indices the block columns in [0, cols / c)); block q's elements are
// data[q * r * c + i * c + j], row-major.
template <class I, class T>
struct BsrView {
    const I* indptr;
    const I* indices;
    const T* data;
    std::int64_t block_rows;
    std::int64_t block_cols;
    std::int64_t r;
    std::int64_t c;
    std::int64_t stored;  // blocks indices and data both hold

    std::int64_t rows() const { return block_rows * r; }
    std::int64_t cols() const { return block_cols * c; }
};

// Block row bi's blocks [q0, q1), checked: 0 <= q0 <= q1 <= stored.
template <class I, class T>
void bsr_block_row(const BsrView<I, T>& a, std::int64_t bi, std::int64_t& q0, std::int64_t& q1) {
    q0 = static_cast<std::int64_t>(a.indptr[bi]);
    q1 = static_cast<std::int64_t>(a.indptr[bi + 1]);
    if (!(q0 >= 0 && q0 <= q1 && q1 <= a.stored)) corrupt_pointers("indptr", bi, q0, q1, a.stored);
}

// Block q's block column, checked: in [0, block_cols).
template <class I, class T>
std::int64_t bsr_block_column(const BsrView<I, T>& a, std::int64_t q) {
    const auto j = static_cast<std::int64_t>(a.indices[q]);
    if (!in_range(j, a.block_cols)) corrupt_index("block index", q, j, a.block_cols);
    return j;
}

template <class I, class T>
void check_structure(const CooView<I, T>& a) {
    for (std::int64_t q = 0; q < a.nnz; ++q) {
        a.row_of(q);
        a.col_of(q);
    }
}

template <class I, class T>
void check_structure(const BsrView<I, T>& a) {
    check_first_pointer(a.indptr);
    for (std::int64_t bi = 0; bi < a.block_rows; ++bi) {
        std::int64_t q0, q1;
        bsr_block_row(a, bi, q0, q1);
        for (std::int64_t q = q0; q < q1; ++q) bsr_block_column(a, q);
    }
}

// A DIA matrix: diagonal d (offset offsets[d]) holds element (i, i + offsets[d]) at
// data[d * ld + i + offsets[d]] (scipy's layout: stored by column), for the columns below
// `width`. Elements outside the matrix or beyond the stored width do not exist.
template <class T>
struct DiaView {
    const std::int64_t* offsets;
    const T* data;
    std::int64_t diagonals;
    std::int64_t width;  // stored columns per diagonal
    std::int64_t ld;     // elements between diagonals in data
    std::int64_t rows;
    std::int64_t cols;
};

// The output rows [lo, hi) within [i0, i1) that diagonal d of A (or of Aᵀ, `transposed`)
// meets, and the row of B each reads: i + shift. Computed in 64 bits from an offset clamped to
// the matrix, so any offset (scipy allows offsets beyond the matrix, which hold nothing) gives
// an empty or in-range span.
template <class T>
void dia_rows(const DiaView<T>& a, bool transposed, std::int64_t d, std::int64_t i0,
              std::int64_t i1, std::int64_t& lo, std::int64_t& hi, std::int64_t& shift) {
    const std::int64_t span = a.rows + a.cols + 1;
    const std::int64_t o = std::min(std::max(a.offsets[d], -span), span);
    if (transposed) {  // element (i, i - o) of Aᵀ, its value at data[d][i]
        lo = std::max(i0, o);
        hi = std::min(std::min(i1, a.cols), std::min(a.rows + o, a.width));
        shift = -o;
    } else {  // element (i, i + o) of A, its value at data[d][i + o]
        lo = std::max(i0, -o);
        hi = std::min(std::min(i1, a.rows), std::min(a.cols - o, a.width - o));
        shift = o;
    }
    if (hi < lo) hi = lo;
}

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
    // Rows [first, first + count): an X without columns may have no data at all (null), so
    // its row pointers are never formed.
    StridedView rows_from(std::int64_t first, std::int64_t count) const {
        return {cols == 0 ? data : data + first * row_stride, count, cols, row_stride, col_stride};
    }
};

// C (rows x cols): rows of unit column stride, any row stride. A view of part of a larger
// matrix keeps the larger matrix's coordinates: element (r, j) is at
// data + (r - r0) * ld + (j - j0), for r >= r0 and j >= j0 (a thread's private buffer for its
// rows or columns of the output).
template <class T>
struct RowsView {
    T* data;
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t ld;
    std::int64_t r0 = 0;
    std::int64_t j0 = 0;

    T* at(std::int64_t r, std::int64_t j) const { return data + (r - r0) * ld + (j - j0); }
    T* row(std::int64_t r) const { return at(r, j0); }
};

}  // namespace spmm
