// Every kernel family (names.hpp) x variant x SIMD level this build and CPU support x value
// type x index type x backend x thread count, against a double-precision dense reference, for
// A @ B and for Aᵀ @ B (the X @ W orientation), on odd shapes (empty rows, rows and columns not
// multiples of any vector or block) and dense widths below, at and above every vector length.
// Corrupt structures must throw std::invalid_argument, never read out of bounds (run it under
// AddressSanitizer too, as .ci/run does). Run natively and, cross-compiled, under qemu-aarch64
// (see .ci/check-simd). Prints "N passed, N failed"; exit code 0 on success.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "spmm/spmm.hpp"

namespace {

constexpr std::int64_t kRows = 23, kCols = 19;
const std::int64_t kWidths[] = {1, 2, 3, 5, 8, 16, 17, 33, 70};
int passed = 0, failed = 0;

// A random kRows x kCols matrix with empty rows and columns, as a dense array (row-major).
std::vector<double> random_matrix(std::mt19937& gen) {
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    std::bernoulli_distribution keep(0.3);
    std::vector<double> a(kRows * kCols, 0.0);
    for (std::int64_t i = 0; i < kRows; ++i) {
        if (i % 5 == 3) continue;  // empty rows
        for (std::int64_t j = 0; j < kCols; ++j) {
            if (j % 7 != 2 && keep(gen)) a[i * kCols + j] = value(gen);
        }
    }
    return a;
}

template <class T>
bool close(const std::vector<T>& got, const std::vector<double>& want) {
    const double tol = sizeof(T) == 4 ? 1e-4 : 1e-12;
    for (std::size_t e = 0; e < want.size(); ++e) {
        if (!(std::fabs(static_cast<double>(got[e]) - want[e]) <= tol * (1 + std::fabs(want[e])))) return false;
    }
    return true;
}

void report(bool ok, const std::string& what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        if (failed <= 20) std::printf("FAILED: %s\n", what.c_str());
    }
}

// C (m x n) = op(A) B for the dense A (kRows x kCols), op the identity or the transpose.
std::vector<double> reference(const std::vector<double>& a, bool transposed,
                              const std::vector<double>& b, std::int64_t n) {
    const std::int64_t m = transposed ? kCols : kRows, k = transposed ? kRows : kCols;
    std::vector<double> c(m * n, 0.0);
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t p = 0; p < k; ++p) {
            const double v = transposed ? a[p * kCols + i] : a[i * kCols + p];
            for (std::int64_t j = 0; j < n; ++j) c[i * n + j] += v * b[p * n + j];
        }
    return c;
}

struct Case {
    int kernel, backend, threads, simd;
};

template <class I, class T>
struct Stored {
    std::vector<I> indptr, indices, row, col;
    std::vector<T> data;
};

// The CSR arrays of A (or of Aᵀ, `transposed`): also A's CSC arrays when transposed.
template <class I, class T>
Stored<I, T> csr_of(const std::vector<double>& a, bool transposed) {
    Stored<I, T> s;
    const std::int64_t rows = transposed ? kCols : kRows, cols = transposed ? kRows : kCols;
    s.indptr.push_back(0);
    for (std::int64_t i = 0; i < rows; ++i) {
        for (std::int64_t j = 0; j < cols; ++j) {
            const double v = transposed ? a[j * kCols + i] : a[i * kCols + j];
            if (v != 0.0) {
                s.indices.push_back(static_cast<I>(j));
                s.data.push_back(static_cast<T>(v));
            }
        }
        s.indptr.push_back(static_cast<I>(s.indices.size()));
    }
    return s;
}

template <class I, class T>
void check_type(const std::vector<Case>& cases, std::mt19937& gen) {
    const std::string type = std::string(sizeof(T) == 4 ? "float" : "double") + "/" +
                             (sizeof(I) == 4 ? "int32" : "int64");
    const std::vector<double> a = random_matrix(gen);
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    for (const std::int64_t n : kWidths) {
        for (const bool transposed : {false, true}) {
            const std::int64_t m = transposed ? kCols : kRows, k = transposed ? kRows : kCols;
            std::vector<double> bd(k * n);
            for (auto& x : bd) x = value(gen);
            std::vector<T> b(bd.begin(), bd.end());
            const std::vector<double> want = reference(a, transposed, bd, n);
            const spmm::Dense dense{b.data(), k, n, n, 1};
            for (const Case& cs : cases) {
                const spmm::Config config{cs.kernel, cs.backend, cs.threads, 1, cs.simd, 0};
                const std::string tag = type + " n=" + std::to_string(n) +
                                        (transposed ? " At" : " A") + " kernel=" +
                                        std::to_string(cs.kernel) + " backend=" +
                                        std::to_string(cs.backend) + " threads=" +
                                        std::to_string(cs.threads) + " simd=" +
                                        spmm::simd_name(static_cast<spmm::Simd>(cs.simd));
                std::vector<T> c(m * n, T(-7));
                const spmm::Out out{c.data(), m, n, n, 1};
                // csr_rows: the CSR arrays of op(A); csc_columns: those of op(A)ᵀ.
                const auto rows_form = csr_of<I, T>(a, transposed);
                spmm::csr_product(rows_form.indptr.data(), rows_form.indices.data(), rows_form.data.data(),
                                  m, k, static_cast<std::int64_t>(rows_form.indices.size()), false, true,
                                  dense, out, config, nullptr, 0);
                report(close(c, want), "csr_rows " + tag);
                std::fill(c.begin(), c.end(), T(-7));
                const auto cols_form = csr_of<I, T>(a, !transposed);
                spmm::csr_product(cols_form.indptr.data(), cols_form.indices.data(), cols_form.data.data(),
                                  k, m, static_cast<std::int64_t>(cols_form.indices.size()), true, true,
                                  dense, out, config, nullptr, 0);
                report(close(c, want), "csc_columns " + tag);
                // coo: entries in reverse row order, one duplicated (halved twice).
                std::vector<I> row, col;
                std::vector<T> data;
                for (std::int64_t i = m - 1; i >= 0; --i)
                    for (std::int64_t j = 0; j < k; ++j) {
                        const double v = transposed ? a[j * kCols + i] : a[i * kCols + j];
                        if (v == 0.0) continue;
                        const int copies = (i + j) % 4 == 0 ? 2 : 1;
                        for (int h = 0; h < copies; ++h) {
                            row.push_back(static_cast<I>(i));
                            col.push_back(static_cast<I>(j));
                            data.push_back(static_cast<T>(v / copies));
                        }
                    }
                std::fill(c.begin(), c.end(), T(-7));
                spmm::coo_product(row.data(), col.data(), data.data(),
                                  static_cast<std::int64_t>(data.size()), m, k, transposed, dense, out, config);
                report(close(c, want), "coo " + tag);
                // dia: every diagonal of A, stored by column (scipy's layout), plus one far
                // outside the matrix.
                std::vector<std::int64_t> offsets;
                std::vector<T> dd;
                for (std::int64_t o = -(kRows - 1); o < kCols; ++o) {
                    offsets.push_back(o);
                    for (std::int64_t j = 0; j < kCols; ++j) {
                        const std::int64_t i = j - o;
                        dd.push_back(i >= 0 && i < kRows ? static_cast<T>(a[i * kCols + j]) : T(0));
                    }
                }
                offsets.push_back(std::int64_t{1} << 40);
                for (std::int64_t j = 0; j < kCols; ++j) dd.push_back(T(1));
                std::fill(c.begin(), c.end(), T(-7));
                spmm::dia_product(offsets.data(), dd.data(), static_cast<std::int64_t>(offsets.size()),
                                  kCols, kCols, kRows, kCols, transposed, dense, out, config);
                report(close(c, want), "dia " + tag);
            }
        }
    }
    // bsr: a (4 r) x (3 c) matrix of r x c blocks, every other block stored.
    for (const std::int64_t r : {1, 3, 4, 6}) {
        for (const std::int64_t cw : {1, 2, 5}) {
            const std::int64_t br = 4, bc = 3, rows = br * r, cols = bc * cw;
            std::vector<I> indptr{0}, indices;
            std::vector<T> data;
            std::vector<double> dense_a(rows * cols, 0.0);
            for (std::int64_t bi = 0; bi < br; ++bi) {
                for (std::int64_t bj = bc - 1; bj >= 0; --bj) {  // unsorted block columns
                    if ((bi + bj) % 2 == 1 || bi == 2) continue;
                    indices.push_back(static_cast<I>(bj));
                    for (std::int64_t ii = 0; ii < r; ++ii)
                        for (std::int64_t jj = 0; jj < cw; ++jj) {
                            const double v = value(gen);
                            data.push_back(static_cast<T>(v));
                            dense_a[(bi * r + ii) * cols + bj * cw + jj] = v;
                        }
                }
                indptr.push_back(static_cast<I>(indices.size()));
            }
            for (const std::int64_t n : kWidths) {
                for (const bool transposed : {false, true}) {
                    const std::int64_t m = transposed ? cols : rows, k = transposed ? rows : cols;
                    std::vector<double> bd(k * n), want(m * n, 0.0);
                    for (auto& x : bd) x = value(gen);
                    for (std::int64_t i = 0; i < m; ++i)
                        for (std::int64_t p = 0; p < k; ++p) {
                            const double v = transposed ? dense_a[p * cols + i] : dense_a[i * cols + p];
                            for (std::int64_t j = 0; j < n; ++j) want[i * n + j] += v * bd[p * n + j];
                        }
                    std::vector<T> b(bd.begin(), bd.end());
                    for (const Case& cs : cases) {
                        const spmm::Config config{cs.kernel, cs.backend, cs.threads, 1, cs.simd, 0};
                        std::vector<T> c(m * n, T(-7));
                        spmm::bsr_product(indptr.data(), indices.data(), data.data(), br, bc, r, cw,
                                          static_cast<std::int64_t>(indices.size()), transposed,
                                          spmm::Dense{b.data(), k, n, n, 1},
                                          spmm::Out{c.data(), m, n, n, 1}, config);
                        report(close(c, want), "bsr " + type + " r=" + std::to_string(r) + " c=" +
                                                   std::to_string(cw) + " n=" + std::to_string(n) +
                                                   (transposed ? " At" : " A") + " kernel=" +
                                                   std::to_string(cs.kernel) + " simd=" +
                                                   std::to_string(cs.simd) + " threads=" +
                                                   std::to_string(cs.threads));
                    }
                }
            }
        }
    }
}

// A corrupt structure is an invalid_argument, for every family that reads a user's matrix.
template <class F>
void expect_rejected(const std::string& what, F&& f) {
    try {
        f();
        report(false, what + " accepted");
    } catch (const std::invalid_argument&) {
        report(true, what);
    }
}

void check_corrupt(const std::vector<Case>& cases) {
    std::vector<float> b(8 * 4, 1.0f), c(8 * 4);
    const spmm::Dense dense{b.data(), 8, 4, 4, 1};
    const spmm::Out out{c.data(), 8, 4, 4, 1};
    for (const Case& cs : cases) {
        const spmm::Config config{cs.kernel, cs.backend, cs.threads, 1, cs.simd, 0};
        const std::vector<std::int32_t> ok_ptr{0, 1, 2, 2, 3, 3, 3, 3, 3};
        const std::vector<std::int32_t> bad_idx{0, 8, 1};
        const std::vector<std::int32_t> bad_ptr{0, 1, 5, 2, 3, 3, 3, 3, 3};
        const std::vector<std::int32_t> far_ptr{0, 1, 2, 2, 3, 3, 3, 3, 99};
        const std::vector<std::int32_t> idx{0, 7, 1};
        const std::vector<float> v{1, 2, 3};
        for (const bool by_columns : {false, true}) {
            const std::string tag = by_columns ? " (by columns)" : " (by rows)";
            expect_rejected("index out of range" + tag, [&] {
                spmm::csr_product(ok_ptr.data(), bad_idx.data(), v.data(), 8, 8, 3, by_columns, true, dense, out, config, nullptr, 0);
            });
            expect_rejected("decreasing indptr" + tag, [&] {
                spmm::csr_product(bad_ptr.data(), idx.data(), v.data(), 8, 8, 3, by_columns, true, dense, out, config, nullptr, 0);
            });
            expect_rejected("indptr past the stored entries" + tag, [&] {
                spmm::csr_product(far_ptr.data(), idx.data(), v.data(), 8, 8, 3, by_columns, true, dense, out, config, nullptr, 0);
            });
        }
        const std::vector<std::int32_t> rows{0, 9, 1}, cols{0, 1, -1};
        expect_rejected("coo row out of range", [&] {
            spmm::coo_product(rows.data(), idx.data(), v.data(), 3, 8, 8, false, dense, out, config);
        });
        expect_rejected("coo column out of range", [&] {
            spmm::coo_product(idx.data(), cols.data(), v.data(), 3, 8, 8, false, dense, out, config);
        });
        const std::vector<std::int32_t> bptr{0, 1, 2, 3, 3}, bidx{0, 4, 1};
        std::vector<float> blocks(3 * 4, 1.0f);
        for (const bool by_columns : {false, true}) {
            expect_rejected("bsr block index out of range", [&] {
                spmm::bsr_product(bptr.data(), bidx.data(), blocks.data(), 4, 4, 2, 2, 3, by_columns, dense, out, config);
            });
        }
    }
}

// An aligned copy of B is made for products that read B's rows in random order from a B that
// starts off a cache line, beyond the L2 too (up to the copy's memory cap) when its rows are
// short: every line a row spans beyond its own is one more cache miss. The copy starts on a line, holds B, and
// asking for huge pages on it changes nothing of its contents.
void check_packing() {
    const std::int64_t rows = std::int64_t{1} << 17, cols = 8;
    std::vector<float> raw(static_cast<std::size_t>(rows * cols + 64));
    float* const line = raw.data() + (64 - reinterpret_cast<std::uintptr_t>(raw.data()) % 64) % 64 / sizeof(float);
    float* const off = line + 4;  // 16 bytes past a line, as numpy's large arrays start
    for (std::int64_t e = 0; e < rows * cols; ++e) off[e] = static_cast<float>(e % 1013);
    const std::int64_t nnz = 16 * rows;
    report(spmm::worth_packing(off, rows, cols, cols, nnz), "a 4 MiB B off a line is copied");
    report(!spmm::worth_packing(line, rows, cols, cols, nnz), "an aligned B is read as it is");
    report(!spmm::worth_packing(off, rows, cols, cols, 2 * rows), "rows read twice: no copy");
    report(!spmm::worth_packing(off, rows * 64, cols, cols, nnz * 64), "beyond the memory cap: no copy");
    report(spmm::worth_packing(off, rows / 4, 4 * cols, 4 * cols, nnz), "128-byte rows are copied");
    report(!spmm::worth_packing(off, rows / 8, 8 * cols, 8 * cols, nnz), "256-byte rows of 4 MiB are not");
    report(spmm::worth_packing(off, rows / 32, 8 * cols, 8 * cols, nnz), "256-byte rows of 1 MiB are");
    const spmm::PackedRows<float> packed(off, rows, cols, cols, 1);
    const spmm::DenseView<float>& v = packed.view();
    bool same = reinterpret_cast<std::uintptr_t>(v.data) % 64 == 0 && v.ld == cols;
    for (std::int64_t r = 0; r < rows && same; ++r)
        for (std::int64_t j = 0; j < cols; ++j) same = same && v.row(r)[j] == off[r * cols + j];
    report(same, "the aligned copy of a 4 MiB B (huge pages advised) holds B");
}

}  // namespace

int main() {
    std::mt19937 gen(20261206);
    std::vector<int> backends{0, 2};
    if (spmm::has_openmp()) backends.push_back(1);
    std::vector<Case> cases;
    for (const spmm::Simd level : spmm::supported_simd_levels()) {
        for (int kernel = 0; kernel < 3; ++kernel) {
            for (const int backend : backends) {
                for (const int threads : {1, 2, 3}) {
                    if (backend == 0 && threads > 1) continue;
                    cases.push_back({kernel, backend, threads, static_cast<int>(level)});
                }
            }
        }
    }
    check_type<std::int32_t, float>(cases, gen);
    check_type<std::int64_t, float>(cases, gen);
    check_type<std::int32_t, double>(cases, gen);
    check_type<std::int64_t, double>(cases, gen);
    check_corrupt(cases);
    check_packing();
    std::printf("kernel families: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
