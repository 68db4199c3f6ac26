// The OpenMP backend: a parallel for over slices.
//
// Built only when the compiler supports OpenMP (setup.py probes it); otherwise `available()` is
// false and the Python layer refuses backend="openmp" with a message saying why.
#pragma once

#include <cstdint>

#include "exceptions.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace spmm {
namespace openmp {

constexpr bool available() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the iterations spread over nthreads.
// Static partitions give one slice per thread (schedule(static, 1): slice s on thread s);
// the dynamic partition gives many chunks, each taken by the next idle thread.
template <class F>
void for_each_slice(std::int64_t nslices, int nthreads, bool dynamic, F&& f) {
#ifdef _OPENMP
    ExceptionSlot error;
    if (dynamic) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
        for (std::int64_t s = 0; s < nslices; ++s) error.run([&] { f(s); });
    } else {
#pragma omp parallel for schedule(static, 1) num_threads(nthreads)
        for (std::int64_t s = 0; s < nslices; ++s) error.run([&] { f(s); });
    }
    error.rethrow();
#else
    (void)nthreads;
    (void)dynamic;
    for (std::int64_t s = 0; s < nslices; ++s) f(s);
#endif
}

}  // namespace openmp
}  // namespace spmm
