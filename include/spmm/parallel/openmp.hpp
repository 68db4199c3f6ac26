// The OpenMP backend: a parallel for over slices.
//
// Built only when the compiler supports OpenMP (setup.py probes it); otherwise `available()` is
// false and the Python layer refuses backend="openmp" with a message saying why.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
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

// The process that last started an OpenMP team (0: none yet).
//
// GCC's libgomp is not fork-safe: a child forked after the parent ran a parallel region
// inherits a thread pool whose threads do not exist, and its next parallel region waits for
// them forever. So a forked child of a process that used OpenMP runs OpenMP work on the
// calling thread (PyTorch does the same), and the Python layer warns once.
inline std::atomic<long>& team_started_in_pid() {
    static std::atomic<long> pid{0};
    return pid;
}

// False in a forked child of a process that has started OpenMP teams.
inline bool usable_in_this_process() {
    const long started = team_started_in_pid().load(std::memory_order_relaxed);
    return available() && (started == 0 || started == static_cast<long>(getpid()));
}

// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the iterations spread over nthreads.
// Static partitions give one slice per thread (schedule(static, 1): slice s on thread s);
// the dynamic partition gives many chunks, each taken by the next idle thread.
template <class F>
void for_each_slice(std::int64_t nslices, int nthreads, bool dynamic, F&& f) {
#ifdef _OPENMP
    if (nthreads <= 1 || !usable_in_this_process()) {
        for (std::int64_t s = 0; s < nslices; ++s) f(s);
        return;
    }
    // No more threads than slices: extra ones would idle, and each costs an OS thread.
    nthreads = static_cast<int>(std::min<std::int64_t>(nthreads, nslices));
    team_started_in_pid().store(static_cast<long>(getpid()), std::memory_order_relaxed);
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
