// How the rows of the CSR operand are cut into slices for threads.
//
// A partition is a vector of slice boundaries b[0] = 0 <= b[1] <= ... <= b[S] = rows; slice s is
// rows [b[s], b[s+1]). The backends only decide which thread runs which slice.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../names.hpp"

namespace spmm {

// The strategies (names.hpp):
//   rows:    one slice per thread, equal row counts: cheapest, blind to row lengths;
//   nnz:     one slice per thread, equal stored entries: balances power-law rows;
//   dynamic: many nnz-balanced chunks handed out on demand: absorbs uneven speeds.

// Chunks per thread of the dynamic partition: enough that a slow thread's last chunk is a small
// share of the work, few enough that fetching a chunk (one atomic or one OpenMP dispatch) is
// negligible next to computing it.
constexpr std::int64_t kChunksPerThread = 8;

// parts slices of (nearly) equal row counts.
inline std::vector<std::int64_t> equal_rows(std::int64_t rows, std::int64_t parts) {
    std::vector<std::int64_t> bounds(static_cast<std::size_t>(parts) + 1);
    for (std::int64_t s = 0; s <= parts; ++s) bounds[static_cast<std::size_t>(s)] = rows * s / parts;
    return bounds;
}

// parts slices of (nearly) equal stored entries: slice s ends at the first row where the prefix
// sum of nnz (indptr itself) reaches s * nnz / parts. indptr is non-decreasing (validated), so
// each cut is a binary search: O(parts log rows).
template <class I>
std::vector<std::int64_t> balanced_nnz(const I* indptr, std::int64_t rows, std::int64_t parts) {
    std::vector<std::int64_t> bounds(static_cast<std::size_t>(parts) + 1);
    const std::int64_t nnz = rows == 0 ? 0 : static_cast<std::int64_t>(indptr[rows]);
    if (nnz == 0) return equal_rows(rows, parts);  // nothing to balance: share the zeroing
    bounds[0] = 0;
    for (std::int64_t s = 1; s < parts; ++s) {
        // The first row whose pointer reaches the target: a binary search that stays inside
        // [0, rows] whatever indptr holds (a user's matrix is checked while it is multiplied,
        // after this cut: a corrupt one gives a poor cut, never an access out of bounds).
        const std::int64_t target = nnz / parts * s + nnz % parts * s / parts;  // no overflow
        std::int64_t lo = 0, hi = rows;
        while (lo < hi) {
            const std::int64_t mid = lo + (hi - lo) / 2;
            if (static_cast<std::int64_t>(indptr[mid]) < target) lo = mid + 1; else hi = mid;
        }
        bounds[static_cast<std::size_t>(s)] = std::max(bounds[static_cast<std::size_t>(s) - 1], lo);
    }
    bounds[static_cast<std::size_t>(parts)] = rows;
    return bounds;
}

// The slices for a given strategy and thread count.
template <class I>
std::vector<std::int64_t> partition_rows(const I* indptr, std::int64_t rows, int nthreads,
                                         Partition how) {
    // Never more slices than rows: with fewer rows than threads the extra threads would get
    // empty slices, and the thread pool would start workers for nothing.
    const std::int64_t t = std::max<std::int64_t>(1, std::min<std::int64_t>(nthreads, rows));
    switch (how) {
        case Partition::rows: return equal_rows(rows, t);
        case Partition::nnz: return balanced_nnz(indptr, rows, t);
        case Partition::dynamic:
            return balanced_nnz(indptr, rows,
                                std::max<std::int64_t>(1, std::min(rows, t * kChunksPerThread)));
    }
    return equal_rows(rows, t);
}

}  // namespace spmm
