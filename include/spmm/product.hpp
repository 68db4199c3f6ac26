// The product drivers: cut a product into slices, hand the slices to a backend, run one kernel
// of the registry on each. This is the only place where kernels and backends meet.
//
// Two shapes of driver cover every kernel family:
//  - row-driven families (csr_rows, bsr_rows, dia, and the structured layouts) write each
//    output row from one slice, so slices of rows are independent;
//  - column-driven families (csc_columns, coo, bsr_columns) scatter every entry of A into the
//    output row it names, so two slices may write the same row: the threads either split the
//    dense columns (each walks all of A for its own columns) or split A and accumulate into
//    private outputs summed at the end (run_columns says which, and why).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/pack.hpp"
#include "formats/sliced.hpp"
#include "formats/structured.hpp"
#include "formats/transpose.hpp"
#include "formats/views.hpp"
#include "kernels/registry.hpp"
#include "names.hpp"
#include "parallel/parallel_for.hpp"
#include "parallel/partition.hpp"
#include "simd/cache.hpp"
#include "simd/levels.hpp"

namespace spmm {

// Below this much work, (stored entries + output rows) x dense columns, a product runs on the
// calling thread whatever the backend: handing half of it to another core costs more than it
// saves (waking the other thread and moving the operands' cache lines to its core), about
// 50 us of serial work. Re-measured by `python bench/overhead.py`.
constexpr std::int64_t kParallelMinWork = 400000;

// The dense columns a one-column product of the sliced layout counts as against
// kParallelMinWork: each of its entries is a scalar load of x and an FMA of its own, about 8
// times the cost of an entry and column of a wider product. So it runs on two threads from
// about 50,000 entries and output rows, where two threads measured 1.2x to 1.5x faster than
// one (below 30,000, slower: `python bench/run.py --suite batch1`).
constexpr std::int64_t kSlicedWorkColumns = 8;

inline void check_backend_and_simd(Backend backend, Simd simd) {
    if (backend == Backend::openmp && !openmp::available()) {
        throw std::invalid_argument("the openmp backend is not available: built without OpenMP");
    }
    if (!simd_supported(simd)) {
        throw std::invalid_argument("this CPU or build does not support SIMD level " +
                                    simd_name(simd));
    }
}

// Whether per_dense_column x dense_columns < min_work (negative: kParallelMinWork), compared
// as per_dense_column < ceil(min_work / dense_columns), which cannot overflow.
inline bool below_min_work(std::int64_t per_dense_column, std::int64_t dense_columns,
                           std::int64_t min_work) {
    if (min_work < 0) min_work = kParallelMinWork;
    if (dense_columns <= 0) return true;
    return per_dense_column < min_work / dense_columns + (min_work % dense_columns != 0);
}

// The threads a product of `work` (per dense column) uses: one below the minimum work.
inline int threads_for(Backend backend, int nthreads, std::int64_t per_dense_column,
                       std::int64_t dense_columns, std::int64_t min_work) {
    if (backend == Backend::serial || nthreads <= 1 ||
        below_min_work(per_dense_column, dense_columns, min_work)) {
        return 1;
    }
    return nthreads;
}

// Multiply-adds per slice of an interruptible product: a slice is never cut short, so this
// bounds how long a Ctrl-C waits (a few milliseconds of kernel time), and it is large enough
// that the checks between slices cost nothing measurable.
constexpr std::int64_t kPieceWork = std::int64_t{1} << 24;

// How one product runs: the kernel variant, the backend and its threads, the partition, the
// instruction set, the work below which the calling thread runs it alone (negative:
// kParallelMinWork; 0: always the backend's threads, for tests), and the cancellation that can
// stop it (null: it runs to the end).
struct Call {
    Kernel kernel = Kernel::tiled;
    Backend backend = Backend::serial;
    int nthreads = 1;
    Partition partition = Partition::nnz;
    Simd simd = Simd::scalar;
    std::int64_t min_work = -1;
    Cancellation* cancel = nullptr;

    // The threads a product of `entries` multiply-adds per dense column, `out_rows` output
    // rows and `n` dense columns uses: one below the minimum work.
    int threads(std::int64_t entries, std::int64_t out_rows, std::int64_t n) const {
        return threads_for(backend, nthreads, entries + out_rows, n, min_work);
    }

    // Slices per thread: one, or enough to bound the work between two cancellation checks
    // (kPieceWork) when the product can be interrupted.
    std::int64_t pieces(std::int64_t entries, std::int64_t n, int threads) const {
        if (cancel == nullptr || entries <= 0 || n <= 0) return 1;
        const std::int64_t per_thread = entries / threads + 1;
        const std::int64_t per_column = kPieceWork / n + 1;
        return std::min<std::int64_t>(4096 / threads + 1, per_thread / per_column + 1);
    }

    // Runs f(first, last) on each slice [bounds[s], bounds[s + 1]) with `threads` threads.
    template <class F>
    void run(const std::vector<std::int64_t>& bounds, int threads, F&& f) const {
        const std::int64_t nslices = static_cast<std::int64_t>(bounds.size()) - 1;
        parallel_for(backend, threads, nslices, partition == Partition::dynamic,
                     [&](std::int64_t s) {
                         f(bounds[static_cast<std::size_t>(s)], bounds[static_cast<std::size_t>(s) + 1]);
                     },
                     cancel);
    }
};

// The given bounds, checked in full: at least two, from 0 to `rows`, non-decreasing. A
// prepared matrix's cached bounds come from its own pickle when it was restored, so they are
// checked like any other input.
// Slice boundaries computed ahead of the call (a prepared matrix keeps them), or none.
struct SliceBounds {
    const std::int64_t* data = nullptr;
    std::int64_t size = 0;
};

inline std::vector<std::int64_t> checked_bounds(const SliceBounds& given, std::int64_t rows) {
    std::vector<std::int64_t> bounds(given.data, given.data + std::max<std::int64_t>(0, given.size));
    bool ok = bounds.size() >= 2 && bounds.front() == 0 && bounds.back() == rows;
    for (std::size_t s = 1; ok && s < bounds.size(); ++s) ok = bounds[s - 1] <= bounds[s];
    if (!ok) throw std::invalid_argument("slice bounds must run from 0 to the rows, non-decreasing");
    return bounds;
}

// ---- Where a kernel writes --------------------------------------------------------------
// Kernels that are not row-driven gather-and-store write C through a RowsView (rows of unit
// stride). When C's rows are strided (Yᵀ, for X @ W), they write a buffer instead, stored
// into C afterwards by store_rows.

// C[rows [r0, r1), columns [j0, j1)] = buf (a RowsView with that origin), in blocks small
// enough that both sides stay in L1 when C is Yᵀ (its columns are Y's contiguous rows).
template <class T>
void store_rows(const RowsView<T>& buf, const OutView<T>& c, std::int64_t r0, std::int64_t r1,
                std::int64_t j0, std::int64_t j1) {
    constexpr std::int64_t kBlock = 32;
    for (std::int64_t rb = r0; rb < r1; rb += kBlock) {
        const std::int64_t re = std::min(r1, rb + kBlock);
        for (std::int64_t j = j0; j < j1; ++j) {
            for (std::int64_t r = rb; r < re; ++r) c.at(r, j) = *buf.at(r, j);
        }
    }
}

// A buffer of rows [r0, r1) x columns [j0, j1) in C's coordinates: C itself when its rows are
// contiguous, else owned memory (store() then copies it into C).
template <class T>
class RowsOut {
  public:
    RowsOut(const OutView<T>& c, std::int64_t r0, std::int64_t r1, std::int64_t j0,
            std::int64_t j1, bool own = false)
        : c_(c), r0_(r0), r1_(r1), j0_(j0), j1_(j1) {
        if (c.rows_contiguous() && !own) {
            view_ = RowsView<T>{c.data, c.rows, c.cols, c.row_stride, 0, 0};
        } else {
            buffer_ = std::make_unique<AlignedRows<T>>(r1 - r0, j1 - j0);
            view_ = RowsView<T>{buffer_->data(), r1 - r0, j1 - j0, buffer_->ld(), r0, j0};
        }
    }
    const RowsView<T>& view() const { return view_; }
    bool owned() const { return buffer_ != nullptr; }
    void zero(std::int64_t r0, std::int64_t r1) const {
        for (std::int64_t r = r0; r < r1; ++r) std::fill(view_.at(r, j0_), view_.at(r, j0_) + (j1_ - j0_), T(0));
    }
    void zero() const { zero(r0_, r1_); }
    // Copy rows [r0, r1) of an owned buffer into C (nothing to do when it is C).
    void store(std::int64_t r0, std::int64_t r1) const {
        if (owned()) store_rows(view_, c_, r0, r1, j0_, j1_);
    }

  private:
    const OutView<T>& c_;
    std::int64_t r0_, r1_, j0_, j1_;
    std::unique_ptr<AlignedRows<T>> buffer_;
    RowsView<T> view_{};
};

// ---- Row-driven families ----------------------------------------------------------------

// C = A B for A (rows x k, CSR), B (k x n), C (rows x n), as described by the views. Check:
// A is a user's matrix, checked where the kernel reads it (a prepared matrix was checked once).
// Every element of C is written. Slices of rows balanced by k.partition; a prepared matrix
// hands over its cached bounds for one slice per thread. S: the stored values' type (T, or a
// prepared matrix's reduced format: formats/values.hpp).
template <class I, class T, class S>
void multiply_csr(const CsrView<I, S>& a, const DenseView<T>& b, const OutView<T>& c,
                  const Call& k, bool check, SliceBounds given = {}) {
    if (b.rows != a.cols || c.rows != a.rows || c.cols != b.cols) {
        throw std::invalid_argument("multiply_csr: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const RowsKernel<I, T, S> fn = check ? rows_kernel<true, I, T, S>(k.kernel, k.simd).fn
                                         : rows_kernel<false, I, T, S>(k.kernel, k.simd).fn;
    if (c.rows == 0 || c.cols == 0) {  // nothing to compute; a user's matrix is still checked
        if (check) check_structure(a);
        return;
    }
    if (check) check_first_pointer(a.indptr);
    const int t = k.threads(a.nnz(), a.rows, b.cols);
    const std::int64_t pieces = k.pieces(a.nnz(), b.cols, t);
    if (t == 1 && pieces == 1) return fn(a, b, c, 0, a.rows);
    const std::vector<std::int64_t> bounds =
        given.data != nullptr && pieces == 1
            ? checked_bounds(given, a.rows)
            : partition_rows(a.indptr, a.rows, static_cast<int>(t * pieces), k.partition);
    k.run(bounds, t, [&](std::int64_t r0, std::int64_t r1) { fn(a, b, c, r0, r1); });
}

// C = A B for A in BSR (A @ B): slices of block rows, balanced by their blocks.
template <class I, class T>
void multiply_bsr_rows(const BsrView<I, T>& a, const DenseView<T>& b, const OutView<T>& c,
                       const Call& k) {
    if (b.rows != a.cols() || c.rows != a.rows() || c.cols != b.cols) {
        throw std::invalid_argument("multiply_bsr: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const BsrKernel<I, T> fn = bsr_kernel<false, I, T>(k.kernel, k.simd).fn;
    if (a.block_rows == 0 || b.cols == 0) return check_structure(a);
    check_first_pointer(a.indptr);
    auto rows = [&](std::int64_t i0, std::int64_t i1) {
        if (c.rows_contiguous()) return fn(a, b, RowsView<T>{c.data, c.rows, c.cols, c.row_stride}, i0, i1, 0, b.cols);
        const RowsOut<T> out(c, i0 * a.r, i1 * a.r, 0, b.cols);
        fn(a, b, out.view(), i0, i1, 0, b.cols);
        out.store(i0 * a.r, i1 * a.r);
    };
    const std::int64_t entries = static_cast<std::int64_t>(a.indptr[a.block_rows]) * a.r * a.c;
    const int t = k.threads(entries, a.rows(), b.cols);
    const std::int64_t pieces = k.pieces(entries, b.cols, t);
    if (t == 1 && pieces == 1) return rows(0, a.block_rows);
    k.run(partition_rows(a.indptr, a.block_rows, static_cast<int>(t * pieces), k.partition), t,
          rows);
}

// C = A B, or Aᵀ B when `transposed` (X @ W as Wᵀ Xᵀ), for A in DIA: slices of equal output
// rows (every row meets at most one entry per diagonal).
template <class T>
void multiply_dia(const DiaView<T>& a, bool transposed, const DenseView<T>& b,
                  const OutView<T>& c, const Call& k) {
    const std::int64_t out_rows = transposed ? a.cols : a.rows;
    if (b.rows != (transposed ? a.rows : a.cols) || c.rows != out_rows || c.cols != b.cols) {
        throw std::invalid_argument("multiply_dia: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const DiaKernel<T> fn = dia_kernel<T>(k.kernel, k.simd).fn;
    if (out_rows == 0 || b.cols == 0) return;
    // Rows per block: a block of C that stays in L2 while every diagonal passes over it.
    const std::int64_t row_bytes = b.cols * static_cast<std::int64_t>(sizeof(T));
    const std::int64_t block = std::max<std::int64_t>(64, (std::int64_t{256} << 10) / row_bytes);
    auto rows = [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t i0 = r0; i0 < r1; i0 += block) {
            const std::int64_t i1 = std::min(r1, i0 + block);
            const RowsOut<T> out(c, i0, i1, 0, b.cols);
            fn(a, transposed, b, out.view(), i0, i1, 0, b.cols);
            out.store(i0, i1);
        }
    };
    const std::int64_t entries = a.diagonals * std::min(a.rows, a.cols);
    const int t = k.threads(entries, out_rows, b.cols);
    const std::int64_t pieces = k.pieces(entries, b.cols, t);
    if (t == 1 && pieces == 1) return rows(0, out_rows);
    const std::int64_t per_thread = k.partition == Partition::dynamic ? kChunksPerThread : 1;
    k.run(equal_rows(out_rows, std::min(out_rows, t * std::max(pieces, per_thread))), t, rows);
}

// ---- Column-driven families ------------------------------------------------------------

// Outputs at most this many bytes may be allocated as private buffers before run_columns
// splits the dense columns instead (the memory a parallel scatter may take).
constexpr std::int64_t kPrivateOutputsMaxBytes = std::int64_t{256} << 20;

namespace detail {
// A test's replacement for kPrivateOutputsMaxBytes (negative: none), so that small products
// take the column-split mode too.
inline std::atomic<std::int64_t>& private_outputs_override() {
    static std::atomic<std::int64_t> value{-1};
    return value;
}
}  // namespace detail

// Replace the private outputs' limit (for tests); a negative value restores kPrivateOutputsMaxBytes.
inline void set_private_outputs_max_bytes(std::int64_t bytes) { detail::private_outputs_override().store(bytes); }

inline std::int64_t private_outputs_max_bytes() {
    const std::int64_t forced = detail::private_outputs_override().load(std::memory_order_relaxed);
    return forced >= 0 ? forced : kPrivateOutputsMaxBytes;
}

// Whether a column-driven product of C (out_rows x n) splits the dense columns among its
// threads (each walks all of A for its own columns, A read once per thread) rather than A's
// entries with a private output per thread summed at the end (each thread does 1/T of the
// entries at full width, plus one pass over T copies of C). Columns when each thread gets at
// least two vectors of them, so its passes are as efficient as the whole product's, or when
// the private outputs would take too much memory.
template <class T>
bool columns_split(std::int64_t out_rows, std::int64_t n, int nthreads, bool rows_contiguous) {
    constexpr std::int64_t kLanes = kCacheLineBytes / static_cast<std::int64_t>(sizeof(T));
    const std::int64_t private_bytes =
        (nthreads - (rows_contiguous ? 1 : 0)) * out_rows * n * static_cast<std::int64_t>(sizeof(T));
    return nthreads == 1 || n >= 2 * kLanes * nthreads || private_bytes > private_outputs_max_bytes();
}

// A column-driven product C (out_rows x n) = the sum over A's units of their contributions, on
// `t` threads. split(parts) cuts A's units into `parts` balanced slices; body(u0, u1, j0, j1,
// out) adds units [u0, u1) times B's columns [j0, j1) into out (a RowsView in C's coordinates,
// zeroed beforehand). Each thread's work comes in `pieces` consecutive slices (for
// cancellation); under the static schedule they run in order on one thread, so its buffer is
// zeroed by its first piece and stored by its last.
template <class T, class Split, class Body>
void run_columns(std::int64_t out_rows, const OutView<T>& c, const Call& k, int t,
                 std::int64_t pieces, Split&& split, Body&& body) {
    const std::int64_t n = c.cols;
    constexpr std::int64_t kLanes = kCacheLineBytes / static_cast<std::int64_t>(sizeof(T));
    if (t == 1 && pieces == 1 && c.rows_contiguous()) {  // C itself, in one go
        const RowsView<T> out{c.data, c.rows, c.cols, c.row_stride};
        for (std::int64_t r = 0; r < out_rows; ++r) std::fill(out.row(r), out.row(r) + n, T(0));
        const std::vector<std::int64_t> all = split(1);
        body(all.front(), all.back(), 0, n, out);
        return;
    }
    if (columns_split<T>(out_rows, n, t, c.rows_contiguous())) {
        // Column ranges of whole cache lines, so no two threads write one line of a C row.
        const std::int64_t lines = (n + kLanes - 1) / kLanes;
        const bool own = out_rows * n * static_cast<std::int64_t>(sizeof(T)) <= private_outputs_max_bytes();
        t = static_cast<int>(std::min<std::int64_t>(t, lines));
        const std::vector<std::int64_t> units = split(pieces);
        pieces = static_cast<std::int64_t>(units.size()) - 1;
        std::vector<std::unique_ptr<RowsOut<T>>> outs(static_cast<std::size_t>(t));
        parallel_for(k.backend, t, t * pieces, false, [&](std::int64_t s) {
            const std::int64_t thread = s / pieces, piece = s % pieces;
            const std::int64_t j0 = std::min(n, lines * thread / t * kLanes);
            const std::int64_t j1 = std::min(n, lines * (thread + 1) / t * kLanes);
            auto& out = outs[static_cast<std::size_t>(thread)];
            if (piece == 0) {
                // A buffer of its own even when C's rows are contiguous (threads scattering
                // into the same rows of one C, on separate cache lines, ran slower together
                // than one thread: docs/architecture.md, Partitioning), unless the split was
                // chosen to save memory.
                out = std::make_unique<RowsOut<T>>(c, 0, out_rows, j0, j1, own);
                out->zero();
            }
            body(units[static_cast<std::size_t>(piece)], units[static_cast<std::size_t>(piece) + 1],
                 j0, j1, out->view());
            if (piece == pieces - 1) out->store(0, out_rows);
        }, k.cancel);
        return;
    }
    // Private outputs: the static schedule runs slice s on the thread whose block holds it
    // (parallel_for: thread t runs [block_begin(t), block_begin(t + 1))), in order.
    const std::vector<std::int64_t> bounds = split(t * pieces);
    const std::int64_t nslices = static_cast<std::int64_t>(bounds.size()) - 1;
    t = static_cast<int>(std::min<std::int64_t>(t, nslices));
    std::vector<std::int64_t> owner(static_cast<std::size_t>(nslices));
    for (int thread = 0; thread < t; ++thread) {
        for (std::int64_t s = block_begin(thread, t, nslices); s < block_begin(thread + 1, t, nslices); ++s) {
            owner[static_cast<std::size_t>(s)] = thread;
        }
    }
    std::vector<std::unique_ptr<RowsOut<T>>> outs(static_cast<std::size_t>(t));
    parallel_for(k.backend, t, nslices, false, [&](std::int64_t s) {
        const std::int64_t thread = owner[static_cast<std::size_t>(s)];
        auto& out = outs[static_cast<std::size_t>(thread)];
        if (s == block_begin(thread, t, nslices)) {
            out = std::make_unique<RowsOut<T>>(c, 0, out_rows, 0, n, thread > 0);
            out->zero();
        }
        body(bounds[static_cast<std::size_t>(s)], bounds[static_cast<std::size_t>(s) + 1], 0, n,
             out->view());
    }, k.cancel);
    // The sum, by slices of rows: out[0] += out[1] + ..., then stored into C if owned.
    k.run(equal_rows(out_rows, std::min<std::int64_t>(out_rows, t)), t,
          [&](std::int64_t r0, std::int64_t r1) {
              const RowsView<T>& sum = outs[0]->view();
              for (std::size_t s = 1; s < outs.size(); ++s) {
                  const RowsView<T>& part = outs[s]->view();
                  for (std::int64_t r = r0; r < r1; ++r) {
                      T* const dst = sum.at(r, 0);
                      const T* const src = part.at(r, 0);
                      for (std::int64_t j = 0; j < n; ++j) dst[j] += src[j];
                  }
              }
              outs[0]->store(r0, r1);
          });
}

// The product multiply_columns computes, read by rows: Aᵀ's arrays transposed first
// (formats/transpose.hpp, O(nnz), checked as they are read, by the product's threads), then the
// row-driven kernels on the trusted copy. For many dense columns, where the scatter's load and
// store of C per entry and vector cost more than the copy. Precondition: transposable(at).
template <class I, class T>
void multiply_transposed(const CsrView<I, T>& at, const DenseView<T>& b, const OutView<T>& c,
                         const Call& k) {
    // Each thread of the copy keeps a histogram of A's rows: no more threads than the entries
    // repay.
    const std::int64_t nnz = at.nnz();
    const int t = static_cast<int>(std::min<std::int64_t>(
        k.threads(nnz, at.cols, b.cols), std::max<std::int64_t>(1, nnz / (at.cols + 1))));
    const TransposedCsr<I, T> a(at, t, [&](std::int64_t parts, auto&& f) {
        parallel_for(k.backend, t, parts, false, f, k.cancel);
    });
    multiply_csr(a.view(), b, c, k, false);
}

// C = A B for A given by its columns: `at` holds the CSR arrays of Aᵀ (A's CSC arrays; for
// X @ W, W's CSR arrays), rows of at = columns of A = rows of B; C is at.cols x n. With
// transpose_first (a user's matrix, many dense columns), read by rows after a copy
// (multiply_transposed) when its arrays allow.
template <class I, class T>
void multiply_columns(const CsrView<I, T>& at, const DenseView<T>& b, const OutView<T>& c,
                      const Call& k, bool transpose_first = false) {
    if (b.rows != at.rows || c.rows != at.cols || c.cols != b.cols) {
        throw std::invalid_argument("multiply_columns: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const ColumnsKernel<I, T> fn = columns_kernel<I, T>(k.kernel, k.simd).fn;
    if (c.rows == 0 || c.cols == 0) return check_structure(at);
    check_first_pointer(at.indptr);
    if (transpose_first && transposable(at)) return multiply_transposed(at, b, c, k);
    const int t = k.threads(at.nnz(), at.cols, b.cols);
    run_columns<T>(at.cols, c, k, t, k.pieces(at.nnz(), b.cols, t),
                   [&](std::int64_t parts) {
                       return partition_rows(at.indptr, at.rows, static_cast<int>(parts), Partition::nnz);
                   },
                   [&](std::int64_t p0, std::int64_t p1, std::int64_t j0, std::int64_t j1,
                       const RowsView<T>& out) { fn(at, b, out, p0, p1, j0, j1); });
}

// C = A B for A in COO (for X @ W, the view of Wᵀ: row and col swapped). Entries are cut into
// equal counts.
template <class I, class T>
void multiply_coo(const CooView<I, T>& a, const DenseView<T>& b, const OutView<T>& c,
                  const Call& k) {
    if (b.rows != a.cols || c.rows != a.rows || c.cols != b.cols) {
        throw std::invalid_argument("multiply_coo: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const CooKernel<I, T> fn = coo_kernel<I, T>(k.kernel, k.simd).fn;
    if (c.rows == 0 || c.cols == 0) return check_structure(a);
    const int t = k.threads(a.nnz, a.rows, b.cols);
    run_columns<T>(a.rows, c, k, t, k.pieces(a.nnz, b.cols, t),
                   [&](std::int64_t parts) {
                       return equal_rows(a.nnz, std::max<std::int64_t>(1, std::min(parts, a.nnz)));
                   },
                   [&](std::int64_t q0, std::int64_t q1, std::int64_t j0, std::int64_t j1,
                       const RowsView<T>& out) { fn(a, b, out, q0, q1, j0, j1); });
}

// C = Aᵀ B for A in BSR (X @ W with W in BSR, computed as Wᵀ Xᵀ): block rows of A cut by
// their blocks, each block scattered into the rows of C its block column names.
template <class I, class T>
void multiply_bsr_columns(const BsrView<I, T>& a, const DenseView<T>& b, const OutView<T>& c,
                          const Call& k) {
    if (b.rows != a.rows() || c.rows != a.cols() || c.cols != b.cols) {
        throw std::invalid_argument("multiply_bsr: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const BsrKernel<I, T> fn = bsr_kernel<true, I, T>(k.kernel, k.simd).fn;
    if (c.rows == 0 || c.cols == 0) return check_structure(a);
    check_first_pointer(a.indptr);
    const std::int64_t entries = static_cast<std::int64_t>(a.indptr[a.block_rows]) * a.r * a.c;
    const int t = k.threads(entries, a.cols(), b.cols);
    run_columns<T>(a.cols(), c, k, t, k.pieces(entries, b.cols, t),
                   [&](std::int64_t parts) {
                       return partition_rows(a.indptr, a.block_rows, static_cast<int>(parts), Partition::nnz);
                   },
                   [&](std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1,
                       const RowsView<T>& out) { fn(a, b, out, i0, i1, j0, j1); });
}

// ---- Structured layouts (prepared X @ W) ----------------------------------------------

// The checks every structured product makes first: X is batch x rows and Y batch x cols of
// W's rows x cols; the backend and instruction set exist.
template <class T>
void check_structured(const char* what, std::int64_t rows, std::int64_t cols,
                      const StridedView<T>& x, const RowsView<T>& y, Backend backend,
                      Simd simd) {
    if (x.cols != rows || y.rows != x.rows || y.cols != cols) {
        throw std::invalid_argument(std::string(what) + ": operand shapes do not match");
    }
    check_backend_and_simd(backend, simd);
}

// Y = X W for W in the column-tile layout (formats/structured.hpp): X is batch x w.rows with
// any strides, Y batch x w.cols with rows of unit stride. Tiles are the units of work handed
// to threads, balanced by their stored rows (unit_ptr scaled by the run is their prefix sum
// of work).
template <class T, class S>
void multiply_panels(const PanelsView<S>& w, const StridedView<T>& x, const RowsView<T>& y,
                     const Call& k) {
    check_structured("multiply_panels", w.rows, w.cols, x, y, k.backend, k.simd);
    const PanelsKernel<T, S> kernel = panels_kernel<T, S>(k.simd).fn;
    const std::int64_t tiles = w.tiles();
    if (x.rows == 0 || tiles == 0) return;
    const std::int64_t stored = w.unit_ptr[tiles] * w.run * w.width;
    const int t = k.threads(stored, w.cols, x.rows);
    const std::int64_t pieces = k.pieces(stored, x.rows, t);
    if (t == 1 && pieces == 1) return kernel(w, x, y, 0, tiles);
    k.run(partition_rows(w.unit_ptr, tiles, static_cast<int>(t * pieces), k.partition), t,
          [&](std::int64_t t0, std::int64_t t1) { kernel(w, x, y, t0, t1); });
}

// Y = X W for W with N:M sparsity (formats/structured.hpp's NmView). Every column costs the
// same: the chunks of columns are cut into equal slices (many for the dynamic partition).
template <class T, class S>
void multiply_nm(const NmView<S>& w, const StridedView<T>& x, const RowsView<T>& y,
                 const Call& k) {
    check_structured("multiply_nm", w.rows, w.cols, x, y, k.backend, k.simd);
    if (w.m < 1 || w.m > kMaxGroup || w.n < 0 || w.n > w.m || w.chunk < 1 || w.chunk % 64 != 0) {
        throw std::invalid_argument("multiply_nm: need 0 <= n <= m <= " + std::to_string(kMaxGroup) +
                                    " and chunks of a multiple of 64 columns");
    }
    const Picked<NmKernel<T, S>> picked = nm_kernel<T, S>(k.simd, w.m);
    const NmKernel<T, S> kernel = picked.fn;
    const std::int64_t chunks = w.chunks();
    if (x.rows == 0 || chunks == 0) return;
    const std::int64_t stored = w.groups() * w.n * w.cols;
    const int t = k.threads(stored, w.cols, x.rows);
    const std::int64_t pieces = k.pieces(stored, x.rows, t);
    // From kNmBroadcastMinBatch batch rows the SIMD bodies read Xᵀ (nm.inc: nm_broadcast),
    // packed here (PackedNmXt), not once per slice (a slice may be one chunk of 64 outputs,
    // whose products are few next to a copy of X). Packed in rounds of batch rows whose Xᵀ fits
    // in L2 (kNmXtShareOfL2), every slice run on one round before the next: each slice then
    // reads Xᵀ from L2. A round is packed densely (its own row length): rows of a wider pack
    // would sit a stride apart that maps them to a fraction of L2's sets. The portable loop
    // reads X as it is.
    const bool transposed = x.rows >= kNmBroadcastMinBatch && picked.level != Simd::scalar;
    const std::int64_t rows_bytes = w.groups() * w.m * static_cast<std::int64_t>(sizeof(T));
    const std::int64_t round =
        !transposed ? x.rows
                    : std::max(kNmXtRowMultiple, l2_cache_bytes() / kNmXtShareOfL2 / rows_bytes /
                                                     kNmXtRowMultiple * kNmXtRowMultiple);
    const std::int64_t per_thread = k.partition == Partition::dynamic ? kChunksPerThread : 1;
    const std::vector<std::int64_t> bounds =
        equal_rows(chunks, std::min(chunks, t * std::max(pieces, per_thread)));
    for (std::int64_t b0 = 0; b0 < x.rows; b0 += round) {
        const std::int64_t rows = std::min(round, x.rows - b0);
        const StridedView<T> part = x.rows_from(b0, rows);
        const std::unique_ptr<PackedNmXt<T>> xt =
            transposed ? std::make_unique<PackedNmXt<T>>(part, w.groups() * w.m) : nullptr;
        const StridedView<T> xv = xt != nullptr ? xt->view() : part;
        const RowsView<T> yv{y.row(b0), rows, y.cols, y.ld};
        if (t == 1 && pieces == 1) {
            kernel(w, xv, yv, 0, chunks);
        } else {
            k.run(bounds, t, [&](std::int64_t c0, std::int64_t c1) { kernel(w, xv, yv, c0, c1); });
        }
    }
}

// ---- The one-column layout (prepared x @ W at batch 1) ---------------------------------

// y = A x for A in the sliced layout (formats/sliced.hpp): b is x (w.cols x 1, any stride;
// copied when not contiguous, so every gather reads unit-stride x), c is y (w.rows x 1).
// Threads take slices, balanced by their entries (slice_ptr is their prefix sum); every slice
// writes only its own rows, so no two threads write one element.
template <class I, class T, class S>
void multiply_sliced(const SlicedView<I, S>& w, const DenseView<T>& b, const OutView<T>& c,
                     const Call& k) {
    if (b.rows != w.cols || b.cols != 1 || c.rows != w.rows || c.cols != 1) {
        throw std::invalid_argument("multiply_sliced: operand shapes do not match");
    }
    check_backend_and_simd(k.backend, k.simd);
    const SlicedKernel<I, T, S> fn = sliced_kernel<I, T, S>(k.kernel, k.simd).fn;
    const std::int64_t slices = w.slices();
    if (slices == 0) return;
    std::vector<T> copy;
    const T* x = b.data;
    if (b.ld != 1 && b.rows > 1) {
        copy.resize(static_cast<std::size_t>(b.rows));
        for (std::int64_t j = 0; j < b.rows; ++j) copy[static_cast<std::size_t>(j)] = *b.row(j);
        x = copy.data();
    }
    SlicedView<I, S> streamed = w;
    streamed.prefetch = w.stream_bytes() >= kSlicedPrefetchMinL2s * l2_cache_bytes();
    const int t = k.threads(w.nnz(), w.rows, kSlicedWorkColumns);
    const std::int64_t pieces = k.pieces(w.nnz(), 1, t);
    if (t == 1 && pieces == 1) return fn(streamed, x, c, 0, slices);
    k.run(partition_rows(w.slice_ptr, slices, static_cast<int>(t * pieces), k.partition), t,
          [&](std::int64_t s0, std::int64_t s1) { fn(streamed, x, c, s0, s1); });
}

}  // namespace spmm
