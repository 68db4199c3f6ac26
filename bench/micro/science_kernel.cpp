// The csr_rows kernel alone on a science matrix (2^17 rows of 2^17 columns, 16 stored entries
// per row on average, columns uniform at random; row lengths Poisson or power-law), serial, on
// the best instruction set, timed in the thread's CPU time (on a shared machine, wall time
// counts other processes' turns). Built and run by science.py, which compares variants of the
// dense operand's memory: its offset from a cache line and its pages.
//
// usage: science_kernel PATTERN N DTYPE OFFSET_BYTES HUGE_PAGES(0|1) PACK(0|1) REPEAT
// PACK: each call goes through the aligned copy spmm makes of such a B (formats/pack.hpp), timed.
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "spmm/formats/pack.hpp"
#include "spmm/kernels/registry.hpp"

namespace {

double thread_seconds() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// `count` elements on 2 MiB boundaries, huge pages advised or not, `offset` bytes in.
template <class T>
T* allocate(std::size_t count, std::size_t offset, bool huge) {
    const std::size_t page = std::size_t{2} << 20;
    const std::size_t bytes = (count * sizeof(T) + offset + page) / page * page;
    void* p = std::aligned_alloc(page, bytes);
    if (p == nullptr) std::abort();
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return reinterpret_cast<T*>(static_cast<char*>(p) + offset);
}

template <class T>
void run(const std::string& pattern, std::int64_t n, std::size_t offset, bool huge, bool pack,
         int repeat) {
    constexpr std::int64_t rows = std::int64_t{1} << 17;
    std::mt19937_64 rng(7);
    std::vector<std::int64_t> length(rows);
    if (pattern == "uniform") {
        std::poisson_distribution<int> draw(16);
        for (auto& l : length) l = draw(rng);
    } else {  // rank^-0.8, as bench/spmm_bench/matrices.py's power_law_lengths
        double total = 0;
        for (std::int64_t i = 0; i < rows; ++i) total += std::pow(static_cast<double>(i + 1), -0.8);
        for (std::int64_t i = 0; i < rows; ++i)
            length[i] = std::llround(16.0 * rows * std::pow(static_cast<double>(i + 1), -0.8) / total);
    }
    std::vector<std::int32_t> indptr(rows + 1, 0);
    for (std::int64_t i = 0; i < rows; ++i) indptr[i + 1] = indptr[i] + static_cast<std::int32_t>(length[i]);
    const std::int64_t nnz = indptr[rows];
    std::vector<std::int32_t> indices(nnz);
    std::vector<T> values(nnz, T(0.5));
    std::uniform_int_distribution<std::int32_t> column(0, rows - 1);
    for (std::int64_t i = 0; i < rows; ++i) {
        for (std::int64_t p = indptr[i]; p < indptr[i + 1]; ++p) indices[p] = column(rng);
        std::sort(indices.begin() + indptr[i], indices.begin() + indptr[i + 1]);
    }
    T* b = allocate<T>(rows * n, offset, huge);
    T* c = allocate<T>(rows * n, 0, true);
    for (std::int64_t i = 0; i < rows * n; ++i) b[i] = T(i % 7);
    const spmm::CsrView<std::int32_t, T> a{indptr.data(), indices.data(), values.data(), rows, rows, nnz};
    const spmm::DenseView<T> bv{b, rows, n, n};
    const spmm::OutView<T> cv{c, rows, n, n, 1};
    const spmm::Simd best = spmm::supported_simd_levels().back();
    const auto kernel = spmm::rows_kernel<false, std::int32_t, T, T>(spmm::Kernel::tiled, best);
    std::vector<double> seconds;
    for (int r = 0; r < repeat + 1; ++r) {  // the first call warms up
        const double t0 = thread_seconds();
        if (pack) {
            const spmm::PackedRows<T> copy(b, rows, n, n, 1);
            kernel.fn(a, copy.view(), cv, 0, rows);
        } else {
            kernel.fn(a, bv, cv, 0, rows);
        }
        if (r > 0) seconds.push_back(thread_seconds() - t0);
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    std::printf("{\"pattern\": \"%s\", \"n\": %lld, \"dtype\": \"%s\", \"offset\": %zu, \"huge_pages\": %d, \"pack\": %d, "
                "\"nnz\": %lld, \"simd\": \"%s\", \"median_ms\": %.4f, \"ns_per_entry\": %.3f}\n",
                pattern.c_str(), static_cast<long long>(n), sizeof(T) == 4 ? "float32" : "float64", offset,
                huge ? 1 : 0, pack ? 1 : 0, static_cast<long long>(nnz), spmm::simd_name(best).c_str(), median * 1e3,
                median / static_cast<double>(nnz) * 1e9);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s PATTERN N DTYPE OFFSET_BYTES HUGE_PAGES PACK REPEAT\n", argv[0]);
        return 2;
    }
    const std::string pattern = argv[1], dtype = argv[3];
    const std::int64_t n = std::atoll(argv[2]);
    const auto offset = static_cast<std::size_t>(std::atoll(argv[4]));
    const bool huge = std::atoi(argv[5]) != 0;
    const bool pack = std::atoi(argv[6]) != 0;
    const int repeat = std::atoi(argv[7]);
    if (dtype == "float32") run<float>(pattern, n, offset, huge, pack, repeat);
    else run<double>(pattern, n, offset, huge, pack, repeat);
    return 0;
}
