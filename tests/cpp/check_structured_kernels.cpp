// The structured kernels (column-tile panels for tile-wise and block sparsity, N:M) of every
// instruction set this build and CPU support, against a double-precision reference computed
// from the same layout. Run by .ci/check-simd natively and, cross-compiled, under qemu-aarch64
// (the NEON micro-GEMM), where no Python test can reach them. Reduced stored values
// (bfloat16, float16, int8 with a scale per output column) run the same cases, their reference
// computed from the widened values. Everything runs twice: on the system's L2 and on one of 256
// bytes, where the panels kernel's groups of batch rows and the N:M blocks are smallest.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "spmm/product.hpp"

namespace {

long g_passed = 0, g_failed = 0;

const char* type_name(float) { return "float"; }
const char* type_name(double) { return "double"; }
const char* type_name(spmm::bfloat16) { return "bfloat16"; }
const char* type_name(spmm::float16) { return "float16"; }
const char* type_name(std::int8_t) { return "int8"; }

// A stored value of type S near v in [-1, 1].
template <class S>
S stored_near(double v) {
    if constexpr (std::is_same_v<S, spmm::bfloat16>) {
        const float f = static_cast<float>(v);
        std::uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        return spmm::bfloat16{static_cast<std::uint16_t>(bits >> 16)};
    } else if constexpr (std::is_same_v<S, spmm::float16>) {
        const double m = std::fabs(v);
        const auto exponent = static_cast<std::uint16_t>(6 + static_cast<int>(m * 9));
        const auto mantissa = static_cast<std::uint16_t>(static_cast<int>(m * 1e6) & 0x3FF);
        return spmm::float16{static_cast<std::uint16_t>((v < 0 ? 0x8000 : 0) | exponent << 10 | mantissa)};
    } else if constexpr (std::is_same_v<S, std::int8_t>) {
        return static_cast<std::int8_t>(std::lround(v * 127));
    } else {
        return static_cast<S>(v);
    }
}

template <class S>
double exact(S s) { return static_cast<double>(spmm::Stored<S>::one(s)); }

// int8: a scale per output column spanning orders of magnitude (one of them zero); the others
// none.
template <class S>
std::vector<float> column_scales(std::int64_t cols) {
    std::vector<float> scale;
    if (spmm::is_scaled_v<S>) {
        for (std::int64_t j = 0; j < cols; ++j) scale.push_back(j == 5 ? 0.0f : std::ldexp(0.75f, static_cast<int>(j % 11) - 7));
    }
    return scale;
}

template <class S>
double scale_of(const std::vector<float>& scale, std::int64_t j) {
    return scale.empty() ? 1.0 : scale[static_cast<std::size_t>(j)];
}

// Compares y (batch x cols, row stride ldy) with the reference; counts one case.
template <class T, class S>
void compare(const char* what, spmm::Simd simd, std::int64_t batch, const std::vector<double>& want,
             const std::vector<double>& mag, const std::vector<T>& y, std::int64_t cols,
             std::int64_t ldy) {
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
    for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t j = 0; j < cols; ++j) {
            const auto e = static_cast<std::size_t>(b * cols + j);
            const double got = static_cast<double>(y[static_cast<std::size_t>(b * ldy + j)]);
            if (!(std::fabs(got - want[e]) <= tol * (mag[e] + 1e-30))) {
                std::printf("FAIL %s %s %s/%s batch %lld: y(%lld, %lld) = %g, want %g\n", what,
                            spmm::simd_name(simd).c_str(), type_name(T()), type_name(S()),
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
template <class T, class S = T>
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
    std::vector<S> values(unit_row.size() * static_cast<std::size_t>(run * ld));
    for (auto& v : values) v = stored_near<S>(value(gen));
    const std::vector<float> scale = column_scales<S>(cols);
    spmm::PanelsView<S> w{rows, cols, width, ld, run, unit_ptr.data(), unit_row.data(),
                          values.data()};
    w.scale = scale.empty() ? nullptr : scale.data();
    for (const std::int64_t batch : {1, 3, 7, 13, 30}) {
        std::vector<T> x(static_cast<std::size_t>(batch * rows));
        for (auto& v : x) v = static_cast<T>(value(gen));
        std::vector<double> want(static_cast<std::size_t>(batch * cols), 0.0), mag(want.size(), 0.0);
        for (std::int64_t t = 0; t < tiles; ++t) {
            for (std::int64_t q = unit_ptr[t]; q < unit_ptr[t + 1]; ++q) {
                for (std::int64_t i = 0; i < w.unit_rows(q); ++i) {
                    const S* prow = values.data() + (q * run + i) * ld;
                    for (std::int64_t b = 0; b < batch; ++b) {
                        const double xv = x[static_cast<std::size_t>(b * rows + unit_row[q] + i)];
                        for (std::int64_t j = 0; j < w.tile_width(t); ++j) {
                            const auto e = static_cast<std::size_t>(b * cols + t * width + j);
                            const double pv = exact(prow[j]) * scale_of<S>(scale, t * width + j);
                            want[e] += xv * pv;
                            mag[e] += std::fabs(xv * pv);
                        }
                    }
                }
            }
        }
        for (const spmm::Simd simd : spmm::supported_simd_levels()) {
            const std::int64_t ldy = cols + 5;
            std::vector<T> y(static_cast<std::size_t>(batch * ldy), T(-7));
            spmm::panels_kernel<T, S>(simd).fn(w, {x.data(), batch, rows, rows, 1},
                                                {y.data(), batch, cols, ldy}, 0, tiles);
            compare<T, S>(run == 1 ? "tile" : "block", simd, batch, want, mag, y, cols, ldy);
        }
    }
}

// N:M weights over rows x cols with every slot kept.
template <class T, class S = T>
void check_nm(std::int64_t rows, std::int64_t cols, std::int64_t n, std::int64_t m,
              std::mt19937& gen) {
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    const spmm::NmView<S> shape{rows, cols, n, m, 64, nullptr, nullptr};
    const std::int64_t groups = shape.groups(), chunks = shape.chunks();
    std::vector<S> values(static_cast<std::size_t>(chunks * groups * n * 64));
    std::vector<std::uint8_t> offsets(values.size());
    const std::vector<float> scale = column_scales<S>(chunks * 64);
    for (std::size_t e = 0; e < values.size(); ++e) {
        values[e] = stored_near<S>(value(gen));
        const std::int64_t g = static_cast<std::int64_t>(e) / 64 / n % groups;
        offsets[e] = static_cast<std::uint8_t>(gen() % static_cast<unsigned>(std::min(m, rows - g * m)));
    }
    spmm::NmView<S> w{rows, cols, n, m, 64, values.data(), offsets.data()};
    w.scale = scale.empty() ? nullptr : scale.data();
    // Batches below kNmBroadcastMinBatch (the permute formulation) and from it (the broadcast
    // one: a pass of 1 to 4 vectors, a full pass and a ragged one).
    for (const std::int64_t batch : {1, 2, 5, 9, 32, 35, 70}) {
        std::vector<T> x(static_cast<std::size_t>(batch * rows));
        for (auto& v : x) v = static_cast<T>(value(gen));
        std::vector<double> want(static_cast<std::size_t>(batch * cols), 0.0), mag(want.size(), 0.0);
        for (std::int64_t j = 0; j < cols; ++j) {
            for (std::int64_t row = 0; row < groups * n; ++row) {
                const auto at = static_cast<std::size_t>(w.at(j / 64, row) + j % 64);
                const std::int64_t k = row / n * m + offsets[at];
                for (std::int64_t b = 0; b < batch; ++b) {
                    const double p = exact(values[at]) * scale_of<S>(scale, j) * static_cast<double>(x[static_cast<std::size_t>(b * rows + k)]);
                    want[static_cast<std::size_t>(b * cols + j)] += p;
                    mag[static_cast<std::size_t>(b * cols + j)] += std::fabs(p);
                }
            }
        }
        for (const spmm::Simd simd : spmm::supported_simd_levels()) {
            std::vector<T> y(static_cast<std::size_t>(batch * cols), T(-7));
            spmm::nm_kernel<T, S>(simd, m).fn(w, {x.data(), batch, rows, rows, 1},
                                               {y.data(), batch, cols, cols}, 0, chunks);
            compare<T, S>("n_m", simd, batch, want, mag, y, cols, cols);
            // Through the driver: from kNmBroadcastMinBatch rows it packs Xᵀ once (PackedNmXt)
            // and hands it to every slice.
            std::fill(y.begin(), y.end(), T(-7));
            spmm::Call call;
            call.simd = simd;
            spmm::multiply_nm<T, S>(w, spmm::StridedView<T>{x.data(), batch, rows, rows, 1},
                                    spmm::RowsView<T>{y.data(), batch, cols, cols}, call);
            compare<T, S>("n_m driver", simd, batch, want, mag, y, cols, cols);
        }
    }
}

template <class T, class S = T>
void check_all(std::mt19937& gen) {
    for (const std::int64_t width : {16, 37, 128}) check_panels<T, S>(70, 300, width, 1, gen);
    for (const std::int64_t run : {4, 32}) check_panels<T, S>(77, 100, 32, run, gen);
    check_nm<T, S>(38, 100, 2, 4, gen);
    check_nm<T, S>(70, 130, 3, 8, gen);
    check_nm<T, S>(50, 64, 5, 16, gen);
}

}  // namespace

int main() {
    std::mt19937 gen(2026);
    // The system's L2, then one of 256 bytes (simd/cache.hpp): the panels kernel's groups of
    // batch rows and the N:M kernel's blocks of groups at their smallest.
    for (const std::int64_t l2 : {0, 256}) {
        spmm::set_l2_cache_bytes(l2);
        check_all<float>(gen);
        check_all<double>(gen);
        check_all<float, spmm::bfloat16>(gen);
        check_all<float, spmm::float16>(gen);
        check_all<float, std::int8_t>(gen);
    }
    spmm::set_l2_cache_bytes(0);
    std::printf("structured kernels: %ld passed, %ld failed\n", g_passed, g_failed);
    return g_failed != 0;
}
