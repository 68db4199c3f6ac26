// The `threads` backend: a persistent pool of std::thread workers.
//
// Workers are created the first time a call needs them. Between calls they spin briefly, then
// sleep on a condition variable; a call publishes its task, bumps a generation counter (which
// spinning workers see at once) and wakes the sleeping ones. The calling thread runs share 0
// itself, so a call with T threads uses T - 1 workers, and it also runs any share that no
// worker has claimed by the time it is free.
//
// Guarantees the Python layer relies on:
// - several Python threads may call at once: a mutex serializes whole calls on the pool;
// - a worker's exception is rethrown on the caller;
// - fork(): the child cannot use the parent's workers (they do not exist there), so an atfork
//   handler drops the pool in the child and the next call builds a fresh one.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "exceptions.hpp"

namespace spmm {
namespace threads {

// Waiting first spins (for at most kSpinMicroseconds), then sleeps on a condition variable.
// Spinning is what lets a call start on every thread at once: waking a sleeping thread took
// hundreds of microseconds on the 2-vCPU KVM development machine, longer than a whole small
// product. libgomp does the same (it spins before sleeping). Measured there at 2 threads on a
// product of 2M useful flops, median microseconds per call: without spinning 500 against
// OpenMP's 246 (bench/overhead.py, one run); spinning 100 us, 683 with p90 995 (a bimodal
// spread: calls whose wait fell back to sleeping); spinning 1000 us, 362 (p90 426) against
// OpenMP's 355 (417), each backend in its own process.
// The cost: an idle pool keeps its workers busy for up to 1 ms after each call, as OpenMP does.
constexpr long kSpinMicroseconds = 1000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// A worker waiting for the next call spins without yielding for this long first: a loop of
// products in Python calls again within a few microseconds, and a worker that kept its CPU is
// there to take its share, as OpenMP's (which never yields) is. Measured on products just
// above kParallelMinWork (`python bench/overhead.py --child threads|openmp`, 10 alternating
// processes, other jobs running, 2026-11-23), median us per call at 1471 / 2942 rows:
// yielding from the start 50.6 / 91.2 and 44.4 / 76.7, OpenMP 49.8 / 93.4 and 43.7 / 79.7,
// yielding after 50 us 43.8 / 85.3 and 39.1 / 70.7.
constexpr long kGreedySpinMicroseconds = 50;

// True as soon as ready() is; false if it still is not after the spin budget.
//
// After polite_after_us, the spinning thread also yields its CPU every 64 pauses (a few
// microseconds). When the machine has a core per thread that costs nothing (no other thread
// is waiting for this CPU), but when it is oversubscribed, the thread being waited for may be
// queued on this very CPU (the scheduler often wakes a thread next to the one that woke it):
// without the yield the waiter kept it off the CPU for its whole spin budget. Measured with a
// C++ loop of 2-thread calls 3 ms apart on the 2-vCPU VM with other jobs running: median
// 1010 us per call without the yield, against the 3 us of a call whose worker was already
// running. So the caller, waiting for shares in progress, yields from the start.
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

class ThreadPool {
  public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_.store(true, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

    // Equivalent to: for (share = 0; share < nthreads; ++share) f(share); with the shares
    // spread over nthreads threads. Returns when every f(share) has returned.
    //
    // The caller runs share 0, then every share no worker has claimed yet: a worker that is
    // asleep, or not scheduled because the machine is busy, then delays nothing, instead of
    // the caller waiting for it (a wake-up took 50 to 150 us on the 2-vCPU VM, and a worker
    // descheduled by another process one 2-4 ms time slice). Likewise a worker that finishes
    // claims the next unclaimed share. So a share may run on any thread, but each runs once.
    template <class F>
    void parallel(int nthreads, F&& f) {
        if (nthreads <= 1) {
            f(0);
            return;
        }
        std::lock_guard<std::mutex> call(call_mutex_);
        grow(nthreads - 1);
        ExceptionSlot error;
        auto body = [&](int share) { error.run([&] { f(share); }); };
        {
            // task_ and pending_ are written before the release stores of claims_ and of the
            // new state, so a worker that sees either (acquire) sees them too; one that saw
            // an older generation can only claim here through claims_.
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = Task{&body, [](void* ctx, int share) { (*static_cast<decltype(body)*>(ctx))(share); }};
            pending_.store(nthreads - 1, std::memory_order_relaxed);
            claims_.store(pack(static_cast<std::uint64_t>(nthreads), 1), std::memory_order_release);
            const std::uint64_t next = generation_of(state_.load(std::memory_order_relaxed)) + 1;
            state_.store(pack(next, nthreads - 1), std::memory_order_release);
        }
        wake_.notify_all();  // for the workers that stopped spinning and sleep
        body(0);
        run_claimed_shares();
        auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
        if (!spin_until(done)) {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, done);
        }
        error.rethrow();
    }

    // Workers started so far (they persist until the process ends).
    std::size_t workers() {
        std::lock_guard<std::mutex> call(call_mutex_);
        return workers_.size();
    }

  private:
    struct Task {
        void* ctx = nullptr;
        void (*fn)(void*, int) = nullptr;
    };

    // state_ packs the call's generation (high 32 bits) with the number of workers it needs
    // (low 32 bits), so a worker reads both consistently in one atomic load. claims_ packs
    // the call's number of shares (high) with the next unclaimed one (low), so that a claim
    // (one fetch_add) also says how many shares the call it landed on has: a worker that saw
    // an older generation may claim in a newer call, never past its end.
    static std::uint64_t pack(std::uint64_t high, int low) {
        return (high << 32) | static_cast<std::uint32_t>(low);
    }
    static std::uint64_t generation_of(std::uint64_t state) { return state >> 32; }
    static int helpers_of(std::uint64_t state) {
        return static_cast<int>(state & 0xffffffffu);
    }

    // Runs unclaimed shares of the current call until none is left. A claim that succeeds
    // keeps the call alive (pending_ counts its share), so task_ is the call's task: it was
    // written before claims_ was reset for the call, and the fetch_add (acquire) reads that
    // reset or a later claim. A claim past the end means every share is taken: nothing to do,
    // and nothing of the call is touched (it may have returned already).
    void run_claimed_shares() {
        for (;;) {
            const std::uint64_t claim = claims_.fetch_add(1, std::memory_order_acq_rel);
            const auto shares = static_cast<std::int64_t>(claim >> 32);
            const auto share = static_cast<std::int64_t>(claim & 0xffffffffu);
            if (share >= shares) return;
            const Task task = task_;
            task.fn(task.ctx, static_cast<int>(share));  // never throws: see parallel()
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                // Under the mutex, so the notification cannot fall between the caller's check
                // of pending_ and its sleep.
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_one();
            }
        }
    }

    // Called with call_mutex_ held, so the generation cannot move meanwhile: a new worker
    // starts from the current one and cannot miss the call about to be published.
    void grow(int wanted) {
        while (static_cast<int>(workers_.size()) < wanted) {
            const int tid = static_cast<int>(workers_.size()) + 1;
            workers_.emplace_back(&ThreadPool::worker_loop, this, tid,
                                  generation_of(state_.load(std::memory_order_relaxed)));
        }
    }

    void worker_loop(int tid, std::uint64_t seen) {
        for (;;) {
            auto fresh = [&] {
                return stop_.load(std::memory_order_acquire) ||
                       generation_of(state_.load(std::memory_order_acquire)) != seen;
            };
            if (!spin_until(fresh, kGreedySpinMicroseconds)) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, fresh);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            const std::uint64_t state = state_.load(std::memory_order_acquire);
            seen = generation_of(state);
            if (tid > helpers_of(state)) continue;  // this call needs fewer threads
            run_claimed_shares();
        }
    }

    std::mutex call_mutex_;  // one call on the pool at a time
    std::mutex mutex_;       // with the condition variables: the sleeping side of each wait
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    Task task_;
    std::atomic<std::uint64_t> state_{0};
    std::atomic<std::uint64_t> claims_{0};  // no shares: a claim before the first call fails
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
};

// The process-wide pool, rebuilt in a forked child.
//
// Never destroyed: at interpreter exit workers may still sleep on the condition variable, and
// joining them from a static destructor can deadlock; the OS reclaims them.
struct PoolRegistry {
    std::mutex mutex;
    ThreadPool* pool = nullptr;
};

inline PoolRegistry& registry() {
    static PoolRegistry* r = new PoolRegistry();
    return *r;
}

// Holding the registry mutex across fork() means the child never inherits it locked by a
// thread that does not exist there. The child forgets (leaks) the parent's pool: its mutexes
// may be held by vanished threads and its workers are gone.
inline void before_fork() { registry().mutex.lock(); }
inline void after_fork_in_parent() { registry().mutex.unlock(); }
inline void after_fork_in_child() {
    registry().pool = nullptr;
    registry().mutex.unlock();
}

inline ThreadPool& global_pool() {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child); });
    std::lock_guard<std::mutex> lock(registry().mutex);
    if (registry().pool == nullptr) registry().pool = new ThreadPool();
    return *registry().pool;
}

// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the iterations spread over the pool.
// Static partitions: thread t runs slices t, t + T, ... (one slice each when nslices == T);
// dynamic: each thread takes the next unclaimed slice from an atomic counter until none is left.
template <class F>
void for_each_slice(std::int64_t nslices, int nthreads, bool dynamic, F&& f) {
    const int t = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(nthreads, nslices)));
    if (t == 1) {
        for (std::int64_t s = 0; s < nslices; ++s) f(s);
        return;
    }
    if (dynamic) {
        std::atomic<std::int64_t> next{0};
        global_pool().parallel(t, [&](int) {
            for (std::int64_t s = next.fetch_add(1, std::memory_order_relaxed); s < nslices;
                 s = next.fetch_add(1, std::memory_order_relaxed)) {
                f(s);
            }
        });
    } else {
        global_pool().parallel(t, [&](int tid) {
            for (std::int64_t s = tid; s < nslices; s += t) f(s);
        });
    }
}

}  // namespace threads
}  // namespace spmm
