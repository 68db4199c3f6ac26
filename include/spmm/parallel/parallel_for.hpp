// parallel_for: the one primitive that hands work to threads, for every product driver.
//
// Equivalent to: for (s = 0; s < nslices; ++s) f(s); with the slices spread over nthreads
// threads of the backend. Static schedules give each thread its share of the slices in a fixed
// pattern (one slice each when nslices == nthreads); the dynamic schedule hands the next
// unclaimed slice to whichever thread is free. The serial backend, and any call with one
// thread or one slice, is the plain loop on the calling thread.
#pragma once

#include <cstdint>

#include "../names.hpp"
#include "openmp.hpp"
#include "thread_pool.hpp"

namespace spmm {

template <class F>
void parallel_for(Backend backend, int nthreads, std::int64_t nslices, bool dynamic, F&& f) {
    if (backend == Backend::serial || nthreads <= 1 || nslices <= 1) {
        for (std::int64_t s = 0; s < nslices; ++s) f(s);
        return;
    }
    if (backend == Backend::openmp) {
        openmp::for_each_slice(nslices, nthreads, dynamic, f);
    } else {
        threads::for_each_slice(nslices, nthreads, dynamic, f);
    }
}

}  // namespace spmm
