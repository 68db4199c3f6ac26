// spmm's vocabulary, each list written once: the kernel variants, threading backends, work
// partitions, instruction-set levels, kernel families and stored value formats. The enums below and the names the Python layer uses
// (spmm._spmm_ext.vocabulary()) are both generated from these lists, so an entry added here
// reaches every layer, show_config and the tests' parametrizations with no second edit. A
// name's code is its position in its list.
#pragma once

#include <string>
#include <vector>

// naive: the textbook loop order; reordered: the loop order whose innermost loop walks
// contiguous memory; tiled: reordered plus register blocking and SIMD (kernels/).
#define SPMM_KERNELS(X) X(naive) X(reordered) X(tiled)
// serial: the calling thread; openmp: an OpenMP team; threads: spmm's std::thread pool.
#define SPMM_BACKENDS(X) X(serial) X(openmp) X(threads)
// How work is cut among threads (parallel/partition.hpp).
#define SPMM_PARTITIONS(X) X(rows) X(nnz) X(dynamic)
// Instruction-set levels, lowest first per architecture (simd/levels.hpp). avx2_vnni,
// avx512_vnni and avx512_bf16 run the avx2 / avx512 bodies of every family, and add the
// dot-product instructions of prepare(activations=...) (kernels/dot.hpp): AVX-VNNI, AVX512_VNNI,
// and AVX512_BF16 with VNNI; neon_dot and neon_bf16 likewise run the neon bodies and add the
// Arm dot products: SDOT (FEAT_DotProd), and BFDOT (FEAT_BF16) with SDOT. Each can be forced
// with SPMM_SIMD, so the tests run every path on a CPU that has them all.
#define SPMM_SIMD_LEVELS(X) \
    X(scalar) X(avx2) X(avx2_vnni) X(avx512) X(avx512_vnni) X(avx512_bf16) X(neon) X(neon_dot) \
    X(neon_bf16)
// Kernel families: a stored format read one way (kernels/registry.hpp).
//   csr_rows:    by rows, gathering rows of B: A @ B with A in CSR, X @ W with W in CSC,
//                and prepared matrices in CSR form;
//   csc_columns: by columns, scattering into rows of C: A @ B with A in CSC, X @ W with W
//                in CSR;
//   coo:         entry by entry, either product in COO;
//   bsr_rows:    block rows, A @ B in BSR;   bsr_columns: X @ W in BSR, blocks scattered;
//   dia:         diagonal by diagonal, either product in DIA;
//   panels, n_m: the structured layouts of a prepared matrix, X @ W;
//   sliced:      a prepared matrix's one-column layout (rows sorted by length, slices of
//                16 stored column by column), X @ W with one row of X.
#define SPMM_FAMILIES(X) \
    X(csr_rows) X(csc_columns) X(coo) X(bsr_rows) X(bsr_columns) X(dia) X(panels) X(n_m) \
    X(sliced)
// How a prepared matrix stores its values (formats/values.hpp): float32 (or the float64 of a
// float64 matrix), or a reduced format widened to float32 in the kernels.
#define SPMM_VALUE_FORMATS(X) X(float32) X(bfloat16) X(float16) X(int8)

namespace spmm {

#define SPMM_ENUM_ENTRY(name) name,
enum class Kernel : int { SPMM_KERNELS(SPMM_ENUM_ENTRY) };
enum class Backend : int { SPMM_BACKENDS(SPMM_ENUM_ENTRY) };
enum class Partition : int { SPMM_PARTITIONS(SPMM_ENUM_ENTRY) };
enum class Simd : int { SPMM_SIMD_LEVELS(SPMM_ENUM_ENTRY) };
enum class Family : int { SPMM_FAMILIES(SPMM_ENUM_ENTRY) };
enum class ValueFormat : int { SPMM_VALUE_FORMATS(SPMM_ENUM_ENTRY) };
#undef SPMM_ENUM_ENTRY

#define SPMM_NAME_ENTRY(name) #name,
inline std::vector<std::string> kernel_names() { return {SPMM_KERNELS(SPMM_NAME_ENTRY)}; }
inline std::vector<std::string> backend_names() { return {SPMM_BACKENDS(SPMM_NAME_ENTRY)}; }
inline std::vector<std::string> partition_names() { return {SPMM_PARTITIONS(SPMM_NAME_ENTRY)}; }
inline std::vector<std::string> simd_names() { return {SPMM_SIMD_LEVELS(SPMM_NAME_ENTRY)}; }
inline std::vector<std::string> family_names() { return {SPMM_FAMILIES(SPMM_NAME_ENTRY)}; }
inline std::vector<std::string> value_format_names() { return {SPMM_VALUE_FORMATS(SPMM_NAME_ENTRY)}; }
#undef SPMM_NAME_ENTRY

// The name of a code, as the Python layer spells it.
inline std::string simd_name(Simd s) { return simd_names().at(static_cast<std::size_t>(s)); }

}  // namespace spmm
