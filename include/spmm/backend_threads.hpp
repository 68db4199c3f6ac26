// The `threads` backend: a persistent pool of std::thread workers.
//
// Workers are created the first time a call needs them and then sleep on a condition variable
// between calls; a call publishes its task, bumps a generation counter and wakes them. The
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
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "exceptions.hpp"

namespace spmm {
namespace threads {

class ThreadPool {
  public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
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
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = Task{&body, [](void* ctx, int tid) { (*static_cast<decltype(body)*>(ctx))(tid); }};
            active_ = nthreads - 1;
            pending_ = nthreads - 1;
            ++generation_;
        }
        wake_.notify_all();
        body(0);
        {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, [&] { return pending_ == 0; });
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

    // Called with call_mutex_ held, so generation_ cannot move meanwhile: a new worker starts
    // from the current generation and cannot miss the call about to be published.
    void grow(int wanted) {
        while (static_cast<int>(workers_.size()) < wanted) {
            const int tid = static_cast<int>(workers_.size()) + 1;
            workers_.emplace_back(&ThreadPool::worker_loop, this, tid, generation_);
        }
    }

    void worker_loop(int tid, std::uint64_t seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            if (tid > active_) continue;  // this call needs fewer threads
            const Task task = task_;
            lock.unlock();
            task.fn(task.ctx, tid);  // never throws: the body catches into an ExceptionSlot
            lock.lock();
            if (--pending_ == 0) done_.notify_one();
        }
    }

    std::mutex call_mutex_;  // one call on the pool at a time
    std::mutex mutex_;       // guards everything below
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    Task task_;
    std::uint64_t generation_ = 0;
    int active_ = 0;
    int pending_ = 0;
    bool stop_ = false;
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
