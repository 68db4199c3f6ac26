// spmm's C++ entry points for the Cython layer: flat pointer-and-size functions over the
// header-only templates, so the .pyx declares no C++ structs.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "formats/pack.hpp"
#include "formats/transpose.hpp"
#include "formats/validate.hpp"
#include "product.hpp"

#ifndef SPMM_COMPILE_ARGS
#define SPMM_COMPILE_ARGS "unknown"
#endif

namespace spmm {

// C = A B. A: CSR arrays (indptr rows + 1, indices and data indptr[rows]); B: k x n, rows
// contiguous with leading dimension ldb; C: rows x n with arbitrary element strides.
// `bounds` (nbounds entries, or null) are slice boundaries computed earlier by
// partition_bounds for the same matrix, thread count and partition (a prepared matrix keeps
// them); without them the partition is computed here. parallel_min_work: see multiply_csr
// (negative: kParallelMinWork).
template <class I, class T>
void csr_times_dense(const offset_t<I>* indptr, const I* indices, const T* data,
                     std::int64_t rows, std::int64_t cols, const T* b, std::int64_t b_cols,
                     std::int64_t ldb, T* c, std::int64_t c_row_stride,
                     std::int64_t c_col_stride, int kernel, int backend, int nthreads,
                     int partition, int simd, const std::int64_t* bounds = nullptr,
                     std::int64_t nbounds = 0, std::int64_t parallel_min_work = -1) {
    const CsrView<I, T> a{indptr, indices, data, rows, cols};
    const DenseView<T> bv{b, cols, b_cols, ldb};
    const OutView<T> cv{c, rows, b_cols, c_row_stride, c_col_stride};
    multiply_csr(a, bv, cv, static_cast<Kernel>(kernel), static_cast<Backend>(backend), nthreads,
                 static_cast<Partition>(partition), static_cast<Simd>(simd),
                 SliceBounds{bounds, nbounds}, parallel_min_work);
}

// csr_times_dense for a B with any element strides (b_row_stride, b_col_stride), as the Cython
// layer finds it: when its rows are not contiguous (X^T of a C-ordered X), or when an aligned
// copy pays (worth_packing), B is first packed (PackedRows), outside the GIL. The row pointers'
// type O is a parameter of its own (it must be offset_t<I>), so that one declaration serves
// the Cython layer for every index type.
template <class O, class I, class T>
void csr_times_strided_dense(const O* indptr, const I* indices, const T* data, std::int64_t rows,
                             std::int64_t cols, const T* b, std::int64_t b_cols,
                             std::int64_t b_row_stride, std::int64_t b_col_stride, T* c,
                             std::int64_t c_row_stride, std::int64_t c_col_stride, int kernel,
                             int backend, int nthreads, int partition, int simd,
                             const std::int64_t* bounds, std::int64_t nbounds,
                             std::int64_t parallel_min_work) {
    static_assert(std::is_same_v<O, offset_t<I>>, "row pointers of the wrong type");
    const std::int64_t nnz = rows == 0 ? 0 : static_cast<std::int64_t>(indptr[rows]);
    const bool contiguous_rows = b_cols <= 1 || b_col_stride == 1;
    if (contiguous_rows && !worth_packing(b, cols, b_cols, b_row_stride, nnz)) {
        csr_times_dense<I, T>(indptr, indices, data, rows, cols, b, b_cols, b_row_stride, c,
                              c_row_stride, c_col_stride, kernel, backend, nthreads, partition,
                              simd, bounds, nbounds, parallel_min_work);
        return;
    }
    const PackedRows<T> packed(b, cols, b_cols, b_row_stride, b_col_stride);
    const DenseView<T>& bv = packed.view();
    csr_times_dense<I, T>(indptr, indices, data, rows, cols, bv.data, b_cols, bv.ld, c,
                          c_row_stride, c_col_stride, kernel, backend, nthreads, partition, simd,
                          bounds, nbounds, parallel_min_work);
}

// Y = X W for W in the column-tile layout (formats/structured.hpp). X: batch x rows with element strides
// (x_row_stride, x_col_stride); Y: batch x cols, rows contiguous with leading dimension ldy.
// unit_ptr: tiles + 1 entries; unit_row: unit_ptr[tiles] entries; values: unit_ptr[tiles] *
// run rows of ld elements.
template <class T>
void panels_times_dense(std::int64_t rows, std::int64_t cols, std::int64_t width,
                        std::int64_t ld, std::int64_t run, const std::int64_t* unit_ptr,
                        const std::int32_t* unit_row, const T* values, const T* x,
                        std::int64_t batch, std::int64_t x_row_stride, std::int64_t x_col_stride,
                        T* y, std::int64_t ldy, int backend, int nthreads, int partition,
                        int simd, std::int64_t parallel_min_work) {
    const PanelsView<T> w{rows, cols, width, ld, run, unit_ptr, unit_row, values};
    const StridedView<T> xv{x, batch, rows, x_row_stride, x_col_stride};
    const RowsView<T> yv{y, batch, cols, ldy};
    multiply_panels(w, xv, yv, static_cast<Backend>(backend), nthreads,
                    static_cast<Partition>(partition), static_cast<Simd>(simd), parallel_min_work);
}

// Y = X W for W with N:M sparsity: values and offsets are chunks x (groups * n) x chunk
// (formats/structured.hpp's NmView).
template <class T>
void nm_times_dense(std::int64_t rows, std::int64_t cols, std::int64_t n, std::int64_t m,
                    std::int64_t chunk, const T* values, const std::uint8_t* offsets, const T* x,
                    std::int64_t batch, std::int64_t x_row_stride, std::int64_t x_col_stride,
                    T* y, std::int64_t ldy, int backend, int nthreads, int partition, int simd,
                    std::int64_t parallel_min_work) {
    const NmView<T> w{rows, cols, n, m, chunk, values, offsets};
    const StridedView<T> xv{x, batch, rows, x_row_stride, x_col_stride};
    const RowsView<T> yv{y, batch, cols, ldy};
    multiply_nm(w, xv, yv, static_cast<Backend>(backend), nthreads,
                static_cast<Partition>(partition), static_cast<Simd>(simd), parallel_min_work);
}

// The work below which a product runs on the calling thread (for show_config and benches).
inline std::int64_t parallel_min_work() { return kParallelMinWork; }

// The slice boundaries a partition produces (for tests and the documentation of strategies).
template <class I>
std::vector<std::int64_t> partition_bounds(const I* indptr, std::int64_t rows, int nthreads,
                                           int partition) {
    return partition_rows(indptr, rows, nthreads, static_cast<Partition>(partition));
}

// The instruction-set levels this build and CPU support, lowest first.
inline std::vector<std::string> simd_levels() { return supported_simd(); }

// The names of every kernel, backend, partition and SIMD level (names.hpp), in code order.
inline std::vector<std::vector<std::string>> vocabulary() {
    return {kernel_names(), backend_names(), partition_names(), simd_names()};
}

inline bool has_openmp() { return openmp::available(); }

inline bool openmp_usable() { return openmp::usable_in_this_process(); }

// The OpenMP specification date the compiler implements (e.g. 201511), 0 without OpenMP.
inline long openmp_version() {
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

inline std::string compiler_version() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

inline std::string compile_args() { return SPMM_COMPILE_ARGS; }

// The CPUs in this process's affinity mask (the default thread count), or 0 where that cannot
// be read in one system call: not Linux, or more CPUs than a cpu_set_t holds (EINVAL). The
// Python layer then asks os.sched_getaffinity, which costs ~1 us more per call.
inline int affinity_cpus() { return threads::affinity_cpus(); }

// The threads backend's workers running now.
inline std::size_t pool_workers() { return threads::global_pool().workers(); }

// A testing aid: per worker slot of the threads backend's pool, the calls its worker took up.
inline std::vector<std::uint64_t> pool_calls_taken() {
    return threads::global_pool().calls_taken();
}

}  // namespace spmm
