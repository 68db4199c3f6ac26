// The kernel registry: which compiled kernel runs a variant at an instruction-set level.
// The portable kernels (portable.hpp) serve every level; x86.hpp and neon.hpp add the
// register-blocked and vectorized ones for the levels they were compiled for.
#pragma once

#include <cstdint>

#include "../formats/structured.hpp"
#include "../formats/views.hpp"
#include "../simd/levels.hpp"
#include "neon.hpp"
#include "portable.hpp"
#include "structured_portable.hpp"
#include "x86.hpp"

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
#if SPMM_NEON_SIMD
    // reordered at Simd::neon is the portable one: NEON is already aarch64's baseline.
    if (k == Kernel::tiled && simd == Simd::neon) return &neon::tiled_rows<I, T>;
#endif
    (void)simd;
    return kernel_for<I, T>(k);
}

}  // namespace spmm

namespace spmm {

// The structured (column-tile) product for Y[:, tiles [t0, t1)] at an instruction-set level.
template <class T>
using PanelsKernel = void (*)(const PanelsView<T>&, const StridedView<T>&, const RowsView<T>&,
                              std::int64_t, std::int64_t);

template <class T>
PanelsKernel<T> panels_kernel_for(Simd simd) {
#if SPMM_X86_SIMD
    if (simd == Simd::avx512) return &avx512::panels_tiles<T>;
    if (simd == Simd::avx2) return &avx2::panels_tiles<T>;
#endif
#if SPMM_NEON_SIMD
    if (simd == Simd::neon) return &neon::panels_tiles<T>;
#endif
    (void)simd;
    return &panels_tiles_portable<T>;
}

}  // namespace spmm

namespace spmm {

// The N:M product for Y[:, chunks [c0, c1)] at an instruction-set level: the permute kernel
// when the level's register holds a group (m <= lanes), else the portable loop.
template <class T>
using NmKernel = void (*)(const NmView<T>&, const StridedView<T>&, const RowsView<T>&,
                          std::int64_t, std::int64_t);

template <class T>
NmKernel<T> nm_kernel_for(Simd simd, std::int64_t m) {
#if SPMM_X86_SIMD
    if (simd == Simd::avx512 && avx512::nm_supported<T>(m)) return &avx512::nm_chunks<T>;
    if (simd == Simd::avx2 && avx2::nm_supported<T>(m)) return &avx2::nm_chunks<T>;
#endif
    (void)simd;
    (void)m;
    return &nm_chunks_portable<T>;
}

}  // namespace spmm
