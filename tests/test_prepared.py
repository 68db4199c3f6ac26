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
    run_in_forked_child,
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
                         "per_stored_weight": p.nbytes / p.nnz,
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


def test_a_prepared_matrix_survives_pickling(rng):
    """For multiprocessing, joblib and saving models: pickle round-trips, results unchanged.
    The derived forms (here the transpose ``x @ p`` built) are rebuilt when used again."""
    import pickle

    a = make_csr((30, 20), 0.3, np.float32, np.int32, rng)
    p = spmm.prepare(a)
    x = rng.standard_normal((5, 30)).astype(np.float32)
    expected = x @ p
    q = pickle.loads(pickle.dumps(p))
    assert q.shape == p.shape and q.dtype == p.dtype and q.nnz == p.nnz
    assert q.nbytes < p.nbytes  # not pickled: the transpose
    np.testing.assert_array_equal(x @ q, expected)
    assert q.nbytes == p.nbytes
    np.testing.assert_array_equal(q @ np.ones(20), p @ np.ones(20))


# --------------------------------------------------------------------------------------------
# Nothing handed out is memory the matrix trusts; the memory follows the matrix.


@pytest.mark.parametrize("columns", [23, 70_000], ids=["16-bit-indices", "32-bit-indices"])
def test_what_to_scipy_hands_out_cannot_change_the_prepared_matrix(columns, rng):
    """Beyond 65,536 columns ``to_scipy()`` shares the index arrays too: writing to any array
    of the matrix it returns fails (read-only) or writes to a copy, never to ``p``."""
    a = make_csr((30, columns), min(0.3, 6 / columns), np.float64, np.int32, rng)
    p = spmm.prepare(a)

    def attempt():
        m = p.to_scipy()
        written = []
        for name, position, value in (("indptr", 1, 10**6), ("indices", 0, 10**6),
                                      ("data", 0, 7.0)):
            try:
                getattr(m, name)[position] = value
                written.append(name)
            except ValueError:  # assignment destination is read-only
                pass
        x = np.ones((2, 30))
        unchanged = (np.allclose(spmm.multiply(p, np.ones(columns), backend="serial"),
                                 a @ np.ones(columns))
                     and np.allclose(spmm.multiply(x, p, backend="serial"), x @ a))
        return written, unchanged

    written, unchanged = run_in_forked_child(attempt)
    assert "data" not in written
    assert unchanged


def test_scipys_in_place_methods_on_to_scipy_fail_loudly(rng):
    p = spmm.prepare(make_csr((20, 70_000), 1e-4, np.float32, np.int32, rng))
    m = p.to_scipy()
    with pytest.raises(ValueError, match="read-only"):
        m.data *= 2
    with pytest.raises(ValueError, match="read-only"):
        m[0, int(m.indices[0]) if m.nnz else 0] = 5.0
    m.sort_indices()  # canonical already: nothing to do, nothing written
    m.sum_duplicates()
    copy = m.copy()
    copy.data *= 2  # a copy is the user's own
    np.testing.assert_array_equal(p.to_scipy().data * 2, copy.data)


def test_no_array_of_a_prepared_matrix_can_be_made_writeable(rng):
    from test_layouts import tile_wise

    for p in (spmm.prepare(make_csr((40, 30), 0.3, np.float32, np.int32, rng)),
              spmm.prepare(tile_wise((40, 64), 16, 0.5, np.float32, rng))):
        x = make_dense((3, 40), np.float64, rng)
        x @ p, spmm.multiply(x, p, kernel="tiled"), p @ np.ones(p.shape[1])  # every form
        spmm.multiply(p, np.ones((p.shape[1], 2)), num_threads=2)  # and cached slices
        arrays = [*p.stored_arrays(), *p._csr.slices.values()]
        assert len(arrays) >= 9
        for array in arrays:
            assert not array.flags.writeable
            with pytest.raises(ValueError, match="WRITEABLE"):
                array.flags.writeable = True
            with pytest.raises(ValueError, match="WRITEABLE"):
                array[:0].view().flags.writeable = True


@pytest.mark.parametrize("product", ["p @ x", "x @ p"])
def test_a_float32_matrix_converts_its_values_once_for_float64_operands(product, rng):
    """float32 values times a float64 operand are computed in float64: the converted values
    are made once, kept (counted in nbytes) and shared by concurrent first calls."""
    a = make_csr((300, 200), 0.1, np.float32, np.int32, rng)
    p = spmm.prepare(a, layout="csr")
    rows, cols = a.shape
    x = make_dense((cols, 4) if product == "p @ x" else (4, rows), np.float64, rng)
    if product == "x @ p":
        p @ np.ones(cols, np.float32)  # the float32 transpose exists: only the conversion counts
        x32 = np.ones((1, rows), np.float32)
        x32 @ p
    before = p.nbytes
    call = (lambda: p @ x) if product == "p @ x" else (lambda: x @ p)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: call(), range(8), timeout=120))
    for got in results:
        assert got.dtype == np.float64
        assert_product_matches_scipy(got, *((a, x) if product == "p @ x" else (x, a)))
    assert p.nbytes == before + a.nnz * 8
    call()
    assert p.nbytes == before + a.nnz * 8


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
