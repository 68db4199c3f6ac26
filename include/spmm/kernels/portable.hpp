// The kernels: each computes rows [r0, r1) of C = A B, with A in CSR and B dense row-major.
//
// A kernel knows nothing of threads: a backend calls it once per slice of rows, possibly from
// several threads at once on disjoint slices. Dense x sparse (X W) reaches these same kernels as
// C^T = W^T X^T (see product.hpp), so "rows" below may be columns of the user's output.
//
// Notation: A is rows x k (CSR), B is k x n (rows contiguous, leading dimension ld),
// C is rows x n. For row i, p runs over its stored entries, kk = indices[p], a = data[p].
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../formats/views.hpp"
#include "../names.hpp"

namespace spmm {

// Hands a kernel a contiguous accumulator for a piece of one output row and stores it back.
// When C's rows are contiguous (A B) the accumulator is C itself and nothing is copied. When
// they are strided (X W computed as C^T: a row of C^T is a column of C) it is a row of a
// scratch tile of kTileRows consecutive rows, written out when the tile is full: for each
// column j the tile's rows are then kTileRows consecutive elements of one row of C, a whole
// cache line in float32. Writing each row as it finished would touch every one of its cache
// lines once per row instead of once per tile, and C's row stride (a power of two for most
// layer widths) maps all those lines to the same L1 set (a third of the time of a batch-64
// product through a 1024 x 4096 layer).
template <class T>
class RowAccumulator {
  public:
    static constexpr std::int64_t kTileRows = 64 / static_cast<std::int64_t>(sizeof(T));

    RowAccumulator(const OutView<T>& c, std::int64_t width)
        : c_(c), width_(width),
          scratch_(c.rows_contiguous() ? 0 : static_cast<std::size_t>(kTileRows * width)) {}
    RowAccumulator(const RowAccumulator&) = delete;
    RowAccumulator& operator=(const RowAccumulator&) = delete;
    ~RowAccumulator() { flush(); }

    // A zeroed accumulator for C(i, j0 : j0 + len).
    T* begin(std::int64_t i, std::int64_t j0, std::int64_t len) {
        T* acc = slot(i, j0);
        std::fill(acc, acc + len, T(0));
        return acc;
    }

    // The same place, not zeroed: for kernels that overwrite all of it.
    T* slot(std::int64_t i, std::int64_t j0) {
        if (c_.rows_contiguous()) return &c_.at(i, j0);
        if (rows_ > 0 && (i != first_ + rows_ || j0 != j0_)) flush();
        if (rows_ == 0) {
            first_ = i;
            j0_ = j0;
        }
        return scratch_.data() + rows_ * width_;
    }

    // The accumulator of row i holds C(i, j0 : j0 + len): store it (now or with its tile).
    void commit(std::int64_t i, std::int64_t j0, std::int64_t len) {
        if (c_.rows_contiguous()) return;
        (void)i;
        (void)j0;
        len_ = len;
        if (++rows_ == kTileRows) flush();
    }

  private:
    void flush() {
        for (std::int64_t j = 0; j < len_; ++j) {
            T* out = &c_.at(first_, j0_ + j);  // adjacent in C when row_stride is 1 (X W)
            for (std::int64_t r = 0; r < rows_; ++r) out[r * c_.row_stride] = scratch_[static_cast<std::size_t>(r * width_ + j)];
        }
        rows_ = 0;
    }

    const OutView<T>& c_;
    std::int64_t width_;
    std::vector<T> scratch_;
    std::int64_t first_ = 0, j0_ = 0, rows_ = 0, len_ = 0;
};

// naive: the textbook i-j-p order, C[i][j] = sum_p a * B[kk][j].
// Kept as the baseline the others are measured against. The innermost loop jumps from row to
// row of B (stride ld), so every load touches a new cache line and nothing vectorizes; the
// row of A is re-read n times.
template <bool Check, class I, class T, class S = T>
void naive_rows(const CsrView<I, S>& a, const DenseView<T>& b, const OutView<T>& c,
                std::int64_t r0, std::int64_t r1) {
    const std::int64_t n = b.cols;
    for (std::int64_t i = r0; i < r1; ++i) {
        std::int64_t p0, p1;
        a.template row<Check>(i, p0, p1);
        for (std::int64_t j = 0; j < n; ++j) {
            T sum = T(0);
            for (std::int64_t p = p0; p < p1; ++p) {
                sum += Stored<S>::one(a.data[p]) * b.row(a.template column<Check>(p))[j];
            }
            if constexpr (is_scaled_v<S>) sum *= a.scale[i];
            c.at(i, j) = sum;
        }
    }
}

#include "reordered.inc"
#include "rowdot.inc"
#include "scatter_loops.inc"
#include "bsr_dia_loops.inc"

// naive for the column-driven, COO and block families: the product one dense column at a time
// (j outermost) through the family's plain loop, so A is read once per column of B and
// nothing vectorizes along B's rows: the textbook order's cost, the baseline of the ablation.
template <class F, F Body, class View, class T>
void one_column_at_a_time(const View& a, const DenseView<T>& b, const RowsView<T>& c,
                          std::int64_t u0, std::int64_t u1, std::int64_t j0, std::int64_t j1) {
    for (std::int64_t j = j0; j < j1; ++j) Body(a, b, c, u0, u1, j, j + 1);
}

template <class T>
void dia_one_column_at_a_time(const DiaView<T>& a, bool transposed, const DenseView<T>& b,
                              const RowsView<T>& c, std::int64_t i0, std::int64_t i1,
                              std::int64_t j0, std::int64_t j1) {
    for (std::int64_t j = j0; j < j1; ++j) dia_reordered(a, transposed, b, c, i0, i1, j, j + 1);
}

// Width of a column tile of the portable tiled kernel, in bytes of B's row: 1 KiB (256 floats
// or 128 doubles, 16 cache lines) is long enough for the hardware prefetcher to stream each row
// piece and short enough that the accumulator tile stays in L1. Only the portable code uses it:
// the SIMD levels have their register-blocked body (tiled.inc).
constexpr std::int64_t kTileBytes = 1024;

// tiled: reordered, plus (1) tiling of B's columns: the slice's rows are swept once per tile
// of TJ columns, so the k x TJ panel of B they read stays in cache across rows instead of the
// whole k x n matrix being streamed per row when n is wide; (2) unrolling over stored entries
// by four: each pass over the accumulator applies four axpys, so C is loaded and stored a
// quarter as often and the four B rows are independent streams. Reduced stored values (S) are
// widened once per entry and tile; an int8 row's piece is scaled once, when it is done.
template <bool Check, class I, class T, class S = T>
void tiled_rows(const CsrView<I, S>& a, const DenseView<T>& b, const OutView<T>& c,
                std::int64_t r0, std::int64_t r1) {
    const std::int64_t n = b.cols;
    if (n == 1) {  // a matrix-vector product: one dot product per row, not an axpy per entry
        rowdot_rows<Check, I, T, S>(a, b, c, r0, r1);
        return;
    }
    auto value = [&](std::int64_t p) -> T { return Stored<S>::one(a.data[p]); };
    const std::int64_t tile = std::max<std::int64_t>(1, kTileBytes / static_cast<std::int64_t>(sizeof(T)));
    RowAccumulator<T> acc(c, std::min(n, tile));
    for (std::int64_t j0 = 0; j0 < n; j0 += tile) {
        const std::int64_t len = std::min(tile, n - j0);
        for (std::int64_t i = r0; i < r1; ++i) {
            T* ci = acc.begin(i, j0, len);
            std::int64_t p, p1;
            a.template row<Check>(i, p, p1);
            for (; p + 4 <= p1; p += 4) {
                const T v0 = value(p), v1 = value(p + 1), v2 = value(p + 2), v3 = value(p + 3);
                const T* b0 = b.row(a.template column<Check>(p)) + j0;
                const T* b1 = b.row(a.template column<Check>(p + 1)) + j0;
                const T* b2 = b.row(a.template column<Check>(p + 2)) + j0;
                const T* b3 = b.row(a.template column<Check>(p + 3)) + j0;
                for (std::int64_t j = 0; j < len; ++j) {
                    ci[j] += v0 * b0[j] + v1 * b1[j] + v2 * b2[j] + v3 * b3[j];
                }
            }
            for (; p < p1; ++p) {
                const T v = value(p);
                const T* bk = b.row(a.template column<Check>(p)) + j0;
                for (std::int64_t j = 0; j < len; ++j) ci[j] += v * bk[j];
            }
            if constexpr (is_scaled_v<S>) {
                const T scale = a.scale[i];
                for (std::int64_t j = 0; j < len; ++j) ci[j] *= scale;
            }
            acc.commit(i, j0, len);
        }
    }
}


}  // namespace spmm
