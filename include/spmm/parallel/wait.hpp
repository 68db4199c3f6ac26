// How the threads of a call wait for each other: spin first, then sleep.
//
// Spinning is what lets a call start and end on every thread at once: waking a sleeping
// thread costs tens to hundreds of microseconds on a VM, longer than a whole small product.
// libgomp does the same (it spins before sleeping). The constants below trade that latency
// against CPU time burnt by idle threads; `python bench/overhead.py --isolated` re-measures
// them (per-call cost of both parallel backends just above the parallel threshold).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cancellation.hpp"

namespace spmm {

// How long a waiting thread spins before it sleeps. Longer: calls in a loop find their
// threads awake; shorter: an idle pool gives its CPUs back sooner (each thread of an idle
// pool stays busy this long after each call, as OpenMP's do).
constexpr long kSpinMicroseconds = 1000;

// A worker waiting for the next call spins this long without yielding its CPU first: a loop
// of products in Python calls again within a few microseconds, and a worker that kept its CPU
// is there to take its share (as OpenMP's, which never yields). Longer: fewer missed calls
// when the machine is idle; shorter: less delay for the thread it keeps from running when the
// machine is oversubscribed.
constexpr long kGreedySpinMicroseconds = 50;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// True as soon as ready() is; false if it still is not after kSpinMicroseconds.
//
// After polite_after_us, the spinning thread also yields its CPU every 64 pauses (a few
// microseconds). With a core per thread that costs nothing, but when the machine is
// oversubscribed the thread being waited for may be queued on this very CPU (the scheduler
// often wakes a thread next to the one that woke it), and without the yield the waiter would
// keep it off the CPU for its whole spin budget. So the caller, waiting for shares in
// progress, yields from the start.
template <class Ready>
bool spin_until(Ready&& ready, long polite_after_us = 0) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::microseconds(kSpinMicroseconds);
    const auto polite = start + std::chrono::microseconds(polite_after_us);
    for (unsigned i = 1;; ++i) {
        if (ready()) return true;
        cpu_relax();
        if (i % 64 == 0) {
            const auto now = std::chrono::steady_clock::now();
            if (now > deadline) return ready();
            if (now > polite) std::this_thread::yield();
        }
    }
}

// The threads of a call still running; the calling thread waits until none is.
class Countdown {
  public:
    // Before the counted threads can see the call (publishing the call publishes this).
    void reset(int n) noexcept { left_.store(n, std::memory_order_relaxed); }

    // One thread is done. Never throws in practice (a mutex lock fails only on misuse).
    void count_down() {
        if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            // Under the mutex, so the notification cannot fall between the waiter's check of
            // the count and its sleep.
            std::lock_guard<std::mutex> lock(mutex_);
            done_.notify_one();
        }
    }

    bool done() const noexcept { return left_.load(std::memory_order_acquire) == 0; }

    // Returns when the count is 0: spins, then sleeps until the last thread notifies. With a
    // cancellation that still polls, the sleep ends at each poll due, and the poll runs
    // outside the mutex (it may wait for the GIL while the last thread wants to notify).
    void wait(Cancellation* cancel) {
        auto done = [this] { return this->done(); };
        if (spin_until(done)) return;
        std::unique_lock<std::mutex> lock(mutex_);
        while (cancel != nullptr && cancel->polling() && !done()) {
            lock.unlock();
            cancel->poll();
            lock.lock();
            done_.wait_until(lock, cancel->next_poll(), done);
        }
        done_.wait(lock, done);
    }

  private:
    std::atomic<int> left_{0};
    std::mutex mutex_;
    std::condition_variable done_;
};

}  // namespace spmm
