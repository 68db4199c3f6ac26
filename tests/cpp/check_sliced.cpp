// The sliced one-column layout (formats/sliced.hpp): fill_sliced from CSR arrays, and
// sliced_rows at every SIMD level this build and CPU support (the portable loop, and the
// gather bodies of avx2/avx512), against a double-precision reference from the CSR arrays.
// Index types int32, int64, uint16; float and double values, and the reduced formats
// (bfloat16, float16, int8 with a scale per row). Row counts below, at and past a slice
// (0, 1, 15, 16, 17, 33, 100), row lengths from empty to several slices' worth, in an order
// that sorting changes. Each layout's arrays are exactly as long as their contents (ASan, by
// .ci/check-simd, makes any read past them an error), and every output element must match;
// an inf in x must reach only the rows that store its column.
//   g++ -std=c++17 -O2 -Iinclude tests/cpp/check_sliced.cpp -o check && ./check
// Prints "N passed, N failed"; exit code 0 on success.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "spmm/spmm.hpp"

namespace {

long g_passed = 0, g_failed = 0;

// A stored value of type S for v in [-1, 1]: bfloat16 and float16 from bits (exponents of
// values below 1), int8 scaled to its range.
template <class S>
S stored_of(double v) {
    const auto magnitude = static_cast<std::uint16_t>(std::fabs(v) * 1023);
    const std::uint16_t sign = v < 0 ? 0x8000 : 0;
    if constexpr (std::is_same_v<S, spmm::bfloat16>) return {static_cast<std::uint16_t>(sign | 0x3E00 | magnitude >> 3)};
    else if constexpr (std::is_same_v<S, spmm::float16>) return {static_cast<std::uint16_t>(sign | 0x3400 | magnitude)};
    else if constexpr (std::is_same_v<S, std::int8_t>) return static_cast<std::int8_t>(std::lround(v * 127));
    else return static_cast<S>(v);
}

template <class I, class T, class S>
void check_case(std::int64_t rows, std::int64_t cols, std::mt19937& gen, bool with_inf) {
    // CSR arrays, rows of lengths 0 .. 3 slices' worth in a scrambled order.
    std::vector<spmm::offset_t<I>> indptr{0};
    std::vector<I> indices;
    std::vector<S> values;
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    const std::int64_t longest = std::min<std::int64_t>(cols, 3 * spmm::kSliceRows + 5);
    for (std::int64_t i = 0; i < rows; ++i) {
        const std::int64_t len = longest == 0 ? 0 : (i * 7919) % (longest + 1);
        std::vector<std::int64_t> picked(static_cast<std::size_t>(cols));
        std::iota(picked.begin(), picked.end(), 0);
        std::shuffle(picked.begin(), picked.end(), gen);
        picked.resize(static_cast<std::size_t>(len));
        std::sort(picked.begin(), picked.end());
        for (const std::int64_t j : picked) {
            indices.push_back(static_cast<I>(j));
            values.push_back(stored_of<S>(u(gen)));
        }
        indptr.push_back(static_cast<spmm::offset_t<I>>(indices.size()));
    }
    std::vector<float> scale;
    if constexpr (spmm::is_scaled_v<S>) {
        for (std::int64_t i = 0; i < rows; ++i) scale.push_back(std::ldexp(0.75f, static_cast<int>(i % 9) - 4));
    }
    // The layout: positions by length, longest first (stable), as spmm/_sliced.py sorts.
    std::vector<std::int32_t> perm(static_cast<std::size_t>(rows)), lens(static_cast<std::size_t>(rows));
    std::iota(perm.begin(), perm.end(), 0);
    auto length = [&](std::int64_t r) { return static_cast<std::int64_t>(indptr[r + 1] - indptr[r]); };
    std::stable_sort(perm.begin(), perm.end(), [&](std::int32_t a, std::int32_t b) { return length(a) > length(b); });
    for (std::int64_t p = 0; p < rows; ++p) lens[static_cast<std::size_t>(p)] = static_cast<std::int32_t>(length(perm[static_cast<std::size_t>(p)]));
    const std::int64_t slices = (rows + spmm::kSliceRows - 1) / spmm::kSliceRows;
    std::vector<std::int64_t> slice_ptr(static_cast<std::size_t>(slices) + 1, 0);
    for (std::int64_t p = 0; p < rows; ++p) slice_ptr[static_cast<std::size_t>(p / spmm::kSliceRows) + 1] += lens[static_cast<std::size_t>(p)];
    for (std::int64_t s = 0; s < slices; ++s) slice_ptr[static_cast<std::size_t>(s) + 1] += slice_ptr[static_cast<std::size_t>(s)];
    const auto nnz = static_cast<std::size_t>(indices.size());
    std::vector<I> s_indices(nnz);
    std::vector<S> s_values(nnz);
    spmm::fill_sliced(indptr.data(), indices.data(), values.data(), rows, perm.data(), lens.data(),
                      slice_ptr.data(), s_indices.data(), s_values.data());
    const spmm::SlicedView<I, S> w{rows, cols, slice_ptr.data(), lens.data(), perm.data(),
                                   s_indices.data(), s_values.data(),
                                   scale.empty() ? nullptr : scale.data()};
    std::vector<T> x(static_cast<std::size_t>(cols));
    for (auto& e : x) e = static_cast<T>(u(gen));
    const std::int64_t inf_at = cols / 2;
    if (with_inf && cols > 0) x[static_cast<std::size_t>(inf_at)] = std::numeric_limits<T>::infinity();
    // The reference, in double, from the CSR arrays.
    std::vector<double> want(static_cast<std::size_t>(rows)), mag(static_cast<std::size_t>(rows));
    for (std::int64_t i = 0; i < rows; ++i) {
        double sum = 0, m = 0;
        for (auto p = indptr[i]; p < indptr[i + 1]; ++p) {
            const double v = static_cast<double>(spmm::Stored<S>::one(values[static_cast<std::size_t>(p)]));
            const double xv = static_cast<double>(x[static_cast<std::size_t>(indices[static_cast<std::size_t>(p)])]);
            sum += v * xv;
            m += std::fabs(v * xv);
        }
        const double sc = scale.empty() ? 1.0 : scale[static_cast<std::size_t>(i)];
        want[static_cast<std::size_t>(i)] = sum * sc;
        mag[static_cast<std::size_t>(i)] = m * std::fabs(sc);
    }
    const double tol = sizeof(T) == 4 ? 2e-6 : 1e-13;
    for (const auto& name : spmm::supported_simd()) {
        spmm::Simd level = spmm::Simd::scalar;
        for (const spmm::Simd s : spmm::supported_simd_levels()) {
            if (spmm::simd_name(s) == name) level = s;
        }
        std::vector<T> y(static_cast<std::size_t>(rows) * 2 + 1, T(-7));  // stride 2: gaps stay -7
        const spmm::OutView<T> out{y.data(), rows, 1, 2, 1};
        const auto fn = spmm::sliced_kernel<I, T, S>(spmm::Kernel::tiled, level).fn;
        // Two calls on halves of the slices, a thread's share each; the second with the
        // portable body's prefetches on (what a W far beyond the cache gets).
        spmm::SlicedView<I, S> streamed = w;
        streamed.prefetch = true;
        fn(w, x.data(), out, 0, slices / 2);
        fn(streamed, x.data(), out, slices / 2, slices);
        bool ok = true;
        for (std::int64_t i = 0; i < rows && ok; ++i) {
            const double got = static_cast<double>(y[static_cast<std::size_t>(2 * i)]);
            const double e = want[static_cast<std::size_t>(i)];
            const bool same = std::isinf(e) || std::isnan(e)
                                  ? (std::isnan(e) ? std::isnan(got) : got == e)
                                  : std::fabs(got - e) <= tol * (mag[static_cast<std::size_t>(i)] + 1e-30);
            if (!same || y[static_cast<std::size_t>(2 * i + 1)] != T(-7)) {
                std::printf("FAIL %s rows %lld cols %lld I%zu T%zu S%zu: y[%lld] = %g, want %g\n",
                            name.c_str(), static_cast<long long>(rows), static_cast<long long>(cols),
                            sizeof(I), sizeof(T), sizeof(S), static_cast<long long>(i), got, e);
                ok = false;
            }
        }
        ++(ok ? g_passed : g_failed);
    }
}

template <class I, class T, class S = T>
void check_all(std::mt19937& gen) {
    for (const std::int64_t rows : {0, 1, 15, 16, 17, 33, 100}) {
        for (const std::int64_t cols : {1, 7, 64, 301}) {
            check_case<I, T, S>(rows, cols, gen, false);
            check_case<I, T, S>(rows, cols, gen, true);
        }
    }
}

}  // namespace

int main() {
    std::mt19937 gen(7);
    check_all<std::int32_t, float>(gen);
    check_all<std::int64_t, float>(gen);
    check_all<std::uint16_t, float>(gen);
    check_all<std::int32_t, double>(gen);
    check_all<std::int64_t, double>(gen);
    check_all<std::uint16_t, double>(gen);
    check_all<std::uint16_t, float, spmm::bfloat16>(gen);
    check_all<std::uint16_t, float, spmm::float16>(gen);
    check_all<std::uint16_t, float, std::int8_t>(gen);
    check_all<std::int32_t, float, spmm::bfloat16>(gen);
    check_all<std::int64_t, float, std::int8_t>(gen);
    std::printf("levels:");
    for (const auto& name : spmm::supported_simd()) std::printf(" %s", name.c_str());
    std::printf("\n%ld passed, %ld failed\n", g_passed, g_failed);
    return g_failed != 0;
}
