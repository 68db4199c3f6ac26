// Instruction-set levels: what the CPU supports, chosen at run time.
//
// One build runs on any x86-64: the SIMD kernels are compiled for their instruction set with
// a target pragma (target.hpp), never with -march, and only called after the CPU
// was asked (cpuid through __builtin_cpu_supports, which also checks that the OS saves the
// wide registers).
//
// On aarch64 NEON is part of the base architecture, so there is nothing to ask: every aarch64
// CPU runs the NEON kernels (kernels/neon.hpp), compiled without any target pragma. The
// __ARM_NEON test only excludes builds that switched the vector unit off
// (-mgeneral-regs-only). The dot-product instructions (SDOT, BFDOT) are optional extensions,
// compiled with a target pragma and asked of the kernel's hardware capabilities (getauxval).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../names.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define SPMM_X86_SIMD 1
#else
#define SPMM_X86_SIMD 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define SPMM_NEON_SIMD 1
#else
#define SPMM_NEON_SIMD 0
#endif

#if SPMM_NEON_SIMD && defined(__linux__) && defined(__GNUC__)
#include <sys/auxv.h>
#define SPMM_NEON_DOT 1  // the capabilities can be asked: the dot-product bodies are compiled
#else
#define SPMM_NEON_DOT 0
#endif

namespace spmm {

// Bytes of a cache line, and of the widest vector register (AVX-512): what copies are aligned
// and padded to, so that no row of an operand the kernels read straddles two lines more than
// it must.
constexpr std::int64_t kCacheLineBytes = 64;

// The levels this build and this CPU support, lowest first (always scalar).
inline std::vector<Simd> supported_simd_levels() {
    std::vector<Simd> levels{Simd::scalar};
#if SPMM_X86_SIMD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        levels.push_back(Simd::avx2);
        if (__builtin_cpu_supports("avxvnni")) levels.push_back(Simd::avx2_vnni);
        // F, BW, DQ and VL: every AVX-512 CPU since Skylake-X has all four. The kernels need
        // only F's instructions, but BW's 32- and 64-bit mask moves (kmovd/kmovq) let GCC keep
        // the tail masks in k registers: compiled for F alone it reloaded both masks from the
        // stack on every stored entry of the CSR kernel (`python bench/native_build.py`
        // compares the portable build with -march=native).
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
            levels.push_back(Simd::avx512);
            if (__builtin_cpu_supports("avx512vnni")) {
                levels.push_back(Simd::avx512_vnni);
                // Every CPU with AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4) has VNNI.
                if (__builtin_cpu_supports("avx512bf16")) levels.push_back(Simd::avx512_bf16);
            }
        }
    }
#elif SPMM_NEON_SIMD
    levels.push_back(Simd::neon);
#if SPMM_NEON_DOT
    // Linux's HWCAP_ASIMDDP and HWCAP2_BF16 bits (asm/hwcap.h), spelled out: older C
    // libraries' headers lack them.
    constexpr unsigned long kAsimdDp = 1UL << 20, kBf16 = 1UL << 14;
    if (getauxval(AT_HWCAP) & kAsimdDp) {
        levels.push_back(Simd::neon_dot);
        if (getauxval(AT_HWCAP2) & kBf16) levels.push_back(Simd::neon_bf16);
    }
#endif
#endif
    return levels;
}

// The level whose bodies a family other than the dot-product kernels runs at level `s`: the
// VNNI, BF16 and dot levels add instructions only those kernels use (kernels/dot.hpp).
constexpr Simd kernel_level(Simd s) {
    switch (s) {
        case Simd::avx2_vnni: return Simd::avx2;
        case Simd::avx512_vnni:
        case Simd::avx512_bf16: return Simd::avx512;
        case Simd::neon_dot:
        case Simd::neon_bf16: return Simd::neon;
        default: return s;
    }
}

// Whether this CPU's vector gathers are slower than as many scalar loads: AMD's family 19h
// (Zen 3 and Zen 4) runs a gather as a microcoded sequence of loads, and the one-column
// sliced product (whose x stays in L1, so its loads are all it does) ran 1.4x faster with
// scalar loads than with AVX-512 gathers on a Zen 4, 1.3x faster than with AVX2's
// (docs/architecture.md, the `sliced` family). The policy then chooses the scalar body for it
// (spmm._policy).
inline bool gathers_slower_than_loads() {
#if SPMM_X86_SIMD
    __builtin_cpu_init();
    return __builtin_cpu_is("amdfam19h");
#else
    return false;
#endif
}

// The same levels by name ("scalar", "avx2", ...), as the Python layer spells them.
inline std::vector<std::string> supported_simd() {
    std::vector<std::string> names;
    for (const Simd s : supported_simd_levels()) names.emplace_back(simd_name(s));
    return names;
}

// Whether `s` is usable here; the CPU is asked once.
inline bool simd_supported(Simd s) {
    static const std::vector<Simd> levels = supported_simd_levels();
    for (const Simd level : levels) {
        if (level == s) return true;
    }
    return false;
}

}  // namespace spmm
