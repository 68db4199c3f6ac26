"""Every scipy.sparse format and class, non-canonical structure, special values and every
accepted dtype give scipy's result."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    FORMATS,
    KERNEL_SIMD_LEVELS,
    KERNELS,
    assert_product_matches_scipy,
    assert_sparse_unchanged,
    ids,
    make_csr,
    make_dense,
    run_in_forked_child,
    sparse_arrays,
)

import spmm
from spmm import _formats

# Also run with the extension built with AddressSanitizer and UBSan (.ci/run).
pytestmark = pytest.mark.asan

SPARSE_CLASSES = {"sparray": sp.csr_array, "spmatrix": sp.csr_matrix}


def both_products(sparse, rng, dense_dtype=np.float64, other=3):
    """The two products of ``sparse`` with random dense operands: [(A, B), (X, W)]."""
    m, k = sparse.shape
    return [(sparse, make_dense((k, other), dense_dtype, rng)),
            (make_dense((other, m), dense_dtype, rng), sparse)]


@pytest.mark.parametrize("sparse_class", SPARSE_CLASSES)
@pytest.mark.parametrize("sparse_format", FORMATS)
def test_every_sparse_format_and_class_on_either_side_matches_scipy(
    sparse_format, sparse_class, rng
):
    csr = make_csr((12, 10), 0.3, np.float64, np.int32, rng, empty_rows=(0, 11),
                   cls=SPARSE_CLASSES[sparse_class])
    a = csr.asformat(sparse_format)
    assert a.format == sparse_format
    assert isinstance(a, sp.sparray) == (sparse_class == "sparray")
    for left, right in both_products(a, rng):
        before = sparse_arrays(a)
        assert_product_matches_scipy(spmm.multiply(left, right), left, right)
        assert_sparse_unchanged(a, before)
    for vector_product in ((a, np.arange(10.0)), (np.arange(12.0), a)):
        result = spmm.multiply(*vector_product)
        assert result.ndim == 1
        assert_product_matches_scipy(result, *vector_product)


def non_canonical_csr(sparse_class=sp.csr_array):
    """A 4 x 5 CSR matrix with unsorted column indices and duplicate entries, built by hand."""
    indptr = np.array([0, 4, 4, 7, 9], dtype=np.int32)
    indices = np.array([3, 0, 3, 1,  4, 2, 4,  0, 0], dtype=np.int32)
    data = np.array([1.5, -2.0, 0.25, 3.0,  1.0, -1.0, 2.0,  0.5, 4.0])
    a = sparse_class((data, indices, indptr), shape=(4, 5))
    assert not a.has_canonical_format
    assert not a.has_sorted_indices
    return a


@pytest.mark.parametrize("sparse_class", SPARSE_CLASSES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_unsorted_indices_and_duplicate_entries_are_summed_as_scipy_does(
    backend, kernel, sparse_class, rng
):
    a = non_canonical_csr(SPARSE_CLASSES[sparse_class])
    for left, right in both_products(a, rng):
        result = spmm.multiply(left, right, backend=backend, kernel=kernel, num_threads=2)
        assert_product_matches_scipy(result, left, right)
    assert not a.has_canonical_format, "multiply must not canonicalize the caller's matrix"


def test_duplicate_coordinates_of_a_coo_matrix_are_summed(rng):
    a = sp.coo_array(([1.0, 2.0, 3.0, -4.0], ([0, 0, 2, 2], [1, 1, 0, 0])), shape=(3, 2))
    for left, right in both_products(a, rng):
        assert_product_matches_scipy(spmm.multiply(left, right), left, right)


def special_values_csr():
    """A 5 x 4 CSR matrix storing NaN, +Inf, -Inf and an explicit zero; row 4 is empty."""
    indptr = np.array([0, 2, 3, 5, 6, 6], dtype=np.int32)
    indices = np.array([0, 2, 1, 0, 3, 2], dtype=np.int32)
    data = np.array([np.nan, 1.0, np.inf, -np.inf, 2.0, 0.0])
    return sp.csr_array((data, indices, indptr), shape=(5, 4))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_in_the_sparse_values_give_what_scipy_gives(backend, kernel, rng):
    a = special_values_csr()
    for left, right in both_products(a, rng):
        result = spmm.multiply(left, right, backend=backend, kernel=kernel, num_threads=2)
        assert_product_matches_scipy(result, left, right)
        assert np.isnan(result).any() and np.isinf(result).any()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_in_the_dense_operand_propagate_only_through_stored_entries(
    backend, kernel, rng
):
    """scipy multiplies stored entries only: a NaN no stored entry meets stays out."""
    a = sp.csr_array(np.array([[1.0, 0.0, 2.0, 0.0],
                               [0.0, 0.0, 3.0, 0.0],
                               [0.0, 1.0, 0.0, 0.0]]))
    b = np.ones((4, 3))
    b[3, :] = np.nan           # column 3 of A stores nothing: no NaN in A @ B
    b[1, 0] = np.inf           # reaches row 2 only
    b[2, 1] = -np.inf
    result = spmm.multiply(a, b, backend=backend, kernel=kernel, num_threads=2)
    assert_product_matches_scipy(result, a, b)
    assert not np.isnan(result).any()
    assert np.isinf(result).sum() == 3

    x = np.ones((2, 3))
    x[:, 0] = np.nan           # row 0 of A meets columns 0 and 2 of X @ A
    x[1, 2] = np.inf
    result = spmm.multiply(x, a, backend=backend, kernel=kernel, num_threads=2)
    assert_product_matches_scipy(result, x, a)
    assert not np.isnan(result[:, 1]).any(), "column 1 of A has no entry in row 0"


def test_explicit_stored_zeros_are_multiplied_like_scipy_does(rng):
    """A stored 0 times Inf is NaN in scipy: the zero must not be skipped."""
    a = sp.csr_array((np.array([0.0, 1.0, 0.0]), np.array([0, 1, 2]), np.array([0, 2, 3])),
                     shape=(2, 3))
    assert a.nnz == 3
    b = np.array([[np.inf, 1.0], [2.0, 3.0], [4.0, 5.0]])
    for backend in BACKENDS:
        for kernel in KERNELS:
            result = spmm.multiply(a, b, backend=backend, kernel=kernel)
            assert_product_matches_scipy(result, a, b)
            assert np.isnan(result[0, 0]), f"{backend}, {kernel}: stored 0 * inf"
    x = np.array([[np.inf, 1.0]])
    assert_product_matches_scipy(spmm.multiply(x, a), x, a)
    assert np.isnan(spmm.multiply(x, a)[0, 0])


ACCEPTED_DTYPES = tuple(np.dtype(t) for t in (
    np.bool_, np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64,
    np.float16, np.float32, np.float64,
))


@pytest.mark.parametrize("dense_dtype", ACCEPTED_DTYPES, ids=ids(ACCEPTED_DTYPES))
@pytest.mark.parametrize("sparse_dtype", ACCEPTED_DTYPES, ids=ids(ACCEPTED_DTYPES))
def test_bool_integer_and_float16_values_are_converted_to_the_promised_dtype(
    sparse_dtype, dense_dtype, rng
):
    """float32 when both operands are float16/float32, float64 otherwise (bool and integers
    included); values as scipy computes them after that conversion."""
    a = make_csr((9, 7), 0.5, sparse_dtype, np.int32, rng)
    for left, right in both_products(a, rng, dense_dtype):
        assert_product_matches_scipy(spmm.multiply(left, right), left, right)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_], ids=ids([np.int32, np.bool_]))
def test_integer_and_bool_results_are_float64_sums_not_integer_or_logical(dtype):
    a = sp.csr_array(np.array([[1, 1, 1]], dtype=dtype))
    b = np.ones((3, 1), dtype=dtype)
    result = spmm.multiply(a, b)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, [[3.0]])


DIA_SHAPE = (5, 8)


@pytest.mark.parametrize("offsets", [
    np.array([0, 2**32], dtype=np.int64),        # scipy's int32 cast makes it the diagonal 0
    np.array([1, 2**31 + 2], dtype=np.int64),    # ... or a negative, huge offset
    np.array([-(2**40), -2], dtype=np.int64),
    np.array([0, 2**64 - 1], dtype=np.uint64),   # not -1: unsigned, beyond every column
    np.array([8, -5, 3], dtype=np.int32),        # just outside: columns 8.., rows 5..
    np.array([7, -4, 0], dtype=np.int16),        # just inside: one entry each
], ids=["2**32", "2**31+2", "-2**40", "uint64-max", "just-outside", "just-inside"])
def test_dia_offsets_outside_the_matrix_hold_no_entries_as_in_scipy(offsets, rng):
    """An offset at or beyond the shape holds nothing (scipy's products ignore it when its
    int32 cast does not crash them first): the product is that of the other diagonals."""
    data = rng.uniform(1.0, 2.0, (len(offsets), DIA_SHAPE[1]))
    a = sp.dia_array((np.ones((1, DIA_SHAPE[1])), [0]), shape=DIA_SHAPE)
    a.data, a.offsets = data, offsets  # assigned as they are: no int32 cast
    inside = [-DIA_SHAPE[0] < int(k) < DIA_SHAPE[1] for k in offsets]
    expected = sp.dia_array((data[inside], offsets[inside].astype(np.int64)), shape=DIA_SHAPE)
    b = make_dense((DIA_SHAPE[1], 3), np.float64, rng)
    x = make_dense((3, DIA_SHAPE[0]), np.float64, rng)

    def products():  # serial: OpenMP cannot run in a child forked after the parent used it
        return (spmm.multiply(a, b, backend="serial"), spmm.multiply(x, a, backend="serial"),
                spmm.multiply(spmm.prepare(a), b, backend="serial"))

    got = run_in_forked_child(products)
    for result, want in zip(got, (expected @ b, x @ expected, expected @ b), strict=True):
        np.testing.assert_allclose(result, want, rtol=1e-12)


def test_a_dia_matrix_is_multiplied_as_its_csr_form_repeated_offsets_summed_zeros_dropped():
    """scipy's CSR form of a DIA matrix drops stored zeros (so 0 x inf is not NaN) and
    sums repeated offsets; spmm converts DIA itself, to the same matrix."""
    a = sp.dia_array((np.ones((1, 4)), [0]), shape=(4, 4))
    a.data = np.array([[1.0, 0.0, 2.0, 3.0], [4.0, 5.0, 0.0, 6.0]])
    a.offsets = np.array([0, 0], dtype=np.int32)
    b = np.array([[1.0], [np.inf], [1.0], [1.0]])
    np.testing.assert_array_equal(spmm.multiply(a, b), a.tocsr() @ b)
    np.testing.assert_array_equal(spmm.multiply(a, b).ravel(), [5.0, np.inf, 2.0, 9.0])


# What a LIL row can hold besides Python ints and floats: scipy's own product reads each.
LIL_ROW_CONTENTS = {
    "plain": ([3, 0], [1.5, -2.0]),
    "numpy-float-values": ([1, 4], [np.float32(1.5), np.float64(0.1)]),
    "value-not-a-float32": ([2], [0.1]),
    "unsorted-and-duplicate-columns": ([4, 1, 4], [1.0, 2.0, 3.0]),
    "numpy-int-columns": ([np.int64(3), np.int32(1)], [1.0, 2.0]),
    "bool-column": ([True], [2.0]),
    "int-values": ([0, 2], [3, -4]),
    "empty": ([], []),
}
READ_BY_SCIPY = {"numpy-int-columns", "bool-column", "int-values"}


@pytest.mark.parametrize("lil_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("contents", LIL_ROW_CONTENTS)
def test_a_lil_matrix_gives_scipys_product_whatever_its_lists_hold(contents, lil_dtype, rng):
    """Float LIL matrices of Python ints and floats are read at C speed; anything else in
    their lists goes through scipy's conversion, as in scipy's own product."""
    a = make_csr((6, 5), 0.4, lil_dtype, np.int32, rng, empty_rows=(5,)).tolil()
    a.rows[0], a.data[0] = (list(x) for x in LIL_ROW_CONTENTS[contents])
    assert (_formats.lil_csr_arrays(a) is None) == (contents in READ_BY_SCIPY)
    for left, right in both_products(a, rng, dense_dtype=lil_dtype):
        before = sparse_arrays(a)
        assert_product_matches_scipy(spmm.multiply(left, right), left, right)
        assert_sparse_unchanged(a, before)


@pytest.mark.parametrize("value_dtype", [">f4", ">f8", ">i2"])
@pytest.mark.parametrize("sparse_format", ["csr", "csc", "coo", "bsr", "dia"])
def test_big_endian_values_in_every_format_give_the_native_result_and_dtype(sparse_format,
                                                                           value_dtype, rng):
    """Byte order changes nothing: the same values, the dtype of their kind and size."""
    native = np.dtype(value_dtype).newbyteorder("=")
    a = make_csr((11, 7), 0.4, native, np.int32, rng).asformat(sparse_format)
    swapped = a.copy()
    swapped.data = a.data.astype(value_dtype)  # scipy builds only native dtypes; assign it
    for dense_dtype in (native, np.dtype(value_dtype)):
        for (left, right), (ref_left, ref_right) in zip(
                both_products(swapped, rng, dense_dtype), both_products(a, rng, native),
                strict=True):
            dense = right if left is swapped else left
            expected = spmm.multiply(ref_left if left is swapped else dense.astype(native),
                                     dense.astype(native) if left is swapped else ref_right)
            result = spmm.multiply(left, right)
            assert result.dtype == expected.dtype
            np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("offsets_dtype", [">i4", "<i8", "uint32"])
def test_dia_offsets_of_any_integer_dtype_and_byte_order_are_read(offsets_dtype, rng):
    a = sp.dia_array((rng.standard_normal((3, 9)), [0, 2, -3]), shape=(9, 9))
    a.offsets = np.array([0, 2, -3] if offsets_dtype != "uint32" else [0, 2, 5],
                         dtype=offsets_dtype)
    for left, right in both_products(a, rng):
        assert_product_matches_scipy(spmm.multiply(left, right), left, right)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("level", KERNEL_SIMD_LEVELS)
@pytest.mark.parametrize("block", [(1, 1), (2, 2), (3, 3), (4, 4), (8, 8), (16, 16), (2, 4),
                                   (4, 1)], ids=str)
def test_a_bsr_matrix_of_any_block_shape_matches_scipy_on_either_side_at_any_width(
    block, level, dtype, monkeypatch, rng
):
    """Square blocks of 2 to 16 have their own one-column kernels; other shapes and wider
    products take the general block kernels. Empty block rows and a block per block row."""
    monkeypatch.setenv("SPMM_SIMD", level)
    r, c = block
    mask = rng.random((5, 7)) < 0.4
    mask[2] = False  # an empty block row
    dense = np.kron(mask, np.ones(block)) * rng.standard_normal((5 * r, 7 * c))
    a = sp.bsr_array(dense.astype(dtype), blocksize=block)
    assert a.blocksize == block
    for width in (1, 3, 17):
        b = make_dense((7 * c, width), dtype, rng)
        x = make_dense((width, 5 * r), dtype, rng)
        for threads in (1, 2):
            assert_product_matches_scipy(spmm.multiply(a, b, num_threads=threads), a, b)
            assert_product_matches_scipy(spmm.multiply(x, a, num_threads=threads), x, a)
        vector = make_dense((7 * c,), dtype, rng)
        assert_product_matches_scipy(spmm.multiply(a, vector), a, vector)
