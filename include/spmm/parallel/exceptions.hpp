// Carrying an exception out of a parallel region.
//
// An exception must not escape a worker thread (std::terminate) nor an OpenMP region
// (undefined). Each worker runs its work through an ExceptionSlot; the first exception is kept
// and rethrown on the calling thread, where Cython turns it into a Python exception.
#pragma once

#include <exception>
#include <mutex>

namespace spmm {

class ExceptionSlot {
  public:
    template <class F>
    void run(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_) first_ = std::current_exception();
        }
    }

    void rethrow() {
        if (first_) std::rethrow_exception(first_);
    }

  private:
    std::mutex mutex_;
    std::exception_ptr first_;
};

}  // namespace spmm
