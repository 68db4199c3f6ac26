// The serial backend: every slice on the calling thread, in order. The reference the parallel
// backends are tested against, and what they reduce to with one thread.
#pragma once

#include <cstdint>

namespace spmm {
namespace serial {

// Equivalent to: for (s = 0; s < nslices; ++s) f(s);
template <class F>
void for_each_slice(std::int64_t nslices, int /*nthreads*/, bool /*dynamic*/, F&& f) {
    for (std::int64_t s = 0; s < nslices; ++s) f(s);
}

}  // namespace serial
}  // namespace spmm
