// The dot-product kernels of prepare(activations=...) (kernels/dot.hpp) at every SIMD level this
// build and CPU support, under Address and UB sanitizers in .ci/check-simd (natively, and for
// aarch64 under qemu, where the portable loop serves):
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -Iinclude tests/cpp/check_dot_kernels.cpp
// int8: every result equals the exact integer sum of the quantized values times the two scales
// (computed here independently: int64 sums, float32 scaling as documented). bfloat16: every
// level's result lies within the float32 summation bound of the exact product of the rounded
// values, and equals the portable loop's bit for bit, except Arm's BFDOT (neon_bf16), whose
// roundings to odd have twice the bound. Dense widths below, at and above
// every register block (8 and 16 lanes, 1 to 4 registers); contracted lengths not a multiple
// of 2 or 4; rows that are empty, hold one weight, or are full; strided X (X @ W) and
// contiguous B (A @ B); all-zero dense vectors.
// Prints "N passed, N failed"; exit code 0 on success.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "spmm/spmm.hpp"

namespace {

using spmm::Simd;
using spmm::ValueFormat;

int passed = 0, failed = 0;

void expect(bool ok, const char* what, const std::string& where) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::printf("FAIL %s: %s\n", what, where.c_str());
    }
}

// A sparse W (rows outputs x cols contracted) in groups, as spmm/_activations.py builds them.
struct Grouped {
    std::vector<std::int64_t> ptr{0};
    std::vector<std::int32_t> block;
    std::vector<std::uint32_t> words;
    std::vector<float> scale;
    std::vector<std::int32_t> correction;
    std::vector<std::vector<float>> dense;  // the weights the groups stand for
};

Grouped make_weights(ValueFormat f, std::int64_t rows, std::int64_t cols, std::mt19937& gen) {
    const std::int64_t g = spmm::group_width(f);
    std::uniform_real_distribution<float> value(-3.0f, 3.0f);
    std::uniform_int_distribution<int> q(-127, 127);
    Grouped w;
    for (std::int64_t r = 0; r < rows; ++r) {
        std::vector<float> row(static_cast<std::size_t>(cols), 0.0f);
        std::int64_t sum = 0;
        const float s = 0.01f * static_cast<float>(r + 1);
        for (std::int64_t b = 0; b * g < cols; ++b) {
            // Row 0 empty, row 1 one weight, row 2 full, the others about half the groups.
            const bool keep = r == 2 || (r == 1 && b == 0) || (r > 2 && gen() % 2 == 0);
            if (!keep) continue;
            std::uint32_t word = 0;
            for (std::int64_t t = 0; t < g && b * g + t < cols; ++t) {
                if (r == 1 && t > 0) break;
                if (f == ValueFormat::int8) {
                    const int v = q(gen);
                    word |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(v)) << (8 * t);
                    row[static_cast<std::size_t>(b * g + t)] = static_cast<float>(v) * s;
                    sum += v;
                } else {
                    const std::uint32_t bits = spmm::bfloat16_bits(value(gen));
                    word |= bits << (16 * t);
                    row[static_cast<std::size_t>(b * g + t)] = spmm::widen_bfloat16(static_cast<std::uint16_t>(bits));
                }
            }
            w.block.push_back(static_cast<std::int32_t>(b));
            w.words.push_back(word);
        }
        w.ptr.push_back(static_cast<std::int64_t>(w.block.size()));
        w.scale.push_back(s);
        w.correction.push_back(static_cast<std::int32_t>(static_cast<std::uint32_t>(128 * sum)));
        w.dense.push_back(row);
    }
    return w;
}

// The exact int8 result for row r and dense vector x (cols values at x[k * step]).
float int8_reference(const Grouped& w, std::int64_t r, const float* x, std::int64_t cols,
                     std::int64_t step) {
    float largest = 0.0f;
    for (std::int64_t k = 0; k < cols; ++k) largest = std::max(largest, std::fabs(x[k * step]));
    const float s = largest / 127.0f;
    const float inverse = s > 0.0f ? 127.0f / largest : 0.0f;
    std::int64_t sum = 0;
    for (std::int64_t k = 0; k < cols; ++k) {
        const float t = std::min(127.0f, std::max(-127.0f, x[k * step] * inverse));
        const auto qx = static_cast<std::int64_t>(std::nearbyint(t));
        const auto qw = static_cast<std::int64_t>(std::nearbyint(w.dense[r][k] / w.scale[r]));
        sum += qx * qw;
    }
    return static_cast<float>(sum) * (w.scale[r] * s);
}

void check(ValueFormat f, Simd level, std::int64_t cols, std::int64_t n, bool transposed,
           std::mt19937& gen) {
    constexpr std::int64_t kRows = 7;
    const Grouped w = make_weights(f, kRows, cols, gen);
    // D (cols x n): B itself (A @ B), or Xᵀ of X (n x cols) for X @ W.
    std::vector<float> data(static_cast<std::size_t>(cols * n));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (float& v : data) v = normal(gen);
    const std::int64_t rs = transposed ? 1 : n, cs = transposed ? cols : 1;
    if (n > 2) {
        for (std::int64_t k = 0; k < cols; ++k) data[static_cast<std::size_t>(k * rs + 1 * cs)] = 0.0f;
    }
    const spmm::StridedView<float> d{data.data(), cols, n, rs, cs};
    std::vector<float> c(static_cast<std::size_t>(kRows * n), -1.0f), portable(c);
    const spmm::GroupedView view{w.ptr.data(), w.block.data(), w.words.data(), kRows, cols,
                                 w.scale.data(), w.correction.data()};
    spmm::Call call;
    call.simd = level;
    spmm::multiply_grouped(view, f, d, spmm::OutView<float>{c.data(), kRows, n, n, 1}, call);
    call.simd = Simd::scalar;
    spmm::multiply_grouped(view, f, d, spmm::OutView<float>{portable.data(), kRows, n, n, 1}, call);
    const std::string where = spmm::simd_name(level) + (f == ValueFormat::int8 ? " int8" : " bfloat16") +
                              " cols " + std::to_string(cols) + " n " + std::to_string(n) +
                              (transposed ? " X @ W" : " A @ B");
    bool exact = true, within = true, same = true;
    for (std::int64_t r = 0; r < kRows; ++r) {
        for (std::int64_t j = 0; j < n; ++j) {
            const float got = c[static_cast<std::size_t>(r * n + j)];
            same = same && std::memcmp(&got, &portable[static_cast<std::size_t>(r * n + j)], sizeof got) == 0;
            if (f == ValueFormat::int8) {
                exact = exact && got == int8_reference(w, r, data.data() + j * cs, cols, rs);
                continue;
            }
            double sum = 0.0, magnitude = 0.0;
            for (std::int64_t k = 0; k < cols; ++k) {
                const float xk = spmm::widen_bfloat16(static_cast<std::uint16_t>(
                    spmm::bfloat16_bits(data[static_cast<std::size_t>(k * rs + j * cs)])));
                sum += static_cast<double>(w.dense[r][k]) * xk;
                magnitude += std::fabs(static_cast<double>(w.dense[r][k]) * xk);
            }
            const double m = 2.0 * static_cast<double>(w.ptr[r + 1] - w.ptr[r]) + 8.0;
            const bool bfdot = level == Simd::neon_bf16;
            const double u = std::ldexp(1.0, bfdot ? -23 : -24);
            within = within && std::fabs(got - sum) <= m * u / (1 - m * u) * magnitude;
        }
    }
    if (!(f == ValueFormat::bfloat16 && level == Simd::neon_bf16)) expect(same, "equals the portable loop", where);
    if (f == ValueFormat::int8) {
        expect(exact, "equals the exact integer sum times the scales", where);
    } else {
        expect(within, "within the float32 summation bound", where);
    }
}

}  // namespace

int main() {
    std::mt19937 gen(20261206);
    for (const Simd level : spmm::supported_simd_levels()) {
        std::printf("level %s\n", spmm::simd_name(level).c_str());
        for (const ValueFormat f : {ValueFormat::bfloat16, ValueFormat::int8}) {
            for (const std::int64_t cols : {1, 2, 3, 5, 37, 64}) {
                for (const std::int64_t n : {1, 3, 8, 9, 16, 17, 33, 64, 65, 70}) {
                    for (const bool transposed : {false, true}) check(f, level, cols, n, transposed, gen);
                }
            }
        }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
