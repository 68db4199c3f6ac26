// Stress test of the C++ layer alone, meant for sanitizers (run by .ci/run):
//   g++ -std=c++17 -O1 -g -fsanitize=thread -Iinclude tests/cpp/stress_backends.cpp
//   g++ -std=c++17 -O1 -g -fopenmp -fsanitize=address,undefined -Iinclude tests/cpp/...
// Six caller threads hammer every backend x kernel x partition x thread count at once, on a
// matrix with uneven rows, writing both row-major and transposed outputs, and reading B
// through a transposed view (packed by the entry point) in every other call; every result
// must equal the serial naive one. The products are small, so they are forced to run in
// parallel (parallel_min_work = 0). Exit code 0 on success.
#include <cmath>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "spmm/spmm.hpp"

int main() {
    std::mt19937 gen(1);
    const int rows = 301, cols = 97, n = 77;  // n: full SIMD blocks and a masked tail
    std::vector<int> indptr(rows + 1, 0), indices;
    std::vector<double> data;
    for (int i = 0; i < rows; ++i) {
        const int len = static_cast<int>(gen() % (i % 7 == 0 ? 40 : 5));  // uneven rows
        for (int l = 0; l < len; ++l) {
            indices.push_back(static_cast<int>(gen() % cols));
            data.push_back(static_cast<double>(gen() % 100) / 10.0);
        }
        indptr[i + 1] = static_cast<int>(indices.size());
    }
    std::vector<double> b(static_cast<std::size_t>(cols) * n);
    for (auto& x : b) x = static_cast<double>(gen() % 100) / 7.0;
    std::vector<double> bt(b.size());  // B stored transposed: B(r, j) = bt[j * cols + r]
    for (int r = 0; r < cols; ++r) {
        for (int j = 0; j < n; ++j) bt[static_cast<std::size_t>(j) * cols + r] = b[static_cast<std::size_t>(r) * n + j];
    }
    // Aᵀ's CSR arrays (A's CSC arrays), for the column-driven kernels.
    std::vector<int> t_indptr(static_cast<std::size_t>(cols) + 1, 0), t_indices(indices.size());
    std::vector<double> t_data(data.size());
    for (const int j : indices) ++t_indptr[static_cast<std::size_t>(j) + 1];
    for (int j = 0; j < cols; ++j) t_indptr[j + 1] += t_indptr[j];
    std::vector<int> cursor(t_indptr.begin(), t_indptr.end() - 1);
    for (int i = 0; i < rows; ++i) {
        for (int p = indptr[i]; p < indptr[i + 1]; ++p) {
            const int q = cursor[static_cast<std::size_t>(indices[p])]++;
            t_indices[static_cast<std::size_t>(q)] = i;
            t_data[static_cast<std::size_t>(q)] = data[static_cast<std::size_t>(p)];
        }
    }
    // C (rows x n, strides c_row, c_col) = A B (B with strides b_row, b_col), read by rows of A
    // or, by_columns, by columns.
    auto product = [&](const double* bp, std::int64_t b_row, std::int64_t b_col, double* cp,
                       std::int64_t c_row, std::int64_t c_col, bool by_columns, int kernel,
                       int backend, int nthreads, int partition, int simd) {
        const spmm::Dense dense{bp, cols, n, b_row, b_col};
        const spmm::Out out{cp, rows, n, c_row, c_col};
        const spmm::Config config{kernel, backend, nthreads, partition, simd, 0};
        if (by_columns) {
            spmm::csr_product(t_indptr.data(), t_indices.data(), t_data.data(), cols, rows,
                              static_cast<std::int64_t>(t_data.size()), true, true, dense, out,
                              config, nullptr, 0);
        } else {
            spmm::csr_product(indptr.data(), indices.data(), data.data(), rows, cols,
                              static_cast<std::int64_t>(data.size()), false, true, dense, out,
                              config, nullptr, 0);
        }
    };
    std::vector<double> ref(static_cast<std::size_t>(rows) * n);
    product(b.data(), n, 1, ref.data(), n, 1, false, 0, 0, 1, 0, 0);

    const std::vector<spmm::Simd> levels = spmm::supported_simd_levels();
    int bad = 0;
    std::mutex bad_mutex;
    std::vector<std::thread> callers;
    for (int t = 0; t < 6; ++t) {
        callers.emplace_back([&, t] {
            std::vector<double> c(ref.size()), ct(ref.size());
            for (int it = 0; it < 200; ++it) {
                const int backend = (t % 2 || !spmm::has_openmp()) ? 2 : 1;
                const int kernel = it % 3, partition = (it / 3) % 3, nthreads = 1 + it % 4;
                const int simd = static_cast<int>(levels[static_cast<std::size_t>(it / 9) % levels.size()]);
                const bool by_columns = it % 5 == 4;
                if (it % 2 == 0) {
                    product(b.data(), n, 1, c.data(), n, 1, by_columns, kernel, backend,
                            nthreads, partition, simd);
                } else {  // B's rows strided: packed by the entry point
                    product(bt.data(), 1, cols, c.data(), n, 1, by_columns, kernel, backend,
                            nthreads, partition, simd);
                }
                product(b.data(), n, 1, ct.data(), 1, rows, by_columns, kernel, backend, nthreads,
                        partition, simd);
                for (int i = 0; i < rows * n; ++i) {
                    const double want = ref[static_cast<std::size_t>(i)];
                    const double tol = 1e-9 * (1 + std::fabs(want));
                    const double got_t = ct[static_cast<std::size_t>(i / n + (i % n) * rows)];
                    if (std::fabs(c[static_cast<std::size_t>(i)] - want) > tol ||
                        std::fabs(got_t - want) > tol) {
                        std::lock_guard<std::mutex> lock(bad_mutex);
                        ++bad;
                        break;
                    }
                }
            }
        });
    }
    for (auto& c : callers) c.join();
    std::printf("%d passed, %d failed\n", 6 * 200 - bad, bad);
    return bad != 0;
}
