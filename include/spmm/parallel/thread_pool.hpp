// The `threads` backend: a persistent pool of std::thread workers.
//
// Workers are created the first time a call needs them. Each has its own ticket and its own
// place to sleep: a call with T threads hands its ticket to workers 1 .. T - 1 only (worker i
// serves calls of more than i threads), so one call with many threads leaves the later, smaller
// calls as cheap as before: the workers they do not use keep sleeping, and no call wakes every
// worker to find out it is not needed. Between calls a worker spins briefly on its ticket, then
// sleeps on its condition variable. A worker beyond the default thread count (the CPUs of the
// affinity mask) that no call has used for kRetireAfter exits, so a process does not keep
// hundreds of threads after one oversubscribed call; the next call that needs it starts it
// again. The calling thread runs share 0 itself, and also runs any share that no worker has
// claimed by the time it is free.
//
// Guarantees the Python layer relies on:
// - several Python threads may call at once: a mutex serializes whole calls on the pool;
// - a worker's exception is rethrown on the caller;
// - a worker that cannot be started (std::thread throws std::system_error: the process is at a
//   limit of threads or memory) fails the call with a std::runtime_error saying how many could
//   not be started, after stopping and joining the workers this call started: the pool is as
//   it was before the call;
// - fork(): the child cannot use the parent's workers (they do not exist there), so an atfork
//   handler drops the pool in the child and the next call builds a fresh one.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cancellation.hpp"
#include "exceptions.hpp"
#include "schedule.hpp"
#include "wait.hpp"

namespace spmm {
namespace threads {

// The CPUs in this thread's affinity mask (the default thread count), or 0 where that cannot
// be read in one system call: not Linux, or more CPUs than a cpu_set_t holds (EINVAL).
inline int affinity_cpus() {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
    return 0;
}

// Workers a pool keeps however long it is idle: those of a call with the default thread count
// (the CPUs this thread may run on), less the calling thread.
inline int resident_workers() {
    int cpus = affinity_cpus();
    if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(0, cpus - 1);
}

// How long a worker beyond the resident ones stays unused before it exits: a choice, not a
// measurement. Longer: a program that calls with many threads now and then (a training step, a
// batch of requests) finds them running; shorter: the threads of a one-off oversubscribed call
// go away sooner. Either way a later call only pays for starting the thread again, which costs
// less than waking a sleeping one.
constexpr std::chrono::milliseconds kRetireAfter{1000};

class ThreadPool {
  public:
    // retire_after and resident (negative: resident_workers(), read whenever a worker is about
    // to sleep, as the mask may change) are for tests; spmm uses the defaults.
    explicit ThreadPool(std::chrono::milliseconds retire_after = kRetireAfter, int resident = -1)
        : retire_after_(retire_after), resident_(resident) {}
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    ~ThreadPool() {
        std::lock_guard<std::mutex> call(call_mutex_);
        for (auto& w : workers_) stop(*w);
    }

    // Equivalent to: for (share = 0; share < nthreads; ++share) f(share); with the shares
    // spread over nthreads threads. Returns when every f(share) has returned; rethrows the
    // first exception of one.
    //
    // The caller runs share 0, then every share no worker has claimed yet: a worker that is
    // asleep, or not scheduled because the machine is busy, then delays nothing, instead of
    // the caller waiting for it (a wake-up costs tens to hundreds of microseconds on a VM, and
    // a worker descheduled by another process a whole time slice). Likewise a worker that
    // finishes claims the next unclaimed share. So a share may run on any thread, but each
    // runs once. While it waits for the shares in progress, the caller polls `cancel` (if
    // given and still polling).
    template <class F>
    void parallel(int nthreads, F&& f, Cancellation* cancel = nullptr) {
        if (nthreads <= 1) {
            f(0);
            return;
        }
        std::lock_guard<std::mutex> call(call_mutex_);
        start_workers(nthreads - 1);  // may throw: nothing of the call is published yet
        ExceptionSlot error;
        auto body = [&](int share) { error.run([&] { f(share); }); };
        // task_ and pending_ are written before the release store of claims_, and the tickets
        // after it, so a worker that sees either (acquire) sees them too; one still claiming
        // from an earlier call can only claim here through claims_.
        task_ = Task{&body, [](void* ctx, int share) { (*static_cast<decltype(body)*>(ctx))(share); }};
        pending_.reset(nthreads - 1);
        claims_.store(pack(static_cast<std::uint64_t>(nthreads), 1), std::memory_order_release);
        ++generation_;
        for (int i = 0; i < nthreads - 1; ++i) hand_ticket(worker(i));
        body(0);
        run_claimed_shares();
        pending_.wait(cancel);
        error.rethrow();
    }

    // Workers running now (started and not retired).
    std::size_t workers() {
        std::lock_guard<std::mutex> call(call_mutex_);
        return static_cast<std::size_t>(live_);
    }

    // A testing aid: for each worker slot, how many calls its worker has taken up (tickets it
    // saw; a worker that sees two calls' tickets at once counts one). A slot whose worker
    // retired keeps its count until the slot is dropped.
    std::vector<std::uint64_t> calls_taken() {
        std::lock_guard<std::mutex> call(call_mutex_);
        std::vector<std::uint64_t> counts;
        for (const auto& w : workers_) counts.push_back(w->calls.load(std::memory_order_relaxed));
        return counts;
    }

  private:
    struct Task {
        void* ctx = nullptr;
        void (*fn)(void*, int) = nullptr;
    };

    enum class Mode : int { awake, asleep, retired };

    // A ticket no call has: the worker exits.
    static constexpr std::uint64_t kStop = ~std::uint64_t{0};

    // One worker. Its own line, so handing a ticket to one worker does not disturb another.
    struct alignas(64) Worker {
        std::atomic<std::uint64_t> ticket{0};  // the last call handed to it (kStop: exit)
        std::atomic<Mode> mode{Mode::retired};  // retired: no thread runs (or it is exiting)
        std::atomic<std::uint64_t> calls{0};    // calls_taken()
        std::uint64_t seen = 0;  // the last ticket its thread acted on (that thread's only)
        std::mutex mutex;        // with cv: its sleep
        std::condition_variable cv;
        std::thread thread;      // under call_mutex_; detached when it retires
    };

    // claims_ packs the call's number of shares (high 32 bits) with the next unclaimed one
    // (low), so that a claim (one fetch_add) also says how many shares the call it landed on
    // has: a worker still claiming after an earlier call may claim in a newer one, never past
    // its end.
    static std::uint64_t pack(std::uint64_t high, int low) {
        return (high << 32) | static_cast<std::uint32_t>(low);
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
            pending_.count_down();
        }
    }

    // Gives worker w the current call, and wakes it only if it sleeps. The ticket is stored
    // before the mode is read, and the worker stores its mode before it reads the ticket, all
    // sequentially consistent: either the worker sees the ticket before it sleeps, or this
    // sees it asleep and notifies it after taking its mutex (which the worker holds from its
    // last look at the ticket until it sleeps).
    void hand_ticket(Worker& w) {
        w.ticket.store(generation_, std::memory_order_seq_cst);
        if (w.mode.load(std::memory_order_seq_cst) == Mode::asleep) {
            { std::lock_guard<std::mutex> lock(w.mutex); }
            w.cv.notify_one();
        }
    }

    // Makes workers 0 .. wanted - 1 run. Called with call_mutex_ held, which a worker needs to
    // retire: none retires meanwhile. If a thread cannot be started, the workers started here
    // are stopped and joined before the error is thrown.
    void start_workers(int wanted) {
        drop_retired_tail();
        std::vector<Worker*> started;
        int missing = 0;
        for (int i = 0; i < wanted; ++i) {
            missing += i >= static_cast<int>(workers_.size()) || retired(worker(i));
        }
        if (missing == 0) return;
        try {
            for (int i = 0; i < wanted; ++i) {
                if (i == static_cast<int>(workers_.size())) {
                    workers_.push_back(std::make_unique<Worker>());
                }
                if (!retired(worker(i))) continue;
                start(worker(i), i);
                started.push_back(&worker(i));
            }
        } catch (const std::exception& e) {
            for (Worker* w : started) stop(*w);
            drop_retired_tail();
            throw std::runtime_error(
                "the threads backend could not start " +
                std::to_string(missing - static_cast<int>(started.size())) + " of the " +
                std::to_string(missing) + " threads it needed to add for a call with " +
                std::to_string(wanted + 1) + " threads (" + e.what() +
                "); the process may be at its limit of threads or memory (ulimit -u, ulimit -v, "
                "a container's pids.max): use fewer threads");
        }
    }

    // Starts w's thread (w retired, call_mutex_ held). Throws what std::thread throws.
    void start(Worker& w, int index) {
        w.seen = w.ticket.load(std::memory_order_relaxed);
        w.mode.store(Mode::awake, std::memory_order_relaxed);
        try {
            w.thread = std::thread(&ThreadPool::worker_loop, this, std::ref(w), index);
        } catch (...) {
            w.mode.store(Mode::retired, std::memory_order_relaxed);
            throw;
        }
        ++live_;
    }

    Worker& worker(int i) { return *workers_[static_cast<std::size_t>(i)]; }

    // Whether no thread runs for w (call_mutex_ held, so none retires meanwhile).
    static bool retired(const Worker& w) {
        return w.mode.load(std::memory_order_relaxed) == Mode::retired;
    }

    // Stops and joins w's thread, if it has one (call_mutex_ held).
    void stop(Worker& w) {
        if (!retired(w)) {
            w.ticket.store(kStop, std::memory_order_seq_cst);
            { std::lock_guard<std::mutex> lock(w.mutex); }
            w.cv.notify_one();
            --live_;
        }
        if (w.thread.joinable()) w.thread.join();
        w.mode.store(Mode::retired, std::memory_order_relaxed);
    }

    // Forgets retired workers at the end of the list (call_mutex_ held).
    void drop_retired_tail() {
        while (!workers_.empty() && retired(*workers_.back())) workers_.pop_back();
    }

    void worker_loop(Worker& w, int index) {
        for (;;) {
            auto fresh = [&] { return w.ticket.load(std::memory_order_acquire) != w.seen; };
            if (!spin_until(fresh, kGreedySpinMicroseconds) && !sleep(w, index)) return;
            const std::uint64_t ticket = w.ticket.load(std::memory_order_acquire);
            if (ticket == kStop) return;
            w.seen = ticket;
            w.calls.fetch_add(1, std::memory_order_relaxed);
            run_claimed_shares();
        }
    }

    // Sleeps until w has a new ticket (true), or retires w (false): a worker beyond the
    // resident ones, unused for retire_after_, when no call is in progress (it takes
    // call_mutex_, without waiting for it: a call in progress may be about to hand it a
    // ticket; and the caller, which holds call_mutex_ when it takes w's mutex, never waits
    // for this thread).
    bool sleep(Worker& w, int index) {
        std::unique_lock<std::mutex> lock(w.mutex);
        w.mode.store(Mode::asleep, std::memory_order_seq_cst);
        auto fresh = [&] { return w.ticket.load(std::memory_order_seq_cst) != w.seen; };
        const int resident = resident_ >= 0 ? resident_ : resident_workers();
        if (index < resident) {
            w.cv.wait(lock, fresh);
        } else {
            while (!w.cv.wait_for(lock, retire_after_, fresh)) {
                std::unique_lock<std::mutex> call(call_mutex_, std::try_to_lock);
                if (call.owns_lock() && !fresh()) {
                    w.mode.store(Mode::retired, std::memory_order_relaxed);
                    --live_;
                    // Nobody joins a retired worker: it frees its stack as it exits. w's mutex
                    // is released before call_mutex_ (at return), after which this thread
                    // touches nothing of the pool, which may then drop w or be destroyed.
                    w.thread.detach();
                    lock.unlock();
                    return false;
                }
            }
        }
        w.mode.store(Mode::awake, std::memory_order_relaxed);
        return true;
    }

    const std::chrono::milliseconds retire_after_;
    const int resident_;
    std::mutex call_mutex_;  // one call on the pool at a time; guards workers_, live_, generation_
    std::vector<std::unique_ptr<Worker>> workers_;
    int live_ = 0;
    std::uint64_t generation_ = 0;
    Task task_;
    std::atomic<std::uint64_t> claims_{0};  // no shares: a claim before the first call fails
    Countdown pending_;                     // shares of the current call not yet finished
};

// The process-wide pool, rebuilt in a forked child.
//
// Never destroyed: at interpreter exit workers may still sleep on their condition variables,
// and joining them from a static destructor can deadlock; the OS reclaims them.
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

// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the slices spread over the pool
// (see parallel_for for the schedules and the cancellation). Share t of a static schedule is
// thread t's block; the calling thread, wherever it runs a share, polls the cancellation.
template <class F>
void for_each_slice(std::int64_t nslices, int nthreads, bool dynamic, F&& f,
                    Cancellation* cancel = nullptr) {
    const int t = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(nthreads, nslices)));
    if (t == 1) {
        run_serially(nslices, f, cancel);
        return;
    }
    const std::thread::id caller = std::this_thread::get_id();
    if (dynamic) {
        std::atomic<std::int64_t> next{0};
        global_pool().parallel(t, [&](int) {
            run_claimed(next, nslices, f, cancel, std::this_thread::get_id() == caller);
        }, cancel);
    } else {
        global_pool().parallel(t, [&](int share) {
            run_block(block_begin(share, t, nslices), block_begin(share + 1, t, nslices), f, cancel,
                      std::this_thread::get_id() == caller);
        }, cancel);
    }
    if (cancel != nullptr) cancel->throw_if_requested();
}

}  // namespace threads
}  // namespace spmm
