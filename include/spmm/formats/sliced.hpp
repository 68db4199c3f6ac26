// The one-column layout of a prepared matrix (y = A x, the CSR of Wᵀ for x @ W at batch 1):
// rows sorted by length, longest first, over the whole matrix, cut into slices of kSliceRows
// consecutive sorted rows, each slice stored column by column (SELL-C-sigma with sigma = all
// rows, without padding):
//
//   slice s holds sorted positions [s * C, s * C + lanes), lane l = the row perm[s * C + l];
//   its entries start at slice_ptr[s]; column q of the slice (the q-th stored entry of each
//   lane whose row has more than q entries) is cnt(q) consecutive entries, lane 0 first, where
//   cnt(q) = the lanes with lens > q: a prefix of the lanes, since lens falls along a slice.
//
// So a kernel takes one column at a time: C values in one contiguous load, the C entries of x
// they multiply in one gather, one multiply-add into a register whose lane l is row perm[l]'s
// sum: no row ends inside the loop, no horizontal sum per row, one scatter of C results per
// slice. Sorting by length makes the rows of a slice (nearly) equally long, so a slice's
// columns are full (every lane) but for its last few; the short columns are stored as they
// are, not padded: the layout holds exactly the CSR's entries (and x is never read at a
// padding index, so an inf or NaN in x reaches exactly the rows scipy's product reaches).
//
// Per row it keeps a position (perm) and a length (lens), and per slice an offset: 8 bytes per
// row and 8 per C rows, against the CSR's 8 per row for its row pointers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "values.hpp"

namespace spmm {

// Rows per slice: one AVX-512 register of float32 sums; two registers of AVX2 floats or
// AVX-512 doubles, four of AVX2 doubles (more independent gathers per column, never fewer).
constexpr std::int64_t kSliceRows = 16;

// How far ahead of the column being read the portable body prefetches its two streams, in
// entries: into L2 4096 entries ahead (16 KiB of float32 values), into L1 512 ahead. Without
// them a W far beyond the last-level cache streamed at 0.56-0.61 ns an entry on one Zen 4
// core, where a W in cache takes 0.26-0.27; with them, 0.36-0.40 (into L1 alone: about 0.4;
// into L2 alone, 0.38). In cache they cost 6-8 % (a few instructions per column of 16
// entries), so they run only on a W of at least kSlicedPrefetchMinL2s times the L2 size.
// Measured by `python bench/micro/sliced.py`; the AVX-512 gather body was slower with them
// beyond the cache (0.48 against 0.66 ns an entry), and has none.
constexpr std::int64_t kSlicedPrefetchL2Entries = 4096;
constexpr std::int64_t kSlicedPrefetchL1Entries = 512;
constexpr std::int64_t kSlicedPrefetchMinL2s = 32;

// Ask for the cache lines of one column (kSliceRows entries) of a stream, at both distances
// ahead of `column`. A prefetch never faults, past the end of the stream included.
template <class E>
inline void prefetch_slice_column(const E* column) {
    const char* const far = reinterpret_cast<const char*>(column + kSlicedPrefetchL2Entries);
    const char* const near = reinterpret_cast<const char*>(column + kSlicedPrefetchL1Entries);
    for (std::size_t b = 0; b < kSliceRows * sizeof(E); b += 64) {
        __builtin_prefetch(far + b, 0, 2);
        __builtin_prefetch(near + b, 0, 3);
    }
}

template <class I, class S>
struct SlicedView {
    std::int64_t rows;
    std::int64_t cols;
    const std::int64_t* slice_ptr;  // slices() + 1 entries, slice_ptr[0] == 0
    const std::int32_t* lens;       // rows entries: the length of the row at each sorted position
    const std::int32_t* perm;       // rows entries: the row at each sorted position
    const I* indices;               // slice_ptr[slices()] entries, in [0, cols)
    const S* values;
    const float* scale = nullptr;   // int8 values: rows entries, row i's sum scaled by scale[i]
    bool prefetch = false;          // the portable body prefetches (a W far beyond the cache)

    std::int64_t slices() const { return (rows + kSliceRows - 1) / kSliceRows; }
    std::int64_t nnz() const { return slice_ptr[slices()]; }
    // Rows in slice s: kSliceRows, fewer in the last.
    std::int64_t lanes(std::int64_t s) const { return std::min(kSliceRows, rows - s * kSliceRows); }
    // The bytes of its two streams.
    std::int64_t stream_bytes() const {
        return nnz() * static_cast<std::int64_t>(sizeof(I) + sizeof(S));
    }
};

// Fill a sliced layout's indices and values from CSR arrays (row pointers O, indices I, values
// moved as their bits: V is any type of the values' size), given its perm, lens and
// slice_ptr (computed by the caller from the row lengths: spmm/_sliced.py).
template <class O, class I, class V>
void fill_sliced(const O* indptr, const I* indices, const V* values, std::int64_t rows,
                 const std::int32_t* perm, const std::int32_t* lens,
                 const std::int64_t* slice_ptr, I* out_indices, V* out_values) {
    const std::int64_t slices = (rows + kSliceRows - 1) / kSliceRows;
    for (std::int64_t s = 0; s < slices; ++s) {
        const std::int64_t first = s * kSliceRows;
        std::int64_t cnt = std::min(kSliceRows, rows - first);
        std::int64_t p = slice_ptr[s];
        for (std::int64_t q = 0; cnt > 0; ++q) {
            while (cnt > 0 && lens[first + cnt - 1] <= q) --cnt;
            for (std::int64_t l = 0; l < cnt; ++l, ++p) {
                const std::int64_t from = static_cast<std::int64_t>(indptr[perm[first + l]]) + q;
                out_indices[p] = indices[from];
                out_values[p] = values[from];
            }
        }
    }
}

}  // namespace spmm
