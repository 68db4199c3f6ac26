// spmm's C++ entry points for the Cython layer: pointer-and-size functions over the
// header-only templates, one per kernel family, and the facts show_config reports.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "formats/pack.hpp"
#include "formats/validate.hpp"
#include "dot_product.hpp"
#include "product.hpp"
#include "simd/cache.hpp"

#ifndef SPMM_COMPILE_ARGS
#define SPMM_COMPILE_ARGS "unknown"
#endif

namespace spmm {

// ---- What the Cython layer hands over ---------------------------------------------------
// Strides are in elements; any strides are accepted. For X @ W, computed as Yᵀ = Wᵀ Xᵀ, the
// Cython layer hands over Xᵀ and Yᵀ (the same memory, strides swapped).

// The dense operand B (rows x cols).
struct Dense {
    const void* data;
    std::int64_t rows, cols, row_stride, col_stride;
};

// The output C (rows x cols), every element written.
struct Out {
    void* data;
    std::int64_t rows, cols, row_stride, col_stride;
};

// The configuration's codes (names.hpp), the work below which the calling thread runs the
// product alone (negative: kParallelMinWork; 0: always the backend's threads, for tests), and
// the function a long product calls now and then on the calling thread to ask whether to stop
// (null: it never stops early). In Python that is the signal check, so Ctrl-C stops it.
struct Config {
    int kernel, backend, nthreads, partition, simd;
    std::int64_t min_work;
    bool (*poll)(void*);
};

// How often a long product asks whether to stop: soon enough after a Ctrl-C, rarely enough
// that the check (the Python one takes the GIL) costs nothing.
constexpr std::chrono::milliseconds kPollInterval{20};

// f(Call) for the configuration; a Cancellation polled every kPollInterval when k.poll is
// given. parallel_for throws Interrupted once it is requested; `out` is then unspecified.
template <class F>
void with_call(const Config& k, F&& f) {
    Call call{static_cast<Kernel>(k.kernel), static_cast<Backend>(k.backend), k.nthreads,
              static_cast<Partition>(k.partition), static_cast<Simd>(k.simd), k.min_work};
    if (k.poll == nullptr) {
        f(call);
        return;
    }
    Cancellation cancel(k.poll, nullptr, kPollInterval);
    call.cancel = &cancel;
    f(call);
}

template <class T>
OutView<T> out_view(const Out& c) {
    return OutView<T>{static_cast<T*>(c.data), c.rows, c.cols, c.row_stride, c.col_stride};
}

// The elements a packed copy of B must have for its copy to be spread over the product's
// threads: a copy as large as L2 takes about as long as a thread wake-up below this. The copy
// of Xᵀ for a 4096-input layer at batch 256 (4 MiB) took a tenth of a 2-thread product.
constexpr std::int64_t kParallelPackMinElements = std::int64_t{1} << 16;

// f(DenseView of B): B itself when its rows are contiguous, else (or when an aligned copy pays,
// worth_packing: `entries` stored entries read B's rows) a packed copy, made here outside the
// GIL by the threads the product uses.
template <class T, class F>
void with_dense(const Dense& b, std::int64_t entries, const Call& call, F&& f) {
    const T* data = static_cast<const T*>(b.data);
    const bool contiguous_rows = b.cols <= 1 || b.col_stride == 1;
    if (contiguous_rows && !worth_packing(data, b.rows, b.cols, b.row_stride, entries)) {
        f(DenseView<T>{data, b.rows, b.cols, b.row_stride});
        return;
    }
    const int threads = b.rows * b.cols < kParallelPackMinElements
                            ? 1
                            : call.threads(entries, b.rows, b.cols);
    const PackedRows<T> packed(data, b.rows, b.cols, b.row_stride, b.col_stride,
                               [&](std::int64_t blocks, auto&& copy) {
                                   parallel_for(call.backend, threads, std::min<std::int64_t>(threads, blocks), false,
                                                [&](std::int64_t s) {
                                                    const std::int64_t parts = std::min<std::int64_t>(threads, blocks);
                                                    copy(blocks * s / parts, blocks * (s + 1) / parts);
                                                });
                               });
    f(packed.view());
}

// ---- One entry point per kernel family (names.hpp) ------------------------------------

// A in CSR: indptr (rows + 1, of type O = offset_t<I>), indices and data (`stored` entries
// each, or more). by_columns: the arrays are those of Aᵀ (A's CSC arrays, or W's CSR arrays for
// X @ W), read by the column-driven kernels, or with transpose_first (a user's matrix) copied
// into A's CSR arrays and read by the row-driven ones; else read by the row-driven ones. check:
// a user's matrix, checked while it is read. bounds: a prepared matrix's cached slices, or
// null.
template <class O, class I, class T>
void csr_product(const O* indptr, const I* indices, const T* data, std::int64_t rows,
                 std::int64_t cols, std::int64_t stored, bool by_columns, bool check,
                 const Dense& b, const Out& c, const Config& k, const std::int64_t* bounds,
                 std::int64_t nbounds, bool transpose_first = false) {
    static_assert(std::is_same_v<O, offset_t<I>>, "row pointers of the wrong type");
    const CsrView<I, T> a{indptr, indices, data, rows, cols, stored};
    const std::int64_t entries = rows == 0 ? 0 : static_cast<std::int64_t>(indptr[rows]);
    with_call(k, [&](const Call& call) {
        with_dense<T>(b, entries, call, [&](const DenseView<T>& bv) {
            if (by_columns) {
                multiply_columns(a, bv, out_view<T>(c), call, transpose_first && check);
            } else {
                multiply_csr(a, bv, out_view<T>(c), call, check, SliceBounds{bounds, nbounds});
            }
        });
    });
}

// A in COO: nnz entries (row[q], col[q], data[q]), A rows x cols (for X @ W, `transposed`: the
// view of Wᵀ, row and col swapped).
template <class I, class T>
void coo_product(const I* row, const I* col, const T* data, std::int64_t nnz, std::int64_t rows,
                 std::int64_t cols, bool transposed, const Dense& b, const Out& c,
                 const Config& k) {
    const CooView<I, T> a{row, col, data, nnz, rows, cols, transposed};
    with_call(k, [&](const Call& call) {
        with_dense<T>(b, nnz, call, [&](const DenseView<T>& bv) { multiply_coo(a, bv, out_view<T>(c), call); });
    });
}

// A in BSR, blocks of r x c: indptr (block_rows + 1), indices and data (`stored` blocks each).
// by_columns: compute Aᵀ B (X @ W as Wᵀ Xᵀ), scattering each block into the rows its block
// column names; else A B.
template <class I, class T>
void bsr_product(const I* indptr, const I* indices, const T* data, std::int64_t block_rows,
                 std::int64_t block_cols, std::int64_t r, std::int64_t c_, std::int64_t stored,
                 bool by_columns, const Dense& b, const Out& c, const Config& k) {
    const BsrView<I, T> a{indptr, indices, data, block_rows, block_cols, r, c_, stored};
    const std::int64_t entries = block_rows == 0 ? 0 : static_cast<std::int64_t>(indptr[block_rows]) * r * c_;
    with_call(k, [&](const Call& call) {
        with_dense<T>(b, entries, call, [&](const DenseView<T>& bv) {
            if (by_columns) {
                multiply_bsr_columns(a, bv, out_view<T>(c), call);
            } else {
                multiply_bsr_rows(a, bv, out_view<T>(c), call);
            }
        });
    });
}

// A in DIA: `diagonals` offsets and rows of data (width stored columns each, ld apart); A is
// rows x cols. transposed: compute Aᵀ B (X @ W as Wᵀ Xᵀ).
template <class T>
void dia_product(const std::int64_t* offsets, const T* data, std::int64_t diagonals,
                 std::int64_t width, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                 bool transposed, const Dense& b, const Out& c, const Config& k) {
    const DiaView<T> a{offsets, data, diagonals, width, ld, rows, cols};
    with_call(k, [&](const Call& call) {
        with_dense<T>(b, diagonals * std::min(rows, cols), call, [&](const DenseView<T>& bv) {
            multiply_dia(a, transposed, bv, out_view<T>(c), call);
        });
    });
}

// ---- Reduced-precision values of a prepared matrix (formats/values.hpp) ------------------
// The same families with values stored as bfloat16, float16 or int8 (one float32 scale per
// output): X, B and the result are float32, every sum accumulated in float32.

// f(values as const S*) for the stored format's type S.
template <class F>
void with_stored(int format, const void* values, F&& f) {
    switch (static_cast<ValueFormat>(format)) {
        case ValueFormat::float32: return f(static_cast<const float*>(values));
        case ValueFormat::bfloat16: return f(static_cast<const bfloat16*>(values));
        case ValueFormat::float16: return f(static_cast<const float16*>(values));
        case ValueFormat::int8: return f(static_cast<const std::int8_t*>(values));
    }
    throw std::invalid_argument("unknown stored value format " + std::to_string(format));
}

// csr_rows for a prepared matrix (trusted, never by columns): indptr (rows + 1), indices and
// values (indptr[rows] entries each); scale: rows entries for int8, else null.
template <class O, class I>
void reduced_csr_product(const O* indptr, const I* indices, const void* values, int format,
                         const float* scale, std::int64_t rows, std::int64_t cols,
                         const Dense& b, const Out& c, const Config& k,
                         const std::int64_t* bounds, std::int64_t nbounds) {
    static_assert(std::is_same_v<O, offset_t<I>>, "row pointers of the wrong type");
    const std::int64_t entries = rows == 0 ? 0 : static_cast<std::int64_t>(indptr[rows]);
    with_stored(format, values, [&](const auto* data) {
        using S = std::remove_const_t<std::remove_pointer_t<decltype(data)>>;
        CsrView<I, S> a{indptr, indices, data, rows, cols, entries};
        a.scale = scale;
        with_call(k, [&](const Call& call) {
            with_dense<float>(b, entries, call, [&](const DenseView<float>& bv) {
                multiply_csr(a, bv, out_view<float>(c), call, false, SliceBounds{bounds, nbounds});
            });
        });
    });
}

// panels with reduced values: as panels_times_dense; scale: cols entries for int8.
inline void reduced_panels_times_dense(
    std::int64_t rows, std::int64_t cols, std::int64_t width, std::int64_t ld, std::int64_t run,
    const std::int64_t* unit_ptr, const std::int32_t* unit_row, const void* values, int format,
    const float* scale, const float* x, std::int64_t batch, std::int64_t x_row_stride,
    std::int64_t x_col_stride, float* y, std::int64_t ldy, const Config& k) {
    with_stored(format, values, [&](const auto* data) {
        using S = std::remove_const_t<std::remove_pointer_t<decltype(data)>>;
        PanelsView<S> w{rows, cols, width, ld, run, unit_ptr, unit_row, data};
        w.scale = scale;
        const StridedView<float> xv{x, batch, rows, x_row_stride, x_col_stride};
        const RowsView<float> yv{y, batch, cols, ldy};
        with_call(k, [&](const Call& call) { multiply_panels(w, xv, yv, call); });
    });
}

// n_m with reduced values: as nm_times_dense; scale: cols entries for int8.
inline void reduced_nm_times_dense(std::int64_t rows, std::int64_t cols, std::int64_t n,
                                   std::int64_t m, std::int64_t chunk, const void* values,
                                   int format, const float* scale, const std::uint8_t* offsets,
                                   const float* x, std::int64_t batch, std::int64_t x_row_stride,
                                   std::int64_t x_col_stride, float* y, std::int64_t ldy,
                                   const Config& k) {
    with_stored(format, values, [&](const auto* data) {
        using S = std::remove_const_t<std::remove_pointer_t<decltype(data)>>;
        NmView<S> w{rows, cols, n, m, chunk, data, offsets};
        w.scale = scale;
        const StridedView<float> xv{x, batch, rows, x_row_stride, x_col_stride};
        const RowsView<float> yv{y, batch, cols, ldy};
        with_call(k, [&](const Call& call) { multiply_nm(w, xv, yv, call); });
    });
}

// A prepared matrix with activations (kernels/dot.hpp): C = W B, B rounded to `format`
// (bfloat16 or int8) at this call. ptr (rows + 1), block and words (ptr[rows] entries each):
// W's grouped rows, trusted (built by prepare); scale and correction: rows entries for int8,
// else null. cols: the contracted dimension, B's rows.
inline void activations_product(const std::int64_t* ptr, const std::int32_t* block,
                                const std::uint32_t* words, const float* scale,
                                const std::int32_t* correction, int format, std::int64_t rows,
                                std::int64_t cols, const Dense& b, const Out& c,
                                const Config& k) {
    const GroupedView w{ptr, block, words, rows, cols, scale, correction};
    const auto f = static_cast<ValueFormat>(format);
    if (f == ValueFormat::int8 && (scale == nullptr || correction == nullptr)) {
        throw std::invalid_argument("int8 activations need the rows' scales and corrections");
    }
    const StridedView<float> d{static_cast<const float*>(b.data), b.rows, b.cols, b.row_stride,
                               b.col_stride};
    with_call(k, [&](const Call& call) { multiply_grouped(w, f, d, out_view<float>(c), call); });
}

// The body and level an activations product runs at level `simd` ("dot", or "portable_dot"
// for the loop that computes what the instruction does), for spmm.explain.
inline std::vector<std::string> activations_body(int format, int simd) {
    const auto [fn, level] = dot_kernel(static_cast<ValueFormat>(format), static_cast<Simd>(simd));
    (void)fn;
    return {level == Simd::scalar ? "portable_dot" : "dot", simd_name(level)};
}

// What the registry runs for a family, variant and level: the body's name and its level, for
// spmm.explain. One-column products of csr_rows run the gather row-dot inside `tiled`.
inline std::vector<std::string> kernel_body(int family, int kernel, int simd) {
    const auto k = static_cast<Kernel>(kernel);
    const auto s = static_cast<Simd>(simd);
    auto named = [](const auto& picked) {
        return std::vector<std::string>{picked.body, simd_name(picked.level)};
    };
    switch (static_cast<Family>(family)) {
        case Family::csr_rows: return named(rows_kernel<true, std::int32_t, float>(k, s));
        case Family::csc_columns: return named(columns_kernel<std::int32_t, float>(k, s));
        case Family::coo: return named(coo_kernel<std::int32_t, float>(k, s));
        case Family::bsr_rows: return named(bsr_kernel<false, std::int32_t, float>(k, s));
        case Family::bsr_columns: return named(bsr_kernel<true, std::int32_t, float>(k, s));
        case Family::dia: return named(dia_kernel<float>(k, s));
        case Family::panels: return named(panels_kernel<float>(s));
        case Family::n_m: return named(nm_kernel<float>(s, 4));
        case Family::sliced: return named(sliced_kernel<std::uint16_t, float>(k, s));
    }
    throw std::invalid_argument("unknown kernel family " + std::to_string(family));
}

// Y = X W for W in the column-tile layout (formats/structured.hpp). X: batch x rows with
// element strides (x_row_stride, x_col_stride); Y: batch x cols, rows contiguous with leading
// dimension ldy. unit_ptr: tiles + 1 entries; unit_row: unit_ptr[tiles] entries; values:
// unit_ptr[tiles] * run rows of ld elements.
template <class T>
void panels_times_dense(std::int64_t rows, std::int64_t cols, std::int64_t width,
                        std::int64_t ld, std::int64_t run, const std::int64_t* unit_ptr,
                        const std::int32_t* unit_row, const T* values, const T* x,
                        std::int64_t batch, std::int64_t x_row_stride, std::int64_t x_col_stride,
                        T* y, std::int64_t ldy, const Config& k) {
    const PanelsView<T> w{rows, cols, width, ld, run, unit_ptr, unit_row, values};
    const StridedView<T> xv{x, batch, rows, x_row_stride, x_col_stride};
    const RowsView<T> yv{y, batch, cols, ldy};
    with_call(k, [&](const Call& call) { multiply_panels(w, xv, yv, call); });
}

// Y = X W for W with N:M sparsity: values and offsets are chunks x (groups * n) x chunk
// (formats/structured.hpp's NmView).
template <class T>
void nm_times_dense(std::int64_t rows, std::int64_t cols, std::int64_t n, std::int64_t m,
                    std::int64_t chunk, const T* values, const std::uint8_t* offsets, const T* x,
                    std::int64_t batch, std::int64_t x_row_stride, std::int64_t x_col_stride,
                    T* y, std::int64_t ldy, const Config& k) {
    const NmView<T> w{rows, cols, n, m, chunk, values, offsets};
    const StridedView<T> xv{x, batch, rows, x_row_stride, x_col_stride};
    const RowsView<T> yv{y, batch, cols, ldy};
    with_call(k, [&](const Call& call) { multiply_nm(w, xv, yv, call); });
}

// The work below which a product runs on the calling thread (for show_config and benches).
inline std::int64_t parallel_min_work() { return kParallelMinWork; }

// The dense columns the one-column sliced product counts as (kSlicedWorkColumns).
inline std::int64_t sliced_work_columns() { return kSlicedWorkColumns; }

// The threads a product uses (1 below the minimum work), as every driver decides it:
// `entries` multiply-adds per dense column (stored entries, or a layout's stored values),
// `out_rows` output rows to write, `n` dense columns.
inline int threads_used(std::int64_t entries, std::int64_t out_rows, std::int64_t n,
                        int backend, int nthreads, std::int64_t min_work) {
    Call k;
    k.backend = static_cast<Backend>(backend);
    k.nthreads = nthreads;
    k.min_work = min_work;
    return k.threads(entries, out_rows, n);
}

// Whether a column-driven product splits the dense columns among threads (else A's entries,
// with private outputs): run_columns' rule, for spmm.explain.
inline bool splits_columns(std::int64_t out_rows, std::int64_t n, int nthreads,
                           bool rows_contiguous, int itemsize) {
    return itemsize == 4 ? columns_split<float>(out_rows, n, nthreads, rows_contiguous)
                         : columns_split<double>(out_rows, n, nthreads, rows_contiguous);
}

// The largest N:M group (formats/structured.hpp).
inline std::int64_t max_group() { return kMaxGroup; }

// Bytes of a cache line, the alignment of every copy the kernels read (simd/levels.hpp).
inline std::int64_t cache_line_bytes() { return kCacheLineBytes; }

// The slice boundaries a partition produces (for tests and the documentation of strategies).
template <class I>
std::vector<std::int64_t> partition_bounds(const I* indptr, std::int64_t rows, int nthreads,
                                           int partition) {
    return partition_rows(indptr, rows, nthreads, static_cast<Partition>(partition));
}

// The instruction-set levels this build and CPU support, lowest first.
inline std::vector<std::string> simd_levels() { return supported_simd(); }

inline bool slow_gathers() { return gathers_slower_than_loads(); }

// The names of every kernel, backend, partition and SIMD level (names.hpp), in code order.
inline std::vector<std::vector<std::string>> vocabulary() {
    return {kernel_names(), backend_names(), partition_names(), simd_names(), family_names(),
            value_format_names()};
}

inline bool has_openmp() { return openmp::available(); }

inline bool openmp_usable() { return openmp::usable_in_this_process(); }

// The OpenMP specification date the compiler implements (e.g. 201511), 0 without OpenMP.
inline long openmp_version() {
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

inline std::string compiler_version() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

inline std::string compile_args() { return SPMM_COMPILE_ARGS; }

// The CPUs in this process's affinity mask (the default thread count), or 0 where that cannot
// be read in one system call: not Linux, or more CPUs than a cpu_set_t holds (EINVAL). The
// Python layer then asks os.sched_getaffinity, which costs ~1 us more per call.
inline int affinity_cpus() { return threads::affinity_cpus(); }

// The threads backend's workers running now.
inline std::size_t pool_workers() { return threads::global_pool().workers(); }

// A testing aid: per worker slot of the threads backend's pool, the calls its worker took up.
inline std::vector<std::uint64_t> pool_calls_taken() {
    return threads::global_pool().calls_taken();
}

// y = A x for a prepared matrix's one-column layout (formats/sliced.hpp): rows x cols A,
// slice_ptr (slices + 1), lens and perm (rows each), indices and values (slice_ptr[slices]
// each); index_bytes: 2 (uint16), 4 (int32) or 8 (int64). format: the values' code
// (names.hpp); float32 means the product's type itself (double when `f64`); the others are
// float32 products. scale: rows entries for int8, else null. b is x (cols x 1) and c is y
// (rows x 1), as for csr_product with one dense column.
template <class I, class T>
void sliced_product_of(const std::int64_t* slice_ptr, const std::int32_t* lens,
                       const std::int32_t* perm, const I* indices, const void* values,
                       int format, const float* scale, std::int64_t rows, std::int64_t cols,
                       const Dense& b, const Out& c, const Config& k) {
    auto run = [&](const auto* data) {
        using S = std::remove_const_t<std::remove_pointer_t<decltype(data)>>;
        SlicedView<I, S> w{rows, cols, slice_ptr, lens, perm, indices, data};
        w.scale = scale;
        const DenseView<T> x{static_cast<const T*>(b.data), b.rows, b.cols, b.row_stride};
        with_call(k, [&](const Call& call) { multiply_sliced(w, x, out_view<T>(c), call); });
    };
    if (static_cast<ValueFormat>(format) == ValueFormat::float32) return run(static_cast<const T*>(values));
    if constexpr (std::is_same_v<T, float>) return with_stored(format, values, run);
    throw std::invalid_argument("reduced values compute in float32");
}

inline void sliced_product(const std::int64_t* slice_ptr, const std::int32_t* lens,
                           const std::int32_t* perm, const void* indices, int index_bytes,
                           const void* values, int format, bool f64, const float* scale,
                           std::int64_t rows, std::int64_t cols, const Dense& b, const Out& c,
                           const Config& k) {
    auto with_index = [&](const auto* idx) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(idx)>>;
        if (f64) return sliced_product_of<I, double>(slice_ptr, lens, perm, idx, values, format, scale, rows, cols, b, c, k);
        sliced_product_of<I, float>(slice_ptr, lens, perm, idx, values, format, scale, rows, cols, b, c, k);
    };
    switch (index_bytes) {
        case 2: return with_index(static_cast<const std::uint16_t*>(indices));
        case 4: return with_index(static_cast<const std::int32_t*>(indices));
        case 8: return with_index(static_cast<const std::int64_t*>(indices));
    }
    throw std::invalid_argument("indices of " + std::to_string(index_bytes) + " bytes");
}

// Fill a sliced layout from CSR arrays (formats/sliced.hpp's fill_sliced); values of
// `value_bytes` bytes each, moved as they are.
template <class O, class I>
void build_sliced(const O* indptr, const I* indices, const void* values, int value_bytes,
                  std::int64_t rows, const std::int32_t* perm, const std::int32_t* lens,
                  const std::int64_t* slice_ptr, I* out_indices, void* out_values) {
    auto fill = [&](auto bits) {
        using V = decltype(bits);
        fill_sliced(indptr, indices, static_cast<const V*>(values), rows, perm, lens, slice_ptr,
                    out_indices, static_cast<V*>(out_values));
    };
    switch (value_bytes) {
        case 1: return fill(std::uint8_t{});
        case 2: return fill(std::uint16_t{});
        case 4: return fill(std::uint32_t{});
        case 8: return fill(std::uint64_t{});
    }
    throw std::invalid_argument("values of " + std::to_string(value_bytes) + " bytes");
}

}  // namespace spmm
