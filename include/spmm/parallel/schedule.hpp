// Which slices one thread of a parallel_for runs, in what order, and the checks a
// cancellation adds between them. Shared by every backend, so that each hands out slices the
// same way and differs only in how it starts and joins its threads.
#pragma once

#include <atomic>
#include <cstdint>

#include "cancellation.hpp"

namespace spmm {

// The first slice of thread t of `threads` under a static schedule: thread t runs the
// contiguous block [block_begin(t), block_begin(t + 1)), i.e. [t * S / T, (t + 1) * S / T).
// Contiguous, so that a driver cutting its rows into T * P nnz-balanced slices gives each
// thread P consecutive pieces: the balance of one slice per thread, with P - 1 points where a
// cancellation is seen. Written as q t + r t / T (S = q T + r), which cannot overflow.
inline std::int64_t block_begin(std::int64_t t, std::int64_t threads, std::int64_t nslices) {
    return nslices / threads * t + nslices % threads * t / threads;
}

namespace detail {

// Whether to stop before the next slice: the calling thread polls (when due), the others read
// the flag.
inline bool stop_before_slice(Cancellation& cancel, bool calling_thread) {
    return calling_thread ? cancel.poll() : cancel.requested();
}

// f(s), cancelling the run if it throws: its result is lost anyway, so the other threads
// start no more slices. The exception travels on.
template <class F>
void run_slice(F& f, std::int64_t s, Cancellation& cancel) {
    try {
        f(s);
    } catch (...) {
        cancel.request();
        throw;
    }
}

}  // namespace detail

// Slices [first, last) in order, on this thread. With a cancellation no slice starts once it
// is requested, and the calling thread polls before each.
template <class F>
void run_block(std::int64_t first, std::int64_t last, F& f, Cancellation* cancel,
               bool calling_thread) {
    if (cancel == nullptr) {
        for (std::int64_t s = first; s < last; ++s) f(s);
        return;
    }
    for (std::int64_t s = first; s < last && !detail::stop_before_slice(*cancel, calling_thread);
         ++s) {
        detail::run_slice(f, s, *cancel);
    }
}

// The dynamic schedule: the next unclaimed slice of [0, nslices), from a counter the threads
// share, until none is left; with a cancellation, as run_block.
template <class F>
void run_claimed(std::atomic<std::int64_t>& next, std::int64_t nslices, F& f,
                 Cancellation* cancel, bool calling_thread) {
    if (cancel == nullptr) {
        for (std::int64_t s = next.fetch_add(1, std::memory_order_relaxed); s < nslices;
             s = next.fetch_add(1, std::memory_order_relaxed)) {
            f(s);
        }
        return;
    }
    while (!detail::stop_before_slice(*cancel, calling_thread)) {
        const std::int64_t s = next.fetch_add(1, std::memory_order_relaxed);
        if (s >= nslices) return;
        detail::run_slice(f, s, *cancel);
    }
}

// Every slice on the calling thread: the serial backend, and any call with one thread.
template <class F>
void run_serially(std::int64_t nslices, F& f, Cancellation* cancel) {
    run_block(0, nslices, f, cancel, true);
    if (cancel != nullptr) cancel->throw_if_requested();
}

}  // namespace spmm
