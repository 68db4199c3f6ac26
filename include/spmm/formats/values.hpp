// Reduced-precision stored values of a prepared matrix: bfloat16 and float16 (IEEE binary16),
// held as their bits, and int8 with one float32 scale per output (per row of the CSR form, per
// column of W in the structured layouts). The values are rounded once, in Python, when the
// matrix is prepared (spmm/_precision.py); the kernels only widen them to float32 and
// accumulate in float32: what a reduced format saves is bytes streamed, not arithmetic.
//
// Stored<S>::one(s) widens one value, portably. Every instruction set's namespace
// (simd/avx2.hpp, simd/avx512.hpp, simd/neon.hpp) has its own Stored<S> with vector loads that
// widen a register's worth (a shift for bfloat16, F16C or NEON's conversion for float16, a
// sign extension and a conversion for int8); a kernel body names Stored<S> unqualified and
// gets its own namespace's. For S == T (float32 or float64 values) Stored<S> is the plain load.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace spmm {

// The bits of a bfloat16 (the upper half of a float32) and of an IEEE binary16 value. Distinct
// types, so that a kernel instantiated for one can never read the other.
struct bfloat16 {
    std::uint16_t bits;
};
struct float16 {
    std::uint16_t bits;
};

// Whether the stored values carry a scale per output (int8), applied once to each output's
// float32 sum rather than to every stored value.
template <class S>
inline constexpr bool is_scaled_v = std::is_same_v<S, std::int8_t>;

inline float float_of_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline float widen_bfloat16(std::uint16_t bits) { return float_of_bits(std::uint32_t{bits} << 16); }

// binary16 -> binary32, exact for every value (subnormals, infinities, NaN payloads).
inline float widen_float16(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
    const std::uint32_t rest = h & 0x7FFFu;
    if (rest >= 0x7C00u) return float_of_bits(sign | 0x7F800000u | ((rest & 0x3FFu) << 13));
    if (rest >= 0x0400u) return float_of_bits(sign | ((rest << 13) + (std::uint32_t{127 - 15} << 23)));
    const float magnitude = static_cast<float>(rest) * 5.9604644775390625e-8f;  // rest * 2^-24
    return sign ? -magnitude : magnitude;
}

// One stored value as the type the product computes in.
template <class S>
struct Stored {
    static S one(S v) { return v; }
};
template <>
struct Stored<bfloat16> {
    static float one(bfloat16 v) { return widen_bfloat16(v.bits); }
};
template <>
struct Stored<float16> {
    static float one(float16 v) { return widen_float16(v.bits); }
};
template <>
struct Stored<std::int8_t> {
    static float one(std::int8_t v) { return static_cast<float>(v); }
};

}  // namespace spmm
