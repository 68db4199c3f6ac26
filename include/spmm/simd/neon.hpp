// NEON (aarch64): 128-bit registers, 4 floats or 2 doubles each; the vector types the kernel
// bodies are written against (as simd/avx2.hpp for x86).
//
// NEON is part of aarch64's base architecture, so unlike avx2/avx512 this namespace needs no
// target pragma and the CPU needs no asking (levels.hpp). It has its own namespace all the
// same, so the Simd::neon kernels are distinct symbols from the portable ones.
//
// NEON has no masked loads or stores. The body asks for them at the two ends of a block of
// vectors; they are built here lane by lane (vld1q_lane / vst1q_lane), touching only the active
// lanes' memory: an inactive lane may lie past the end of the array, where reading could fault.
// A full mask, which is what every vector gets when the width is a multiple of the vector and
// B's rows are aligned, takes the plain vld1q / vst1q.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../formats/values.hpp"
#include "levels.hpp"

#if SPMM_NEON_SIMD
#include <arm_neon.h>

namespace spmm {
namespace neon {

// Bit j set: lane j active (as AVX-512's __mmask).
using LaneBits = unsigned;

constexpr LaneBits lane_bits(std::int64_t lo, std::int64_t hi) {
    return ((1u << hi) - 1u) & ~((1u << lo) - 1u);
}

template <class T>
struct Vec;

template <>
struct Vec<float> {
    using reg = float32x4_t;
    static constexpr std::int64_t lanes = 4;
    using mask = LaneBits;
    static constexpr mask kAll = 0xFu;
    static mask lanes_mask(std::int64_t lo, std::int64_t hi) { return lane_bits(lo, hi); }
    static reg zero() { return vdupq_n_f32(0.0f); }
    static reg set1(float x) { return vdupq_n_f32(x); }
    static reg load(const float* p) { return vld1q_f32(p); }
    static reg load_masked(const float* p, mask m) {
        if (m == kAll) return vld1q_f32(p);
        reg r = zero();
        if (m & 1u) r = vld1q_lane_f32(p, r, 0);
        if (m & 2u) r = vld1q_lane_f32(p + 1, r, 1);
        if (m & 4u) r = vld1q_lane_f32(p + 2, r, 2);
        if (m & 8u) r = vld1q_lane_f32(p + 3, r, 3);
        return r;
    }
    static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
    static reg add(reg a, reg b) { return vaddq_f32(a, b); }
    static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
    static void store(float* p, reg v) { vst1q_f32(p, v); }
    static void store_masked(float* p, reg v, mask m) {
        if (m == kAll) {
            vst1q_f32(p, v);
            return;
        }
        if (m & 1u) vst1q_lane_f32(p, v, 0);
        if (m & 2u) vst1q_lane_f32(p + 1, v, 1);
        if (m & 4u) vst1q_lane_f32(p + 2, v, 2);
        if (m & 8u) vst1q_lane_f32(p + 3, v, 3);
    }
};

template <>
struct Vec<double> {
    using reg = float64x2_t;
    static constexpr std::int64_t lanes = 2;
    using mask = LaneBits;
    static constexpr mask kAll = 0x3u;
    static mask lanes_mask(std::int64_t lo, std::int64_t hi) { return lane_bits(lo, hi); }
    static reg zero() { return vdupq_n_f64(0.0); }
    static reg set1(double x) { return vdupq_n_f64(x); }
    static reg load(const double* p) { return vld1q_f64(p); }
    static reg load_masked(const double* p, mask m) {
        if (m == kAll) return vld1q_f64(p);
        reg r = zero();
        if (m & 1u) r = vld1q_lane_f64(p, r, 0);
        if (m & 2u) r = vld1q_lane_f64(p + 1, r, 1);
        return r;
    }
    static reg fma(reg a, reg b, reg c) { return vfmaq_f64(c, a, b); }
    static reg add(reg a, reg b) { return vaddq_f64(a, b); }
    static reg mul(reg a, reg b) { return vmulq_f64(a, b); }
    static void store(double* p, reg v) { vst1q_f64(p, v); }
    static void store_masked(double* p, reg v, mask m) {
        if (m == kAll) {
            vst1q_f64(p, v);
            return;
        }
        if (m & 1u) vst1q_lane_f64(p, v, 0);
        if (m & 2u) vst1q_lane_f64(p + 1, v, 1);
    }
};

// Stored<S>: a register of S values widened to float (`load`: 4 of them; `first`: the first
// n, the others zero and never read), and one value (`one`); as in spmm::avx512. NEON widens
// bfloat16 with a shift (vshll), float16 with its conversion (fcvtl), int8 with two sign
// extensions and a conversion.
template <class S>
struct Stored {
    static typename Vec<S>::reg load(const S* p) { return Vec<S>::load(p); }
    static typename Vec<S>::reg first(const S* p, std::int64_t n) {
        return Vec<S>::load_masked(p, Vec<S>::lanes_mask(0, n));
    }
    static S one(S v) { return v; }
};

template <class S>
const S* copy_first(const S* p, std::int64_t n, S (&buffer)[4]) {
    std::memset(buffer, 0, sizeof buffer);
    std::memcpy(buffer, p, static_cast<std::size_t>(n) * sizeof(S));
    return buffer;
}

template <>
struct Stored<bfloat16> {
    static float32x4_t load(const bfloat16* p) {
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p)), 16));
    }
    static float32x4_t first(const bfloat16* p, std::int64_t n) {
        bfloat16 part[4];
        return load(copy_first(p, n, part));
    }
    static float one(bfloat16 v) { return widen_bfloat16(v.bits); }
};

template <>
struct Stored<float16> {
    static float32x4_t load(const float16* p) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p))));
    }
    static float32x4_t first(const float16* p, std::int64_t n) {
        float16 part[4];
        return load(copy_first(p, n, part));
    }
    static float one(float16 v) {
        __fp16 h;
        std::memcpy(&h, &v.bits, sizeof h);
        return static_cast<float>(h);
    }
};

template <>
struct Stored<std::int8_t> {
    static float32x4_t load(const std::int8_t* p) {
        std::int32_t four;
        std::memcpy(&four, p, sizeof four);
        const int16x8_t wide = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(four)));
        return vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide)));
    }
    static float32x4_t first(const std::int8_t* p, std::int64_t n) {
        std::int8_t part[4];
        return load(copy_first(p, n, part));
    }
    static float one(std::int8_t v) { return static_cast<float>(v); }
};


// Gather<I, T>: one register of x[idx[0..lanes)] (`full`) or of its first n lanes, the others
// zero and never read (`first`). For the row-dot kernel. NEON has no gather instruction: each
// lane is its own load straight into the register (ld1 to a lane). Written per lane rather
// than as a loop over a stack buffer, which GCC 12 at -O2 compiled to scalar stores and a
// vector reload: a store-forwarding stall on every gather.
template <class I, class T>
struct Gather;

template <class I>
struct Gather<I, float> {
    static float32x4_t full(const float* x, const I* idx) { return first(x, idx, 4); }
    static float32x4_t first(const float* x, const I* idx, std::int64_t n) {
        float32x4_t r = vdupq_n_f32(0.0f);
        if (n > 0) r = vld1q_lane_f32(x + static_cast<std::int64_t>(idx[0]), r, 0);
        if (n > 1) r = vld1q_lane_f32(x + static_cast<std::int64_t>(idx[1]), r, 1);
        if (n > 2) r = vld1q_lane_f32(x + static_cast<std::int64_t>(idx[2]), r, 2);
        if (n > 3) r = vld1q_lane_f32(x + static_cast<std::int64_t>(idx[3]), r, 3);
        return r;
    }
};

template <class I>
struct Gather<I, double> {
    static float64x2_t full(const double* x, const I* idx) { return first(x, idx, 2); }
    static float64x2_t first(const double* x, const I* idx, std::int64_t n) {
        float64x2_t r = vdupq_n_f64(0.0);
        if (n > 0) r = vld1q_lane_f64(x + static_cast<std::int64_t>(idx[0]), r, 0);
        if (n > 1) r = vld1q_lane_f64(x + static_cast<std::int64_t>(idx[1]), r, 1);
        return r;
    }
};

// The horizontal sum of a register.
inline float reduce(float32x4_t v) { return vaddvq_f32(v); }
inline double reduce(float64x2_t v) { return vaddvq_f64(v); }

}  // namespace neon
}  // namespace spmm

#endif  // SPMM_NEON_SIMD
