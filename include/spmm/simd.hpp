// Instruction-set levels: what the CPU supports, chosen at run time.
//
// One build runs on any x86-64: the SIMD kernels are compiled for their instruction set with
// `#pragma GCC target` (kernels_simd.hpp), never with -march, and only called after the CPU
// was asked (cpuid through __builtin_cpu_supports, which also checks that the OS saves the
// wide registers).
#pragma once

#include <string>
#include <vector>

namespace spmm {

enum class Simd : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

// The levels this build and this CPU support, lowest first (always "scalar").
inline std::vector<std::string> supported_simd() {
    std::vector<std::string> levels{"scalar"};
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        levels.emplace_back("avx2");
        if (__builtin_cpu_supports("avx512f")) levels.emplace_back("avx512");
    }
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

// Whether `s` is usable here; the CPU is asked once.
inline bool simd_supported(Simd s) {
    static const std::vector<std::string> levels = supported_simd();
    for (const auto& level : levels) {
        if (level == simd_name(s)) return true;
    }
    return false;
}

}  // namespace spmm
