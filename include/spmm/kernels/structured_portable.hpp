// The portable kernels of the structured layouts (formats/structured.hpp): the reference the
// SIMD bodies (panels.inc, nm.inc) are tested against, and what runs where no SIMD body
// applies. Reduced stored values (S) are widened one at a time; int8 outputs are scaled by
// their column's scale once, when they are done.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../formats/sliced.hpp"
#include "../formats/structured.hpp"
#include "../formats/views.hpp"

namespace spmm {

// Y[:, chunks [c0, c1)] = X * W for N:M weights, portable.
template <class T, class S = T>
void nm_chunks_portable(const NmView<S>& w, const StridedView<T>& x, const RowsView<T>& y,
                        std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
        const std::int64_t j0 = c * w.chunk, len = std::min(w.chunk, w.cols - j0);
        for (std::int64_t b = 0; b < x.rows; ++b) {
            T* const out = y.row(b) + j0;
            std::fill(out, out + len, T(0));
            for (std::int64_t g = 0; g < w.groups(); ++g) {
                for (std::int64_t s = 0; s < w.n; ++s) {
                    const std::int64_t at = w.at(c, g * w.n + s);
                    const S* v = w.values + at;
                    const std::uint8_t* o = w.offsets + at;
                    for (std::int64_t j = 0; j < len; ++j) out[j] += Stored<S>::one(v[j]) * x.at(b, g * w.m + o[j]);
                }
            }
            if constexpr (is_scaled_v<S>) {
                for (std::int64_t j = 0; j < len; ++j) out[j] *= w.scale[j0 + j];
            }
        }
    }
}

// Y[:, tiles [t0, t1)] = X * W, portable: for each batch row, each kept input row is one
// axpy into the tile's output segment, a loop the compiler vectorizes.
template <class T, class S = T>
void panels_tiles_portable(const PanelsView<S>& w, const StridedView<T>& x, const RowsView<T>& y,
                           std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
        const std::int64_t c0 = w.tile_begin(t), len = w.tile_width(t);
        for (std::int64_t b = 0; b < x.rows; ++b) {
            T* const out = y.row(b) + c0;
            std::fill(out, out + len, T(0));
            for (std::int64_t q = w.unit_ptr[t]; q < w.unit_ptr[t + 1]; ++q) {
                const std::int64_t k0 = w.unit_row[q], n = w.unit_rows(q);
                const S* panel = w.values + q * w.run * w.ld;
                for (std::int64_t i = 0; i < n; ++i, panel += w.ld) {
                    const T xv = x.at(b, k0 + i);
                    for (std::int64_t j = 0; j < len; ++j) out[j] += xv * Stored<S>::one(panel[j]);
                }
            }
            if constexpr (is_scaled_v<S>) {
                for (std::int64_t j = 0; j < len; ++j) out[j] *= w.scale[c0 + j];
            }
        }
    }
}

// y[perm[...]] for slices [s0, s1) of the sliced one-column layout (formats/sliced.hpp),
// portable: the reference of the SIMD body (sliced.inc) and what runs on NEON and scalar
// builds. Loop order as there: a slice's columns, then its lanes, whose kSliceRows sums stay in
// an array the compiler keeps in registers (the inner loop is independent across lanes: no
// sum waits for another, unlike one running sum per row).
template <class I, class T, class S = T>
void sliced_rows_portable(const SlicedView<I, S>& w, const T* x, const OutView<T>& y,
                          std::int64_t s0, std::int64_t s1) {
    for (std::int64_t s = s0; s < s1; ++s) {
        const std::int64_t first = s * kSliceRows;
        const std::int32_t* const len = w.lens + first;
        T sums[kSliceRows] = {};
        std::int64_t p = w.slice_ptr[s];
        const std::int64_t lanes = w.lanes(s);
        std::int64_t q = 0;
        if (lanes == kSliceRows) {  // full columns: a fixed trip count, unrolled into registers
            // The compiler takes the loop-invariant test of `prefetch` out of the loop.
            const bool prefetch = w.prefetch;
            for (const std::int64_t full = len[kSliceRows - 1]; q < full; ++q, p += kSliceRows) {
                if (prefetch) {
                    prefetch_slice_column(w.values + p);
                    prefetch_slice_column(w.indices + p);
                }
                for (std::int64_t l = 0; l < kSliceRows; ++l) {
                    sums[l] += Stored<S>::one(w.values[p + l]) * x[w.indices[p + l]];
                }
            }
        }
        for (std::int64_t cnt = lanes; cnt > 0; ++q) {
            while (cnt > 0 && len[cnt - 1] <= q) --cnt;
            for (std::int64_t l = 0; l < cnt; ++l) {
                sums[l] += Stored<S>::one(w.values[p + l]) * x[w.indices[p + l]];
            }
            p += cnt;
        }
        for (std::int64_t l = 0; l < lanes; ++l) {
            const std::int64_t row = w.perm[first + l];
            T sum = sums[l];
            if constexpr (is_scaled_v<S>) sum *= w.scale[row];
            y.at(row, 0) = sum;
        }
    }
}

}  // namespace spmm
