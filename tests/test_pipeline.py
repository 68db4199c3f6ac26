"""The one dispatch pipeline: every scipy format, in both orientations, goes straight to its
kernel family with no per-call conversion and gives scipy's result; ``explain`` reports what
``multiply`` runs; the extension's helpers the pipeline relies on behave."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    INDEX_DTYPES,
    KERNELS,
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
from spmm import _config, _policy, _spmm_ext

DIRECT_FORMATS = ("csr", "csc", "coo", "bsr", "dia")
FAMILY = {  # (format, orientation) -> the family that reads it as stored
    ("csr", "A@B"): "csr_rows", ("csr", "X@W"): "csc_columns",
    ("csc", "A@B"): "csc_columns", ("csc", "X@W"): "csr_rows",
    ("coo", "A@B"): "coo", ("coo", "X@W"): "coo",
    ("bsr", "A@B"): "bsr_rows", ("bsr", "X@W"): "bsr_columns",
    ("dia", "A@B"): "dia", ("dia", "X@W"): "dia",
    ("lil", "A@B"): "csr_rows", ("lil", "X@W"): "csc_columns",
    ("dok", "A@B"): "csr_rows", ("dok", "X@W"): "csc_columns",
}


def operands(fmt, orientation, dtype, index_dtype, n, rng):
    """(left, right) of a 38 x 26 product in ``fmt``, with empty rows and columns."""
    a = make_csr((38, 26), 0.25, dtype, index_dtype, rng, empty_rows=(0, 5), empty_cols=(3,))
    a = a.tobsr(blocksize=(2, 2)) if fmt == "bsr" else a.asformat(fmt)
    if orientation == "A@B":
        return a, make_dense((26, n) if n else (26,), dtype, rng)
    return make_dense((n, 38) if n else (38,), dtype, rng), a


@pytest.mark.parametrize("n", [0, 1, 3, 17, 40], ids=["1-D", "n=1", "n=3", "n=17", "n=40"])
@pytest.mark.parametrize("orientation", ["A@B", "X@W"])
@pytest.mark.parametrize("fmt", [*DIRECT_FORMATS, "lil", "dok"])
def test_every_format_and_orientation_equals_scipy_on_every_backend_kernel_and_thread_count(
        fmt, orientation, n, rng):
    for dtype in VALUE_DTYPES:
        left, right = operands(fmt, orientation, dtype, np.int32, n, rng)
        for backend in BACKENDS:
            for kernel in KERNELS:
                for threads in (1, 2, 3):
                    result = spmm.multiply(left, right, backend=backend, kernel=kernel,
                                           num_threads=threads)
                    assert_product_matches_scipy(
                        result, left, right, err_msg=f"{backend} {kernel} {threads}")


#: The dense columns from which ``auto`` transposes a user's column-read matrix, per thread.
TRANSPOSE_FROM = _policy.TRANSPOSE_MIN_COLUMNS_PER_THREAD


def column_read_operands(fmt, dtype, index_dtype, n, rng, *, canonical=True):
    """(left, right) of a product that reads a user's matrix by columns as stored: CSC times
    B (A @ B) or X times CSR (X @ W), a 38 x 26 matrix with empty rows and columns, or with
    ``canonical`` False, unsorted indices and duplicate entries in every row."""
    a = make_csr((38, 26), 0.25, dtype, index_dtype, rng, empty_rows=(0, 5), empty_cols=(3,))
    if not canonical:
        doubled = sp.csr_array((np.concatenate([a.data, a.data[::-1]]),
                                np.concatenate([a.indices, a.indices[::-1]]),
                                (2 * a.indptr).astype(index_dtype)), shape=a.shape)
        for i in range(a.shape[0]):  # each row: its entries, then the same ones reversed
            lo, hi = a.indptr[i], a.indptr[i + 1]
            row = slice(2 * lo, 2 * hi)
            doubled.indices[row] = np.concatenate([a.indices[lo:hi], a.indices[lo:hi][::-1]])
            doubled.data[row] = np.concatenate([a.data[lo:hi], a.data[lo:hi][::-1]])
        a = doubled
        assert not a.has_canonical_format
    if fmt == "csc":
        a = sp.csc_array((a.data, a.indices, a.indptr), shape=a.shape[::-1])
        return a, make_dense((38, n), dtype, rng)
    return make_dense((n, 38), dtype, rng), a


@pytest.mark.asan
@pytest.mark.parametrize("canonical", [True, False], ids=["canonical", "unsorted-duplicates"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("fmt", ["csc", "csr"], ids=["CSC A@B", "CSR X@W"])
def test_many_dense_columns_transpose_a_column_read_matrix_per_call_and_equal_scipy(
        fmt, threads, index_dtype, canonical, rng):
    """From TRANSPOSE_FROM dense columns per thread, ``auto`` copies the matrix into the CSR
    form of the product's rows and reads it by rows; below, it scatters as stored."""
    for dtype in VALUE_DTYPES:
        for n, family in ((TRANSPOSE_FROM * threads, "csr_rows"),
                          (TRANSPOSE_FROM * threads - 1, "csc_columns")):
            left, right = column_read_operands(fmt, dtype, index_dtype, n, rng,
                                               canonical=canonical)
            for backend in BACKENDS:
                report = spmm.explain(left, right, backend=backend, num_threads=threads)
                assert report["kernel"] == f"{family}.tiled"
                assert ("transposed per call" in report["reason"]) == (family == "csr_rows")
                result = spmm.multiply(left, right, backend=backend, num_threads=threads)
                assert_product_matches_scipy(result, left, right, err_msg=f"{backend} n={n}")


@pytest.mark.parametrize("threads", [2, 3])
def test_a_large_matrix_is_transposed_from_the_one_thread_width_at_any_thread_count(
        threads, rng):
    """A matrix of at least TRANSPOSE_MIN_ENTRIES_ANY_THREADS stored entries is copied from
    TRANSPOSE_FROM dense columns whatever the threads (the copy is theirs too); one entry
    fewer waits for TRANSPOSE_FROM columns per thread."""
    large = _policy.TRANSPOSE_MIN_ENTRIES_ANY_THREADS
    rows = np.repeat(np.arange(1024), large // 1024)
    cols = (np.arange(large) * 7) % 1024
    w = sp.csr_array((rng.standard_normal(large), (rows, cols)), shape=(1024, 1024))
    x = make_dense((TRANSPOSE_FROM, 1024), np.float64, rng)
    assert spmm.explain(x, w, num_threads=threads)["kernel"] == "csr_rows.tiled"
    assert_product_matches_scipy(spmm.multiply(x, w, num_threads=threads), x, w)
    fewer = sp.csr_array((w.data[:-1], w.indices[:-1], np.minimum(w.indptr, large - 1)),
                         shape=w.shape)
    assert spmm.explain(x, fewer, num_threads=threads)["kernel"] == "csc_columns.tiled"


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "auto"])
def test_a_named_kernel_reads_the_matrix_as_stored_whatever_the_width(kernel, rng):
    left, right = column_read_operands("csr", np.float64, np.int32, 2 * TRANSPOSE_FROM, rng)
    assert spmm.explain(left, right, kernel=kernel, num_threads=1)["kernel"] == (
        f"csc_columns.{kernel}")


@pytest.mark.parametrize("orientation", ["A@B", "X@W"])
@pytest.mark.parametrize("fmt", DIRECT_FORMATS)
def test_direct_formats_are_never_converted_by_scipy(fmt, orientation, monkeypatch, rng):
    left, right = operands(fmt, orientation, np.float64, np.int64, 5, rng)
    expected = left @ right
    for name in ("tocsr", "tocsc", "tocoo", "tobsr", "todia", "asformat", "transpose"):
        for cls in (sp.csr_array, sp.csc_array, sp.coo_array, sp.bsr_array, sp.dia_array):
            def refuse(*args, _name=name, **kwargs):
                raise AssertionError(f"multiply called scipy's {_name}")
            monkeypatch.setattr(cls, name, refuse)
    np.testing.assert_allclose(spmm.multiply(left, right), expected, rtol=1e-12)


@pytest.mark.parametrize("orientation", ["A@B", "X@W"])
@pytest.mark.parametrize("fmt", [*DIRECT_FORMATS, "lil", "dok"])
def test_explain_names_the_family_multiply_runs_without_computing_anything(
        fmt, orientation, kernel_calls, extension_arrays, rng):
    left, right = operands(fmt, orientation, np.float32, np.int32, 8, rng)
    report = spmm.explain(left, right, backend="threads", num_threads=2)
    assert set(report) == {"kernel", "family", "layout", "partition", "num_threads",
                           "backend", "simd", "reason"}
    assert extension_arrays == [], "explain must not compute the product"
    assert report["family"] == FAMILY[(fmt, orientation)]
    assert report["kernel"].startswith(report["family"] + ".")
    assert report["layout"] == fmt and report["backend"] == "threads"
    assert report["simd"] in _config.available_simd()
    assert "converted" in report["reason"] if fmt in ("lil", "dok") else "no conversion" in \
        report["reason"]
    spmm.multiply(left, right, backend="threads", num_threads=2)
    planned, ran = kernel_calls
    assert ran == planned
    assert (ran["family"], ran["partition"], ran["num_threads"], ran["backend"]) == (
        report["family"], report["partition"], report["num_threads"], report["backend"])


def test_explain_reports_one_thread_below_the_minimum_work(default_parallel_threshold):
    a = sp.random_array((50, 40), density=0.1, format="csr", rng=0)
    report = spmm.explain(a, np.ones((40, 4)), num_threads=2, backend="threads")
    assert report["num_threads"] == 1
    assert "minimum work" in report["reason"]


def test_explain_says_when_a_family_has_no_register_blocked_kernel():
    a = sp.dia_array((np.ones((3, 30)), [0, 1, -2]), shape=(30, 30))
    report = spmm.explain(a, np.ones((30, 4)), kernel="tiled")
    assert report["kernel"] == "dia.reordered"
    assert "no register-blocked" in report["reason"]


def test_explain_checks_its_operands_like_multiply():
    a = sp.random_array((5, 4), density=0.5, format="csr", rng=0)
    with pytest.raises(ValueError, match="shape mismatch"):
        spmm.explain(a, np.ones((5, 2)))
    with pytest.raises(TypeError, match="two dense"):
        spmm.explain(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="kernel"):
        spmm.explain(a, np.ones((4, 2)), kernel="fast")


def mixed_dtype_products(rng):
    """(name, left, right): operands of different dtypes, converted to the result's dtype."""
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
        ("f32 COO @ int8 B", a32.tocoo(), (b * 9).astype(np.int8)),
        ("f16 X @ f32 BSR", x.astype(np.float16), a32.tobsr()),
        ("f64 X @ f32 Prepared", x, spmm.prepare(a32)),
        ("f32 Prepared @ f64 B", spmm.prepare(a32), b),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_operands_of_different_dtypes_are_converted_and_equal_scipy(backend, rng):
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


def misaligned(x):
    """A copy of ``x`` whose data starts one byte past an aligned address."""
    buffer = np.zeros(x.nbytes + 1, dtype=np.uint8)
    y = buffer[1:].view(x.dtype).reshape(x.shape)
    y[...] = x
    return y


def _with(a, **arrays):
    for name, value in arrays.items():
        setattr(a, name, value)
    return a


# Stored arrays the kernels cannot read as they are: converted for the call (a copy), never
# the caller's arrays modified.
UNUSUAL_ARRAYS = {
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


@pytest.mark.parametrize("case", UNUSUAL_ARRAYS)
@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr"])
def test_unusual_stored_arrays_are_converted_for_the_call_and_left_unchanged(case, fmt, rng):
    a = make_csr((28, 30), 0.3, np.float64, np.int32, rng, empty_rows=(2,))
    b, x = make_dense((30, 4), np.float64, rng), make_dense((3, 28), np.float64, rng)
    for left, right in ((a, b), (x, a)):
        stored = a.tobsr(blocksize=(2, 2)) if fmt == "bsr" else a.asformat(fmt, copy=True)
        sparse = UNUSUAL_ARRAYS[case](stored)
        before = sparse_arrays(sparse)
        operands = (sparse, right) if left is a else (left, sparse)
        assert_product_matches_scipy(spmm.multiply(*operands), left, right, err_msg=case)
        assert_sparse_unchanged(sparse, before)


def test_the_arrays_out_is_checked_against_follow_every_form_built_since():
    """A prepared matrix keeps the list of its arrays between products; a form built later
    (the transpose, the one-column layout, the other dtype's values) joins it."""
    p = spmm.prepare(sp.random_array((30, 20), density=0.3, format="csr", rng=0))
    spmm.multiply(p, np.ones((20, 2)), out=np.empty((30, 2)))
    before = {id(x) for x in p.stored_arrays()}
    np.ones(30) @ p  # the transpose and its one-column layout
    np.ones((2, 30), np.float32) @ p  # float32 values
    after = p.stored_arrays()
    assert before < {id(x) for x in after}
    assert {id(x) for x in after} == {id(x) for x in p._arrays_of_forms()}


def test_out_sharing_memory_with_a_prepared_matrix_s_other_form_is_an_error():
    """p @ b reads the CSR form, but out may not overwrite the transposed one either (its
    arrays are read-only: no out can be one of them)."""
    p = spmm.prepare(sp.csr_array(np.arange(1.0, 17.0).reshape(4, 4)))
    np.ones(4) @ p  # builds the transposed form
    transposed_data = p.stored_arrays()[-1]
    with pytest.raises(ValueError, match=r"read-only|share memory"):
        spmm.multiply(p, np.ones((4, 4)), out=transposed_data.reshape(4, 4))


def test_shares_memory_agrees_with_numpy_s_bounds_check():
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


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("product", ["A@B", "X@W"])
@pytest.mark.asan
@pytest.mark.parametrize("corruption", ["data-too-short", "index-out-of-range",
                                        "indptr-not-monotone", "indptr-negative"])
@pytest.mark.parametrize("n", [3, 2 * TRANSPOSE_FROM], ids=["n=3", "transposed-width"])
def test_a_corrupt_csr_or_csc_operand_is_a_value_error_in_both_orientations(
        n, corruption, product, fmt, index_dtype):
    def make():
        a = sp.csr_array(np.arange(1.0, 21.0).reshape(4, 5)).asformat(fmt)
        a.indices, a.indptr = a.indices.astype(index_dtype), a.indptr.astype(index_dtype)
        if corruption == "data-too-short":
            a.data = a.data[:-3]
        elif corruption == "index-out-of-range":
            a.indices[2] = 9
        elif corruption == "indptr-negative":
            a.indptr[2] = -7
        else:
            a.indptr[2] = a.indptr[3] + 1
        return a

    calls = {"A@B": lambda: spmm.multiply(make(), np.ones((5, n)), backend="threads",
                                          num_threads=2),
             "X@W": lambda: spmm.multiply(np.ones((n, 4)), make(), backend="threads",
                                          num_threads=2)}
    kind, exc_type, message = run_in_forked_child(lambda: outcome(calls[product]))
    assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
    assert "corrupt sparse matrix" in message


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr"])
@pytest.mark.parametrize("product", ["A@B", "X@W"])
def test_a_corrupt_matrix_is_an_error_even_when_the_product_has_no_element(fmt, product):
    """Nothing to compute (zero dense columns), but a corrupt matrix is still refused."""
    def make():
        a = sp.csr_array(np.arange(1.0, 21.0).reshape(4, 5))
        a = a.tobsr(blocksize=(1, 1)) if fmt == "bsr" else a.asformat(fmt)
        if fmt == "coo":
            a.coords[1][2] = 9
        else:
            a.indices[2] = 9
        return a

    calls = {"A@B": lambda: spmm.multiply(make(), np.ones((5, 0)), backend="serial"),
             "X@W": lambda: spmm.multiply(np.ones((0, 4)), make(), backend="serial")}
    kind, exc_type, message = run_in_forked_child(lambda: outcome(calls[product]))
    assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
    assert "corrupt sparse matrix" in message
