// The OpenMP backend: one parallel region whose threads run the slices.
//
// Built only when the compiler supports OpenMP (setup.py probes it); otherwise `available()` is
// false and the Python layer refuses backend="openmp" with a message saying why.
//
// The thread count must be bounded before it gets here (the Python layer's MAX_THREADS): when
// libgomp cannot create a team's threads it prints "libgomp: Thread creation failed" and calls
// exit(), which no caller can catch, and the threads it had made stay until then.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cancellation.hpp"
#include "exceptions.hpp"
#include "schedule.hpp"
#include "wait.hpp"

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

// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the slices spread over a team of
// nthreads (see parallel_for for the schedules and the cancellation). Thread 0 of the team is
// the calling thread: it polls the cancellation between its slices, then, having counted down
// for any thread the runtime did not start, while it waits for the others, so that it never
// sits in the region's closing barrier without polling.
template <class F>
void for_each_slice(std::int64_t nslices, int nthreads, bool dynamic, F&& f,
                    Cancellation* cancel = nullptr) {
#ifdef _OPENMP
    if (nthreads <= 1 || !usable_in_this_process()) {
        run_serially(nslices, f, cancel);
        return;
    }
    // No more threads than slices: extra ones would idle, and each costs an OS thread.
    nthreads = static_cast<int>(std::min<std::int64_t>(nthreads, nslices));
    team_started_in_pid().store(static_cast<long>(getpid()), std::memory_order_relaxed);
    ExceptionSlot error;
    std::atomic<std::int64_t> next{0};
    Countdown others;  // the threads other than 0 still running slices (cancellation only)
    others.reset(nthreads - 1);
#pragma omp parallel num_threads(nthreads)
    {
        const int tid = omp_get_thread_num();
        const int team = omp_get_num_threads();  // fewer than asked under OMP_THREAD_LIMIT
        error.run([&] {
            if (dynamic) {
                run_claimed(next, nslices, f, cancel, tid == 0);
            } else {
                run_block(block_begin(tid, team, nslices), block_begin(tid + 1, team, nslices), f,
                          cancel, tid == 0);
            }
        });
        if (cancel != nullptr) {
            error.run([&] {
                if (tid != 0) {
                    others.count_down();
                } else {
                    for (int missing = team; missing < nthreads; ++missing) others.count_down();
                    others.wait(cancel);
                }
            });
        }
    }
    error.rethrow();
    if (cancel != nullptr) cancel->throw_if_requested();
#else
    (void)nthreads;
    (void)dynamic;
    run_serially(nslices, f, cancel);
#endif
}

}  // namespace openmp
}  // namespace spmm
