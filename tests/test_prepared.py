"""spmm.prepare(a): a PreparedMatrix, converted once, multiplied many times."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    FORMATS,
    INDEX_DTYPES,
    KERNELS,
    assert_product_matches_scipy,
    ids,
    make_csr,
    make_dense,
)

import spmm

SHAPE = (37, 23)

# Every way to multiply a PreparedMatrix p by a dense x, and the scipy product it stands for.
FORMS = {
    "p @ x": (lambda p, x: p @ x, "left"),
    "x @ p": (lambda p, x: x @ p, "right"),
    "multiply(p, x)": (lambda p, x: spmm.multiply(p, x), "left"),
    "multiply(x, p)": (lambda p, x: spmm.multiply(x, p), "right"),
}


def dense_for(side, vector, dtype, rng):
    m, k = SHAPE
    if side == "left":  # p @ x
        return make_dense(k if vector else (k, 4), dtype, rng)
    return make_dense(m if vector else (4, m), dtype, rng)


@pytest.mark.parametrize("vector", [False, True], ids=["2-D", "1-D"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_product_with_a_prepared_matrix_equals_scipy(form, dtype, vector, rng):
    a = make_csr(SHAPE, 0.2, dtype, np.int32, rng, empty_rows=(0, 36), empty_cols=(5,))
    p = spmm.prepare(a)
    call, side = FORMS[form]
    x = dense_for(side, vector, dtype, rng)
    result = call(p, x)
    assert type(result) is np.ndarray, "numpy must defer x @ p to the PreparedMatrix"
    assert result.ndim == (1 if vector else 2)
    assert_product_matches_scipy(result, *((a, x) if side == "left" else (x, a)))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_prepared_matrix_works_with_every_backend_and_kernel(backend, kernel, rng):
    a = make_csr(SHAPE, 0.3, np.float64, np.int64, rng)
    p = spmm.prepare(a)
    b, x = dense_for("left", False, np.float64, rng), dense_for("right", False, np.float64, rng)
    for num_threads in (1, 3):
        kw = {"backend": backend, "kernel": kernel, "num_threads": num_threads}
        assert_product_matches_scipy(spmm.multiply(p, b, **kw), a, b)
        assert_product_matches_scipy(spmm.multiply(x, p, **kw), x, a)
        out = np.empty((4, SHAPE[1]))
        assert spmm.multiply(x, p, out=out, **kw) is out
        assert_product_matches_scipy(out, x, a)


@pytest.mark.parametrize("sparse_format", FORMATS)
def test_a_matrix_of_any_format_can_be_prepared(sparse_format, rng):
    a = make_csr(SHAPE, 0.2, np.float64, np.int32, rng).asformat(sparse_format)
    p = spmm.prepare(a)
    x, b = dense_for("right", False, np.float64, rng), dense_for("left", False, np.float64, rng)
    assert_product_matches_scipy(x @ p, x, a)
    assert_product_matches_scipy(p @ b, a, b)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nbytes_is_the_size_of_its_arrays_and_grows_once_when_x_at_p_builds_the_transpose(
    dtype, index_dtype, rng
):
    """At most 65,536 columns: 16-bit column indices and 64-bit row pointers, whatever the
    input's index dtype; scipy gets int32 indices back."""
    a = make_csr(SHAPE, 0.2, dtype, index_dtype, rng)
    m, n = SHAPE
    vsz, nnz = np.dtype(dtype).itemsize, a.nnz
    p = spmm.prepare(a)
    assert p.to_scipy().indices.dtype == np.int32 and p.to_scipy().indptr.dtype == np.int32
    csr_bytes = (m + 1) * 8 + nnz * (2 + vsz)
    assert p.nbytes == csr_bytes
    p @ dense_for("left", False, dtype, rng)
    assert p.nbytes == csr_bytes, "p @ x needs nothing more"
    dense_for_right = dense_for("right", False, dtype, rng)
    dense_for_right @ p
    transposed_bytes = p.nbytes - csr_bytes
    # The transpose's CSR arrays: n + 1 64-bit pointers, nnz 16-bit indices and values.
    assert transposed_bytes == (n + 1) * 8 + nnz * (2 + vsz)
    dense_for_right @ p
    spmm.multiply(dense_for_right, p)
    assert p.nbytes == csr_bytes + transposed_bytes, "the transpose is built once"


@pytest.mark.parametrize(("columns", "index_bytes", "offset_bytes"),
                         [(1, 2, 8), (2**16, 2, 8), (2**16 + 1, 4, 4)])
def test_column_indices_take_16_bits_up_to_65536_columns_and_32_bits_beyond(
    columns, index_bytes, offset_bytes, rng
):
    rows = 5
    a = sp.random_array((rows, columns), density=min(1.0, 40 / columns), format="lil",
                        dtype=np.float32, rng=rng)
    a[rows - 1, columns - 1] = 2.5  # the last column is reachable through the 16-bit index
    a = a.tocsr()
    p = spmm.prepare(a)
    assert p.nbytes == (rows + 1) * offset_bytes + a.nnz * (index_bytes + 4)
    x = make_dense((columns, 3), np.float32, rng)
    for backend in spmm.available_backends():
        assert_product_matches_scipy(spmm.multiply(p, x, backend=backend, num_threads=2), a, x)
    y = make_dense((2, rows), np.float32, rng)
    assert_product_matches_scipy(spmm.multiply(y, p), y, a)


def test_footprint_compares_the_prepared_bytes_with_scipy_csr_and_dense(rng):
    a = make_csr((300, 200), 0.1, np.float32, np.int64, rng)
    p = spmm.prepare(a)
    footprint = p.footprint()
    assert footprint == {"prepared": p.nbytes,
                         "scipy_csr": 301 * 4 + a.nnz * (4 + 4),
                         "dense": 300 * 200 * 4}
    assert footprint["prepared"] < footprint["scipy_csr"] < footprint["dense"]


def test_the_partition_for_the_configured_threads_is_computed_by_prepare_and_reused(
    kernel_calls, rng
):
    a = make_csr((300, 200), 0.1, np.float64, np.int32, rng)
    with spmm.config_context(num_threads=3):
        p = spmm.prepare(a)
    nnz_code, dynamic_code = 1, 2  # the default partition's two choices (choose_partition)
    assert set(p._csr.slices) == {(3, nnz_code), (3, dynamic_code)}
    for code in (nnz_code, dynamic_code):
        expected = spmm._spmm_ext.partition_bounds(p.to_scipy().indptr, 3, code)
        assert list(p._csr.slices[(3, code)]) == expected
    x = make_dense((200, 4), np.float64, rng)
    for backend in ("serial", *spmm.available_backends()):
        assert_product_matches_scipy(spmm.multiply(p, x, backend=backend, num_threads=3), a, x)
        assert_product_matches_scipy(spmm.multiply(p, x, backend=backend, num_threads=2), a, x)
    assert set(p._csr.slices) == {(3, nnz_code), (3, dynamic_code), (2, nnz_code)}, \
        "kept for the next call"


def test_shape_dtype_and_nnz_describe_the_matrix_with_duplicates_summed():
    a = sp.csr_array((np.array([1.0, 2.0, 3.0, 4.0]), np.array([2, 0, 2, 1]),
                      np.array([0, 3, 3, 4])), shape=(3, 4))
    assert not a.has_canonical_format and a.nnz == 4
    p = spmm.prepare(a)
    assert p.shape == (3, 4)
    assert p.dtype == np.float64
    assert p.nnz == 3
    x = np.arange(12.0).reshape(4, 3)
    assert_product_matches_scipy(p @ x, a, x)
    assert not a.has_canonical_format, "prepare must not change the caller's matrix"


PREPARED_DTYPES = [
    (np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64),
    (np.int8, np.float32), (np.int32, np.float64), (np.int64, np.float64),
    (np.uint16, np.float32), (np.bool_, np.float32),
]


@pytest.mark.parametrize(("source", "stored"), PREPARED_DTYPES,
                         ids=ids([s for s, _ in PREPARED_DTYPES]))
def test_values_float32_holds_exactly_are_stored_as_float32_others_as_float64(
    source, stored, rng
):
    a = make_csr(SHAPE, 0.3, source, np.int32, rng)
    p = spmm.prepare(a)
    assert p.dtype == stored
    x, b = dense_for("right", False, np.float32, rng), dense_for("left", False, np.float32, rng)
    assert_product_matches_scipy(x @ p, x, a)
    assert_product_matches_scipy(p @ b, a, b)


@pytest.mark.parametrize("sparse_format", ["csr", "csc", "coo"])
def test_a_prepared_matrix_owns_its_data(sparse_format, rng):
    a = make_csr(SHAPE, 0.3, np.float64, np.int32, rng).asformat(sparse_format)
    original = a.copy()
    p = spmm.prepare(a)
    x, b = dense_for("right", False, np.float64, rng), dense_for("left", False, np.float64, rng)
    a.data *= 10.0
    a.data[:3] = np.nan
    if sparse_format != "coo":
        a.indices[:] = 0
    assert_product_matches_scipy(x @ p, x, original)
    assert_product_matches_scipy(p @ b, original, b)


def test_multiplying_a_prepared_matrix_by_a_sparse_one_is_a_type_error(rng):
    a = make_csr(SHAPE, 0.3, np.float64, np.int32, rng)
    p = spmm.prepare(a)
    with pytest.raises(TypeError, match="PreparedMatrix @ sparse is not supported"):
        p @ a.T
    with pytest.raises(TypeError, match="unsupported operand"):  # scipy's own message
        a.T @ p
    with pytest.raises(TypeError, match="PreparedMatrix @ sparse is not supported"):
        p @ spmm.prepare(a.T)
    with pytest.raises(TypeError, match="two sparse operands"):
        spmm.multiply(p, a.T)


@pytest.mark.parametrize(("not_preparable", "pattern"), [
    (np.ones((3, 3)), "expected a scipy.sparse matrix or array, got ndarray"),
    ([[1.0, 0.0]], "expected a scipy.sparse matrix or array, got list"),
    (sp.csr_array(np.eye(3, dtype=np.complex128)), "unsupported sparse operand dtype complex128"),
    (sp.coo_array(np.ones(3)), "sparse operands must be 2-D"),
], ids=["ndarray", "list", "complex", "1-D-sparse"])
def test_prepare_refuses_dense_complex_and_1d_input_with_a_type_error(not_preparable, pattern):
    with pytest.raises(TypeError, match=pattern):
        spmm.prepare(not_preparable)


def test_a_prepared_matrix_is_shared_safely_between_python_threads(rng):
    """Eight threads use a fresh PreparedMatrix at once, the first x @ p building the
    transpose while the others wait for it."""
    a = make_csr((200, 150), 0.1, np.float64, np.int32, rng)
    p = spmm.prepare(a)
    xs = [make_dense((5, 200), np.float64, rng) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda x: [x @ p for _ in range(10)], xs, timeout=120))
    for x, rounds in zip(xs, results, strict=True):
        for got in rounds:
            assert_product_matches_scipy(got, x, a)


def test_a_prepared_matrix_survives_pickling_with_its_forms(rng):
    """For multiprocessing, joblib and saving models: pickle round-trips, results unchanged."""
    import pickle

    a = make_csr((30, 20), 0.3, np.float32, np.int32, rng)
    p = spmm.prepare(a)
    x = rng.standard_normal((5, 30)).astype(np.float32)
    expected = x @ p
    q = pickle.loads(pickle.dumps(p))
    assert q.shape == p.shape and q.nbytes == p.nbytes and q.dtype == p.dtype
    np.testing.assert_array_equal(x @ q, expected)
    np.testing.assert_array_equal(q @ np.ones(20), p @ np.ones(20))


@pytest.mark.parametrize("side", ["x @ p", "p @ x"])
def test_a_product_refused_for_its_shape_leaves_the_prepared_matrix_unchanged(side, rng):
    p = spmm.prepare(make_csr((20, 30), 0.2, np.float64, np.int32, rng))
    before = p.nbytes
    with pytest.raises(ValueError, match="shape mismatch"):
        if side == "x @ p":
            np.ones((3, 31)) @ p
        else:
            p @ np.ones((29, 3))
    assert p.nbytes == before, "a refused product must not build another form"
