"""The per-call fast path: common products go straight to the extension, and give what the
general path (its reference twin) and scipy give; everything else still reaches the general
path, which converts or reports it. Also the extension's helpers the fast path relies on:
the CSR transposition, the overlap check, and the cached environment."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    INDEX_DTYPES,
    VALUE_DTYPES,
    assert_product_matches_scipy,
    assert_sparse_unchanged,
    ids,
    make_csr,
    make_dense,
    outcome,
    result_dtype,
    run_in_forked_child,
    sparse_arrays,
)

import spmm
from spmm import _api, _config, _spmm_ext


@pytest.fixture
def general_path_forbidden(monkeypatch):
    """Fail any call that leaves the fast path."""
    def refuse(*args, **kwargs):
        raise AssertionError("the product took the general path")
    monkeypatch.setattr(_api, "_sparse_times_dense", refuse)
    monkeypatch.setattr(_api, "_dense_times_sparse", refuse)


def common_products(dtype, index_dtype, rng):
    """(name, left, right) of every product the fast path takes as it is."""
    a = make_csr((37, 23), 0.3, dtype, index_dtype, rng, empty_rows=(0, 5), empty_cols=(3,))
    w = make_csr((23, 37), 0.3, dtype, index_dtype, rng, empty_rows=(1,))
    b = make_dense((23, 6), dtype, rng)
    x = make_dense((6, 23), dtype, rng)
    p, pw = spmm.prepare(a), spmm.prepare(w)
    return [
        ("CSR @ B", a, b), ("CSR @ vector", a, b[:, 0].copy()),
        ("csr_matrix @ B", sp.csr_matrix(a), b),
        ("Prepared @ B", p, b), ("Prepared @ vector", p, b[:, 1].copy()),
        ("X @ CSC", x, w.tocsc()), ("X(Fortran) @ CSC", np.asfortranarray(x), w.tocsc()),
        ("vector @ CSC", x[0].copy(), w.tocsc()), ("X @ csc_matrix", x, sp.csc_matrix(w)),
        ("X @ CSR", x, w), ("vector @ CSR", x[2].copy(), w),
        ("X @ csr_matrix", x, sp.csr_matrix(w)),
        ("X @ Prepared", x, pw), ("vector @ Prepared", x[3].copy(), pw),
        ("CSC @ B", a.tocsc(), b), ("csc_matrix @ vector", sp.csc_matrix(a), b[:, 2].copy()),
    ]


def mixed_dtype_products(rng):
    """(name, left, right): operands of different dtypes, converted by the fast path."""
    a64 = make_csr((31, 19), 0.3, np.float64, np.int32, rng)
    a32 = make_csr((31, 19), 0.3, np.float32, np.int64, rng)
    a_int = make_csr((31, 19), 0.3, np.int16, np.int32, rng)
    b = make_dense((19, 5), np.float64, rng)  # for A @ B
    x = make_dense((5, 31), np.float64, rng)  # for X @ W, W being one of the 31 x 19 above
    return [
        ("f64 CSR @ f32 B", a64, b.astype(np.float32)),
        ("f32 CSR @ f64 B", a32, b), ("f32 CSR @ f16 B", a32, b.astype(np.float16)),
        ("f32 CSR @ int B", a32, (b * 9).astype(np.int32)),
        ("int16 CSR @ f32 B", a_int, b.astype(np.float32)),
        ("f64 CSR @ bool B", a64, b > 0), ("f32 CSC @ uint8 B", a32.tocsc(),
                                          (b * 9).astype(np.uint8) % 5),
        ("f32 X @ f64 CSC", x.astype(np.float32), a64.tocsc()),
        ("int X @ f32 CSR", (x * 9).astype(np.int64), a32),
        ("f64 X @ f32 Prepared", x, spmm.prepare(a32)),
        ("f32 Prepared @ f64 B", spmm.prepare(a32), b),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_operands_of_different_dtypes_take_the_fast_path_and_equal_scipy(
    backend, rng, general_path_forbidden
):
    for name, left, right in mixed_dtype_products(rng):
        scipy_left, scipy_right = reference(left, right)
        expected_shape = (scipy_left @ scipy_right).shape
        dtype = result_dtype(*(m.dtype for m in (left, right)))
        for out in (None, np.full(expected_shape, np.nan, dtype=dtype)):
            result = spmm.multiply(left, right, out=out, backend=backend, num_threads=2)
            assert out is None or result is out, name
            assert_product_matches_scipy(result, scipy_left, scipy_right, err_msg=name)


def test_out_sharing_memory_with_a_dense_operand_that_was_converted_is_an_error():
    """The extension reads the converted copy; out is still checked against the original."""
    a = sp.csr_array(np.eye(4))
    buffer = np.zeros((4, 4))
    with pytest.raises(ValueError, match="share memory"):
        spmm.multiply(a, buffer.view(np.int64), out=buffer)
    with pytest.raises(ValueError, match="share memory"):
        spmm.multiply(buffer.view(np.int64), a, out=buffer)


def reference(left, right):
    """The operands for scipy: a PreparedMatrix as its CSR form."""
    return tuple(m.to_scipy() if isinstance(m, spmm.PreparedMatrix) else m
                 for m in (left, right))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_common_products_never_take_the_general_path_and_equal_scipy(
    backend, dtype, index_dtype, rng, general_path_forbidden
):
    for name, left, right in common_products(dtype, index_dtype, rng):
        scipy_left, scipy_right = reference(left, right)
        expected_shape = (scipy_left @ scipy_right).shape
        for out in (None, np.full(expected_shape, np.nan, dtype=dtype)):
            result = spmm.multiply(left, right, out=out, backend=backend, num_threads=2)
            assert out is None or result is out, name
            assert_product_matches_scipy(result, scipy_left, scipy_right, err_msg=name)


@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_fast_path_gives_exactly_what_the_general_path_gives(backend, dtype, rng,
                                                                  monkeypatch):
    """Same kernels on the same arrays: bit for bit the same result."""
    for name, left, right in common_products(dtype, np.int32, rng):
        fast = spmm.multiply(left, right, backend=backend, num_threads=2)
        with monkeypatch.context() as m:
            m.setattr(_api, "_fast_multiply", lambda *args: None)
            general = spmm.multiply(left, right, backend=backend, num_threads=2)
        np.testing.assert_array_equal(fast, general, err_msg=name)


def misaligned(x):
    """A copy of ``x`` whose data starts one byte past an aligned address."""
    buffer = np.zeros(x.nbytes + 1, dtype=np.uint8)
    y = buffer[1:].view(x.dtype)
    y[:] = x
    return y


# Sparse operands the fast path declines: the general path converts them.
DECLINED = {
    "misaligned-index-and-data-arrays": lambda a: _with(
        a, indptr=misaligned(a.indptr), indices=misaligned(a.indices), data=misaligned(a.data)),
    "byte-swapped-data": lambda a: _with(a, data=a.data.astype(a.data.dtype.newbyteorder())),
    "mixed-index-dtypes": lambda a: _with(a, indptr=a.indptr.astype(np.int64),
                                          indices=a.indices.astype(np.int32)),
    "unsigned-indices": lambda a: _with(a, indptr=a.indptr.astype(np.uint32),
                                        indices=a.indices.astype(np.uint32)),
    "strided-indices": lambda a: _with(a, indices=np.repeat(a.indices, 2)[::2]),
    "int16-indices": lambda a: _with(a, indptr=a.indptr.astype(np.int16),
                                     indices=a.indices.astype(np.int16)),
}


def _with(a, **arrays):
    for name, value in arrays.items():
        setattr(a, name, value)
    return a


@pytest.mark.parametrize("case", DECLINED)
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_operands_the_fast_path_declines_are_converted_by_the_general_path(case, fmt, rng):
    a = make_csr((29, 31), 0.3, np.float64, np.int32, rng, empty_rows=(2,))
    b, x = make_dense((31, 4), np.float64, rng), make_dense((3, 29), np.float64, rng)
    for left, right in ((a, b), (x, a)):
        sparse = DECLINED[case](a.asformat(fmt, copy=True))
        before = sparse_arrays(sparse)
        operands = (sparse, right) if left is a else (left, sparse)
        assert_product_matches_scipy(spmm.multiply(*operands), left, right, err_msg=case)
        assert_sparse_unchanged(sparse, before)


def test_out_sharing_memory_with_a_prepared_matrix_s_other_form_is_an_error(rng):
    """p @ b reads the CSR form, but out may not overwrite the transposed one either (its
    arrays are read-only: no out can be one of them)."""
    p = spmm.prepare(sp.csr_array(np.arange(1.0, 17.0).reshape(4, 4)))
    p @ np.ones(4)  # builds nothing: the transposed form is made by x @ p
    np.ones(4) @ p
    transposed_data = p.stored_arrays()[-1]
    with pytest.raises(ValueError, match=r"read-only|share memory"):
        spmm.multiply(p, np.ones((4, 4)), out=transposed_data.reshape(4, 4))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
def test_csr_transpose_gives_scipy_s_csc_arrays_exactly(dtype, index_dtype, rng):
    """Duplicates and unsorted indices kept, in the order scipy's tocsc() gives them."""
    rows, cols = 41, 17
    lengths = rng.integers(0, 9, rows)
    lengths[[0, 40]] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    indices = rng.integers(0, cols - 1, indptr[-1]).astype(index_dtype)  # column 16 empty
    data = rng.uniform(-1, 1, indptr[-1]).astype(dtype)
    m = sp.csr_array((data, indices, indptr), shape=(rows, cols))
    assert not m.has_canonical_format
    t_indptr, t_indices, t_data = _spmm_ext.csr_transpose(indptr, indices, data, rows, cols,
                                                          True)
    expected = m.tocsc()
    np.testing.assert_array_equal(t_indptr, expected.indptr)
    np.testing.assert_array_equal(t_indices, expected.indices)
    np.testing.assert_array_equal(t_data, expected.data)
    assert t_indptr.dtype == t_indices.dtype == index_dtype and t_data.dtype == dtype


def test_csr_transpose_refuses_a_corrupt_structure_and_declines_odd_layouts():
    a = sp.csr_array(np.eye(3))
    with pytest.raises(ValueError, match="out of range"):
        _spmm_ext.csr_transpose(a.indptr, np.array([0, 1, 7], dtype=a.indices.dtype), a.data,
                                3, 3, True)
    assert _spmm_ext.csr_transpose(a.indptr, a.indices.astype(np.int64), a.data, 3, 3, True) \
        is None
    assert _spmm_ext.csr_transpose(a.indptr, a.indices, a.data[:2], 3, 3, True) is None
    assert _spmm_ext.csr_transpose(a.indptr, a.indices, a.data, 4, 3, True) is None


def test_shares_memory_agrees_with_numpy_s_bounds_check(rng):
    base = np.zeros((12, 10))
    views = [base, base[2:5], base[:, 3], base[::-1, ::2], base[7:, 7:], base.T, base[3:3],
             base.ravel()[::7], np.zeros(3), base[11:, 9:]]
    for x in views:
        for y in views:
            assert _spmm_ext.shares_memory(x, (y,)) == np.may_share_memory(x, y)


def test_the_environment_is_parsed_again_whenever_a_variable_changes(monkeypatch):
    """The parsed environment is cached on the variables' raw values: never stale, and an
    invalid value is an error at every call, not only the first."""
    assert _config.get_config()["kernel"] == "auto"
    monkeypatch.setenv("SPMM_KERNEL", "naive")
    assert _config.get_config()["kernel"] == "naive"
    monkeypatch.setenv("SPMM_KERNEL", "tiled")
    assert _config.get_config()["kernel"] == "tiled"
    monkeypatch.setenv("SPMM_KERNEL", "bogus")
    for _ in range(2):
        with pytest.raises(ValueError, match="SPMM_KERNEL"):
            _config.get_config()
    monkeypatch.setenv("SPMM_KERNEL", " reordered ")
    assert _config.get_config()["kernel"] == "reordered"
    monkeypatch.delenv("SPMM_KERNEL")
    assert _config.get_config()["kernel"] == "auto"


def test_the_default_thread_count_is_the_affinity_mask():
    assert _config.default_num_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("product", ["A@B", "X@W"])
@pytest.mark.parametrize("corruption", ["data-too-short", "index-out-of-range",
                                        "indptr-not-monotone"])
def test_a_corrupt_csr_or_csc_operand_of_the_fast_path_is_a_value_error(corruption, product,
                                                                        fmt):
    def make():
        a = sp.csr_array(np.arange(1.0, 21.0).reshape(4, 5)).asformat(fmt)
        if corruption == "data-too-short":
            a.data = a.data[:-3]
        elif corruption == "index-out-of-range":
            a.indices[2] = 9
        else:
            a.indptr[2] = a.indptr[3] + 1
        return a

    calls = {"A@B": lambda: spmm.multiply(make(), np.ones((5, 3)), backend="serial"),
             "X@W": lambda: spmm.multiply(np.ones((3, 4)), make(), backend="serial")}
    kind, exc_type, message = run_in_forked_child(lambda: outcome(calls[product]))
    assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
    assert "corrupt sparse matrix" in message
