// Stopping a parallel_for early, e.g. when the user presses Ctrl-C during a long product.
//
// Only the calling thread may look at the outside world (in Python, the signal check needs the
// GIL, which the calling thread released), so a Cancellation is polled there, between its
// slices and while it waits for the other threads; every thread reads one flag before each
// slice. A slice in progress is never interrupted: a driver that wants a quick stop cuts its
// work into more slices (parallel_for's static schedule keeps them contiguous per thread).
#pragma once

#include <atomic>
#include <chrono>
#include <exception>

namespace spmm {

// Thrown by parallel_for on the calling thread when its Cancellation was requested.
struct Interrupted : std::exception {
    const char* what() const noexcept override { return "spmm: the computation was interrupted"; }
};

class Cancellation {
  public:
    using Poll = bool (*)(void*);
    using Clock = std::chrono::steady_clock;

    // poll(ctx) returns true to cancel. It is called on the calling thread of parallel_for
    // only, at most once per `interval` (the first time one interval after construction, so a
    // run shorter than that never pays for it), and no more once it has returned true. It
    // should not throw; if it does, the run is cancelled and parallel_for rethrows that
    // exception instead of Interrupted. poll may be null: then only request() cancels.
    Cancellation(Poll poll, void* ctx, std::chrono::microseconds interval) noexcept
        : poll_(poll), ctx_(ctx), interval_(interval), next_(Clock::now() + interval) {}

    Cancellation(const Cancellation&) = delete;
    Cancellation& operator=(const Cancellation&) = delete;

    // True once cancellation was requested: by the poll, by request(), or by a slice that
    // threw. It stays true, so one Cancellation can guard several parallel_for calls of one
    // product: once requested, the later calls run no slice. Any thread.
    bool requested() const noexcept { return requested_.load(std::memory_order_acquire); }

    // Cancels: no slice starts after this returns. Any thread.
    void request() noexcept { requested_.store(true, std::memory_order_release); }

    // Calls the poll function if it is due; returns requested(). The calling thread only.
    bool poll() noexcept {
        if (requested()) return true;
        if (poll_ == nullptr) return false;
        const Clock::time_point now = Clock::now();
        if (now < next_) return false;
        next_ = now + interval_;
        bool stop = true;
        try {
            stop = poll_(ctx_);
        } catch (...) {
            error_ = std::current_exception();
        }
        if (stop) request();
        return stop;
    }

    // Whether the calling thread still has polls to make (a poll function, not yet cancelled).
    bool polling() const noexcept { return poll_ != nullptr && !requested(); }

    // When poll() will next call the poll function.
    Clock::time_point next_poll() const noexcept { return next_; }

    // At the end of a run, on the calling thread: the poll function's exception if it threw,
    // else Interrupted if cancellation was requested (even when every slice had already run:
    // a poll that returned true, e.g. a Python signal check that set KeyboardInterrupt, must
    // reach the caller), else nothing.
    void throw_if_requested() const {
        if (error_) std::rethrow_exception(error_);
        if (requested()) throw Interrupted();
    }

  private:
    Poll poll_;
    void* ctx_;
    std::chrono::microseconds interval_;
    Clock::time_point next_;     // the calling thread's only
    std::exception_ptr error_;   // likewise
    std::atomic<bool> requested_{false};
};

}  // namespace spmm
