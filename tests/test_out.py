"""``out=``: the result is written in place, without allocating; a wrong ``out`` is an error.
The caller's inputs are never modified."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    assert_product_matches_scipy,
    assert_sparse_unchanged,
    make_csr,
    make_dense,
    sparse_arrays,
)

import spmm


def products(rng, dtype=np.float64, vector=False):
    """[(A, B), (X, W)] of a 40 x 30 sparse matrix with dense operands of ``dtype``."""
    a = make_csr((40, 30), 0.2, dtype, np.int32, rng, empty_rows=(0, 39))
    return [(a, make_dense(30 if vector else (30, 5), dtype, rng)),
            (make_dense(40 if vector else (7, 40), dtype, rng), a)]


def result_shape(left, right):
    return (left @ right).shape


@pytest.mark.parametrize("vector", [False, True], ids=["2-D", "1-D"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_out_is_written_in_place_and_returned(backend, dtype, vector, rng):
    for left, right in products(rng, dtype, vector):
        sparse = left if sp.issparse(left) else right
        dense = right if sparse is left else left
        sparse_before, dense_before = sparse_arrays(sparse), dense.copy()
        out = np.full(result_shape(left, right), np.nan, dtype=dtype)  # every entry is written
        result = spmm.multiply(left, right, out=out, backend=backend, num_threads=3)
        assert result is out
        assert_product_matches_scipy(out, left, right)
        np.testing.assert_array_equal(dense, dense_before)
        assert_sparse_unchanged(sparse, sparse_before)


def allocated_bytes_during(fn):
    """Peak bytes allocated through Python's and numpy's allocators while ``fn()`` runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_receives_the_result_without_any_result_sized_allocation(backend, rng):
    """With operands already in the kernels' form (CSR A with C-ordered B; CSC W with
    Fortran-ordered X), nothing near the size of the result is allocated."""
    a = make_csr((2000, 300), 0.01, np.float64, np.int32, rng)
    b = make_dense((300, 64), np.float64, rng)
    out_ab = np.empty((2000, 64))
    w = a.T.tocsc()  # 300 x 2000, CSC: its arrays are the CSR arrays of W^T
    x = np.asfortranarray(make_dense((64, 300), np.float64, rng))
    out_xw = np.empty((64, 2000))
    for left, right, out in ((a, b, out_ab), (x, w, out_xw)):
        def call(left=left, right=right, out=out):
            spmm.multiply(left, right, out=out, backend=backend, num_threads=2)
        call()  # warm-up: thread pools, lazily created state
        peak = allocated_bytes_during(call)
        assert peak < out.nbytes // 10, f"{peak} bytes allocated for a {out.nbytes}-byte result"
        assert_product_matches_scipy(out, left, right)


def _read_only(array):
    array.setflags(write=False)
    return array


def bad_out_cases():
    """(name, make_out(result_shape, dense), exception, message pattern)."""
    return [
        ("one-row-too-many", lambda shape, dense: np.empty((shape[0] + 1, shape[1])),
         ValueError, r"out has shape \(7, 6\), the result has shape \(6, 6\)"),
        ("flattened", lambda shape, dense: np.empty(shape[0] * shape[1]),
         ValueError, "shape"),
        ("wrong-dtype", lambda shape, dense: np.empty(shape, dtype=np.float32),
         ValueError, r"out has dtype float32, the result has dtype float64"),
        ("integer-dtype", lambda shape, dense: np.empty(shape, dtype=np.int64),
         ValueError, "dtype"),
        ("Fortran-order", lambda shape, dense: np.empty(shape, order="F"),
         ValueError, "C-contiguous"),
        ("strided-view", lambda shape, dense: np.empty((shape[0], 2 * shape[1]))[:, ::2],
         ValueError, "C-contiguous"),
        ("read-only", lambda shape, dense: _read_only(np.zeros(shape)),
         ValueError, "read-only"),
        ("a-list", lambda shape, dense: np.zeros(shape).tolist(),
         TypeError, r"out must be a numpy.ndarray, got list"),
        ("the-dense-input-itself", lambda shape, dense: dense,
         ValueError, "share memory"),
        ("a-view-of-the-dense-input", lambda shape, dense: dense[:],
         ValueError, "share memory"),
    ]


BAD_OUT = {case[0]: case[1:] for case in bad_out_cases()}


@pytest.mark.parametrize("case", BAD_OUT)
def test_an_unusable_out_is_an_error_and_the_inputs_are_untouched(case, rng):
    make_out, exception, pattern = BAD_OUT[case]
    a = make_csr((6, 6), 0.5, np.float64, np.int32, rng)  # square: out could alias the input
    for left, right in [(a, make_dense((6, 6), np.float64, rng)),
                        (make_dense((6, 6), np.float64, rng), a)]:
        dense = right if left is a else left
        dense_before, sparse_before = dense.copy(), sparse_arrays(a)
        out = make_out((6, 6), dense)
        with pytest.raises(exception, match=pattern):
            spmm.multiply(left, right, out=out)
        np.testing.assert_array_equal(dense, dense_before)
        assert_sparse_unchanged(a, sparse_before)


def test_out_sharing_memory_with_the_sparse_values_is_an_error():
    a = sp.csr_array(np.arange(1.0, 5.0).reshape(2, 2))
    out = a.data.reshape(2, 2)
    with pytest.raises(ValueError, match="share memory"):
        spmm.multiply(a, np.ones((2, 2)), out=out)
    np.testing.assert_array_equal(a.data, [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("array", ["indices", "indptr"])
def test_out_sharing_memory_with_the_sparse_index_arrays_is_an_error(array):
    """Writing the result over the indices the kernel reads could crash: refused."""
    rows = 4 if array == "indices" else 3  # 16 indices for a 4 x 4 result, 4 indptr for 4
    a = sp.csr_array(np.arange(1.0, 4.0 * rows + 1).reshape(rows, 4))
    a.indices, a.indptr = a.indices.astype(np.int64), a.indptr.astype(np.int64)
    source = getattr(a, array)
    before = source.copy()
    with pytest.raises(ValueError, match="share memory"):
        if array == "indices":
            spmm.multiply(a, np.ones((4, 4)), out=source.view(np.float64).reshape(4, 4))
        else:
            spmm.multiply(np.ones(3), a, out=source.view(np.float64))
    np.testing.assert_array_equal(source, before)


def test_out_sharing_memory_with_a_prepared_matrix_is_an_error():
    """The prepared matrix's values, as to_scipy() shares them, are read-only: they cannot
    be an out."""
    p = spmm.prepare(sp.csr_array(np.arange(1.0, 17.0).reshape(4, 4)))
    out = p.to_scipy().data.reshape(4, 4)
    with pytest.raises(ValueError, match=r"read-only|share memory"):
        spmm.multiply(p, np.ones((4, 4)), out=out)


def test_a_2d_out_for_a_1d_result_is_a_shape_error(rng):
    a = make_csr((5, 4), 0.5, np.float64, np.int32, rng)
    with pytest.raises(ValueError, match="shape"):
        spmm.multiply(a, np.ones(4), out=np.empty((5, 1)))
    out = np.empty(5)
    assert spmm.multiply(a, np.ones(4), out=out) is out


@pytest.mark.parametrize("product", ["A@B", "X@W"])
def test_out_is_accepted_whatever_stride_numpy_reports_for_an_axis_of_size_one(product, rng):
    """C-contiguous, aligned, writable and of the right shape and dtype is enough."""
    a = sp.random_array((5, 4), density=0.5, format="csr", rng=0)
    if product == "A@B":
        left, right = a, rng.standard_normal((4, 1))
        shape = (5, 1)
    else:
        left, right = rng.standard_normal((1, 5)), a
        shape = (1, 4)
    base = np.empty(8)
    odd = 12345 * 8 + 3  # not even a whole number of elements: never used for a size-1 axis
    strides = (8, odd) if shape[1] == 1 else (odd, 8)
    out = np.lib.stride_tricks.as_strided(base, shape=shape, strides=strides, writeable=True)
    assert out.flags.c_contiguous and out.flags.aligned
    assert spmm.multiply(left, right, out=out) is out
    np.testing.assert_allclose(out, left @ right, rtol=1e-12)
