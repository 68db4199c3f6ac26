"""prepare(w, values=v, activations=v): the dense operand rounded to v at every product, the
dot-product instructions (or the portable loop computing the same) multiplying, within the
documented error bound, at every instruction-set level."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import SIMD_LEVELS, ids

import spmm
from spmm import _activations, _precision
from spmm._testing import parallel_min_work

ACTIVATIONS = ("bfloat16", "int8")
DENSE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
U = 2.0**-24  # float32's unit roundoff
TINY = 2.0**-126  # float32's smallest normal: below it vdpbf16ps reads and stores zero

# Dense widths: a vector, and widths with tails after 1, 2 and 4 registers of 16 (and of 8).
WIDTHS = (None, 1, 3, 19, 40, 70)


def weights(rng: np.random.Generator) -> sp.csr_array:
    """W (37 inputs x 23 outputs, neither a multiple of 2 or 4), with an empty output column
    (3), an output with a single stored weight (5), an input row with none (11), a full
    output (7), and magnitudes over six decades."""
    dense = rng.standard_normal((37, 23)) * 10.0 ** rng.integers(-3, 3, (37, 23))
    dense[rng.random((37, 23)) < 0.6] = 0
    dense[:, 3] = 0
    dense[:, 5] = 0
    dense[30, 5] = -2.5
    dense[11, :] = 0
    dense[:, 7] = rng.standard_normal(37)
    dense[11, 7] = 0
    return sp.csr_array(dense.astype(np.float32))


def dense_operand(k: int, width: int | None, dtype: np.dtype,
                  rng: np.random.Generator) -> np.ndarray:
    """A dense operand of k rows (a vector for width None), one of its vectors all zero."""
    shape = (k,) if width is None else (k, width)
    d = rng.standard_normal(shape) * 10.0 ** rng.integers(-2, 2, shape)
    if width is not None and width > 2:
        d[:, 1] = 0
    return d.astype(dtype)


def used_weights(p: spmm.PreparedMatrix, transposed: bool) -> np.ndarray:
    """The weights a product uses, as float64, outputs x contracted dimension: for x @ p those
    prepare rounded (to_scipy), for p @ x those of the CSR form (int8: its codes, with the
    scales of A's columns left to :func:`kernel_operand`)."""
    if transposed:
        return p.to_scipy().toarray().T.astype(np.float64)
    c = p.csr(np.dtype(np.float32))
    wide = _precision.widen(c.data, c.scales, c.indptr)
    return sp.csr_array((wide, c.indices.astype(np.int64), c.indptr), shape=c.shape).toarray()


def kernel_operand(p: spmm.PreparedMatrix, transposed: bool, d: np.ndarray) -> np.ndarray:
    """The dense operand the kernel rounds: for p @ x with int8 values, x's rows scaled in
    float32 by the scales of A's columns (A's CSR form keeps the codes of W's outputs and
    their scales: A @ x = Q @ (diag(s) x))."""
    scales = None if transposed else p._column_scales
    if scales is None:
        return d
    return d.astype(np.float32) * (scales if d.ndim == 1 else scales[:, None])


def bound(fmt: str, w: np.ndarray, d: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The documented bound (docs/usage.md, "Reduced-precision values") on |W D - result| for
    each output and dense vector, against the product of the weights the kernel uses."""
    x = np.abs(d.astype(np.float32).astype(np.float64))
    aw = np.abs(w)
    if fmt == "int8":
        largest = np.max(np.abs(d.astype(np.float32)), axis=0)
        s = (largest / np.float32(127)).astype(np.float64)
        return (aw.sum(axis=1)[:, None] * s * (0.5 + 2.0**-15)
                + 2.0**-21 * (aw @ x + aw.sum(axis=1)[:, None] * s))
    total = aw @ np.abs(d.astype(np.float64))
    m = 2 * groups[:, None] + 8.0
    gamma = m * U / (1 - m * U)
    return (2.0**-8 * (1 + 2.0**-15) * total + gamma * (1 + 2.0**-7) * total
            + (2 * m + aw.sum(axis=1)[:, None]) * TINY)


@pytest.mark.parametrize("dtype", DENSE_DTYPES, ids=ids(DENSE_DTYPES))
@pytest.mark.parametrize("transposed", [True, False], ids=["x @ p", "p @ x"])
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("fmt", ACTIVATIONS)
def test_products_are_within_the_documented_bound_at_every_level(fmt, level, transposed,
                                                                 dtype, monkeypatch, rng):
    monkeypatch.setenv("SPMM_SIMD", level)
    a = weights(rng)
    p = spmm.prepare(a, values=fmt, activations=fmt)
    w = used_weights(p, transposed)
    g = p.grouped(transposed)
    groups = np.diff(g.ptr)
    for width in WIDTHS:
        d = dense_operand(w.shape[1], width, dtype, rng)
        result = d.T @ p if transposed else p @ d
        assert result.dtype == dtype
        produced = np.asarray(result, dtype=np.float64)
        produced = produced.T if transposed and width is not None else produced
        d2 = kernel_operand(p, transposed, d).reshape(len(d), -1)
        error = np.abs(produced.reshape(w.shape[0], -1) - w @ d2.astype(np.float64))
        limit = bound(fmt, w, d2, groups)
        worst = np.unravel_index(np.argmax(error - limit), error.shape)
        assert np.all(error <= limit), f"width {width}: error {error[worst]} > {limit[worst]}"
        assert np.all(produced.reshape(w.shape[0], -1)[groups == 0] == 0), "empty outputs"


@pytest.mark.parametrize("fmt", ACTIVATIONS)
def test_every_level_computes_the_same_bits_as_the_portable_loop(fmt, monkeypatch, rng):
    """The portable loop computes what the instruction computes: the same float32 results."""
    a = sp.random_array((301, 90), density=0.3, format="csr", rng=rng, dtype=np.float32)
    a.data = (rng.standard_normal(a.nnz) * 10.0 ** rng.integers(-4, 4, a.nnz)).astype(np.float32)
    p = spmm.prepare(a, values=fmt, activations=fmt)
    x = (rng.standard_normal((70, 301)) * 10.0 ** rng.integers(-4, 4, (70, 301))).astype(np.float32)
    b = x[:, :90].T.copy()
    results = {}
    for level in SIMD_LEVELS:
        monkeypatch.setenv("SPMM_SIMD", level)
        results[level] = (x @ p, p @ b)
    for level, (right, left) in results.items():
        np.testing.assert_array_equal(right, results["scalar"][0], err_msg=f"x @ p, {level}")
        np.testing.assert_array_equal(left, results["scalar"][1], err_msg=f"p @ x, {level}")


@pytest.mark.parametrize("fmt", ACTIVATIONS)
def test_threads_split_outputs_and_give_the_serial_result(fmt, rng):
    a = sp.random_array((200, 150), density=0.2, format="csr", rng=rng, dtype=np.float32)
    p = spmm.prepare(a, values=fmt, activations=fmt)
    x = rng.standard_normal((33, 200)).astype(np.float32)
    serial = spmm.multiply(x, p, backend="serial")
    with parallel_min_work(0):
        for backend in spmm.available_backends():
            for partition_threads in (2, 3):
                parallel = spmm.multiply(x, p, backend=backend, num_threads=partition_threads)
                np.testing.assert_array_equal(parallel, serial, err_msg=backend)


def test_an_all_zero_dense_vector_gives_exact_zeros_with_int8_activations(rng):
    """Its scale is 0: nothing is divided by it, every value is quantized to 0."""
    p = spmm.prepare(weights(rng), values="int8", activations="int8")
    x = np.zeros((4, 37), dtype=np.float32)
    x[2] = rng.standard_normal(37)
    y = x @ p
    assert np.all(y[[0, 1, 3]] == 0) and np.all(np.isfinite(y))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_int8_activations_refuse_a_non_finite_dense_value(bad, rng):
    p = spmm.prepare(weights(rng), values="int8", activations="int8")
    x = rng.standard_normal((3, 37)).astype(np.float32)
    x[1, 4] = bad
    with pytest.raises(ValueError, match="activations='int8' needs finite dense values; dense "
                                         "vector 1 holds an infinity or NaN"):
        x @ p


def test_int8_activations_refuse_an_output_whose_integer_sum_could_overflow():
    limit = _activations.MAX_INT8_ENTRIES
    a = sp.csr_array(np.ones((limit + 1, 1), dtype=np.float32))
    with pytest.raises(ValueError, match=f"at most {limit} stored weights per output"):
        spmm.prepare(a, values="int8", activations="int8")
    assert spmm.prepare(a[:limit], values="int8", activations="int8").nnz == limit


@pytest.mark.parametrize("fmt", ACTIVATIONS)
def test_groups_hold_the_stored_weights_at_their_positions_zeros_elsewhere(fmt, rng):
    a = weights(rng)
    p = spmm.prepare(a, values=fmt, activations=fmt)
    g = p.grouped(True)
    width = _activations.GROUP[fmt]
    lanes = g.words.view(_precision.STORAGE[fmt]).reshape(-1, width)
    rebuilt = np.zeros((a.shape[1], -(-a.shape[0] // width) * width))
    for row in range(a.shape[1]):
        for q in range(g.ptr[row], g.ptr[row + 1]):
            block = lanes[q].astype(np.float64) if fmt == "int8" else (
                (lanes[q].astype(np.uint32) << 16).view(np.float32))
            rebuilt[row, g.block[q] * width:(g.block[q] + 1) * width] = block
    if fmt == "int8":  # rebuilt holds q; a weight is scale * q, as to_scipy computes it
        np.testing.assert_array_equal(g.correction, 128 * rebuilt.sum(axis=1).astype(np.int32))
        rebuilt = rebuilt.astype(np.float32) * g.scales[:, None]
    np.testing.assert_array_equal(rebuilt[:, :a.shape[0]], p.to_scipy().toarray().T)
    for row in range(a.shape[1]):  # one group per block: increasing within each output
        assert np.all(np.diff(g.block[g.ptr[row]:g.ptr[row + 1]]) > 0)


@pytest.mark.parametrize("layout", ["csr", "tile"])
@pytest.mark.parametrize("fmt", ACTIVATIONS)
def test_a_pickle_keeps_the_activations_and_rebuilds_the_grouped_rows(fmt, layout, rng):
    w = rng.standard_normal((64, 32)).astype(np.float32)
    w[rng.random(64) < 0.5, :] = 0
    p = spmm.prepare(sp.csr_array(w), layout=layout, tile=32 if layout == "tile" else None,
                     values=fmt, activations=fmt)
    restored = pickle.loads(pickle.dumps(p))
    assert restored.activations == fmt and "activations" in repr(restored)
    for name in ("ptr", "block", "words", "scales", "correction"):
        np.testing.assert_array_equal(getattr(restored.grouped(True), name),
                                      getattr(p.grouped(True), name), err_msg=name)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    np.testing.assert_array_equal(x @ restored, x @ p)
    assert restored.nbytes == p.nbytes


@pytest.mark.parametrize("change, message", [
    ({"activations": "float16"}, "activations must be one of"),
    ({"activations": "bfloat16"}, "activations='bfloat16' needs values='bfloat16'"),
    ({"activations": 8}, "activations must be one of"),
])
def test_a_corrupted_pickle_of_activations_is_a_value_error(change, message, rng):
    p = spmm.prepare(weights(rng), values="int8", activations="int8")
    state = {**p.__getstate__(), **change}
    restored = spmm.PreparedMatrix.__new__(spmm.PreparedMatrix)
    with pytest.raises(ValueError, match=f"corrupted or invalid pickled state: .*{message}"):
        restored.__setstate__(state)


@pytest.mark.parametrize("fmt", ACTIVATIONS)
def test_explain_names_the_dot_product_body_of_each_level(fmt, monkeypatch, rng):
    p = spmm.prepare(weights(rng), values=fmt, activations=fmt)
    instruction = {"int8": ("avx512_vnni", "avx512_bf16", "avx2_vnni", "neon_dot", "neon_bf16"),
                   "bfloat16": ("avx512_bf16", "neon_bf16")}
    int8_of = {"avx512_bf16": "avx512_vnni", "neon_bf16": "neon_dot"}  # BF16 levels' int8 body
    for level in SIMD_LEVELS:
        monkeypatch.setenv("SPMM_SIMD", level)
        report = spmm.explain(np.ones((4, 37), dtype=np.float32), p)
        if level in instruction[fmt]:
            assert report["kernel"] == "csr_rows.dot"
            assert report["simd"] == (int8_of.get(level, level) if fmt == "int8" else level)
        else:
            assert (report["kernel"], report["simd"]) == ("csr_rows.portable_dot", "scalar")


@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_int8_results_are_the_exact_integer_sums_times_the_two_scales(level, monkeypatch, rng):
    """Each dense vector quantized with its own scale (q = round(x * (127 / max|x|)), ties to
    even), the integer sums exact, then scaled: the result, bit for bit."""
    monkeypatch.setenv("SPMM_SIMD", level)
    p = spmm.prepare(weights(rng), values="int8", activations="int8")
    x = dense_operand(37, 19, np.dtype(np.float32), rng).T.copy()  # 19 vectors, one zero
    t = p._source_t()
    q_w = sp.csr_array((t.data.astype(np.int64), t.indices.astype(np.int64), t.indptr),
                       shape=t.shape).toarray()
    largest = np.max(np.abs(x), axis=1)
    with np.errstate(divide="ignore"):
        inverse = np.where(largest > 0, np.float32(127) / largest, np.float32(0))
    q_x = np.rint(np.clip(x * inverse[:, None], -127, 127)).astype(np.int64)
    s_x = largest / np.float32(127)
    sums = (q_x @ q_w.T).astype(np.float32)
    expected = sums * (t.scales[None, :] * s_x[:, None])
    np.testing.assert_array_equal(x @ p, expected)


@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_bfloat16_results_are_float32_sums_of_the_rounded_dense_values(level, monkeypatch, rng):
    """Against the dense operand rounded to bfloat16 (to nearest even) the only error left is
    the float32 summation's: the dense values were rounded, not kept in float32."""
    monkeypatch.setenv("SPMM_SIMD", level)
    p = spmm.prepare(weights(rng), values="bfloat16", activations="bfloat16")
    w = used_weights(p, True)
    x = dense_operand(37, 19, np.dtype(np.float32), rng)
    rounded = (_precision.to_bfloat16(x).astype(np.uint32) << 16).view(np.float32)
    exact = w @ rounded.astype(np.float64)
    m = 2 * np.diff(p.grouped(True).ptr)[:, None] + 8.0
    limit = (m * U / (1 - m * U) * (np.abs(w) @ np.abs(rounded))
             + (2 * m + np.abs(w).sum(axis=1)[:, None]) * TINY)
    assert np.all(np.abs((x.T @ p).T - exact) <= limit)
    assert not np.allclose(w @ x.astype(np.float64), exact, rtol=1e-5, atol=0)
