// Instruction-set levels: what the CPU supports, chosen at run time.
//
// One build runs on any x86-64: the SIMD kernels are compiled for their instruction set with
// `#pragma GCC target` (kernels_simd.hpp), never with -march, and only called after the CPU
// was asked (cpuid through __builtin_cpu_supports, which also checks that the OS saves the
// wide registers).
//
// On aarch64 NEON is part of the base architecture, so there is nothing to ask: every aarch64
// CPU runs the NEON kernels (kernels_neon.hpp), compiled without any target pragma. The
// __ARM_NEON test only excludes builds that switched the vector unit off
// (-mgeneral-regs-only).
#pragma once

#include <string>
#include <vector>

#if defined(__aarch64__) && defined(__ARM_NEON)
#define SPMM_NEON_SIMD 1
#else
#define SPMM_NEON_SIMD 0
#endif

namespace spmm {

enum class Simd : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

// The levels this build and this CPU support, lowest first (always scalar).
inline std::vector<Simd> supported_simd_levels() {
    std::vector<Simd> levels{Simd::scalar};
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        levels.push_back(Simd::avx2);
        // F, BW, DQ and VL: every AVX-512 CPU since Skylake-X has all four. The kernels need
        // only F's instructions, but BW's 32- and 64-bit mask moves (kmovd/kmovq) let GCC keep
        // the tail masks in k registers: compiled for F alone it reloaded both masks from the
        // stack on every nonzero of the CSR kernel, 7 % of a batch-256 product (item 2 of
        // issue 5, the portable build against -march=native).
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
            levels.push_back(Simd::avx512);
        }
    }
#elif SPMM_NEON_SIMD
    levels.push_back(Simd::neon);
#endif
    return levels;
}

inline const char* simd_name(Simd s) {
    switch (s) {
        case Simd::scalar: return "scalar";
        case Simd::avx2: return "avx2";
        case Simd::avx512: return "avx512";
        case Simd::neon: return "neon";
    }
    return "unknown";
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
