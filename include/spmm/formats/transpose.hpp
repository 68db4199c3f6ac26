// The CSR arrays of A^T from those of A: for X @ W with W in CSR, whose product is computed as
// (W^T X^T)^T (see product.hpp) and so needs W^T in CSR, i.e. W in CSC.
#pragma once

#include <algorithm>
#include <cstdint>

namespace spmm {

// A (rows x cols, CSR, validated: validate_csr) to A^T (cols x rows, CSR).
//   indptr  : rows + 1          out_indptr  : cols + 1
//   indices : indptr[rows]      out_indices : indptr[rows], row numbers, so rows must fit in I
//   data    : indptr[rows]      out_data    : indptr[rows]
// A counting sort by column, O(rows + cols + nnz), no allocation: each column's entries come
// out in row order, duplicates kept, as scipy's tocsc() gives them (csr_tocsc in
// scipy/sparse/sparsetools/csr.h), so the product sums them in the same order.
template <class I, class T>
void csr_transpose(const I* indptr, const I* indices, const T* data, std::int64_t rows,
                   std::int64_t cols, I* out_indptr, I* out_indices, T* out_data) {
    const std::int64_t nnz = static_cast<std::int64_t>(indptr[rows]);
    std::fill(out_indptr, out_indptr + cols + 1, I(0));
    for (std::int64_t p = 0; p < nnz; ++p) ++out_indptr[static_cast<std::int64_t>(indices[p])];
    // Exclusive prefix sum: out_indptr[j] becomes where column j starts.
    I sum = 0;
    for (std::int64_t j = 0; j < cols; ++j) {
        const I count = out_indptr[j];
        out_indptr[j] = sum;
        sum += count;
    }
    out_indptr[cols] = sum;
    // out_indptr[j] serves as column j's insertion cursor, ending at the start of column j + 1.
    for (std::int64_t i = 0; i < rows; ++i) {
        for (std::int64_t p = indptr[i]; p < static_cast<std::int64_t>(indptr[i + 1]); ++p) {
            const std::int64_t j = static_cast<std::int64_t>(indices[p]);
            const std::int64_t q = static_cast<std::int64_t>(out_indptr[j]++);
            out_indices[q] = static_cast<I>(i);
            out_data[q] = data[p];
        }
    }
    // Shift the cursors back: column j starts where column j - 1 ended.
    I start = 0;
    for (std::int64_t j = 0; j <= cols; ++j) {
        const I end = out_indptr[j];
        out_indptr[j] = start;
        start = end;
    }
}

}  // namespace spmm
