// The one-column sliced kernel alone (formats/sliced.hpp, kernels/sliced.inc and the portable
// body), serial, on copies of a random layout: W has OUTPUTS rows of INPUTS columns (Wᵀ of a
// layer, 10 % dense, binomial row lengths, each row's columns sorted as prepare stores them,
// 16-bit indices, float32 values), timed in the thread's CPU time per stored entry. COPIES
// layouts are read in turn, so that together they exceed a cache the one does not. PREFETCH
// sets the layout's `prefetch` (what multiply_sliced decides from its size). Built and run by
// sliced.py.
//
// usage: sliced_kernel OUTPUTS INPUTS COPIES BODY(portable|gather) PREFETCH(0|1) REPEAT
//        sliced_kernel clock   (the core's clock: a chain of dependent one-cycle adds)
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "spmm/formats/sliced.hpp"
#include "spmm/kernels/registry.hpp"

namespace {

using I = std::uint16_t;

double thread_seconds() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// One layout's arrays: rows sorted by length, cut into slices of kSliceRows, each slice
// stored column by column (as spmm/_sliced.py builds it).
struct Layout {
    std::vector<std::int64_t> slice_ptr;
    std::vector<std::int32_t> lens, perm;
    std::vector<I> indices;
    std::vector<float> values;

    spmm::SlicedView<I, float> view(std::int64_t rows, std::int64_t cols, bool prefetch) const {
        spmm::SlicedView<I, float> v{rows, cols, slice_ptr.data(), lens.data(), perm.data(), indices.data(),
                                     values.data()};
        v.prefetch = prefetch;
        return v;
    }
};

Layout make(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
    constexpr std::int64_t C = spmm::kSliceRows;
    std::mt19937_64 rng(seed);
    std::binomial_distribution<int> length(static_cast<int>(cols), 0.1);
    std::uniform_int_distribution<int> column(0, static_cast<int>(cols) - 1);
    // The CSR arrays: distinct columns per row, sorted.
    std::vector<std::int64_t> indptr{0};
    std::vector<I> indices;
    std::vector<char> seen(static_cast<std::size_t>(cols));
    for (std::int64_t i = 0; i < rows; ++i) {
        const auto first = indices.size(), want = first + static_cast<std::size_t>(length(rng));
        std::fill(seen.begin(), seen.end(), 0);
        while (indices.size() < want) {
            const int c = column(rng);
            if (!seen[static_cast<std::size_t>(c)]) {
                seen[static_cast<std::size_t>(c)] = 1;
                indices.push_back(static_cast<I>(c));
            }
        }
        std::sort(indices.begin() + static_cast<std::ptrdiff_t>(first), indices.end());
        indptr.push_back(static_cast<std::int64_t>(indices.size()));
    }
    const std::vector<float> values(indices.size(), 0.5f);
    // Positions by length, longest first (stable), as spmm/_sliced.py sorts; then the library
    // fills the slices.
    Layout L;
    L.perm.resize(static_cast<std::size_t>(rows));
    std::iota(L.perm.begin(), L.perm.end(), 0);
    auto len = [&](std::int32_t r) { return indptr[r + 1] - indptr[r]; };
    std::stable_sort(L.perm.begin(), L.perm.end(), [&](std::int32_t a, std::int32_t b) { return len(a) > len(b); });
    for (std::int32_t r : L.perm) L.lens.push_back(static_cast<std::int32_t>(len(r)));
    const std::int64_t slices = (rows + C - 1) / C;
    L.slice_ptr.assign(static_cast<std::size_t>(slices) + 1, 0);
    for (std::int64_t p = 0; p < rows; ++p) L.slice_ptr[static_cast<std::size_t>(p / C) + 1] += L.lens[static_cast<std::size_t>(p)];
    for (std::int64_t s = 0; s < slices; ++s) L.slice_ptr[s + 1] += L.slice_ptr[s];
    L.indices.resize(indices.size());
    L.values.resize(indices.size());
    spmm::fill_sliced(indptr.data(), indices.data(), values.data(), rows, L.perm.data(), L.lens.data(),
                      L.slice_ptr.data(), L.indices.data(), L.values.data());
    return L;
}

// GHz of this core while it runs: 4 dependent adds (one cycle each) per iteration.
double clock_ghz() {
    constexpr long kIterations = 500000000;
    long a = 0;
    const double t0 = thread_seconds();
    for (long i = 0; i < kIterations; ++i) {
#if defined(__x86_64__)
        asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(a));
#elif defined(__aarch64__)
        asm volatile("add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1" : "+r"(a));
#else
        return 0;
#endif
    }
    return 4.0 * kIterations / (thread_seconds() - t0) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "clock") {
        std::printf("{\"ghz\": %.3f}\n", clock_ghz());
        return 0;
    }
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s OUTPUTS INPUTS COPIES BODY(portable|gather) PREFETCH REPEAT\n", argv[0]);
        return 2;
    }
    const std::int64_t rows = std::atoll(argv[1]), cols = std::atoll(argv[2]);
    const int copies = std::atoi(argv[3]), repeat = std::atoi(argv[6]);
    const bool prefetch = std::atoi(argv[5]) != 0;
    const std::string body = argv[4];
    std::vector<Layout> layouts;
    for (int c = 0; c < copies; ++c) layouts.push_back(make(rows, cols, 7 + static_cast<std::uint64_t>(c)));
    const spmm::Simd best = spmm::supported_simd_levels().back();
    const auto picked = spmm::sliced_kernel<I, float, float>(
        body == "gather" ? spmm::Kernel::tiled : spmm::Kernel::reordered, best);
    std::vector<float> x(static_cast<std::size_t>(cols), 1.0f), y(static_cast<std::size_t>(rows));
    const spmm::OutView<float> yv{y.data(), rows, 1, 1, 1};
    const std::int64_t nnz = layouts[0].slice_ptr.back();
    std::vector<double> per_entry;
    for (int r = 0; r < repeat + 1; ++r) {  // the first pass warms up
        const double t0 = thread_seconds();
        int calls = 0;
        do {
            for (const Layout& L : layouts) picked.fn(L.view(rows, cols, prefetch), x.data(), yv, 0, (rows + 15) / 16);
            calls += copies;
        } while (thread_seconds() - t0 < 0.05);
        if (r > 0) per_entry.push_back((thread_seconds() - t0) / calls / static_cast<double>(nnz) * 1e9);
    }
    std::sort(per_entry.begin(), per_entry.end());
    std::printf("{\"outputs\": %lld, \"inputs\": %lld, \"copies\": %d, \"body\": \"%s\", \"level\": \"%s\", "
                "\"mib\": %.1f, \"ns_per_entry\": %.4f}\n",
                static_cast<long long>(rows), static_cast<long long>(cols), copies, picked.body,
                spmm::simd_name(picked.level).c_str(), 6.0 * static_cast<double>(nnz) * copies / (1 << 20),
                per_entry[per_entry.size() / 2]);
    return 0;
}
