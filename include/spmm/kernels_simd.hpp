// The SIMD kernels: kernel_simd_body.inc compiled once per x86 instruction set.
//
// Each instruction set gets its own namespace (spmm::avx2, spmm::avx512), so its functions
// have their own symbols: the linker can never merge an AVX-512 instantiation with a portable
// one. Everything in those namespaces is compiled for that instruction set through a target
// pragma (not -march), so the module still runs on any x86-64; the driver calls into a
// namespace only when supported_simd() (simd.hpp) lists it.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels.hpp"
#include "simd.hpp"
#include "views.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define SPMM_X86_SIMD 1
#include <immintrin.h>
#else
#define SPMM_X86_SIMD 0
#endif

#if SPMM_X86_SIMD

// ---- AVX2 + FMA: 8 floats or 4 doubles per register ----------------------------------------
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace spmm {
namespace avx2 {

template <class T>
struct Vec;

template <>
struct Vec<float> {
    using reg = __m256;
    static constexpr std::int64_t lanes = 8;
    using mask = __m256i;
    // Lanes [lo, hi) set: maskload/maskstore touch only those (no fault beyond them).
    static mask lanes_mask(std::int64_t lo, std::int64_t hi) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), lane),
                                   _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), lane));
    }
    static reg zero() { return _mm256_setzero_ps(); }
    static reg set1(float x) { return _mm256_set1_ps(x); }
    static reg load(const float* p) { return _mm256_loadu_ps(p); }
    static reg load_masked(const float* p, mask m) { return _mm256_maskload_ps(p, m); }
    static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
    static void store_masked(float* p, reg v, mask m) { _mm256_maskstore_ps(p, m, v); }
};

template <>
struct Vec<double> {
    using reg = __m256d;
    static constexpr std::int64_t lanes = 4;
    using mask = __m256i;
    static mask lanes_mask(std::int64_t lo, std::int64_t hi) {
        const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
        return _mm256_andnot_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x(lo), lane),
                                   _mm256_cmpgt_epi64(_mm256_set1_epi64x(hi), lane));
    }
    static reg zero() { return _mm256_setzero_pd(); }
    static reg set1(double x) { return _mm256_set1_pd(x); }
    static reg load(const double* p) { return _mm256_loadu_pd(p); }
    static reg load_masked(const double* p, mask m) { return _mm256_maskload_pd(p, m); }
    static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
    static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
    static void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
    static void store_masked(double* p, reg v, mask m) { _mm256_maskstore_pd(p, m, v); }
};

#include "kernel_simd_body.inc"
#include "kernel_reordered_body.inc"

}  // namespace avx2
}  // namespace spmm

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- AVX-512F: 16 floats or 8 doubles per register, native lane masks ----------------------
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace spmm {
namespace avx512 {

template <class T>
struct Vec;

template <>
struct Vec<float> {
    using reg = __m512;
    static constexpr std::int64_t lanes = 16;
    using mask = __mmask16;
    static mask lanes_mask(std::int64_t lo, std::int64_t hi) {
        return static_cast<mask>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    }
    static reg zero() { return _mm512_setzero_ps(); }
    static reg set1(float x) { return _mm512_set1_ps(x); }
    static reg load(const float* p) { return _mm512_loadu_ps(p); }
    static reg load_masked(const float* p, mask m) { return _mm512_maskz_loadu_ps(m, p); }
    static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
    static void store_masked(float* p, reg v, mask m) { _mm512_mask_storeu_ps(p, m, v); }
};

template <>
struct Vec<double> {
    using reg = __m512d;
    static constexpr std::int64_t lanes = 8;
    using mask = __mmask8;
    static mask lanes_mask(std::int64_t lo, std::int64_t hi) {
        return static_cast<mask>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    }
    static reg zero() { return _mm512_setzero_pd(); }
    static reg set1(double x) { return _mm512_set1_pd(x); }
    static reg load(const double* p) { return _mm512_loadu_pd(p); }
    static reg load_masked(const double* p, mask m) { return _mm512_maskz_loadu_pd(m, p); }
    static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
    static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
    static void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
    static void store_masked(double* p, reg v, mask m) { _mm512_mask_storeu_pd(p, m, v); }
};

#include "kernel_simd_body.inc"
#include "kernel_reordered_body.inc"

}  // namespace avx512
}  // namespace spmm

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // SPMM_X86_SIMD

namespace spmm {

// The kernel to run for a variant at an instruction-set level. `tiled` is the register-blocked
// microkernel; `reordered` is its loop vectorized by the compiler for the level (SIMD without
// register blocking); `naive` stays portable, the baseline of the ablation.
template <class I, class T>
RowsKernel<I, T> kernel_for(Kernel k, Simd simd) {
#if SPMM_X86_SIMD
    if (k == Kernel::tiled && simd == Simd::avx512) return &avx512::tiled_rows<I, T>;
    if (k == Kernel::tiled && simd == Simd::avx2) return &avx2::tiled_rows<I, T>;
    if (k == Kernel::reordered && simd == Simd::avx512) return &avx512::reordered_rows<I, T>;
    if (k == Kernel::reordered && simd == Simd::avx2) return &avx2::reordered_rows<I, T>;
#endif
    (void)simd;
    return kernel_for<I, T>(k);
}

}  // namespace spmm
