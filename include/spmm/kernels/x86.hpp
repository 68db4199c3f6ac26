// The kernel bodies (kernels/*.inc) compiled once per x86 instruction set: each in the
// namespace of its vector types (simd/avx2.hpp, simd/avx512.hpp), inside the same target
// region, so spmm::avx2::tiled_rows and spmm::avx512::tiled_rows are distinct functions the
// registry (registry.hpp) picks from at run time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "../formats/pack.hpp"
#include "../formats/sliced.hpp"
#include "../formats/structured.hpp"
#include "../formats/views.hpp"
#include "../simd/avx2.hpp"
#include "../simd/cache.hpp"
#include "../simd/avx512.hpp"
#include "portable.hpp"

#if SPMM_X86_SIMD

SPMM_TARGET_BEGIN_AVX2
namespace spmm {
namespace avx2 {
#include "rowdot.inc"
#include "sliced.inc"
#include "tiled.inc"
#include "reordered.inc"
#include "scatter_loops.inc"
#include "bsr_dia_loops.inc"
#include "scatter.inc"
#include "bsr.inc"
#include "panels.inc"
#include "nm.inc"
}  // namespace avx2
}  // namespace spmm
SPMM_TARGET_END

SPMM_TARGET_BEGIN_AVX512
namespace spmm {
namespace avx512 {
#include "rowdot.inc"
#include "sliced.inc"
#include "tiled.inc"
#include "reordered.inc"
#include "scatter_loops.inc"
#include "bsr_dia_loops.inc"
#include "scatter.inc"
#include "bsr.inc"
#include "panels.inc"
#include "nm.inc"
}  // namespace avx512
}  // namespace spmm
SPMM_TARGET_END

#endif  // SPMM_X86_SIMD
