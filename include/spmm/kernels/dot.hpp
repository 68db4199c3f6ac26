// prepare(activations=...): the dense operand rounded to the stored values' format at every
// product, and the CPU's dot-product instruction multiplying: vdpbf16ps (AVX512_BF16) or BFDOT
// (Arm FEAT_BF16) for bfloat16, vpdpbusd (AVX512_VNNI, AVX-VNNI) or SDOT (Arm FEAT_DotProd) for
// int8, and where a level has none, a portable loop computing exactly what vpdpbusd and
// vdpbf16ps compute.
//
// The layout (built once by prepare, spmm/_activations.py): each output row's stored entries in
// groups of G consecutive positions of the contracted dimension, G = 2 (bfloat16) or 4 (int8),
// aligned (group b covers positions [b G, b G + G)), absent positions of a group holding a zero
// weight; one 32-bit word per group packs its G values, lowest position in the lowest bits. The
// dense operand D (contracted x n) is packed per call the same way: word [b][j] packs D[b G ..
// b G + G, j]. Every group of a row then costs one broadcast of its word and one instruction
// per register of dense columns; aligned groups (rather than any G stored entries) are what lets
// D's words be loaded whole, with no gather or transposition per group.
//
// int8: vpdpbusd multiplies unsigned by signed bytes. D's bytes carry q + 128 (q in [-127,
// 127]: [1, 255]); the weights stay signed. Then sum (q + 128) w = sum q w + 128 sum w, and the
// second term, a constant of the row, is subtracted (GroupedView::correction, precomputed).
// vpdpbusd wraps modulo 2^32, and so does the subtraction: the result is sum q w exactly as
// long as |sum q w| < 2^31, which prepare guarantees by refusing an output with more than
// kMaxInt8Entries stored weights (127 * 127 * kMaxInt8Entries < 2^31).
//
// bfloat16: vdpbf16ps adds the two products of a pair to the float32 accumulator, the odd one
// first, each add rounded to nearest even, denormal inputs read as zero and denormal results
// flushed to zero (it ignores MXCSR). The portable loop does the same steps.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../formats/views.hpp"
#include "../names.hpp"
#include "../parallel/partition.hpp"
#include "../simd/levels.hpp"
#include "../simd/target.hpp"

#if SPMM_X86_SIMD
#include <immintrin.h>
#endif

namespace spmm {

// The most stored weights an output may have with int8 activations: the integer sum is then
// exact in int32 (127 * 127 * 133143 < 2^31).
constexpr std::int64_t kMaxInt8Entries = 133143;

// The grouped rows of a prepared matrix (see above): rows + 1 pointers into the groups, each
// group's block index and packed word; cols: the contracted dimension. int8: one float32 scale
// and one correction (128 * the sum of the row's weights, modulo 2^32) per row.
struct GroupedView {
    const std::int64_t* ptr;
    const std::int32_t* block;
    const std::uint32_t* words;
    std::int64_t rows, cols;
    const float* scale = nullptr;
    const std::int32_t* correction = nullptr;
};

// The dense operand packed for one product: blocks rows of ld words (ld >= n, a multiple of 64,
// the padding zero) and, for int8, ld scales (one per column of D, zero in the padding).
struct PackedDense {
    const std::uint32_t* words;
    std::int64_t blocks, n, ld;
    const float* scale;
};

// Values per 32-bit word for an activations format.
inline std::int64_t group_width(ValueFormat f) { return f == ValueFormat::int8 ? 4 : 2; }

// float32 -> bfloat16 bits, rounded to nearest even; a NaN stays a quiet NaN.
inline std::uint32_t bfloat16_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if (std::isnan(f)) return (u >> 16) | 0x0040u;
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

// D (K x n, element (k, j) at x[k * rs + j * cs]) packed for a product: int8 quantizes each
// column j with its own scale s_j = max_k |D[k, j]| / 127 (0 for an all-zero column, whose
// values are then all 0), q = round(D / s_j) to nearest even, computed as D * (127 / max).
//
// In two passes, each a loop the compiler vectorizes: every value rounded to its code (int8:
// the byte q + 128; bfloat16: its bits) along D's contiguous axis into a buffer of that layout,
// then the words assembled: 4 bytes of one column are one unaligned 32-bit load when D's
// columns are contiguous (X @ W: D = Xᵀ), else G rows of codes are interleaved.
class PackedActivations {
  public:
    PackedActivations(ValueFormat f, const float* x, std::int64_t k, std::int64_t n,
                      std::int64_t rs, std::int64_t cs) {
        const std::int64_t g = group_width(f);
        blocks_ = (k + g - 1) / g;
        n_ = n;
        ld_ = (n + 63) / 64 * 64;
        words_.resize(static_cast<std::size_t>(blocks_ * ld_));
        if (f == ValueFormat::int8) {
            std::vector<float> inverse = int8_scales(x, k, rs, cs);
            pack<std::uint8_t>(x, k, rs, cs, inverse.data(), [](float v, float factor) {
                // Round to nearest even by adding and subtracting 1.5 * 2^23 (exact for
                // |t| <= 2^22); the clamp between the product and the addition also keeps the
                // compiler from fusing them.
                constexpr float kMagic = 12582912.0f;
                const float t = std::min(127.0f, std::max(-127.0f, v * factor));
                return static_cast<std::uint8_t>(static_cast<std::int32_t>((t + kMagic) - kMagic) + 128);
            }, std::uint8_t{128});
        } else {
            pack<std::uint16_t>(x, k, rs, cs, nullptr, [](float v, float) {
                return static_cast<std::uint16_t>(bfloat16_bits(v));
            }, std::uint16_t{0});
        }
    }
    PackedDense view() const {
        return {words_.data(), blocks_, n_, ld_, scale_.empty() ? nullptr : scale_.data()};
    }

  private:
    // The scales (kept, ld_ of them, zero in the padding) and the factors 127 / max|D[:, j]|.
    std::vector<float> int8_scales(const float* x, std::int64_t k, std::int64_t rs, std::int64_t cs) {
        scale_.assign(static_cast<std::size_t>(ld_), 0.0f);
        std::vector<float> largest(static_cast<std::size_t>(n_), 0.0f);
        // The largest magnitude as maxps computes it (a NaN operand loses), NaN noted apart.
        bool nan = false;
        if (rs == 1) {
            for (std::int64_t j = 0; j < n_; ++j) {
                float m = 0.0f;
                for (std::int64_t i = 0; i < k; ++i) {
                    const float a = std::fabs(x[i + j * cs]);
                    m = a > m ? a : m;
                    nan |= a != a;
                }
                largest[static_cast<std::size_t>(j)] = m;
            }
        } else {
            float* m = largest.data();
            for (std::int64_t i = 0; i < k; ++i) {
                for (std::int64_t j = 0; j < n_; ++j) {
                    const float a = std::fabs(x[i * rs + j * cs]);
                    m[j] = a > m[j] ? a : m[j];
                    nan |= a != a;
                }
            }
        }
        if (nan) {
            for (std::int64_t j = 0; j < n_; ++j) {
                for (std::int64_t i = 0; i < k; ++i) {
                    if (std::isnan(x[i * rs + j * cs])) largest[static_cast<std::size_t>(j)] = x[i * rs + j * cs];
                }
            }
        }
        std::vector<float> inverse(static_cast<std::size_t>(n_), 0.0f);
        for (std::int64_t j = 0; j < n_; ++j) {
            const float m = largest[static_cast<std::size_t>(j)];
            if (!std::isfinite(m)) {
                throw std::invalid_argument(
                    "activations='int8' needs finite dense values; dense vector " +
                    std::to_string(j) + " holds an infinity or NaN");
            }
            const float s = m / 127.0f;
            scale_[static_cast<std::size_t>(j)] = s;
            inverse[static_cast<std::size_t>(j)] = s > 0.0f ? 127.0f / m : 0.0f;
        }
        return inverse;
    }

    // Codes of type C (G = 4 / sizeof(C) per word), `code(value, factor[column])` (factor: one
    // float per column, or null), `zero` the code of 0 (for the positions past K and the
    // padding columns). Factors are read into locals: a store of a byte code may alias them.
    template <class C, class Code>
    void pack(const float* x, std::int64_t k, std::int64_t rs, std::int64_t cs,
              const float* factor, Code&& code, C zero) {
        constexpr std::int64_t g = 4 / static_cast<std::int64_t>(sizeof(C));
        const std::int64_t kp = blocks_ * g;
        std::fill(words_.begin(), words_.end(), 0u);
        if (rs == 1) {  // columns contiguous: codes by column, kp each, a word is 4 bytes of one
            std::vector<C> codes(static_cast<std::size_t>(n_ * kp), zero);
            for (std::int64_t j = 0; j < n_; ++j) {
                C* out = codes.data() + j * kp;
                const float f = factor != nullptr ? factor[j] : 0.0f;
                for (std::int64_t i = 0; i < k; ++i) out[i] = code(x[i + j * cs], f);
            }
            constexpr std::int64_t kColumns = 16;  // a cache line of words per block
            for (std::int64_t j0 = 0; j0 < n_; j0 += kColumns) {
                const std::int64_t j1 = std::min(n_, j0 + kColumns);
                for (std::int64_t b = 0; b < blocks_; ++b) {
                    std::uint32_t* out = words_.data() + b * ld_;
                    for (std::int64_t j = j0; j < j1; ++j) {
                        std::memcpy(out + j, codes.data() + j * kp + b * g, sizeof(std::uint32_t));
                    }
                }
            }
        } else {  // rows of codes, n each; a word interleaves g rows
            std::vector<C> codes(static_cast<std::size_t>(kp * n_), zero);
            std::vector<float> factors(static_cast<std::size_t>(n_), 0.0f);
            if (factor != nullptr) std::copy(factor, factor + n_, factors.begin());
            const float* f = factors.data();
            for (std::int64_t i = 0; i < k; ++i) {
                C* out = codes.data() + i * n_;
                for (std::int64_t j = 0; j < n_; ++j) out[j] = code(x[i * rs + j * cs], f[j]);
            }
            for (std::int64_t b = 0; b < blocks_; ++b) {
                std::uint32_t* out = words_.data() + b * ld_;
                const C* rows = codes.data() + b * g * n_;
                for (std::int64_t j = 0; j < n_; ++j) {
                    std::uint32_t word = 0;
                    for (std::int64_t t = 0; t < g; ++t) {
                        word |= static_cast<std::uint32_t>(rows[t * n_ + j]) << (t * 8 * static_cast<std::int64_t>(sizeof(C)));
                    }
                    out[j] = word;
                }
            }
        }
        std::uint32_t zero_word = 0;
        for (std::int64_t t = 0; t < g; ++t) {
            zero_word |= static_cast<std::uint32_t>(zero) << (t * 8 * static_cast<std::int64_t>(sizeof(C)));
        }
        for (std::int64_t b = 0; b < blocks_; ++b) {
            std::fill(words_.data() + b * ld_ + n_, words_.data() + (b + 1) * ld_, zero_word);
        }
    }

    std::vector<std::uint32_t> words_;
    std::vector<float> scale_;
    std::int64_t blocks_ = 0, n_ = 0, ld_ = 0;
};

// ---- The instruction, portably ----------------------------------------------------------
// 16 lanes, as AVX-512's registers: one body (dot.inc) for every instruction set, each copy in
// a namespace of its own (as the other families' bodies: kernels/x86.hpp).
namespace portable_dot {

// The int8 sum of the row's scaled integer products, and the scales applied once.
inline void finish_int8(std::int32_t sum, const GroupedView& w, const PackedDense& d,
                        std::int64_t r, std::int64_t j, float* out) {
    *out = static_cast<float>(sum) * (w.scale[r] * d.scale[j]);
}

// 16 accumulators of type L, and what is the same for both formats: the word stays a word,
// and the chains' sums are plain additions (unsigned: modulo 2^32; float: as vaddps under the
// default MXCSR).
template <class L>
struct PortableLanes {
    static constexpr std::int64_t lanes = 16;
    struct acc {
        L v[lanes];
    };
    using word = std::uint32_t;
    static acc zero() { return acc{}; }
    static word broadcast(std::uint32_t w) { return w; }
    static acc add(acc a, const acc& b) {
        for (std::int64_t l = 0; l < lanes; ++l) a.v[l] += b.v[l];
        return a;
    }
};

struct PortableInt8 : PortableLanes<std::uint32_t> {
    // vpdpbusd: each lane += the four products of D's unsigned bytes and W's signed bytes,
    // modulo 2^32.
    static acc dot(acc a, const std::uint32_t* x, word w) {
        for (std::int64_t l = 0; l < lanes; ++l) {
            std::int32_t sum = 0;
            for (int t = 0; t < 4; ++t) {
                sum += static_cast<std::int32_t>((x[l] >> (8 * t)) & 0xFFu) *
                       static_cast<std::int32_t>(static_cast<std::int8_t>((w >> (8 * t)) & 0xFFu));
            }
            a.v[l] += static_cast<std::uint32_t>(sum);
        }
        return a;
    }
    static void finish(const acc& a, const GroupedView& w, const PackedDense& d, std::int64_t r,
                       std::int64_t j, float* out) {
        const auto correction = static_cast<std::uint32_t>(w.correction[r]);
        for (std::int64_t l = 0; l < lanes; ++l) {
            const std::uint32_t u = a.v[l] - correction;
            std::int32_t sum;
            std::memcpy(&sum, &u, sizeof sum);
            finish_int8(sum, w, d, r, j + l, out + l);
        }
    }
};

// A float32 value with vdpbf16ps's denormal rule: a denormal reads (and is stored) as zero.
inline float flushed(float f) { return std::fabs(f) < FLT_MIN ? std::copysign(0.0f, f) : f; }

struct PortableBfloat16 : PortableLanes<float> {
    static acc dot(acc a, const std::uint32_t* x, word w) {
        const float w_lo = flushed(widen_bfloat16(static_cast<std::uint16_t>(w & 0xFFFFu)));
        const float w_hi = flushed(widen_bfloat16(static_cast<std::uint16_t>(w >> 16)));
        for (std::int64_t l = 0; l < lanes; ++l) {
            const float x_lo = flushed(widen_bfloat16(static_cast<std::uint16_t>(x[l] & 0xFFFFu)));
            const float x_hi = flushed(widen_bfloat16(static_cast<std::uint16_t>(x[l] >> 16)));
            // Products of two bfloat16 values are exact in float32 (8 + 8 significant bits).
            a.v[l] = flushed(flushed(a.v[l]) + x_hi * w_hi);
            a.v[l] = flushed(a.v[l] + x_lo * w_lo);
        }
        return a;
    }
    static void finish(const acc& a, const GroupedView&, const PackedDense&, std::int64_t,
                       std::int64_t, float* out) {
        std::copy(a.v, a.v + lanes, out);
    }
};

#include "dot.inc"
}  // namespace portable_dot

}  // namespace spmm

// ---- The instructions --------------------------------------------------------------------
#if SPMM_X86_SIMD

// vpdpbusd on BITS-bit registers (intrinsics prefixed P, the instruction DPBUSD): each 32-bit
// lane of D's words, unsigned bytes, times the broadcast word of W's signed bytes; at the end
// the row's correction subtracted and the two scales applied.
#define SPMM_DOT_INT8(BITS, P, DPBUSD)                                                          \
    struct DotInt8 {                                                                           \
        static constexpr std::int64_t lanes = BITS / 32;                                       \
        using acc = __m##BITS##i;                                                              \
        using word = __m##BITS##i;                                                             \
        static acc zero() { return P##_setzero_si##BITS(); }                                   \
        static acc add(acc a, acc b) { return P##_add_epi32(a, b); }                           \
        static word broadcast(std::uint32_t w) { return P##_set1_epi32(static_cast<int>(w)); } \
        static acc dot(acc a, const std::uint32_t* x, word w) {                                \
            return DPBUSD(a, P##_loadu_si##BITS(reinterpret_cast<const acc*>(x)), w);          \
        }                                                                                      \
        static void finish(acc a, const GroupedView& w, const PackedDense& d, std::int64_t r,  \
                           std::int64_t j, float* out) {                                       \
            const auto sum = P##_cvtepi32_ps(P##_sub_epi32(a, P##_set1_epi32(w.correction[r]))); \
            P##_storeu_ps(out, P##_mul_ps(sum, P##_mul_ps(P##_set1_ps(w.scale[r]),             \
                                                          P##_loadu_ps(d.scale + j))));        \
        }                                                                                      \
    };

SPMM_TARGET_BEGIN_AVX2_VNNI
namespace spmm {
namespace avx2_vnni {
SPMM_DOT_INT8(256, _mm256, _mm256_dpbusd_avx_epi32)
#include "dot.inc"
}  // namespace avx2_vnni
}  // namespace spmm
SPMM_TARGET_END

SPMM_TARGET_BEGIN_AVX512_VNNI
namespace spmm {
namespace avx512_vnni {
SPMM_DOT_INT8(512, _mm512, _mm512_dpbusd_epi32)
#include "dot.inc"
}  // namespace avx512_vnni
}  // namespace spmm
SPMM_TARGET_END
#undef SPMM_DOT_INT8

SPMM_TARGET_BEGIN_AVX512_BF16
namespace spmm {
namespace avx512_bf16 {
struct DotBfloat16 {
    static constexpr std::int64_t lanes = 16;
    using acc = __m512;
    using word = __m512i;
    static acc zero() { return _mm512_setzero_ps(); }
    static acc add(acc a, acc b) { return _mm512_add_ps(a, b); }
    static word broadcast(std::uint32_t w) { return _mm512_set1_epi32(static_cast<int>(w)); }
    static acc dot(acc a, const std::uint32_t* x, word w) {
        return _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(x), (__m512bh)w);
    }
    static void finish(acc a, const GroupedView&, const PackedDense&, std::int64_t, std::int64_t,
                       float* out) {
        _mm512_storeu_ps(out, a);
    }
};
#include "dot.inc"
}  // namespace avx512_bf16
}  // namespace spmm
SPMM_TARGET_END

#endif  // SPMM_X86_SIMD

#if SPMM_NEON_DOT
#include <arm_neon.h>

// SDOT multiplies signed by signed bytes: D's bytes (q + 128) become q again with one XOR of
// their top bit, and the integer sum needs no correction. Four dense columns per register.
SPMM_TARGET_BEGIN_NEON_DOT
namespace spmm {
namespace neon_dot {
struct DotInt8 {
    static constexpr std::int64_t lanes = 4;
    using acc = int32x4_t;
    using word = int8x16_t;
    static acc zero() { return vdupq_n_s32(0); }
    static acc add(acc a, acc b) { return vaddq_s32(a, b); }
    static word broadcast(std::uint32_t w) { return vreinterpretq_s8_u32(vdupq_n_u32(w)); }
    static acc dot(acc a, const std::uint32_t* x, word w) {
        const uint32x4_t codes = veorq_u32(vld1q_u32(x), vdupq_n_u32(0x80808080u));
        return vdotq_s32(a, vreinterpretq_s8_u32(codes), w);
    }
    static void finish(acc a, const GroupedView& w, const PackedDense& d, std::int64_t r,
                       std::int64_t j, float* out) {
        vst1q_f32(out, vmulq_f32(vcvtq_f32_s32(a), vmulq_n_f32(vld1q_f32(d.scale + j), w.scale[r])));
    }
};
#include "dot.inc"
}  // namespace neon_dot
}  // namespace spmm
SPMM_TARGET_END

// BFDOT adds the sum of a pair's two products to the float32 accumulator: as the Arm
// architecture defines it (without FEAT_EBF16), the pair's sum and then the accumulation each
// rounded to odd, denormals flushed to zero, so its error bound (docs) is twice vdpbf16ps's.
SPMM_TARGET_BEGIN_NEON_BF16
namespace spmm {
namespace neon_bf16 {
struct DotBfloat16 {
    static constexpr std::int64_t lanes = 4;
    using acc = float32x4_t;
    using word = bfloat16x8_t;
    static acc zero() { return vdupq_n_f32(0.0f); }
    static acc add(acc a, acc b) { return vaddq_f32(a, b); }
    static word broadcast(std::uint32_t w) { return vreinterpretq_bf16_u32(vdupq_n_u32(w)); }
    static acc dot(acc a, const std::uint32_t* x, word w) {
        return vbfdotq_f32(a, vreinterpretq_bf16_u32(vld1q_u32(x)), w);
    }
    static void finish(acc a, const GroupedView&, const PackedDense&, std::int64_t, std::int64_t,
                       float* out) {
        vst1q_f32(out, a);
    }
};
#include "dot.inc"
}  // namespace neon_bf16
}  // namespace spmm
SPMM_TARGET_END
#endif  // SPMM_NEON_DOT

namespace spmm {

using DotKernel = void (*)(const GroupedView&, const PackedDense&, const OutView<float>&,
                           std::int64_t, std::int64_t);

// The body for an activations format at a level: the instruction where the level has it, else
// the portable loop; with the level it was compiled for ("scalar" for the portable loop).
inline std::pair<DotKernel, Simd> dot_kernel(ValueFormat f, Simd simd) {
#if SPMM_X86_SIMD
    if (f == ValueFormat::int8) {
        if (simd == Simd::avx512_vnni || simd == Simd::avx512_bf16) {
            return {&avx512_vnni::dot_rows<avx512_vnni::DotInt8>, Simd::avx512_vnni};
        }
        if (simd == Simd::avx2_vnni) return {&avx2_vnni::dot_rows<avx2_vnni::DotInt8>, simd};
    } else if (simd == Simd::avx512_bf16) {
        return {&avx512_bf16::dot_rows<avx512_bf16::DotBfloat16>, simd};
    }
#endif
#if SPMM_NEON_DOT
    if (f == ValueFormat::int8) {
        if (simd == Simd::neon_dot || simd == Simd::neon_bf16) {
            return {&neon_dot::dot_rows<neon_dot::DotInt8>, Simd::neon_dot};
        }
    } else if (simd == Simd::neon_bf16) {
        return {&neon_bf16::dot_rows<neon_bf16::DotBfloat16>, simd};
    }
#endif
    (void)simd;
    if (f == ValueFormat::int8) return {&portable_dot::dot_rows<portable_dot::PortableInt8>, Simd::scalar};
    return {&portable_dot::dot_rows<portable_dot::PortableBfloat16>, Simd::scalar};
}

}  // namespace spmm
