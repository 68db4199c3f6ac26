// AVX-512 (F, BW, DQ, VL): 16 floats or 8 doubles per register, native lane masks.
//
// The vector types the kernel bodies (kernels/*.inc) are written against, for one instruction
// set: Vec<T> (the register, its lanes, masks, loads, stores and fused multiply-add),
// Gather<I, T> (a register of x[idx[0..lanes)], for the one-column kernel), reduce (a
// horizontal sum) and Permute<T> (a register's lanes picked by byte indices, for N:M weights).
// Compiled for the instruction set through a target pragma (target.hpp), in a namespace of its
// own, so no symbol is ever shared with the portable code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../formats/values.hpp"
#include "levels.hpp"
#include "target.hpp"

#if SPMM_X86_SIMD
#include <immintrin.h>

SPMM_TARGET_BEGIN_AVX512

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
    static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
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
    static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
    static void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
    static void store_masked(double* p, reg v, mask m) { _mm512_mask_storeu_pd(p, m, v); }
};


// Stored<S>: a register of S values widened to float (`load`: 16 of them; `first`: the first
// n, the others zero and never read), and one value (`one`). For S = float or double the plain
// loads; for the reduced formats of a prepared matrix (formats/values.hpp) one or two
// instructions more per register: bfloat16 is the upper half of a float, float16 converts
// with vcvtph2ps, int8 is sign-extended and converted.
template <class S>
struct Stored {
    static typename Vec<S>::reg load(const S* p) { return Vec<S>::load(p); }
    static typename Vec<S>::reg first(const S* p, std::int64_t n) {
        return Vec<S>::load_masked(p, Vec<S>::lanes_mask(0, n));
    }
    static S one(S v) { return v; }
};

template <>
struct Stored<bfloat16> {
    static __m512 widen(__m256i bits) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
    }
    static __m512 load(const bfloat16* p) {
        return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static __m512 first(const bfloat16* p, std::int64_t n) {
        return widen(_mm256_maskz_loadu_epi16(Vec<float>::lanes_mask(0, n), p));
    }
    static float one(bfloat16 v) { return widen_bfloat16(v.bits); }
};

template <>
struct Stored<float16> {
    static __m512 load(const float16* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static __m512 first(const float16* p, std::int64_t n) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(Vec<float>::lanes_mask(0, n), p));
    }
    static float one(float16 v) { return _cvtsh_ss(v.bits); }
};

template <>
struct Stored<std::int8_t> {
    static __m512 load(const std::int8_t* p) {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
    }
    static __m512 first(const std::int8_t* p, std::int64_t n) {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(Vec<float>::lanes_mask(0, n), p)));
    }
    static float one(std::int8_t v) { return static_cast<float>(v); }
};


// Gather<I, T> and reduce: as in spmm::avx2, with AVX-512 gathers and native masks.
template <class I, class T>
struct Gather;

template <>
struct Gather<std::int32_t, float> {
    static __m512 full(const float* x, const std::int32_t* idx) {
        return _mm512_i32gather_ps(_mm512_loadu_si512(idx), x, 4);
    }
    static __m512 first(const float* x, const std::int32_t* idx, std::int64_t n) {
        const __mmask16 m = Vec<float>::lanes_mask(0, n);
        return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_maskz_loadu_epi32(m, idx), x, 4);
    }
};

template <>
struct Gather<std::int64_t, float> {
    static __m512 join(__m256 lo, __m256 hi) {
        return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)),
                                                   _mm256_castps_pd(hi), 1));
    }
    static __m512 full(const float* x, const std::int64_t* idx) {
        return join(_mm512_i64gather_ps(_mm512_loadu_si512(idx), x, 4),
                    _mm512_i64gather_ps(_mm512_loadu_si512(idx + 8), x, 4));
    }
    static __m512 first(const float* x, const std::int64_t* idx, std::int64_t n) {
        const __mmask16 m = Vec<float>::lanes_mask(0, n);
        const __mmask8 m0 = static_cast<__mmask8>(m), m1 = static_cast<__mmask8>(m >> 8);
        return join(_mm512_mask_i64gather_ps(_mm256_setzero_ps(), m0, _mm512_maskz_loadu_epi64(m0, idx), x, 4),
                    _mm512_mask_i64gather_ps(_mm256_setzero_ps(), m1, _mm512_maskz_loadu_epi64(m1, idx + 8), x, 4));
    }
};

template <>
struct Gather<std::int32_t, double> {
    static __m512d full(const double* x, const std::int32_t* idx) {
        return _mm512_i32gather_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), x, 8);
    }
    static __m512d first(const double* x, const std::int32_t* idx, std::int64_t n) {
        const __mmask8 m = Vec<double>::lanes_mask(0, n);
        const __m256i i = _mm512_castsi512_si256(_mm512_maskz_loadu_epi32(static_cast<__mmask16>(m), idx));
        return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m, i, x, 8);
    }
};

template <>
struct Gather<std::int64_t, double> {
    static __m512d full(const double* x, const std::int64_t* idx) {
        return _mm512_i64gather_pd(_mm512_loadu_si512(idx), x, 8);
    }
    static __m512d first(const double* x, const std::int64_t* idx, std::int64_t n) {
        const __mmask8 m = Vec<double>::lanes_mask(0, n);
        return _mm512_mask_i64gather_pd(_mm512_setzero_pd(), m, _mm512_maskz_loadu_epi64(m, idx), x, 8);
    }
};

template <>
struct Gather<std::uint16_t, float> {
    static __m512i widen(const std::uint16_t* idx) {
        return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)));
    }
    static __m512 full(const float* x, const std::uint16_t* idx) {
        return _mm512_i32gather_ps(widen(idx), x, 4);
    }
    static __m512 first(const float* x, const std::uint16_t* idx, std::int64_t n) {
        std::uint16_t part[16] = {};
        std::copy(idx, idx + n, part);
        return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), Vec<float>::lanes_mask(0, n), widen(part), x, 4);
    }
};

template <>
struct Gather<std::uint16_t, double> {
    static __m256i widen(const std::uint16_t* idx) {
        return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx)));
    }
    static __m512d full(const double* x, const std::uint16_t* idx) {
        return _mm512_i32gather_pd(widen(idx), x, 8);
    }
    static __m512d first(const double* x, const std::uint16_t* idx, std::int64_t n) {
        std::uint16_t part[8] = {};
        std::copy(idx, idx + n, part);
        return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), Vec<double>::lanes_mask(0, n), widen(part), x, 8);
    }
};

inline float reduce(__m512 v) { return _mm512_reduce_add_ps(v); }
inline double reduce(__m512d v) { return _mm512_reduce_add_pd(v); }


template <class T>
struct Permute;

template <>
struct Permute<float> {
    using index = __m512i;
    static index load_index(const std::uint8_t* p) {
        return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static __m512 permute(index i, __m512 x) { return _mm512_permutexvar_ps(i, x); }
};

template <>
struct Permute<double> {
    using index = __m512i;
    static index load_index(const std::uint8_t* p) {
        return _mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static __m512d permute(index i, __m512d x) { return _mm512_permutexvar_pd(i, x); }
};


// Whether one of the n indices at idx is negative or above last (0 <= last): the
// one-column gather kernel's check of a register of a user's indices before it gathers with
// them. One unsigned compare per register (a negative index wraps above every column).
inline bool lanes_outside(const std::int32_t* idx, std::int64_t n, std::int64_t last) {
    __mmask16 outside = 0;
    for (std::int64_t h = 0; h < n; h += 16) {
        const auto m = static_cast<__mmask16>(n - h >= 16 ? 0xFFFF : (1u << (n - h)) - 1);
        outside |= _mm512_mask_cmpgt_epu32_mask(m, _mm512_maskz_loadu_epi32(m, idx + h),
                                                _mm512_set1_epi32(static_cast<int>(last)));
    }
    return outside != 0;
}
inline bool lanes_outside(const std::int64_t* idx, std::int64_t n, std::int64_t last) {
    __mmask8 outside = 0;
    for (std::int64_t h = 0; h < n; h += 8) {
        const auto m = static_cast<__mmask8>(n - h >= 8 ? 0xFF : (1u << (n - h)) - 1);
        outside |= _mm512_mask_cmpgt_epu64_mask(m, _mm512_maskz_loadu_epi64(m, idx + h), _mm512_set1_epi64(last));
    }
    return outside != 0;
}
inline bool lanes_outside(const std::uint16_t* idx, std::int64_t n, std::int64_t last) {
    return std::any_of(idx, idx + n, [&](std::uint16_t j) { return j > last; });
}

}  // namespace avx512
}  // namespace spmm

SPMM_TARGET_END

#endif  // SPMM_X86_SIMD
