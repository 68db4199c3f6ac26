// The `threads` backend: a persistent pool of std::thread workers.
//
// Workers are created the first time a call needs them. Between calls they spin briefly, then
// sleep on a condition variable; a call publishes its task, bumps a generation counter (which
// spinning workers see at once) and wakes the sleeping ones. The
// calling thread runs share 0 itself, so a call with T threads uses T - 1 workers.
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

// True as soon as ready() is; false if it still is not after the spin budget.
template <class Ready>
bool spin_until(Ready&& ready) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
    for (unsigned i = 1;; ++i) {
        if (ready()) return true;
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) return ready();
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

    // Equivalent to: for (tid = 0; tid < nthreads; ++tid) f(tid); with each tid on its own
    // thread (tid 0 on the caller). Returns when every f(tid) has returned.
    template <class F>
    void parallel(int nthreads, F&& f) {
        if (nthreads <= 1) {
            f(0);
            return;
        }
        std::lock_guard<std::mutex> call(call_mutex_);
        grow(nthreads - 1);
        ExceptionSlot error;
        auto body = [&](int tid) { error.run([&] { f(tid); }); };
        {
            // task_ and pending_ are written before the release store of the new state, so a
            // worker that sees the new generation (acquire) sees them too.
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = Task{&body, [](void* ctx, int tid) { (*static_cast<decltype(body)*>(ctx))(tid); }};
            pending_.store(nthreads - 1, std::memory_order_relaxed);
            const std::uint64_t next = generation_of(state_.load(std::memory_order_relaxed)) + 1;
            state_.store(pack(next, nthreads - 1), std::memory_order_release);
        }
        wake_.notify_all();  // for the workers that stopped spinning and sleep
        body(0);
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
    // (low 32 bits), so a worker reads both consistently in one atomic load.
    static std::uint64_t pack(std::uint64_t generation, int helpers) {
        return (generation << 32) | static_cast<std::uint32_t>(helpers);
    }
    static std::uint64_t generation_of(std::uint64_t state) { return state >> 32; }
    static int helpers_of(std::uint64_t state) {
        return static_cast<int>(state & 0xffffffffu);
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
            if (!spin_until(fresh)) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, fresh);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            const std::uint64_t state = state_.load(std::memory_order_acquire);
            seen = generation_of(state);
            if (tid > helpers_of(state)) continue;  // this call needs fewer threads
            // task_ cannot change under us: the next call is published only after pending_
            // reaches 0, which needs this worker's decrement below.
            const Task task = task_;
            task.fn(task.ctx, tid);  // never throws: the body catches into an ExceptionSlot
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                // Under the mutex, so the notification cannot fall between the caller's check
                // of pending_ and its sleep.
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_one();
            }
        }
    }

    std::mutex call_mutex_;  // one call on the pool at a time
    std::mutex mutex_;       // with the condition variables: the sleeping side of each wait
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    Task task_;
    std::atomic<std::uint64_t> state_{0};
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
