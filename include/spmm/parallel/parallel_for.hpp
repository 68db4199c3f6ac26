// parallel_for: the one primitive that hands work to threads, for every product driver.
//
// One primitive, so that every driver gets the same schedules, the same exception handling and
// the same cancellation, and the backends compare threading strategies only: the serial
// backend, and any call with one thread or one slice, is its loop on the calling thread.
#pragma once

#include <cstdint>

#include "../names.hpp"
#include "cancellation.hpp"
#include "openmp.hpp"
#include "schedule.hpp"
#include "thread_pool.hpp"

namespace spmm {

// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the slices spread over nthreads
// threads of the backend (never more threads than slices).
//
// Schedules. Static (dynamic == false): thread t runs the contiguous block of slices
// [t * S / T, (t + 1) * S / T) in order (one slice each when nslices == nthreads); thread 0 is
// the calling thread for OpenMP, and in the thread pool the calling thread runs block 0 and
// any block no worker has claimed yet. Dynamic: each thread takes the next unclaimed slice
// until none is left.
//
// Exceptions. The first exception a slice throws is rethrown on the calling thread once every
// thread has returned.
//
// Cancellation (cancel != nullptr; without one, none of this costs anything):
// - the calling thread polls `cancel` (Cancellation::poll: at most once per its interval)
//   before each of its slices and, once its own slices are done, while it waits for the other
//   threads: it never blocks in a barrier or a condition variable without polling;
// - no slice starts, on any thread, once cancellation is requested (a slice that already
//   started finishes: at most one per other thread starts while the request is being made);
//   a slice that throws also requests it;
// - every thread has left its slices before parallel_for returns or throws (no worker is left
//   busy), then it throws, in this order of precedence: the first exception of a slice (an
//   error in the computation says more than "stopped", and the caller stops either way), the
//   poll function's exception, Interrupted if cancellation was requested (also when all slices
//   had run by then, so that a poll that said "stop" is never lost). An already requested
//   cancellation runs no slice and throws at once.
template <class F>
void parallel_for(Backend backend, int nthreads, std::int64_t nslices, bool dynamic, F&& f,
                  Cancellation* cancel = nullptr) {
    if (cancel != nullptr && cancel->requested()) cancel->throw_if_requested();
    if (backend == Backend::serial || nthreads <= 1 || nslices <= 1) {
        run_serially(nslices, f, cancel);
    } else if (backend == Backend::openmp) {
        openmp::for_each_slice(nslices, nthreads, dynamic, f, cancel);
    } else {
        threads::for_each_slice(nslices, nthreads, dynamic, f, cancel);
    }
}

}  // namespace spmm
