// The product driver: cut the rows into slices, hand the slices to a backend, run one kernel on
// each. This is the only place where kernels and backends meet.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend_openmp.hpp"
#include "backend_serial.hpp"
#include "backend_threads.hpp"
#include "kernels.hpp"
#include "kernels_simd.hpp"
#include "partition.hpp"
#include "simd.hpp"
#include "validate.hpp"
#include "views.hpp"

namespace spmm {

enum class Backend : int { serial = 0, openmp = 1, threads = 2 };

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

// Whether a product does less work than min_work: one multiply-add per stored entry and dense
// column, plus one store per output element (an empty row still costs its zeroing). Compared
// as (nnz + rows) < ceil(min_work / n), which cannot overflow.
template <class I, class T>
bool less_work_than(const CsrView<I, T>& a, const DenseView<T>& b, std::int64_t min_work) {
    if (b.cols <= 0) return true;
    return a.nnz() + a.rows < min_work / b.cols + (min_work % b.cols != 0);
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
    if (backend == Backend::openmp && !openmp::available()) {
        throw std::invalid_argument("the openmp backend is not available: built without OpenMP");
    }
    if (!simd_supported(simd)) {
        throw std::invalid_argument("this CPU or build does not support SIMD level " +
                                    std::to_string(int(simd)));
    }
    const RowsKernel<I, T> rows_kernel = kernel_for<I, T>(kernel, simd);
    if (rows_kernel == nullptr) throw std::invalid_argument("unknown kernel " + std::to_string(int(kernel)));
    if (c.rows == 0) return;
    if (parallel_min_work < 0) parallel_min_work = kParallelMinWork;
    if (backend == Backend::serial || nthreads <= 1 || less_work_than(a, b, parallel_min_work)) {
        rows_kernel(a, b, c, 0, a.rows);
        return;
    }
    const std::vector<std::int64_t> bounds =
        given.data != nullptr ? std::vector<std::int64_t>(given.data, given.data + given.size)
                              : partition_rows(a.indptr, a.rows, nthreads, partition);
    if (bounds.size() < 2 || bounds.front() != 0 || bounds.back() != a.rows) {
        throw std::invalid_argument("multiply_csr: slice bounds do not cover the rows");
    }
    const std::int64_t nslices = static_cast<std::int64_t>(bounds.size()) - 1;
    const bool dynamic = partition == Partition::dynamic;
    auto slice = [&](std::int64_t s) {
        rows_kernel(a, b, c, bounds[static_cast<std::size_t>(s)], bounds[static_cast<std::size_t>(s) + 1]);
    };
    if (backend == Backend::openmp) {
        openmp::for_each_slice(nslices, nthreads, dynamic, slice);
    } else {
        threads::for_each_slice(nslices, nthreads, dynamic, slice);
    }
}

}  // namespace spmm
