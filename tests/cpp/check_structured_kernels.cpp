// The structured kernels (column-tile panels for tile-wise and block sparsity, N:M) of every
// instruction set this build and CPU support, against a double-precision reference computed
// from the same layout. Run by .ci/check-simd natively and, cross-compiled, under qemu-aarch64
// (the NEON micro-GEMM), where no Python test can reach them.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "spmm/product.hpp"

namespace {

long g_passed = 0, g_failed = 0;

// Compares y (batch x cols, row stride ldy) with the reference; counts one case.
template <class T>
void compare(const char* what, spmm::Simd simd, std::int64_t batch, const std::vector<double>& want,
             const std::vector<double>& mag, const std::vector<T>& y, std::int64_t cols,
             std::int64_t ldy) {
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
    for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t j = 0; j < cols; ++j) {
            const auto e = static_cast<std::size_t>(b * cols + j);
            const double got = static_cast<double>(y[static_cast<std::size_t>(b * ldy + j)]);
            if (!(std::fabs(got - want[e]) <= tol * (mag[e] + 1e-30))) {
                std::printf("FAIL %s %s %s batch %lld: y(%lld, %lld) = %g, want %g\n", what,
                            spmm::simd_name(simd), sizeof(T) == 4 ? "float" : "double",
                            static_cast<long long>(batch), static_cast<long long>(b),
                            static_cast<long long>(j), got, want[e]);
                ++g_failed;
                return;
            }
        }
    }
    ++g_passed;
}

// A column-tile layout with units of `run` rows over rows x cols, about half the units kept.
template <class T>
void check_panels(std::int64_t rows, std::int64_t cols, std::int64_t width, std::int64_t run,
                  std::mt19937& gen) {
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    const std::int64_t tiles = (cols + width - 1) / width, ld = (width + 15) / 16 * 16;
    std::vector<std::int64_t> unit_ptr{0};
    std::vector<std::int32_t> unit_row;
    for (std::int64_t t = 0; t < tiles; ++t) {
        for (std::int64_t k = 0; k < rows; k += run) {
            if (gen() % 2) unit_row.push_back(static_cast<std::int32_t>(k));
        }
        unit_ptr.push_back(static_cast<std::int64_t>(unit_row.size()));
    }
    std::vector<T> values(unit_row.size() * static_cast<std::size_t>(run * ld), T(0));
    for (auto& v : values) v = static_cast<T>(value(gen));
    const spmm::PanelsView<T> w{rows, cols, width, ld, run, unit_ptr.data(), unit_row.data(),
                                values.data()};
    for (const std::int64_t batch : {1, 3, 7, 13, 30}) {
        std::vector<T> x(static_cast<std::size_t>(batch * rows));
        for (auto& v : x) v = static_cast<T>(value(gen));
        std::vector<double> want(static_cast<std::size_t>(batch * cols), 0.0), mag(want.size(), 0.0);
        for (std::int64_t t = 0; t < tiles; ++t) {
            for (std::int64_t q = unit_ptr[t]; q < unit_ptr[t + 1]; ++q) {
                for (std::int64_t i = 0; i < w.unit_rows(q); ++i) {
                    const T* prow = values.data() + (q * run + i) * ld;
                    for (std::int64_t b = 0; b < batch; ++b) {
                        const double xv = x[static_cast<std::size_t>(b * rows + unit_row[q] + i)];
                        for (std::int64_t j = 0; j < w.tile_width(t); ++j) {
                            const auto e = static_cast<std::size_t>(b * cols + t * width + j);
                            want[e] += xv * static_cast<double>(prow[j]);
                            mag[e] += std::fabs(xv * static_cast<double>(prow[j]));
                        }
                    }
                }
            }
        }
        for (const spmm::Simd simd : spmm::supported_simd_levels()) {
            const std::int64_t ldy = cols + 5;
            std::vector<T> y(static_cast<std::size_t>(batch * ldy), T(-7));
            spmm::panels_kernel<T>(simd).fn(w, {x.data(), batch, rows, rows, 1},
                                             {y.data(), batch, cols, ldy}, 0, tiles);
            compare<T>(run == 1 ? "tile" : "block", simd, batch, want, mag, y, cols, ldy);
        }
    }
}

// N:M weights over rows x cols with every slot kept.
template <class T>
void check_nm(std::int64_t rows, std::int64_t cols, std::int64_t n, std::int64_t m,
              std::mt19937& gen) {
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    const spmm::NmView<T> shape{rows, cols, n, m, 64, nullptr, nullptr};
    const std::int64_t groups = shape.groups(), chunks = shape.chunks();
    std::vector<T> values(static_cast<std::size_t>(chunks * groups * n * 64));
    std::vector<std::uint8_t> offsets(values.size());
    for (std::size_t e = 0; e < values.size(); ++e) {
        values[e] = static_cast<T>(value(gen));
        const std::int64_t g = static_cast<std::int64_t>(e) / 64 / n % groups;
        offsets[e] = static_cast<std::uint8_t>(gen() % static_cast<unsigned>(std::min(m, rows - g * m)));
    }
    const spmm::NmView<T> w{rows, cols, n, m, 64, values.data(), offsets.data()};
    for (const std::int64_t batch : {1, 2, 5, 9}) {
        std::vector<T> x(static_cast<std::size_t>(batch * rows));
        for (auto& v : x) v = static_cast<T>(value(gen));
        std::vector<double> want(static_cast<std::size_t>(batch * cols), 0.0), mag(want.size(), 0.0);
        for (std::int64_t j = 0; j < cols; ++j) {
            for (std::int64_t row = 0; row < groups * n; ++row) {
                const auto at = static_cast<std::size_t>(w.at(j / 64, row) + j % 64);
                const std::int64_t k = row / n * m + offsets[at];
                for (std::int64_t b = 0; b < batch; ++b) {
                    const double p = static_cast<double>(values[at]) * static_cast<double>(x[static_cast<std::size_t>(b * rows + k)]);
                    want[static_cast<std::size_t>(b * cols + j)] += p;
                    mag[static_cast<std::size_t>(b * cols + j)] += std::fabs(p);
                }
            }
        }
        for (const spmm::Simd simd : spmm::supported_simd_levels()) {
            std::vector<T> y(static_cast<std::size_t>(batch * cols), T(-7));
            spmm::nm_kernel<T>(simd, m).fn(w, {x.data(), batch, rows, rows, 1},
                                            {y.data(), batch, cols, cols}, 0, chunks);
            compare<T>("n_m", simd, batch, want, mag, y, cols, cols);
        }
    }
}

template <class T>
void check_all(std::mt19937& gen) {
    for (const std::int64_t width : {16, 37, 128}) check_panels<T>(70, 300, width, 1, gen);
    for (const std::int64_t run : {4, 32}) check_panels<T>(77, 100, 32, run, gen);
    check_nm<T>(38, 100, 2, 4, gen);
    check_nm<T>(70, 130, 3, 8, gen);
    check_nm<T>(50, 64, 5, 16, gen);
}

}  // namespace

int main() {
    std::mt19937 gen(2026);
    check_all<float>(gen);
    check_all<double>(gen);
    std::printf("structured kernels: %ld passed, %ld failed\n", g_passed, g_failed);
    return g_failed != 0;
}
