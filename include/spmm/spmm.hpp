// spmm's C++ entry points for the Cython layer: flat pointer-and-size functions over the
// header-only templates, so the .pyx declares no C++ structs.
#pragma once

#include <cstdint>
#include <string>

#include "product.hpp"
#include "validate.hpp"

#ifndef SPMM_COMPILE_ARGS
#define SPMM_COMPILE_ARGS "unknown"
#endif

namespace spmm {

// C = A B. A: CSR arrays (indptr rows + 1, indices and data indptr[rows]); B: k x n, rows
// contiguous with leading dimension ldb; C: rows x n with arbitrary element strides.
// `bounds` (nbounds entries, or null) are slice boundaries computed earlier by
// partition_bounds for the same matrix, thread count and partition (a prepared matrix keeps
// them); without them the partition is computed here.
template <class I, class T>
void csr_times_dense(const offset_t<I>* indptr, const I* indices, const T* data,
                     std::int64_t rows, std::int64_t cols, const T* b, std::int64_t b_cols,
                     std::int64_t ldb, T* c, std::int64_t c_row_stride,
                     std::int64_t c_col_stride, int kernel, int backend, int nthreads,
                     int partition, int simd, const std::int64_t* bounds = nullptr,
                     std::int64_t nbounds = 0) {
    const CsrView<I, T> a{indptr, indices, data, rows, cols};
    const DenseView<T> bv{b, cols, b_cols, ldb};
    const OutView<T> cv{c, rows, b_cols, c_row_stride, c_col_stride};
    multiply_csr(a, bv, cv, static_cast<Kernel>(kernel), static_cast<Backend>(backend), nthreads,
                 static_cast<Partition>(partition), static_cast<Simd>(simd),
                 SliceBounds{bounds, nbounds});
}

// The same for a prepared matrix's 16-bit column indices (64-bit row pointers): a separate
// name, so the Cython layer needs no fused type for a pair of index types.
template <class T>
void csr16_times_dense(const std::int64_t* indptr, const std::uint16_t* indices, const T* data,
                       std::int64_t rows, std::int64_t cols, const T* b, std::int64_t b_cols,
                       std::int64_t ldb, T* c, std::int64_t c_row_stride,
                       std::int64_t c_col_stride, int kernel, int backend, int nthreads,
                       int partition, int simd, const std::int64_t* bounds,
                       std::int64_t nbounds) {
    csr_times_dense<std::uint16_t, T>(indptr, indices, data, rows, cols, b, b_cols, ldb, c,
                                      c_row_stride, c_col_stride, kernel, backend, nthreads,
                                      partition, simd, bounds, nbounds);
}

// The slice boundaries a partition produces (for tests and the documentation of strategies).
template <class I>
std::vector<std::int64_t> partition_bounds(const I* indptr, std::int64_t rows, int nthreads,
                                           int partition) {
    return partition_rows(indptr, rows, nthreads, static_cast<Partition>(partition));
}

// The instruction-set levels this build and CPU support, lowest first.
inline std::vector<std::string> simd_levels() { return supported_simd(); }

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

inline std::size_t pool_workers() { return threads::global_pool().workers(); }

}  // namespace spmm
