// The product driver: cut the rows into slices, hand the slices to a backend, run one kernel on
// each. This is the only place where kernels and backends meet.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "formats/structured.hpp"
#include "formats/validate.hpp"
#include "formats/views.hpp"
#include "kernels/registry.hpp"
#include "names.hpp"
#include "parallel/parallel_for.hpp"
#include "parallel/partition.hpp"
#include "simd/levels.hpp"

namespace spmm {

// Slice boundaries computed ahead of the call (a prepared matrix's), or none (data == null).
struct SliceBounds {
    const std::int64_t* data = nullptr;
    std::int64_t size = 0;
};

// Below this much work, (stored entries + rows) x dense columns, a product runs on the calling
// thread whatever the backend: handing half of it to another core costs more than it saves
// (waking or signalling the other thread, and moving the operands' cache lines to its core).
// Measured with `python bench/overhead.py --rounds 3|5` (float32 A of rows x 256 with 16
// stored per row, times B of 256 x 16, rows 8 to 16384 in steps of sqrt 2) on the 2-vCPU KVM
// VM (lscpu: Intel Xeon model 207, shared with other jobs), 2026-11-23: over ten sweeps,
// both parallel backends at 2 threads, forced to run in parallel, beat the serial backend at
// every larger size from a work of 98k, 197k, 279k, 394k (three sweeps), 557k (two), 1.1M and
// (once, OpenMP stalling for milliseconds while other jobs ran) never; the spread follows the
// load of the other jobs. Below ~50k they were up to twice as slow (7-10 us against 4-5 us
// for the smallest product). 400k is the median crossing, rounded: 45-65 us of serial work.
constexpr std::int64_t kParallelMinWork = 400000;

inline void check_backend_and_simd(Backend backend, Simd simd) {
    if (backend == Backend::openmp && !openmp::available()) {
        throw std::invalid_argument("the openmp backend is not available: built without OpenMP");
    }
    if (!simd_supported(simd)) {
        throw std::invalid_argument("this CPU or build does not support SIMD level " +
                                    std::to_string(int(simd)));
    }
}

// Runs f(first, last) on each slice [bounds[s], bounds[s + 1]) with the backend's threads
// (the dynamic partition's many slices handed out on demand).
template <class F>
void run_slices(const std::vector<std::int64_t>& bounds, Backend backend, int nthreads,
                Partition partition, F&& f) {
    const std::int64_t nslices = static_cast<std::int64_t>(bounds.size()) - 1;
    parallel_for(backend, nthreads, nslices, partition == Partition::dynamic,
                 [&](std::int64_t s) {
                     f(bounds[static_cast<std::size_t>(s)], bounds[static_cast<std::size_t>(s) + 1]);
                 });
}

// Whether per_dense_column x dense_columns < min_work (negative: kParallelMinWork), compared
// as per_dense_column < ceil(min_work / dense_columns), which cannot overflow. A product's
// work is per dense column (stored entries + output rows, the zeroing included) times the
// dense operand's columns (B's columns, or X's rows for X @ W).
inline bool below_min_work(std::int64_t per_dense_column, std::int64_t dense_columns,
                           std::int64_t min_work) {
    if (min_work < 0) min_work = kParallelMinWork;
    if (dense_columns <= 0) return true;
    return per_dense_column < min_work / dense_columns + (min_work % dense_columns != 0);
}

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

// Whether a product does less work than min_work: one multiply-add per stored entry and dense
// column, plus one store per output element (an empty row still costs its zeroing). Compared
// as (nnz + rows) < ceil(min_work / n), which cannot overflow.
template <class I, class T>
bool less_work_than(const CsrView<I, T>& a, const DenseView<T>& b, std::int64_t min_work) {
    return below_min_work(a.nnz() + a.rows, b.cols, min_work);
}

// C = A B for A (rows x k, CSR), B (k x n), C (rows x n), as described by the views.
// The structure of A must have been validated (validate_csr). Every element of C is written.
// Products below parallel_min_work run on the calling thread (a negative value means
// kParallelMinWork; 0 lets every product use the backend, for tests and measurements).
template <class I, class T>
void multiply_csr(const CsrView<I, T>& a, const DenseView<T>& b, const OutView<T>& c,
                  Kernel kernel, Backend backend, int nthreads, Partition partition,
                  Simd simd = Simd::scalar, SliceBounds given = {},
                  std::int64_t parallel_min_work = -1) {
    if (b.rows != a.cols || c.rows != a.rows || c.cols != b.cols) {
        throw std::invalid_argument("multiply_csr: operand shapes do not match");
    }
    check_backend_and_simd(backend, simd);
    const RowsKernel<I, T> rows_kernel = kernel_for<I, T>(kernel, simd);
    if (rows_kernel == nullptr) throw std::invalid_argument("unknown kernel " + std::to_string(int(kernel)));
    if (c.rows == 0) return;
    if (backend == Backend::serial || nthreads <= 1 || less_work_than(a, b, parallel_min_work)) {
        rows_kernel(a, b, c, 0, a.rows);
        return;
    }
    const std::vector<std::int64_t> bounds =
        given.data != nullptr ? std::vector<std::int64_t>(given.data, given.data + given.size)
                              : partition_rows(a.indptr, a.rows, nthreads, partition);
    validate_slice_bounds(bounds, a.rows);
    run_slices(bounds, backend, nthreads, partition, [&](std::int64_t r0, std::int64_t r1) {
        rows_kernel(a, b, c, r0, r1);
    });
}

// Y = X W for W in the column-tile layout (formats/structured.hpp): X is batch x w.rows with any strides,
// Y batch x w.cols with rows of unit stride. Tiles are the units of work handed to threads,
// balanced by their stored rows (unit_ptr scaled by the run is their prefix sum of work).
template <class T>
void multiply_panels(const PanelsView<T>& w, const StridedView<T>& x, const RowsView<T>& y,
                     Backend backend, int nthreads, Partition partition, Simd simd,
                     std::int64_t parallel_min_work = -1) {
    check_structured("multiply_panels", w.rows, w.cols, x, y, backend, simd);
    const PanelsKernel<T> kernel = panels_kernel_for<T>(simd);
    const std::int64_t tiles = w.tiles();
    if (x.rows == 0 || tiles == 0) return;
    // The same measure of work as a CSR product's, with W's outputs as the rows.
    const std::int64_t stored = w.unit_ptr[tiles] * w.run * w.width;
    if (backend == Backend::serial || nthreads <= 1 ||
        below_min_work(stored + w.cols, x.rows, parallel_min_work)) {
        kernel(w, x, y, 0, tiles);
        return;
    }
    run_slices(partition_rows(w.unit_ptr, tiles, nthreads, partition), backend, nthreads,
               partition, [&](std::int64_t t0, std::int64_t t1) { kernel(w, x, y, t0, t1); });
}

// Y = X W for W with N:M sparsity (formats/structured.hpp's NmView). Every column costs the same: the
// chunks of columns are cut into equal slices (many for the dynamic partition).
template <class T>
void multiply_nm(const NmView<T>& w, const StridedView<T>& x, const RowsView<T>& y,
                 Backend backend, int nthreads, Partition partition, Simd simd,
                 std::int64_t parallel_min_work = -1) {
    check_structured("multiply_nm", w.rows, w.cols, x, y, backend, simd);
    if (w.m < 1 || w.m > 255 || w.n < 0 || w.n > w.m || w.chunk < 1 || w.chunk % 64 != 0) {
        throw std::invalid_argument(
            "multiply_nm: need 0 <= n <= m <= 255 and chunks of a multiple of 64 columns");
    }
    const NmKernel<T> kernel = nm_kernel_for<T>(simd, w.m);
    const std::int64_t chunks = w.chunks();
    if (x.rows == 0 || chunks == 0) return;
    if (backend == Backend::serial || nthreads <= 1 || chunks == 1 ||
        below_min_work(w.groups() * w.n * w.cols + w.cols, x.rows, parallel_min_work)) {
        kernel(w, x, y, 0, chunks);
        return;
    }
    const std::int64_t t = std::min<std::int64_t>(nthreads, chunks);
    const std::int64_t slices =
        partition == Partition::dynamic ? std::min(chunks, t * kChunksPerThread) : t;
    run_slices(equal_rows(chunks, slices), backend, nthreads, partition,
               [&](std::int64_t c0, std::int64_t c1) { kernel(w, x, y, c0, c1); });
}

}  // namespace spmm
