// AVX2 + FMA: 8 floats or 4 doubles per register.
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

SPMM_TARGET_BEGIN_AVX2

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
    static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
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
    static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
    static void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
    static void store_masked(double* p, reg v, mask m) { _mm256_maskstore_pd(p, m, v); }
};


// Stored<S>: a register of S values widened to float (`load`: 8 of them; `first`: the first
// n, the others zero and never read), and one value (`one`); as in spmm::avx512. A tail goes
// through a zeroed buffer (AVX2 has no masked load of 8- or 16-bit elements).
template <class S>
struct Stored {
    static typename Vec<S>::reg load(const S* p) { return Vec<S>::load(p); }
    static typename Vec<S>::reg first(const S* p, std::int64_t n) {
        return Vec<S>::load_masked(p, Vec<S>::lanes_mask(0, n));
    }
    static S one(S v) { return v; }
};

template <class S>
S* copy_first(const S* p, std::int64_t n, S (&buffer)[8]) {
    std::memset(buffer, 0, sizeof buffer);
    std::memcpy(buffer, p, static_cast<std::size_t>(n) * sizeof(S));
    return buffer;
}

template <>
struct Stored<bfloat16> {
    static __m256 load(const bfloat16* p) {
        const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
    }
    static __m256 first(const bfloat16* p, std::int64_t n) {
        bfloat16 part[8];
        return load(copy_first(p, n, part));
    }
    static float one(bfloat16 v) { return widen_bfloat16(v.bits); }
};

template <>
struct Stored<float16> {
    static __m256 load(const float16* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static __m256 first(const float16* p, std::int64_t n) {
        float16 part[8];
        return load(copy_first(p, n, part));
    }
    static float one(float16 v) { return _cvtsh_ss(v.bits); }
};

template <>
struct Stored<std::int8_t> {
    static __m256 load(const std::int8_t* p) {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    }
    static __m256 first(const std::int8_t* p, std::int64_t n) {
        std::int8_t part[8];
        return load(copy_first(p, n, part));
    }
    static float one(std::int8_t v) { return static_cast<float>(v); }
};


// Gather<I, T>: one register of x[idx[0..lanes)] (`full`) or of its first n lanes, the others
// zero and never read (`first`); and the horizontal sum of a register. For the row-dot kernel.
template <class I, class T>
struct Gather;

template <>
struct Gather<std::int32_t, float> {
    static __m256 full(const float* x, const std::int32_t* idx) {
        return _mm256_i32gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 4);
    }
    static __m256 first(const float* x, const std::int32_t* idx, std::int64_t n) {
        const __m256i m = Vec<float>::lanes_mask(0, n);
        return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_maskload_epi32(idx, m),
                                        _mm256_castsi256_ps(m), 4);
    }
};

template <>
struct Gather<std::int64_t, float> {
    static __m256 full(const float* x, const std::int64_t* idx) {
        const __m128 lo = _mm256_i64gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 4);
        const __m128 hi = _mm256_i64gather_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + 4)), 4);
        return _mm256_set_m128(hi, lo);
    }
    static __m256 first(const float* x, const std::int64_t* idx, std::int64_t n) {
        const __m256i m0 = Vec<double>::lanes_mask(0, n), m1 = Vec<double>::lanes_mask(0, n - 4);
        // The 64-bit lane masks narrowed to the 32-bit lanes of a 4-float gather.
        const __m128 f0 = _mm_castsi128_ps(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(m0, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0))));
        const __m128 f1 = _mm_castsi128_ps(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(m1, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0))));
        const __m128 lo = _mm256_mask_i64gather_ps(_mm_setzero_ps(), x, _mm256_maskload_epi64(reinterpret_cast<const long long*>(idx), m0), f0, 4);
        const __m128 hi = _mm256_mask_i64gather_ps(_mm_setzero_ps(), x, _mm256_maskload_epi64(reinterpret_cast<const long long*>(idx + 4), m1), f1, 4);
        return _mm256_set_m128(hi, lo);
    }
};

template <>
struct Gather<std::int32_t, double> {
    static __m256d full(const double* x, const std::int32_t* idx) {
        return _mm256_i32gather_pd(x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(idx)), 8);
    }
    static __m256d first(const double* x, const std::int32_t* idx, std::int64_t n) {
        const __m128i m32 = _mm256_castsi256_si128(Vec<float>::lanes_mask(0, n));
        return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), x, _mm_maskload_epi32(idx, m32),
                                        _mm256_castsi256_pd(Vec<double>::lanes_mask(0, n)), 8);
    }
};

template <>
struct Gather<std::int64_t, double> {
    static __m256d full(const double* x, const std::int64_t* idx) {
        return _mm256_i64gather_pd(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)), 8);
    }
    static __m256d first(const double* x, const std::int64_t* idx, std::int64_t n) {
        const __m256i m = Vec<double>::lanes_mask(0, n);
        return _mm256_mask_i64gather_pd(_mm256_setzero_pd(), x,
                                        _mm256_maskload_epi64(reinterpret_cast<const long long*>(idx), m),
                                        _mm256_castsi256_pd(m), 8);
    }
};

// 16-bit indices (a prepared matrix's), widened to 32 bits in a register before the gather.
// A tail's indices go through a zeroed buffer: the masked lanes then gather x[0], unread.
template <>
struct Gather<std::uint16_t, float> {
    static __m256i widen(const std::uint16_t* idx) {
        return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx)));
    }
    static __m256 full(const float* x, const std::uint16_t* idx) {
        return _mm256_i32gather_ps(x, widen(idx), 4);
    }
    static __m256 first(const float* x, const std::uint16_t* idx, std::int64_t n) {
        std::uint16_t part[8] = {};
        std::copy(idx, idx + n, part);
        const __m256i m = Vec<float>::lanes_mask(0, n);
        return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, widen(part), _mm256_castsi256_ps(m), 4);
    }
};

template <>
struct Gather<std::uint16_t, double> {
    static __m128i widen(const std::uint16_t* idx) {
        return _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(idx)));
    }
    static __m256d full(const double* x, const std::uint16_t* idx) {
        return _mm256_i32gather_pd(x, widen(idx), 8);
    }
    static __m256d first(const double* x, const std::uint16_t* idx, std::int64_t n) {
        std::uint16_t part[4] = {};
        std::copy(idx, idx + n, part);
        return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), x, widen(part),
                                        _mm256_castsi256_pd(Vec<double>::lanes_mask(0, n)), 8);
    }
};

inline float reduce(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

inline double reduce(__m256d v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}


// Permute<T>: a register of lane indices from bytes, and a register's lanes picked by them.
template <class T>
struct Permute;

template <>
struct Permute<float> {
    using index = __m256i;
    static index load_index(const std::uint8_t* p) {
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static __m256 permute(index i, __m256 x) { return _mm256_permutevar8x32_ps(x, i); }
};

// AVX2 has no variable permute of 64-bit lanes across the register: a double's lane o is
// moved as the pair of 32-bit lanes (2o, 2o + 1).
template <>
struct Permute<double> {
    using index = __m256i;
    static index load_index(const std::uint8_t* p) {
        std::int32_t bytes;
        std::memcpy(&bytes, p, sizeof(bytes));
        const __m256i o = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(bytes));
        const __m256i lo = _mm256_slli_epi64(o, 1);
        return _mm256_or_si256(lo, _mm256_slli_epi64(_mm256_add_epi64(lo, _mm256_set1_epi64x(1)), 32));
    }
    static __m256d permute(index i, __m256d x) {
        return _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(x), i));
    }
};


// Whether one of the n indices at idx is negative or above last (0 <= last): the
// one-column gather kernel's check of a register of a user's indices before it gathers with
// them (two signed compares a register; masked-off lanes load as 0, which is inside).
inline bool lanes_outside(const std::int32_t* idx, std::int64_t n, std::int64_t last) {
    const __m256i bound = _mm256_set1_epi32(static_cast<int>(last)), zero = _mm256_setzero_si256();
    __m256i outside = zero;
    for (std::int64_t h = 0; h < n; h += 8) {
        const __m256i j = _mm256_maskload_epi32(idx + h, Vec<float>::lanes_mask(0, n - h));
        outside = _mm256_or_si256(outside, _mm256_or_si256(_mm256_cmpgt_epi32(j, bound), _mm256_cmpgt_epi32(zero, j)));
    }
    return !_mm256_testz_si256(outside, outside);
}
inline bool lanes_outside(const std::int64_t* idx, std::int64_t n, std::int64_t last) {
    const __m256i bound = _mm256_set1_epi64x(last), zero = _mm256_setzero_si256();
    __m256i outside = zero;
    for (std::int64_t h = 0; h < n; h += 4) {
        const __m256i j = _mm256_maskload_epi64(reinterpret_cast<const long long*>(idx + h), Vec<double>::lanes_mask(0, n - h));
        outside = _mm256_or_si256(outside, _mm256_or_si256(_mm256_cmpgt_epi64(j, bound), _mm256_cmpgt_epi64(zero, j)));
    }
    return !_mm256_testz_si256(outside, outside);
}
inline bool lanes_outside(const std::uint16_t* idx, std::int64_t n, std::int64_t last) {
    return std::any_of(idx, idx + n, [&](std::uint16_t j) { return j > last; });
}

}  // namespace avx2
}  // namespace spmm

SPMM_TARGET_END

#endif  // SPMM_X86_SIMD
