// Structure checks for a CSR matrix handed over from Python.
//
// A kernel trusts indptr and indices completely (it indexes B with them), so a corrupt matrix
// must be refused before any kernel runs. std::invalid_argument becomes a ValueError in Python.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace spmm {

// indptr  : rows + 1 entries
// indices : nnz_stored entries (the length of the indices array; data has the same length)
// Checks: indptr[0] == 0, indptr non-decreasing, indptr[rows] <= nnz_stored,
// every index used in [0, cols). O(rows + nnz), one pass, no allocation.
template <class I>
void validate_csr(const I* indptr, const I* indices, std::int64_t rows, std::int64_t cols,
                  std::int64_t nnz_stored) {
    const std::int64_t first = static_cast<std::int64_t>(indptr[0]);
    if (first != 0) {
        throw std::invalid_argument("corrupt sparse matrix: indptr[0] must be 0, got " +
                                    std::to_string(first));
    }
    for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t lo = static_cast<std::int64_t>(indptr[i]);
        const std::int64_t hi = static_cast<std::int64_t>(indptr[i + 1]);
        if (hi < lo) {
            throw std::invalid_argument(
                "corrupt sparse matrix: indptr must be non-decreasing, but indptr[" +
                std::to_string(i) + "] = " + std::to_string(lo) + " > indptr[" +
                std::to_string(i + 1) + "] = " + std::to_string(hi));
        }
    }
    const std::int64_t nnz = static_cast<std::int64_t>(indptr[rows]);
    if (nnz > nnz_stored) {
        throw std::invalid_argument("corrupt sparse matrix: indptr[-1] = " + std::to_string(nnz) +
                                    " exceeds the " + std::to_string(nnz_stored) +
                                    " stored indices");
    }
    for (std::int64_t p = 0; p < nnz; ++p) {
        const std::int64_t j = static_cast<std::int64_t>(indices[p]);
        if (j < 0 || j >= cols) {
            throw std::invalid_argument("corrupt sparse matrix: index " + std::to_string(j) +
                                        " at position " + std::to_string(p) +
                                        " is out of range for dimension " + std::to_string(cols) +
                                        " (valid: 0 to " + std::to_string(cols - 1) + ")");
        }
    }
}

// Slice boundaries handed over for a matrix of `rows` rows (a prepared matrix's cached
// partition, which a kernel trusts as row ranges): at least two, the first 0, the last rows,
// each in [0, rows] and none below the one before. Checking only the ends would let one bad
// bound in between send a thread to rows outside the matrix. O(bounds), no allocation.
inline void validate_slice_bounds(const std::vector<std::int64_t>& bounds, std::int64_t rows) {
    const auto fail = [&](const std::string& what) {
        throw std::invalid_argument("slice bounds do not cover the rows 0 to " +
                                    std::to_string(rows) + ": " + what);
    };
    if (bounds.size() < 2) fail(std::to_string(bounds.size()) + " bounds, fewer than 2");
    if (bounds.front() != 0) fail("the first is " + std::to_string(bounds.front()));
    if (bounds.back() != rows) fail("the last is " + std::to_string(bounds.back()));
    for (std::size_t s = 1; s < bounds.size(); ++s) {
        if (bounds[s] < bounds[s - 1] || bounds[s] > rows) {
            fail("bound " + std::to_string(s) + " is " + std::to_string(bounds[s]) +
                 " after " + std::to_string(bounds[s - 1]));
        }
    }
}

}  // namespace spmm
