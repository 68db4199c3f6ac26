// Compiling a region of code for one instruction set, without -march: everything between
// SPMM_TARGET_BEGIN_<SET> and SPMM_TARGET_END is compiled with that set's instructions
// enabled (a target pragma), so one build runs on any CPU of the architecture and calls into
// a region only after asking the CPU (levels.hpp).
#pragma once

#if defined(__clang__)
#define SPMM_PRAGMA(text) _Pragma(#text)
#define SPMM_TARGET_BEGIN(features) \
    SPMM_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))
#define SPMM_TARGET_END SPMM_PRAGMA(clang attribute pop)
#else
#define SPMM_PRAGMA(text) _Pragma(#text)
#define SPMM_TARGET_BEGIN(features) SPMM_PRAGMA(GCC push_options) SPMM_PRAGMA(GCC target(features))
#define SPMM_TARGET_END SPMM_PRAGMA(GCC pop_options)
#endif

// AVX2 with FMA and F16C (float16 values widened in registers; every AVX2 CPU has it): 8
// floats or 4 doubles per register.
#define SPMM_TARGET_BEGIN_AVX2 SPMM_TARGET_BEGIN("avx2,fma,f16c")
// AVX-512 F, BW, DQ and VL (levels.hpp says why all four): 16 floats or 8 doubles per register.
#define SPMM_TARGET_BEGIN_AVX512 \
    SPMM_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
// The dot-product instructions (kernels/dot.hpp): AVX-VNNI's vpdpbusd on ymm registers, and
// AVX512_VNNI's and AVX512_BF16's (vpdpbusd, vdpbf16ps) on zmm registers.
#define SPMM_TARGET_BEGIN_AVX2_VNNI SPMM_TARGET_BEGIN("avx2,fma,f16c,avxvnni")
#define SPMM_TARGET_BEGIN_AVX512_VNNI \
    SPMM_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")
#define SPMM_TARGET_BEGIN_AVX512_BF16 \
    SPMM_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16,avx2,fma,f16c")
// Arm's dot-product extensions (kernels/dot.hpp), on top of the base NEON: SDOT (FEAT_DotProd),
// and BFDOT (FEAT_BF16) with it. Armv8.2-A as their base, as arm_neon.h declares their
// intrinsics (every CPU with either extension implements 8.2).
#define SPMM_TARGET_BEGIN_NEON_DOT SPMM_TARGET_BEGIN("arch=armv8.2-a+dotprod")
#define SPMM_TARGET_BEGIN_NEON_BF16 SPMM_TARGET_BEGIN("arch=armv8.2-a+dotprod+bf16")
