// Memory ceilings of this machine, for the product A @ B whose B rows are read in random
// order: how long one dependent load takes (pointer chase), how many random rows per second
// independent loads reach (the memory-level parallelism the core sustains), with and without
// software prefetch, and the streaming read bandwidth. Built and run by memory.py; prints one
// JSON object. No PMU is needed: every figure is a time over a known number of loads (the
// thread's CPU time for one thread, wall time for the streaming threads).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <numeric>
#include <sys/mman.h>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// `count` zeroed elements on 2 MiB boundaries in huge pages where the kernel grants them, as
// numpy's large arrays are (4 KiB pages add a TLB miss to most random rows of a large B).
template <class T>
struct HugeArray {
    explicit HugeArray(std::size_t count) : n(count) {
        const std::size_t page = std::size_t{2} << 20, bytes = (count * sizeof(T) + page) / page * page;
        p = static_cast<T*>(std::aligned_alloc(page, bytes));
        if (p == nullptr) std::abort();
        madvise(p, bytes, MADV_HUGEPAGE);
        std::fill(p, p + count, T{});
    }
    ~HugeArray() { std::free(p); }
    HugeArray(const HugeArray&) = delete;
    HugeArray& operator=(const HugeArray&) = delete;
    T& operator[](std::size_t i) { return p[i]; }
    const T* data() const { return p; }
    std::size_t n;
    T* p;
};

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The calling thread's CPU time: on a shared machine, wall time also counts other processes'
// turns on this core (the single-thread figures use it; the streaming ones need wall time).
double thread_seconds() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Nanoseconds per load of a chase through `bytes` of memory, one 64-byte line per step in a
// random cyclic order (no prefetcher can guess the next line).
double chase_ns(std::size_t bytes, std::mt19937_64& rng) {
    const std::size_t lines = bytes / 64;
    std::vector<std::size_t> order(lines);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    HugeArray<std::uint64_t> mem(lines * 8);
    for (std::size_t i = 0; i < lines; ++i) mem[order[i] * 8] = order[(i + 1) % lines] * 8;
    const std::size_t steps = std::max<std::size_t>(lines * 2, 4'000'000);
    std::uint64_t at = order[0] * 8;
    for (std::size_t i = 0; i < lines; ++i) at = mem[at];  // warm
    const double t0 = thread_seconds();
    for (std::size_t i = 0; i < steps; ++i) at = mem[at];
    const double s = thread_seconds() - t0;
    if (at == 1) std::puts("");  // keep the chain
    return s / static_cast<double>(steps) * 1e9;
}

// Rows of `row_bytes` at random row indices (as a CSR matrix's column indices name B's rows)
// summed with independent loads: rows per second. `distance` > 0 prefetches the row that many
// indices ahead with the given hint (0: T0, into L1; 2: T2, into L2).
template <int Hint>
double random_rows_per_s(const HugeArray<float>& b, std::size_t row_floats,
                         const std::vector<std::uint32_t>& idx, int distance, double* sink) {
    const std::size_t n = idx.size();
    const float* base = b.data();
    float acc[16] = {};
    const double t0 = thread_seconds();
    for (std::size_t p = 0; p < n; ++p) {
        if (Hint >= 0 && p + distance < n) {
            const char* q = reinterpret_cast<const char*>(base + idx[p + distance] * row_floats);
            for (std::size_t off = 0; off < row_floats * 4; off += 64) __builtin_prefetch(q + off, 0, Hint == 0 ? 3 : 1);
        }
        const float* r = base + idx[p] * row_floats;
        for (std::size_t j0 = 0; j0 < row_floats; j0 += 16) {  // a vector of 16 at a time
            const std::size_t m = std::min<std::size_t>(16, row_floats - j0);
            for (std::size_t k = 0; k < m; ++k) acc[k] += r[j0 + k];
        }
    }
    const double s = thread_seconds() - t0;
    for (float v : acc) *sink += v;
    return static_cast<double>(n) / s;
}

// Streaming read bandwidth in GB/s: a sum over `bytes`, on `threads` threads, disjoint halves.
double stream_gbs(std::size_t bytes, int threads) {
    const std::size_t count = bytes / sizeof(double);
    HugeArray<double> a(count);
    std::vector<double> sums(static_cast<std::size_t>(threads) * 8);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = Clock::now();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                const std::size_t lo = count * t / threads, hi = count * (t + 1) / threads;
                double s[8] = {};
                for (std::size_t i = lo; i + 8 <= hi; i += 8)
                    for (int k = 0; k < 8; ++k) s[k] += a[i + k];
                sums[static_cast<std::size_t>(t) * 8] = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
            });
        }
        for (auto& th : pool) th.join();
        best = std::max(best, static_cast<double>(bytes) / seconds_since(t0) / 1e9);
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::string(argv[1]) == "quick";
    std::mt19937_64 rng(1);
    std::printf("{\"chase_ns\": {");
    const std::size_t sizes[] = {32u << 10, 1u << 20, 4u << 20, 32u << 20, 256u << 20};
    bool first = true;
    for (std::size_t bytes : sizes) {
        if (quick && bytes > (4u << 20)) break;
        std::printf("%s\"%zu\": %.2f", first ? "" : ", ", bytes, chase_ns(bytes, rng));
        first = false;
    }
    std::printf("}, \"random_rows\": [");
    // B as in the science products: 2^17 rows of 8 or 64 floats (4 or 32 MiB); 2^21 indices.
    const std::size_t rows = quick ? (1u << 12) : (1u << 17);
    std::vector<std::uint32_t> idx(quick ? (1u << 14) : (1u << 21));
    std::uniform_int_distribution<std::uint32_t> pick(0, static_cast<std::uint32_t>(rows - 1));
    for (auto& v : idx) v = pick(rng);
    double sink = 0;
    first = true;
    for (std::size_t row_floats : {8u, 16u, 64u}) {
        HugeArray<float> b(rows * row_floats + 16);
        for (int distance : {0, 4, 8, 16, 32, 64}) {
            for (int hint : {0, 2}) {
                if (distance == 0 && hint == 2) continue;
                double best = 0;
                for (int rep = 0; rep < 3; ++rep) {
                    const double r = distance == 0
                        ? random_rows_per_s<-1>(b, row_floats, idx, 0, &sink)
                        : hint == 0 ? random_rows_per_s<0>(b, row_floats, idx, distance, &sink)
                                    : random_rows_per_s<2>(b, row_floats, idx, distance, &sink);
                    best = std::max(best, r);
                }
                std::printf("%s{\"row_bytes\": %zu, \"b_bytes\": %zu, \"prefetch\": %d, \"hint\": \"%s\", \"rows_per_s\": %.4g}",
                            first ? "" : ", ", row_floats * 4, rows * row_floats * 4, distance,
                            distance == 0 ? "none" : hint == 0 ? "t0" : "t2", best);
                first = false;
            }
        }
    }
    const std::size_t stream = quick ? (8u << 20) : (std::size_t{1} << 30);
    std::printf("], \"stream_read_gbs\": {\"1\": %.2f, \"2\": %.2f}, \"stream_bytes\": %zu, \"sink\": %g}\n",
                stream_gbs(stream, 1), stream_gbs(stream, 2), stream, sink > 0 ? 1.0 : 0.0);
    return 0;
}
