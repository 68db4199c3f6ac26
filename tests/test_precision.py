"""Reduced-precision prepared matrices: the error bounds docs/usage.md states, and memory.

For an output ``y_j = sum_k x_k w_k`` over its ``n_j`` stored weights, with ``w_hat`` the
rounded weights the matrix stores (``to_scipy()``) and ``u = 2**-24`` (float32),

- the kernels' own error (float32 products and sums): ``|y_hat - x @ w_hat| <= gamma(n_j + 2)
  * sum_k |x_k| |w_hat_k|``, ``gamma(m) = m u / (1 - m u)``;
- the rounding: ``|x @ w_hat - x @ w| <= sum_k |x_k| e_k``, ``e_k`` = ``2**-8 |w_k| + 2**-134``
  (bfloat16), ``2**-11 |w_k| + 2**-25`` (float16), ``s / 2`` with ``s = max |w| / 127`` over
  the column of the matrix ``w_k`` is in (int8).

Each is checked against a float64 reference at every SIMD level this CPU has, in both
orientations (``x @ p``: outputs are the columns; ``p @ x``: the rows), with the CSR form and
every structured layout, on random and adversarial weights, with sizes that leave SIMD tails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import SIMD_LEVELS

import spmm
from spmm import _precision

U32 = 2.0**-24
REDUCED = ("bfloat16", "float16", "int8")
# The relative and absolute (subnormal) rounding error of one weight, as docs/usage.md gives.
RELATIVE = {"bfloat16": 2.0**-8, "float16": 2.0**-11}
ABSOLUTE = {"bfloat16": 2.0**-134, "float16": 2.0**-25}

# Inputs x outputs of W: neither a multiple of any vector width, so every kernel has tails.
INPUTS, OUTPUTS = 68, 45
LAYOUTS = {"csr": {"layout": "csr"}, "tile": {"layout": "tile", "tile": 16},
           "block": {"layout": "block", "block": (4, 16)}, "n_m": {"layout": "n_m", "n_m": (2, 4)}}
DATA = ("random", "wide_range", "outliers", "zero_channels", "single_weight")


def gamma(m: np.ndarray) -> np.ndarray:
    return m * U32 / (1 - m * U32)


def weights(kind: str, fmt: str, layout: str, orientation: str,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dense W (inputs x outputs) of ``kind``, float32, and the mask of its stored weights.

    ``wide_range``: magnitudes over 60 decades (float16: from its subnormals to 10^4);
    ``outliers``: one weight per output 10^4 times the others; ``zero_channels``: outputs
    (and inputs) with no weight, or only stored zeros; ``single_weight``: one stored weight
    per output of the orientation.
    """
    w = rng.standard_normal((INPUTS, OUTPUTS))
    keep = rng.random(w.shape) < 0.35
    if kind == "wide_range":
        low, high = (-9, 4) if fmt == "float16" else (-30, 30)
        w = np.sign(w) * 10.0 ** rng.uniform(low, high, w.shape)
    elif kind == "outliers":
        w[rng.integers(0, INPUTS, OUTPUTS), np.arange(OUTPUTS)] = 3e4
        keep |= w == 3e4
    elif kind == "zero_channels":
        keep[:, ::7] = False
        keep[::5, :] = False
        w[:, 3] = 0.0
        keep[:, 3] = True  # stored zeros only
    elif kind == "single_weight":
        keep[:] = False
        if orientation == "xw":
            keep[rng.integers(0, INPUTS, OUTPUTS), np.arange(OUTPUTS)] = True
        else:
            keep[np.arange(INPUTS), rng.integers(0, OUTPUTS, INPUTS)] = True
    if layout == "n_m":  # at most 2 of every 4 inputs of each output: the layout's rule
        rank = np.argsort(np.argsort(~keep.reshape(-1, 4, OUTPUTS), axis=1, kind="stable"),
                          axis=1, kind="stable").reshape(keep.shape)
        keep &= rank < 2
    return np.where(keep, w, 0.0).astype(np.float32), keep


def prepared(w: np.ndarray, keep: np.ndarray, fmt: str, layout: str) -> spmm.PreparedMatrix:
    rows, cols = np.nonzero(keep)
    a = sp.csr_array((w[rows, cols], (rows, cols)), shape=w.shape)
    return spmm.prepare(a, values=fmt, **LAYOUTS[layout])


def rounding_error(w: np.ndarray, fmt: str) -> np.ndarray:
    """The largest rounding error of each weight of ``w`` (the bound, float64)."""
    w = w.astype(np.float64)
    if fmt != "int8":
        return RELATIVE[fmt] * np.abs(w) + ABSOLUTE[fmt]
    # One scale per column of the matrix, s = max |w| / 127 (stored as float32: one more u).
    scales = np.abs(w).max(axis=0) / 127 * (1 + 2 * U32)
    return np.broadcast_to(scales / 2, w.shape)


def product(p: spmm.PreparedMatrix, x: np.ndarray, orientation: str) -> np.ndarray:
    return x @ p if orientation == "xw" else p @ x


def operand(orientation: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    shape = (batch, INPUTS) if orientation == "xw" else (OUTPUTS, batch)
    return rng.standard_normal(shape).astype(np.float32)


def reference(m: np.ndarray, x: np.ndarray, orientation: str) -> np.ndarray:
    """``x @ m`` or ``m @ x`` in float64."""
    x = x.astype(np.float64)
    return x @ m if orientation == "xw" else m @ x


def terms(keep: np.ndarray, orientation: str) -> np.ndarray:
    """The number of stored weights of each output, broadcast to the result's shape."""
    n = keep.sum(axis=0 if orientation == "xw" else 1).astype(np.float64)
    return n[None, :] if orientation == "xw" else n[:, None]


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", REDUCED)
@pytest.mark.parametrize("kind", DATA)
@pytest.mark.parametrize("orientation", ["xw", "ab"])
def test_products_are_within_both_stated_bounds(orientation, kind, fmt, layout, simd, rng,
                                                 monkeypatch, kernel_calls):
    monkeypatch.setenv("SPMM_SIMD", simd)
    w, keep = weights(kind, fmt, layout, orientation, rng)
    p = prepared(w, keep, fmt, layout)
    # The positions the matrix stores (a declared layout may fill in zeros) and their values.
    stored = p.to_scipy()
    w_hat = stored.toarray().astype(np.float64)
    positions = stored.copy()
    positions.data[:] = 1
    held = positions.toarray() > 0
    for batch in (1, 5):
        x = operand(orientation, batch, rng)
        y = product(p, x, orientation)
        assert y.dtype == np.float32
        exact = reference(w_hat, x, orientation)
        magnitude = reference(np.abs(w_hat), np.abs(x), orientation)
        # int8: to_scipy() holds fl(s * q), one float32 rounding away from s * q.
        n = terms(held, orientation) + 2 + (fmt == "int8")
        kernel_error = np.abs(y - exact)
        assert np.all(kernel_error <= gamma(n) * magnitude), (
            f"kernel error {kernel_error.max():.3g} beyond gamma(n + 2) sum |x||w_hat|")
        original = reference(w.astype(np.float64), x, orientation)
        e = rounding_error(w, fmt)
        rounding = reference(e, np.abs(x), orientation)
        assert np.all(np.abs(exact - original) <= rounding)
        assert np.all(np.abs(y - original) <= gamma(n) * magnitude + rounding)
    assert kernel_calls and {call["simd"] for call in kernel_calls} == {simd}
    if orientation == "xw" and layout != "csr":
        assert p.layout == layout  # the structured kernel ran, not a CSR fallback


@pytest.mark.parametrize("fmt", REDUCED)
def test_a_float64_operand_is_computed_in_float32_within_the_bound(fmt, rng):
    w, keep = weights("random", fmt, "csr", "xw", rng)
    p = prepared(w, keep, fmt, "csr")
    w_hat = p.to_scipy().toarray().astype(np.float64)
    for orientation in ("xw", "ab"):
        x = operand(orientation, 3, rng).astype(np.float64) * (1 + 1e-3)  # not float32 values
        y = product(p, x, orientation)
        assert y.dtype == np.float64
        bound = gamma(terms(keep, orientation) + 3) * reference(np.abs(w_hat), np.abs(x),
                                                                   orientation)
        assert np.all(np.abs(y - reference(w_hat, x, orientation)) <= bound)


def test_int8_rounds_each_weight_once_in_both_orientations(rng):
    """p @ x uses the values and the column scales x @ p uses: the same rounded matrix."""
    w, keep = weights("outliers", "int8", "csr", "xw", rng)
    p = prepared(w, keep, "int8", "csr")
    before = p.to_scipy().toarray()
    x = operand("ab", 2, rng)
    p @ x
    assert np.array_equal(p.to_scipy().toarray(), before)
    scales = np.abs(w).max(axis=0) / 127
    assert np.all(np.abs(before - w) <= scales / 2 * (1 + 2 * U32))


def test_float16_subnormal_weights_round_to_the_nearest_step():
    tiny = np.array([[3e-8, -5e-6, 6e-5, 1.0]], dtype=np.float32).T  # 4 x 1
    p = spmm.prepare(sp.csr_array(tiny), values="float16")
    stored = p.to_scipy().toarray()
    assert np.all(np.abs(stored - tiny) <= 2.0**-11 * np.abs(tiny) + 2.0**-25)
    assert stored[0, 0] == 2.0**-24 * round(3e-8 / 2.0**-24)


def test_the_unit_roundoffs_the_module_states_are_the_bounds_tested():
    assert {f: _precision.UNIT_ROUNDOFF[f] for f in RELATIVE} == RELATIVE
    assert {f: _precision.SUBNORMAL_STEP[f] / 2 for f in ABSOLUTE} == ABSOLUTE


@pytest.mark.parametrize("values", [None, *REDUCED])
def test_ml_dtypes_bfloat16_operands_are_computed_as_float16_ones_are(values, rng):
    """numpy's bfloat16 (the optional ml_dtypes package) promotes like float16: a float32
    result (float64 with float64 weights), the operand converted to float32 first."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is optional and not "
                                    "installed (pip install ml_dtypes)")
    w, keep = weights("random", "bfloat16", "csr", "xw", rng)
    p = prepared(w, keep, values or "float32", "csr")
    x = operand("xw", 3, rng).astype(ml_dtypes.bfloat16)
    xt = operand("ab", 3, rng).astype(ml_dtypes.bfloat16)
    for a, b, wide in ((x, p, (x.astype(np.float32), p)), (p, xt, (p, xt.astype(np.float32)))):
        y = spmm.multiply(a, b)
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, spmm.multiply(*wide))
    if values is None:
        scipy_w = sp.csr_array(w.astype(np.float64))
        assert spmm.multiply(x, scipy_w).dtype == np.float64


# --------------------------------------------------------------------------------------------
# Memory: every array held is counted, and a reduced matrix used in one orientation holds one
# form. The layer is one of the benchmark's (bench/spmm_bench/matrices.py), 90 % sparse.

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

#: The most bytes per stored weight after products in one orientation (CSR layout): a 2-byte
#: value and a 2-byte index (bf16, fp16), a 1-byte value, the index and the scales (int8).
BYTES_PER_WEIGHT = {"float32": 6.2, "bfloat16": 4.2, "float16": 4.2, "int8": 3.2}


@pytest.fixture(scope="module")
def layer() -> sp.csr_array:
    from spmm_bench.matrices import generate
    from spmm_bench.suites import MatrixSpec

    return generate(MatrixSpec("dnn", (1024, 4096), "uniform", 0.9)).astype(np.float32)


@pytest.mark.parametrize("fmt", REDUCED)
@pytest.mark.parametrize("orientation", ["xw", "ab"])
def test_a_layer_used_in_one_orientation_holds_at_most_the_stated_bytes(layer, fmt,
                                                                        orientation):
    p = spmm.prepare(layer, values=fmt)
    for batch in (1, 16):
        x = np.ones((batch, 1024) if orientation == "xw" else (4096, batch), np.float32)
        product(p, x, orientation)
    footprint = p.footprint()
    assert footprint["per_stored_weight"] <= BYTES_PER_WEIGHT[fmt]
    # Every array held: int64 row pointers, 16-bit indices, the values and the int8 scales
    # (x @ p: one per output; p @ x: the columns' and the ones of its own rows).
    rows = 4096 if orientation == "xw" else 1024
    scales = {"xw": 4 * 4096, "ab": 4 * (4096 + 1024)}[orientation] if fmt == "int8" else 0
    value_bytes = 1 if fmt == "int8" else 2
    expected = 8 * (rows + 1) + (2 + value_bytes) * layer.nnz + scales
    assert footprint["prepared"] == p.nbytes == expected


@pytest.mark.parametrize("fmt", REDUCED)
def test_both_orientations_keep_the_values_and_pickle_the_same(layer, fmt, rng):
    import pickle

    p = spmm.prepare(layer[:256, :512], values=fmt)
    xa = rng.standard_normal((512, 1)).astype(np.float32)
    xw = rng.standard_normal((1, 256)).astype(np.float32)
    first = pickle.dumps(p)
    ya = p @ xa   # holds the CSR form only
    assert pickle.dumps(p) == first
    yw = xw @ p   # rebuilds the transpose's form from it
    assert pickle.dumps(p) == first
    q = pickle.loads(first)
    np.testing.assert_array_equal(q @ xa, ya)
    np.testing.assert_array_equal(xw @ q, yw)


@pytest.mark.parametrize("fmt", REDUCED)
@pytest.mark.parametrize("layout", ["tile", "block", "n_m"])
def test_structured_layouts_hold_fewer_bytes_than_csr(fmt, layout, rng):
    from spmm_bench.matrices import generate
    from spmm_bench.suites import MatrixSpec

    pattern, sparsity = {"tile": ("tilewise64", 0.9), "block": ("block32", 0.9),
                         "n_m": ("nm4", 0.75)}[layout]
    w = generate(MatrixSpec("structured", (512, 512), pattern, sparsity)).astype(np.float32)
    p = spmm.prepare(w, values=fmt)
    assert p.layout == layout
    rng.standard_normal((16, 512)).astype(np.float32) @ p
    csr = spmm.prepare(w, values=fmt, layout="csr")
    rng.standard_normal((16, 512)).astype(np.float32) @ csr
    per_weight = p.footprint()["per_stored_weight"]
    assert per_weight < csr.footprint()["per_stored_weight"]
    # The values (padded to whole float32 registers only), an offset byte each for N:M, and
    # a little structure: an int8 block of 32 columns is not padded to a 64-byte line.
    value_bytes = 1 if fmt == "int8" else 2
    assert per_weight <= value_bytes + (layout == "n_m") + 0.2
