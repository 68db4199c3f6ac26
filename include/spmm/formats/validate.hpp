// The whole-matrix structure check, for a matrix that is kept and then trusted: a prepared
// matrix (when it is made or restored) and the block structure of a BSR matrix converted by
// scipy. The products of a user's matrix check it where they read it instead
// (views.hpp), with the same messages. std::invalid_argument becomes a ValueError in Python.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "views.hpp"

namespace spmm {

// indptr  : rows + 1 entries
// indices : nnz_stored entries (the length of the indices array; data has the same length)
// Checks: indptr[0] == 0, indptr non-decreasing, indptr[rows] <= nnz_stored,
// every index used in [0, cols). O(rows + nnz), one pass, no allocation.
template <class I>
void validate_csr(const I* indptr, const I* indices, std::int64_t rows, std::int64_t cols,
                  std::int64_t nnz_stored) {
    check_first_pointer(indptr);
    for (std::int64_t i = 0; i < rows; ++i) {
        const auto lo = static_cast<std::int64_t>(indptr[i]);
        const auto hi = static_cast<std::int64_t>(indptr[i + 1]);
        if (!(lo >= 0 && lo <= hi && hi <= nnz_stored)) corrupt_pointers("indptr", i, lo, hi, nnz_stored);
    }
    const auto nnz = static_cast<std::int64_t>(indptr[rows]);
    for (std::int64_t p = 0; p < nnz; ++p) {
        const auto j = static_cast<std::int64_t>(indices[p]);
        if (!in_range(j, cols)) corrupt_index("index", p, j, cols);
    }
}

}  // namespace spmm
