// The kernel registry: for each kernel family (names.hpp: which stored format, read which way),
// variant and instruction-set level, the compiled body that runs and its name. Every product
// and `spmm.explain` ask here, so what explain reports is what runs.
//
// The variants mean the same in every family: `naive` is the textbook order (one dense column
// at a time; no vectorization along B's rows, the baseline of the ablation), `reordered` the
// loop order whose innermost loop walks contiguous rows of B and C (vectorized by the compiler
// for the level), `tiled` the register-blocked SIMD body. A family without a body for a variant
// runs the nearest one below it, and the name says so.
#pragma once

#include <cstdint>

#include "../formats/structured.hpp"
#include "../formats/views.hpp"
#include "../names.hpp"
#include "../simd/levels.hpp"
#include "neon.hpp"
#include "portable.hpp"
#include "structured_portable.hpp"
#include "x86.hpp"

namespace spmm {

// A body picked for a call: the function, what it is ("tiled", or "reordered" for a family
// whose tiled body does not exist) and the level it was compiled for.
template <class F>
struct Picked {
    F fn = nullptr;
    const char* body = "";
    Simd level = Simd::scalar;
};

// The function types of the families' bodies.
// T: the type a product computes in; S: the stored values' type (T, or a reduced format of a
// prepared matrix, formats/values.hpp, computed in float).
template <class I, class T, class S = T>  // csr_rows: C[rows r0..r1) = A B, any strides of C
using RowsKernel = void (*)(const CsrView<I, S>&, const DenseView<T>&, const OutView<T>&,
                            std::int64_t, std::int64_t);
template <class I, class T>  // csc_columns: C += A[:, p0..p1) B[p0..p1), columns j0..j1
using ColumnsKernel = void (*)(const CsrView<I, T>&, const DenseView<T>&, const RowsView<T>&,
                               std::int64_t, std::int64_t, std::int64_t, std::int64_t);
template <class I, class T>  // coo: C += entries q0..q1, columns j0..j1
using CooKernel = void (*)(const CooView<I, T>&, const DenseView<T>&, const RowsView<T>&,
                           std::int64_t, std::int64_t, std::int64_t, std::int64_t);
template <class I, class T>  // bsr_rows / bsr_columns: block rows i0..i1, columns j0..j1
using BsrKernel = void (*)(const BsrView<I, T>&, const DenseView<T>&, const RowsView<T>&,
                           std::int64_t, std::int64_t, std::int64_t, std::int64_t);
template <class T>  // dia: output rows i0..i1, columns j0..j1 (A or, transposed, Aᵀ)
using DiaKernel = void (*)(const DiaView<T>&, bool, const DenseView<T>&, const RowsView<T>&,
                           std::int64_t, std::int64_t, std::int64_t, std::int64_t);
template <class T, class S = T>  // panels: Y[:, tiles t0..t1) = X W
using PanelsKernel = void (*)(const PanelsView<S>&, const StridedView<T>&, const RowsView<T>&,
                              std::int64_t, std::int64_t);
template <class I, class T, class S = T>  // sliced: y[rows of slices s0..s1) = A x
using SlicedKernel = void (*)(const SlicedView<I, S>&, const T*, const OutView<T>&, std::int64_t,
                              std::int64_t);
template <class T, class S = T>  // n_m: Y[:, chunks c0..c1) = X W
using NmKernel = void (*)(const NmView<S>&, const StridedView<T>&, const RowsView<T>&,
                          std::int64_t, std::int64_t);

// Return the body `ns::fn` of the level `simd` when this build has one (x86: avx2, avx512;
// aarch64: neon), with its name; a statement, for the lookups below.
#if SPMM_X86_SIMD
#define SPMM_RETURN_SIMD(simd, name, ...)                                                        \
    if (kernel_level(simd) == Simd::avx512) return {&avx512::__VA_ARGS__, name, Simd::avx512}; \
    if (kernel_level(simd) == Simd::avx2) return {&avx2::__VA_ARGS__, name, Simd::avx2};
// The plain-loop bodies, compiled per x86 level (on aarch64 the portable ones are NEON already).
#define SPMM_RETURN_LOOPS(simd, name, ...) SPMM_RETURN_SIMD(simd, name, __VA_ARGS__)
#elif SPMM_NEON_SIMD
#define SPMM_RETURN_SIMD(simd, name, ...) \
    if (kernel_level(simd) == Simd::neon) return {&neon::__VA_ARGS__, name, Simd::neon};
#define SPMM_RETURN_LOOPS(simd, name, ...)
#else
#define SPMM_RETURN_SIMD(simd, name, ...)
#define SPMM_RETURN_LOOPS(simd, name, ...)
#endif

// csr_rows: A @ B with A in CSR, X @ W with W in CSC (Wᵀ's CSR arrays), prepared matrices.
// Check: the operand is a user's matrix, checked where it is read.
template <bool Check, class I, class T, class S = T>
Picked<RowsKernel<I, T, S>> rows_kernel(Kernel k, Simd simd) {
    if (k == Kernel::tiled) {
        SPMM_RETURN_SIMD(simd, "tiled", tiled_rows<Check, I, T, S>)
        return {&tiled_rows<Check, I, T, S>, "tiled"};
    }
    if (k == Kernel::reordered) {
        SPMM_RETURN_LOOPS(simd, "reordered", reordered_rows<Check, I, T, S>)
        return {&reordered_rows<Check, I, T, S>, "reordered"};
    }
    return {&naive_rows<Check, I, T, S>, "naive"};
}

// csc_columns: A @ B with A in CSC, X @ W with W in CSR (Wᵀ's CSC arrays), read by columns.
template <class I, class T>
Picked<ColumnsKernel<I, T>> columns_kernel(Kernel k, Simd simd) {
    if (k == Kernel::tiled) {
        SPMM_RETURN_SIMD(simd, "tiled", scatter_tiled<true, I, T>)
        return {&scatter_reordered<true, I, T>, "reordered (no register-blocked body here)"};
    }
    if (k == Kernel::reordered) {
        SPMM_RETURN_LOOPS(simd, "reordered", scatter_reordered<true, I, T>)
        return {&scatter_reordered<true, I, T>, "reordered"};
    }
    return {&one_column_at_a_time<ColumnsKernel<I, T>, &scatter_reordered<true, I, T>,
                                  CsrView<I, T>, T>, "naive"};
}

// coo: either product with the sparse operand in COO, entries in any order.
template <class I, class T>
Picked<CooKernel<I, T>> coo_kernel(Kernel k, Simd simd) {
    if (k == Kernel::tiled) {
        SPMM_RETURN_SIMD(simd, "tiled", coo_tiled<I, T>)
        return {&coo_reordered<I, T>, "reordered (no register-blocked body here)"};
    }
    if (k == Kernel::reordered) {
        SPMM_RETURN_LOOPS(simd, "reordered", coo_reordered<I, T>)
        return {&coo_reordered<I, T>, "reordered"};
    }
    return {&one_column_at_a_time<CooKernel<I, T>, &coo_reordered<I, T>, CooView<I, T>, T>,
            "naive"};
}

// bsr_rows (A @ B, Scatter = false) and bsr_columns (X @ W as Wᵀ Xᵀ, Scatter = true).
template <bool Scatter, class I, class T>
Picked<BsrKernel<I, T>> bsr_kernel(Kernel k, Simd simd) {
    constexpr BsrKernel<I, T> loops = Scatter ? &bsr_scatter_reordered<I, T> : &bsr_rows_reordered<I, T>;
    if (k == Kernel::tiled) {
        SPMM_RETURN_SIMD(simd, "tiled", bsr_tiled<Scatter, I, T>)
        return {loops, "reordered (no register-blocked body here)"};
    }
    if (k == Kernel::reordered) {
#if SPMM_X86_SIMD
        simd = kernel_level(simd);
        if (simd == Simd::avx512) return {Scatter ? &avx512::bsr_scatter_reordered<I, T> : &avx512::bsr_rows_reordered<I, T>, "reordered", simd};
        if (simd == Simd::avx2) return {Scatter ? &avx2::bsr_scatter_reordered<I, T> : &avx2::bsr_rows_reordered<I, T>, "reordered", simd};
#endif
        return {loops, "reordered"};
    }
    return {&one_column_at_a_time<BsrKernel<I, T>, loops, BsrView<I, T>, T>, "naive"};
}

// dia: either product with the sparse operand in DIA. Its diagonals are contiguous streams the
// compiler vectorizes well, so it has no register-blocked body: tiled runs reordered.
template <class T>
Picked<DiaKernel<T>> dia_kernel(Kernel k, Simd simd) {
    if (k == Kernel::naive) return {&dia_one_column_at_a_time<T>, "naive"};
    const char* name = k == Kernel::tiled ? "reordered (no register-blocked body for dia)" : "reordered";
    SPMM_RETURN_LOOPS(simd, name, dia_reordered<T>)
    return {&dia_reordered<T>, name};
}

// panels (prepared tile and block layouts): one body per level, whatever the variant.
template <class T, class S = T>
Picked<PanelsKernel<T, S>> panels_kernel(Simd simd) {
    SPMM_RETURN_SIMD(simd, "tiled", panels_tiles<T, S>)
    return {&panels_tiles_portable<T, S>, "portable"};
}

// n_m (prepared N:M layout): the permute body when the level's register holds a group
// (m <= lanes), else the portable loop.
template <class T, class S = T>
Picked<NmKernel<T, S>> nm_kernel(Simd simd, std::int64_t m) {
#if SPMM_X86_SIMD
    simd = kernel_level(simd);
    if (simd == Simd::avx512 && avx512::nm_supported<T>(m)) return {&avx512::nm_chunks<T, S>, "tiled", simd};
    if (simd == Simd::avx2 && avx2::nm_supported<T>(m)) return {&avx2::nm_chunks<T, S>, "tiled", simd};
#endif
    (void)simd;
    (void)m;
    return {&nm_chunks_portable<T, S>, "portable"};
}

// sliced (a prepared matrix's one-column layout): `tiled` is the gather body of an x86 level;
// the other variants, and every level without a gather (NEON, scalar), run the portable loop
// of scalar loads (what `auto` chooses where gathers are slow: gathers_slower_than_loads).
template <class I, class T, class S = T>
Picked<SlicedKernel<I, T, S>> sliced_kernel(Kernel k, Simd simd) {
#if SPMM_X86_SIMD
    if (k == Kernel::tiled && kernel_level(simd) == Simd::avx512) return {&avx512::sliced_rows<I, T, S>, "tiled", Simd::avx512};
    if (k == Kernel::tiled && kernel_level(simd) == Simd::avx2) return {&avx2::sliced_rows<I, T, S>, "tiled", Simd::avx2};
#endif
    (void)k;
    (void)simd;
    return {&sliced_rows_portable<I, T, S>, "portable"};
}

#undef SPMM_RETURN_SIMD
#undef SPMM_RETURN_LOOPS

}  // namespace spmm
