"""multiply(a, b) equals scipy's a @ b on every backend, kernel, dtype, index dtype, thread
count, partition and shape, for both products: A @ B (A sparse) and X @ W (W sparse).

The full grid of backend x kernel x value dtype x index dtype x threads x partition x product
runs on a few small shapes; the list of shapes is crossed with the other axes in smaller
groups, so that every axis meets every other one at least pairwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    INDEX_DTYPES,
    KERNEL_SIMD_LEVELS,
    KERNELS,
    PARALLEL_BACKENDS,
    PARTITIONS,
    THREAD_COUNTS,
    VALUE_DTYPES,
    assert_product_matches_scipy,
    assert_sparse_unchanged,
    ids,
    make_csr,
    make_dense,
    random_values,
    sparse_arrays,
)

import spmm
from spmm._pipeline import multiply_with_partition

SPARSE_TIMES_DENSE = "A @ B"
DENSE_TIMES_SPARSE = "X @ W"
PRODUCTS = (SPARSE_TIMES_DENSE, DENSE_TIMES_SPARSE)


@dataclass(frozen=True)
class Shape:
    """The shape of a product: the sparse operand's, and the dense operand's other dimension.

    For A @ B, B is ``(sparse[1], other)``; for X @ W, X is ``(other, sparse[0])``.
    ``other=None`` makes the dense operand a 1-D vector.
    """

    name: str
    sparse: tuple[int, int]
    other: int | None
    density: float = 0.3
    empty_rows: tuple[int, ...] = ()
    empty_cols: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.name


SHAPES = (
    Shape("sparse-0-rows", (0, 5), 3),
    Shape("sparse-0-columns", (4, 0), 3),
    Shape("sparse-0x0", (0, 0), 2),
    Shape("dense-0-free-dimension", (4, 5), 0),
    Shape("1x1", (1, 1), 1, density=1.0),
    Shape("single-dense-column", (6, 5), 1),
    Shape("1-D-dense-vector", (6, 5), None),
    Shape("1-D-vector-0-length-result", (0, 5), None),
    Shape("1-D-vector-0-inner", (4, 0), None),
    Shape("empty-rows-and-columns-in-middle-and-at-ends", (9, 8), 4, density=0.6,
          empty_rows=(0, 4, 8), empty_cols=(0, 3, 7)),
    Shape("all-empty-matrix", (7, 6), 3, density=0.0),
    Shape("prime-sizes-97x89-by-13", (97, 89), 13),
    Shape("tall-1000x7", (1000, 7), 300, density=0.5),
    Shape("wide-7x1000", (7, 1000), 300, density=0.5),
    Shape("fewer-rows-than-threads", (2, 9), 4),
    Shape("fewer-columns-than-threads", (9, 2), 4),
)
SHAPE_BY_NAME = {s.name: s for s in SHAPES}
GRID_SHAPES = tuple(SHAPE_BY_NAME[name] for name in (
    "empty-rows-and-columns-in-middle-and-at-ends",
    "1-D-dense-vector",
    "fewer-rows-than-threads",
))


def operands(shape: Shape, product: str, dtype, index_dtype, rng):
    """(left, right, sparse) for ``product`` of ``shape``: the operands of ``left @ right``."""
    sparse = make_csr(shape.sparse, shape.density, dtype, index_dtype, rng,
                      empty_rows=shape.empty_rows, empty_cols=shape.empty_cols)
    m, k = shape.sparse
    if product == SPARSE_TIMES_DENSE:
        dense = make_dense((k,) if shape.other is None else (k, shape.other), dtype, rng)
        return sparse, dense, sparse
    dense = make_dense((m,) if shape.other is None else (shape.other, m), dtype, rng)
    return dense, sparse, sparse


def check_call(shape: Shape, product: str, dtype, index_dtype, rng, call) -> None:
    """Run ``call(left, right)`` on fresh operands; it equals scipy and changes no input."""
    left, right, sparse = operands(shape, product, dtype, index_dtype, rng)
    sparse_before = sparse_arrays(sparse)
    dense = left if sparse is right else right
    dense_before = dense.copy()
    result = call(left, right)
    assert_product_matches_scipy(result, left, right, err_msg=f"{product}, {shape}")
    assert sparse.indices.dtype == index_dtype and sparse.indptr.dtype == index_dtype
    assert_sparse_unchanged(sparse, sparse_before)
    np.testing.assert_array_equal(dense, dense_before)


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("num_threads", THREAD_COUNTS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_kernel_dtype_index_dtype_thread_count_and_partition_matches_scipy(
    backend, kernel, dtype, index_dtype, num_threads, partition, product, rng
):
    for shape in GRID_SHAPES:
        check_call(shape, product, dtype, index_dtype, rng,
                   lambda left, right: multiply_with_partition(
                       left, right, backend=backend, kernel=kernel, num_threads=num_threads,
                       partition=partition))


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_shape_matches_scipy_for_every_backend_and_kernel(
    shape, backend, kernel, product, rng
):
    check_call(shape, product, np.float64, np.int32, rng,
               lambda left, right: spmm.multiply(left, right, backend=backend, kernel=kernel,
                                                 num_threads=3))


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("num_threads", THREAD_COUNTS)
@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_shape_matches_scipy_for_every_thread_count_and_partition(
    shape, backend, num_threads, partition, product, rng
):
    check_call(shape, product, np.float32, np.int64, rng,
               lambda left, right: multiply_with_partition(
                   left, right, backend=backend, num_threads=num_threads,
                   partition=partition))


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_shape_matches_scipy_for_every_value_and_index_dtype(
    shape, dtype, index_dtype, product, rng
):
    check_call(shape, product, dtype, index_dtype, rng, spmm.multiply)


def test_multiply_uses_the_auto_partition(kernel_calls, rng):
    a = make_csr((20, 10), 0.3, np.float64, np.int32, rng)
    spmm.multiply(a, np.ones((10, 3)), backend=BACKENDS[-1], num_threads=2)
    spmm.multiply(a, np.ones(10), backend=BACKENDS[-1], num_threads=2)
    spmm.multiply(np.ones(20), a, backend=BACKENDS[-1], num_threads=2)
    spmm.multiply(np.ones(20), spmm.prepare(a), backend=BACKENDS[-1], num_threads=2)
    # auto: dynamic for one dense column of a CSR row-driven product (CSR A @ b), nnz
    # otherwise (choose_partition), a prepared matrix's x @ p included: its sliced layout has
    # no per-row cost, so equal entries are equal work.
    assert [call["partition"] for call in kernel_calls] == ["nnz", "dynamic", "nnz", "nnz"]
    assert kernel_calls[-1]["family"] == "sliced"


@pytest.mark.parametrize("product", PRODUCTS)
def test_a_1d_dense_operand_gives_a_1d_result(product, rng):
    shape = SHAPE_BY_NAME["1-D-dense-vector"]
    left, right, sparse = operands(shape, product, np.float64, np.int32, rng)
    result = spmm.multiply(left, right)
    m, k = sparse.shape
    assert result.shape == ((m,) if product == SPARSE_TIMES_DENSE else (k,))


@pytest.mark.parametrize("sparse_format", ["csr", "csc", "coo", "bsr", "dia"])
@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
def test_every_format_is_read_as_stored_in_both_orientations_without_a_copy(
    product, sparse_format, index_dtype, extension_arrays, rng
):
    """The arrays handed to the kernels are the matrix's own, int32 and int64 indices alike:
    no per-call conversion to another format or orientation."""
    a = make_csr((30, 20), 0.2, np.float64, index_dtype, rng).asformat(sparse_format)
    if sparse_format == "dia":
        a.offsets = a.offsets.astype(np.int64)  # DIA offsets reach the kernels as int64
    elif sparse_format != "coo":
        a.indices, a.indptr = a.indices.astype(index_dtype), a.indptr.astype(index_dtype)
    left, right = (a, make_dense((20, 3), np.float64, rng)) if product == SPARSE_TIMES_DENSE \
        else (make_dense((3, 30), np.float64, rng), a)
    assert_product_matches_scipy(spmm.multiply(left, right), left, right)
    own = [x for x in (getattr(a, name, None) for name in ("indptr", "indices", "data",
                                                            "offsets")) if x is not None]
    own += list(getattr(a, "coords", ()) if sparse_format == "coo" else ())
    for array in own:
        assert any(x is array for x in extension_arrays), \
            f"the kernels did not read {sparse_format}'s own {array.dtype} array"


@pytest.mark.parametrize("product", PRODUCTS)
def test_results_agree_across_backends_kernels_and_thread_counts(product, rng):
    """Within rounding, the result does not depend on how the work was split or computed."""
    left, right, _ = operands(SHAPE_BY_NAME["prime-sizes-97x89-by-13"], product, np.float64,
                              np.int64, rng)
    reference = spmm.multiply(left, right, backend="serial", kernel="naive")
    for backend in BACKENDS:
        for kernel in KERNELS:
            for num_threads in THREAD_COUNTS:
                got = spmm.multiply(left, right, backend=backend, kernel=kernel,
                                    num_threads=num_threads)
                np.testing.assert_allclose(got, reference, rtol=1e-12, atol=1e-12,
                                           err_msg=f"{backend}, {kernel}, {num_threads}")


def test_sparse_operand_is_recognised_on_either_side_for_spmatrix_and_sparray(rng):
    a = make_csr((5, 4), 0.5, np.float64, np.int32, rng)
    for matrix in (a, sp.csr_matrix(a)):
        assert_product_matches_scipy(spmm.multiply(matrix, np.ones((4, 2))), matrix,
                                     np.ones((4, 2)))
        assert_product_matches_scipy(spmm.multiply(np.ones((2, 5)), matrix), np.ones((2, 5)),
                                     matrix)


# Dense widths below, at and above the SIMD vector and block sizes (8 and 16 lanes; blocks of
# 4 vectors: 32 and 64 floats, 16 and 32 doubles), so every masked tail is exercised.
SIMD_WIDTHS = (1, 3, 7, 9, 15, 16, 17, 31, 33, 63, 64, 65, 129)


@pytest.mark.parametrize("prepared", [False, True], ids=["scipy-operand", "prepared"])
@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", KERNEL_SIMD_LEVELS)
def test_every_simd_level_of_the_tiled_kernel_matches_scipy_for_every_width_and_tail(
    level, backend, dtype, index_dtype, product, prepared, monkeypatch, rng
):
    """SPMM_SIMD forces each instruction set this CPU supports, in turn."""
    monkeypatch.setenv("SPMM_SIMD", level)
    assert spmm.get_config()["simd"] == level
    for width in SIMD_WIDTHS:
        left, right, sparse = operands(Shape(f"37x29-width-{width}", (37, 29), width, 0.4),
                                       product, dtype, index_dtype, rng)
        operand = spmm.prepare(sparse) if prepared else sparse
        args = (operand, right) if product == SPARSE_TIMES_DENSE else (left, operand)
        result = spmm.multiply(*args, backend=backend, kernel="tiled", num_threads=2)
        assert_product_matches_scipy(result, left, right, err_msg=f"{level}, width {width}")


def placed(dense: np.ndarray, offset: int, pad: int) -> np.ndarray:
    """``dense`` copied into a bigger buffer: starting ``offset`` elements past a 64-byte
    boundary, each row followed by ``pad`` unused elements (a row stride of cols + pad)."""
    rows, cols = dense.shape
    ld = cols + pad
    raw = np.zeros(rows * ld + offset + 64, dtype=dense.dtype)
    start = (-raw.ctypes.data % 64) // dense.itemsize + offset
    view = raw[start:start + rows * ld].reshape(rows, ld)[:, :cols]
    view[...] = dense
    return view


@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("kernel", ["reordered", "tiled"])
@pytest.mark.parametrize("level", KERNEL_SIMD_LEVELS)
def test_every_simd_level_reads_dense_rows_at_any_offset_and_row_stride(
    level, kernel, dtype, monkeypatch, rng
):
    """The SIMD kernels shift their blocks to B's alignment: any start offset within a vector,
    row strides that keep or break the alignment, and single columns with a row stride."""
    monkeypatch.setenv("SPMM_SIMD", level)
    a = make_csr((41, 53), 0.3, dtype, np.int32, rng, empty_rows=(0, 7, 40))
    for width in SIMD_WIDTHS:
        dense = make_dense((53, width), dtype, rng)
        for offset in (0, 1, 3, 5):
            for pad in (0, 1, 16 - width % 16):
                b = placed(dense, offset, pad)
                result = spmm.multiply(a, b, kernel=kernel, backend="serial")
                where = f"{level} {kernel} width {width} offset {offset} pad {pad}"
                assert_product_matches_scipy(result, a, b, err_msg=where)


@pytest.mark.parametrize("prepared", [False, True], ids=["scipy-operand", "prepared"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_dense_operand_off_a_cache_line_is_read_right_at_every_width(
    backend, dtype, index_dtype, prepared, rng
):
    """B's rows read in random order from a B of megabytes that starts 16 bytes past a cache
    line, as numpy's large arrays do (an aligned copy of B is made for such products), by a
    matrix with unsorted and duplicate column indices, at widths of one line and less, several
    lines, and a tail."""
    rows, per_row = 2**15, 6
    cols = rng.integers(0, rows, size=rows * per_row)
    cols[1::per_row] = cols[::per_row]  # a duplicate in every row, unsorted after it
    indptr = np.arange(0, rows * per_row + 1, per_row)
    a = sp.csr_array((random_values(len(cols), dtype, rng), cols.astype(index_dtype),
                      indptr.astype(index_dtype)), shape=(rows, rows))
    a.has_sorted_indices = False
    left = spmm.prepare(a) if prepared else a
    threads = 1 if backend == "serial" else 2
    for width in (8, 64, 67):
        b = placed(make_dense((rows, width), dtype, rng), 16 // np.dtype(dtype).itemsize, 0)
        result = spmm.multiply(left, b, backend=backend, num_threads=threads)
        assert_product_matches_scipy(result, a, b, err_msg=f"width {width}")
