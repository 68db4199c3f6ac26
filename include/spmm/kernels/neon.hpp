// The kernel bodies compiled for NEON (aarch64), in the namespace of its vector types
// (simd/neon.hpp). Only the register-blocked and structured bodies: the portable
// reordered_rows and rowdot_rows (portable.hpp) are already compiled for NEON, aarch64's
// baseline, so copies here would be the same code twice; the tiled body's calls to
// rowdot_rows find the portable one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../formats/pack.hpp"
#include "../formats/structured.hpp"
#include "../formats/views.hpp"
#include "../simd/cache.hpp"
#include "../simd/neon.hpp"
#include "portable.hpp"

#if SPMM_NEON_SIMD
namespace spmm {
namespace neon {
#include "tiled.inc"
#include "scatter.inc"
#include "bsr.inc"
#include "panels.inc"
}  // namespace neon
}  // namespace spmm
#endif  // SPMM_NEON_SIMD
