// Checks of the parallel layer alone (parallel_for, its cancellation, the thread pool), meant
// for sanitizers (run by .ci/run, built like stress_backends.cpp):
//   g++ -std=c++17 -O1 -g -fsanitize=thread -Iinclude tests/cpp/check_parallel.cpp
//   g++ -std=c++17 -O1 -g -fopenmp -fsanitize=address,undefined -Iinclude tests/cpp/...
// Every backend (OpenMP where compiled in) runs every slice once, in contiguous blocks under
// the static schedule; a cancellation stops a long run before its end, starts no slice after
// it is requested (bar one in flight per other thread), is polled on the calling thread only,
// also while that thread waits for the others, at most once per interval, and leaves no slice
// running; exceptions take precedence as documented in parallel_for.hpp. The pool wakes only
// the workers a call uses, retires the extra ones when idle and starts them again, under
// concurrent callers. Exit code 0 on success; a hang is killed by alarm().
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spmm/parallel/parallel_for.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

using spmm::Backend;
using spmm::Cancellation;
using spmm::Interrupted;
using Clock = std::chrono::steady_clock;
using us = std::chrono::microseconds;

std::vector<Backend> backends() {
    std::vector<Backend> all{Backend::serial, Backend::threads};
    if (spmm::openmp::available()) all.push_back(Backend::openmp);
    return all;
}

const char* name(Backend b) {
    return b == Backend::serial ? "serial" : b == Backend::openmp ? "openmp" : "threads";
}

// Threads a call really uses: one for the serial backend, one thread or one slice.
int team(Backend b, int nthreads, std::int64_t nslices) {
    if (b == Backend::serial || nthreads <= 1 || nslices <= 1) return 1;
    return static_cast<int>(std::min<std::int64_t>(nthreads, nslices));
}

void busy_for(std::chrono::microseconds d) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) spmm::cpu_relax();
}

// Waits (up to 60 s) until ready(); false if it never was.
template <class Ready>
bool eventually(Ready ready) {
    const auto end = Clock::now() + std::chrono::seconds(60);
    while (!ready()) {
        if (Clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

thread_local long slices_run_here = 0;  // this thread's slice sequence number

std::string label(Backend b, int nthreads, bool dynamic) {
    return std::string(name(b)) + " nthreads=" + std::to_string(nthreads) +
           (dynamic ? " dynamic" : " static");
}

// Every slice runs exactly once; static blocks [t S / T, (t + 1) S / T) each run on one thread,
// consecutively and in order, block 0 on the calling thread; dynamic slices run in increasing
// order on each thread.
void check_schedule(Backend b, int nthreads, std::int64_t nslices, bool dynamic,
                    Cancellation* cancel) {
    const std::string where = label(b, nthreads, dynamic) + " nslices=" +
                              std::to_string(nslices) + (cancel ? " with a cancellation" : "");
    const auto size = static_cast<std::size_t>(nslices);
    std::vector<std::atomic<int>> runs(size);
    std::vector<std::thread::id> thread(size);
    std::vector<long> order(size);
    spmm::parallel_for(b, nthreads, nslices, dynamic, [&](std::int64_t s) {
        const auto i = static_cast<std::size_t>(s);
        runs[i].fetch_add(1);
        thread[i] = std::this_thread::get_id();
        order[i] = slices_run_here++;
    }, cancel);
    bool once = true;
    for (auto& r : runs) once = once && r.load() == 1;
    check(once, where + ": every slice runs exactly once");
    if (nslices == 0) return;
    if (dynamic) {
        bool increasing = true;
        for (std::size_t i = 1; i < std::min<std::size_t>(size, 64); ++i) {
            for (std::size_t j = 0; j < i; ++j) {
                if (thread[i] == thread[j]) increasing = increasing && order[j] < order[i];
            }
        }
        check(increasing, where + ": each thread takes slices in increasing order");
        return;
    }
    const int t = team(b, nthreads, nslices);
    bool contiguous = true;
    for (int k = 0; k < t; ++k) {
        const std::int64_t first = spmm::block_begin(k, t, nslices);
        check(first == nslices * k / t, where + ": block_begin is t S / T");
        for (std::int64_t s = first + 1; s < spmm::block_begin(k + 1, t, nslices); ++s) {
            const auto i = static_cast<std::size_t>(s);
            contiguous = contiguous && thread[i] == thread[i - 1] && order[i] == order[i - 1] + 1;
        }
    }
    check(contiguous, where + ": each block runs on one thread, in order");
    check(thread[0] == std::this_thread::get_id(), where + ": block 0 runs on the calling thread");
}

// check_schedule for every backend, thread and slice count, with no cancellation and with one
// that never fires.
void every_slice_once_in_contiguous_blocks() {
    for (Backend b : backends()) {
        for (int nthreads : {1, 2, 3, 5}) {
            for (std::int64_t nslices : {0, 1, 2, 7, 64, 1000}) {
                for (bool dynamic : {false, true}) {
                    Cancellation never([](void*) { return false; }, nullptr, us(0));
                    check_schedule(b, nthreads, nslices, dynamic, nullptr);
                    check_schedule(b, nthreads, nslices, dynamic, &never);
                }
            }
        }
    }
}

// What a run with a cancellation saw.
struct Observed {
    std::atomic<std::int64_t> started{0};
    std::atomic<std::int64_t> started_after_request{0};  // slices that began with it requested
    std::atomic<int> running{0};
    std::atomic<int> polls{0};
    std::atomic<int> polls_off_caller{0};
    std::thread::id caller = std::this_thread::get_id();
    int cancel_at_poll = 0;  // the poll that returns true (0: never)
};

bool poll_counting(void* ctx) {
    auto& o = *static_cast<Observed*>(ctx);
    if (std::this_thread::get_id() != o.caller) o.polls_off_caller.fetch_add(1);
    return o.polls.fetch_add(1) + 1 == o.cancel_at_poll;
}

// Runs parallel_for; returns "interrupted", "none" or the what() of another exception. Checks
// that no slice is running when it returns.
template <class F>
std::string run(Backend b, int nthreads, std::int64_t nslices, bool dynamic, Observed& o,
                Cancellation& cancel, F slice, const std::string& where) {
    std::string outcome = "none";
    try {
        spmm::parallel_for(b, nthreads, nslices, dynamic, [&](std::int64_t s) {
            if (cancel.requested()) o.started_after_request.fetch_add(1);
            o.started.fetch_add(1);
            o.running.fetch_add(1);
            struct Leave {
                std::atomic<int>& running;
                ~Leave() { running.fetch_sub(1); }
            } leave{o.running};
            slice(s);
        }, &cancel);
    } catch (const Interrupted&) {
        outcome = "interrupted";
    } catch (const std::exception& e) {
        outcome = e.what();
    }
    check(o.running.load() == 0, where + ": no slice is running when parallel_for returns");
    check(o.polls_off_caller.load() == 0, where + ": only the calling thread polls");
    return outcome;
}

// A poll that says "stop" at its k-th call stops a long run: Interrupted, no more polls, no
// slice started after the request but one in flight per other thread, none left running, and
// for the static schedule (the caller's own block unfinished) not every slice ran.
void a_poll_that_cancels_stops_a_long_run() {
    const std::int64_t nslices = 20000;
    for (Backend b : backends()) {
        for (int nthreads : {1, 2, 3}) {
            for (bool dynamic : {false, true}) {
                const std::string where = label(b, nthreads, dynamic);
                Observed o;
                o.cancel_at_poll = 50;
                Cancellation cancel(poll_counting, &o, us(0));
                const std::string outcome = run(b, nthreads, nslices, dynamic, o, cancel,
                                                [](std::int64_t) { busy_for(us(2)); }, where);
                check(outcome == "interrupted", where + ": Interrupted is thrown, got " + outcome);
                check(o.polls.load() == 50, where + ": no poll after the one that cancelled");
                const int t = team(b, nthreads, nslices);
                check(o.started_after_request.load() <= t - 1,
                      where + ": no slice starts after the request but one per other thread, got " +
                          std::to_string(o.started_after_request.load()));
                if (t == 1) {
                    check(o.started.load() == 49,
                          where + ": one slice after each poll that said go on");
                }
                if (!dynamic) check(o.started.load() < nslices, where + ": the run stopped early");
                const std::int64_t started = o.started.load();
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                check(o.started.load() == started,
                      where + ": no slice starts after parallel_for returned");
            }
        }
    }
}

// The calling thread polls while it waits for the others: a slice on another thread that ends
// only once cancellation is requested cannot hang the run. The caller's own slices are slow,
// so a worker takes the other block, and fewer than the polls needed to cancel.
void the_calling_thread_polls_while_it_waits() {
    for (Backend b : backends()) {
        if (b == Backend::serial) continue;
        int blocked_on_a_worker = 0;
        for (int repeat = 0; repeat < 5; ++repeat) {
            const std::string where = std::string(name(b)) + " waiting";
            Observed o;
            o.cancel_at_poll = 30;  // the caller's block has 20 slices: 20 polls at most
            Cancellation cancel(poll_counting, &o, us(0));
            std::atomic<bool> blocked{false};
            const std::string outcome = run(b, 2, 40, false, o, cancel, [&](std::int64_t s) {
                if (std::this_thread::get_id() == o.caller) {
                    if (s < 20) std::this_thread::sleep_for(us(500));
                    return;
                }
                if (s == 20) {
                    blocked = true;
                    while (!cancel.requested()) std::this_thread::yield();
                }
            }, where);
            check(outcome == "interrupted", where + ": Interrupted is thrown, got " + outcome);
            blocked_on_a_worker += blocked.load();
        }
        check(blocked_on_a_worker > 0,
              std::string(name(b)) + ": some run had a worker wait for the cancellation");
    }
}

// The poll function runs at most once per interval: a 60 ms run polled every 5 ms polls at
// most 13 times (and at least once: the caller's slices last longer than an interval).
void polls_at_most_once_per_interval() {
    for (Backend b : backends()) {
        const std::string where = std::string(name(b)) + " interval";
        Observed o;
        Cancellation cancel(poll_counting, &o, std::chrono::milliseconds(5));
        const auto start = Clock::now();
        const std::string outcome = run(b, 2, 120, false, o, cancel, [](std::int64_t) {
            std::this_thread::sleep_for(us(500));
        }, where);
        const auto elapsed =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        check(outcome == "none", where + ": nothing thrown, got " + outcome);
        check(o.started.load() == 120, where + ": every slice ran");
        check(o.polls.load() >= 1 && o.polls.load() <= elapsed.count() / 5 + 1,
              where + ": " + std::to_string(o.polls.load()) + " polls in " +
                  std::to_string(elapsed.count()) + " ms");
    }
}

// A slice's exception takes precedence over Interrupted, and it stops the run; the poll
// function's exception comes next; an already requested cancellation runs nothing.
void exceptions_and_precedence() {
    for (Backend b : backends()) {
        for (bool dynamic : {false, true}) {
            const std::string where = std::string(name(b)) + (dynamic ? " dynamic" : " static");
            {
                Observed o;
                Cancellation cancel(poll_counting, &o, us(0));
                auto slice = [&](std::int64_t s) {
                    if (s == 10) {
                        cancel.request();
                        throw std::runtime_error("slice 10 failed");
                    }
                    busy_for(us(2));
                };
                const std::string outcome = run(b, 3, 30000, dynamic, o, cancel, slice, where);
                check(outcome == "slice 10 failed",
                      where + ": a slice's exception wins over Interrupted, got " + outcome);
            }
            {
                Observed o;
                Cancellation cancel(poll_counting, &o, us(0));
                auto slice = [&](std::int64_t s) {
                    if (s == 10) throw std::runtime_error("slice 10 failed");
                    busy_for(us(2));
                };
                const std::string outcome = run(b, 3, 30000, dynamic, o, cancel, slice, where);
                check(outcome == "slice 10 failed",
                      where + ": the slice's exception, got " + outcome);
                check(cancel.requested(), where + ": a slice's exception cancels the run");
                check(o.started_after_request.load() <= 2,
                      where + ": after the exception no slice starts but one per other thread");
            }
            {
                Observed o;
                auto throwing_poll = [](void*) -> bool { throw std::length_error("poll failed"); };
                Cancellation cancel(throwing_poll, &o, us(0));
                const std::string outcome = run(b, 3, 30000, dynamic, o, cancel,
                                                [](std::int64_t) { busy_for(us(2)); }, where);
                check(outcome == "poll failed", where + ": the poll's exception, got " + outcome);
                check(o.started_after_request.load() <= 2,
                      where + ": the poll's exception cancels");
            }
            {
                Observed o;
                Cancellation cancel(nullptr, nullptr, us(0));
                cancel.request();
                const std::string outcome =
                    run(b, 3, 100, dynamic, o, cancel, [](std::int64_t) {}, where);
                check(outcome == "interrupted" && o.started.load() == 0,
                      where + ": a cancellation requested before the call runs no slice");
            }
        }
    }
}

// A call with T threads hands work to workers 1 .. T - 1 only: after a call with 8 threads,
// calls with 2 threads leave the other six workers alone.
void a_call_wakes_only_the_workers_it_uses() {
    spmm::threads::ThreadPool pool(std::chrono::minutes(10));  // no retirement during the check
    pool.parallel(8, [](int) {});
    check(pool.workers() == 7, "a call with 8 threads starts 7 workers");
    check(eventually([&] { return pool.calls_taken() == std::vector<std::uint64_t>(7, 1); }),
          "each of the 7 workers takes up the call once");
    for (int i = 0; i < 50; ++i) pool.parallel(2, [](int) {});
    check(eventually([&] { return pool.calls_taken()[0] > 1; }),
          "the first worker takes up calls of 2 threads");
    const auto calls = pool.calls_taken();
    check(std::vector<std::uint64_t>(calls.begin() + 1, calls.end()) ==
              std::vector<std::uint64_t>(6, 1),
          "workers 2 to 7 took up no call of 2 threads");
}

// Workers beyond the resident ones exit when unused for the retirement delay; the next call
// that needs them starts them again, and computes.
void extra_workers_retire_and_come_back() {
    spmm::threads::ThreadPool pool(std::chrono::milliseconds(100), 1);
    for (int round = 0; round < 3; ++round) {
        std::atomic<int> shares{0};
        pool.parallel(6, [&](int) { shares.fetch_add(1); });
        check(shares.load() == 6, "every share runs");
        check(pool.workers() == 5, "a call with 6 threads has 5 workers");
        check(eventually([&] { return pool.workers() == 1; }), "the 4 extra workers retire");
        check(pool.calls_taken().size() == 5,
              "retired workers keep their slots until the next call");
        pool.parallel(2, [](int) {});
        check(pool.calls_taken().size() == 1, "the next call drops the retired workers' slots");
    }
}

// Concurrent callers with every thread count, while extra workers retire and start again:
// every share runs once, and an exception reaches its caller. For the sanitizers.
void concurrent_calls_while_workers_retire() {
    spmm::threads::ThreadPool pool(std::chrono::milliseconds(1), 1);
    std::atomic<int> bad{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c) {
        callers.emplace_back([&, c] {
            std::mt19937 gen(static_cast<unsigned>(c));
            for (int it = 0; it < 150; ++it) {
                const int nthreads = 1 + static_cast<int>(gen() % 8);
                std::vector<std::atomic<int>> runs(static_cast<std::size_t>(nthreads));
                const bool fail = it % 10 == 0 && nthreads > 1;
                try {
                    pool.parallel(nthreads, [&](int share) {
                        runs[static_cast<std::size_t>(share)].fetch_add(1);
                        if (fail && share == nthreads - 1) throw std::runtime_error("share failed");
                    });
                    if (fail) bad.fetch_add(1);
                } catch (const std::runtime_error&) {
                    if (!fail) bad.fetch_add(1);
                }
                for (auto& r : runs) bad.fetch_add(r.load() != 1);
                if (gen() % 4 == 0) std::this_thread::sleep_for(us(gen() % 3000));
            }
        });
    }
    for (auto& t : callers) t.join();
    check(bad.load() == 0, "concurrent calls: every share once, exceptions to their caller");
}

}  // namespace

int main() {
    alarm(600);  // a hang (a wait that never polls) fails the run instead of blocking CI
    every_slice_once_in_contiguous_blocks();
    a_poll_that_cancels_stops_a_long_run();
    the_calling_thread_polls_while_it_waits();
    polls_at_most_once_per_interval();
    exceptions_and_precedence();
    a_call_wakes_only_the_workers_it_uses();
    extra_workers_retire_and_come_back();
    concurrent_calls_while_workers_retire();
    if (failures == 0) {
        std::printf("parallel layer: all checks passed\n");
    } else {
        std::printf("parallel layer: %d checks failed\n", failures);
    }
    return failures != 0;
}
