"""What spmm restores is checked like what it builds.

A pickled PreparedMatrix holds only its canonical data (CSR arrays, shape, dtype, the layout's
parameters); unpickling checks them fully and rebuilds every derived form (the transpose, the
slices, the structured form, the converted values). A corrupted pickle is a ValueError saying
what is wrong, never a crash and never a wrong answer. Products of corrupted objects run in a
forked child, so that a crash fails the test instead of ending the run.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_csr, make_dense, outcome, run_in_forked_child

import spmm
from spmm._operands import Csr

# Also run with the extension built with AddressSanitizer and UBSan (.ci/run).
pytestmark = pytest.mark.asan

TWO_THREADS = {"backend": "threads", "num_threads": 2}
NARROW = (30, 21)  # 16-bit column indices
WIDE = (12, 70_000)  # more than 65,536 columns: int32 indices


def prepared(shape: tuple[int, int], rng: np.random.Generator, **kwargs: Any):
    density = min(0.3, 6 / shape[1])
    a = make_csr(shape, density, np.float64, np.int32, rng)
    return a, spmm.prepare(a, **kwargs)


def products(p: Any) -> tuple[np.ndarray, np.ndarray]:
    """``p @ x`` and ``x @ p`` on two threads (the cached slices are used). The thread pool
    backend: OpenMP cannot run in a child forked after its parent used it."""
    rows, cols = p.shape
    return (spmm.multiply(p, np.ones((cols, 3)), **TWO_THREADS),
            spmm.multiply(np.ones((3, rows)), p, **TWO_THREADS))


def assert_restored_matches_its_scipy_form(q: Any) -> None:
    """``q``'s products equal scipy's products of ``q.to_scipy()``."""
    m = q.to_scipy()
    left, right = products(q)
    np.testing.assert_allclose(left, m @ np.ones((m.shape[1], 3)), rtol=1e-12)
    np.testing.assert_allclose(right, np.ones((3, m.shape[0])) @ m, rtol=1e-12)


def patched(blob: bytes, array: np.ndarray, position: int, value: int) -> bytes:
    """``blob`` (a pickle) with entry ``position`` of ``array``, which it holds in band, set to
    ``value``: a corruption of one number, as a bad disk or a hostile file makes."""
    raw = array.tobytes()
    assert blob.count(raw) == 1, "the array's bytes must be found once in the pickle"
    changed = np.array(array, copy=True)
    changed[position] = value
    return blob.replace(raw, changed.tobytes())


def new_prepared_matrix() -> spmm.PreparedMatrix:
    return spmm.PreparedMatrix.__new__(spmm.PreparedMatrix)


class _Stand:
    def __init__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self) -> tuple:
        return (new_prepared_matrix, (), self.state)


def pickled_state(state: Any) -> bytes:
    """A pickle that unpickles as a PreparedMatrix restored from ``state`` (whatever it is),
    as pickle itself restores one: a new object, then ``__setstate__(state)``."""
    return pickle.dumps(_Stand(state))


def restored_outcomes(blob: bytes) -> list[tuple[str, str, str]]:
    """The outcomes of unpickling ``blob`` then multiplying ``p @ x``, and of unpickling it
    then multiplying ``x @ p``, each in a forked child (the first product a matrix makes
    must not be trusted to the second)."""
    def attempt(side: str):
        q = pickle.loads(blob)
        rows, cols = q.shape
        if side == "p @ x":
            return spmm.multiply(q, np.ones((cols, 3)), **TWO_THREADS)
        return spmm.multiply(np.ones((3, rows)), q, **TWO_THREADS)
    return [run_in_forked_child(lambda side=side: outcome(lambda: attempt(side)))
            for side in ("p @ x", "x @ p")]


def assert_value_errors(results: list[tuple[str, str, str]], pattern: str) -> None:
    for kind, exc_type, message in results:
        assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
        assert "corrupt" in message, message
        assert pattern in message, f"{message!r} does not say {pattern!r}"


# (array, position, value from (nnz, rows, cols), what the error says)
ARRAY_CORRUPTIONS = {
    "indptr-decreasing": ("indptr", 3, lambda nnz, rows, cols: nnz, "non-decreasing"),
    "indptr-first-not-0": ("indptr", 0, lambda nnz, rows, cols: 1, "indptr[0]"),
    "indptr-last-beyond": ("indptr", -1, lambda nnz, rows, cols: nnz + 40, "exceeds"),
    "index-out-of-range": ("indices", 2, lambda nnz, rows, cols: cols + 3, "out of range"),
    "index-repeated": ("indices", 1, None, "strictly increasing"),
}


@pytest.mark.parametrize("shape", [NARROW, WIDE], ids=["16-bit", "32-bit"])
@pytest.mark.parametrize("corruption", ARRAY_CORRUPTIONS)
def test_a_pickle_with_one_corrupted_number_is_a_value_error_saying_what_is_wrong(
        corruption, shape, rng):
    _, p = prepared(shape, rng)
    name, position, value, says = ARRAY_CORRUPTIONS[corruption]
    array = getattr(p._csr, name)
    rows, cols = shape
    if value is None:  # the previous entry of the same row again: a duplicate column
        row_start = int(np.argmax(np.diff(p._csr.indptr) >= 2))
        position = int(p._csr.indptr[row_start]) + 1
        new = int(array[position - 1])
    else:
        new = value(p.nnz, rows, cols)
    blob = patched(pickle.dumps(p), array, position, new)
    assert_value_errors(restored_outcomes(blob), says)


def test_a_pickle_round_trips_every_layout(rng):
    """Structured forms are rebuilt from the CSR arrays and the layout's parameters."""
    from test_layouts import block_sparse, n_m_sparse, tile_wise

    for w in (tile_wise((40, 50), 16, 0.5, np.float32, rng),
              block_sparse((40, 64), (4, 16), 0.5, np.float32, rng),
              n_m_sparse((38, 70), 2, 4, np.float32, rng)):
        for kwargs in ({}, {"layout": "tile", "tile": 32}, {"layout": "csr"}):
            p = spmm.prepare(w, **kwargs)
            q = pickle.loads(pickle.dumps(p))
            assert (q.layout, q.block, q.n_m, q.shape, q.dtype, q.nbytes) == (
                p.layout, p.block, p.n_m, p.shape, p.dtype, p.nbytes)
            x = make_dense((5, w.shape[0]), np.float32, rng)
            v = make_dense(w.shape[1], np.float32, rng)
            np.testing.assert_array_equal(x @ q, x @ p)
            np.testing.assert_array_equal(q @ v, p @ v)


STATE_CORRUPTIONS = {
    "not-a-dict": (lambda s: [s["indptr"], s["indices"]], "expected a dict"),
    "missing-key": (lambda s: {k: v for k, v in s.items() if k != "indices"}, "missing"),
    "shape-negative": (lambda s: {**s, "shape": (-1, s["shape"][1])}, "shape"),
    "shape-float": (lambda s: {**s, "shape": (s["shape"][0], 21.0)}, "shape"),
    "shape-fewer-rows": (lambda s: {**s, "shape": (s["shape"][0] - 1, s["shape"][1])},
                         "indptr has"),
    "shape-fewer-columns": (lambda s: {**s, "shape": (s["shape"][0], 2)}, "out of range"),
    "indices-2d": (lambda s: {**s, "indices": s["indices"].reshape(1, -1)}, "1-D"),
    "indices-float": (lambda s: {**s, "indices": s["indices"].astype(float)}, "integer"),
    "indices-list": (lambda s: {**s, "indices": list(s["indices"])}, "numpy array"),
    "data-short": (lambda s: {**s, "data": s["data"][:-1]}, "must hold"),
    "data-complex": (lambda s: {**s, "data": s["data"].astype(complex)}, "float32 or float64"),
    "layout-unknown": (lambda s: {**s, "layout": "bsr"}, "layout must be one of"),
    "tile-width-0": (lambda s: {**s, "layout": "tile", "block": (1, 0)}, "block=(1, width)"),
    "block-of-one-row": (lambda s: {**s, "layout": "block", "block": (1, 8)}, "rows >= 2"),
    "n_m-n-above-m": (lambda s: {**s, "layout": "n_m", "n_m": (5, 4)}, "1 <= n <= m <= 255"),
    "n_m-m-above-255": (lambda s: {**s, "layout": "n_m", "n_m": (2, 300)}, "<= 255"),
    "n_m-keeping-more": (lambda s: {**s, "layout": "n_m", "n_m": (1, 4)}, "at most 1 of every 4"),
    "csr-with-a-block": (lambda s: {**s, "block": (4, 16)}, "the others None"),
}


@pytest.mark.parametrize("corruption", STATE_CORRUPTIONS)
def test_a_pickled_state_with_a_corrupted_field_is_a_value_error(corruption, rng):
    _, p = prepared(NARROW, rng, layout="csr")
    corrupt, says = STATE_CORRUPTIONS[corruption]
    blob = pickled_state(corrupt(p.__getstate__()))
    assert_value_errors(restored_outcomes(blob), says)


def legacy_state(p: Any) -> dict:
    """The state earlier versions of spmm pickled: the forms themselves."""
    return {"csr": p._csr, "csr_t": p._csr_t, "structured": p._structured}


def test_the_derived_forms_of_an_earlier_versions_pickle_are_rebuilt_not_trusted(rng):
    """Cached slice bounds, a transposed CSR and per-dtype panels of a pickle made by an
    earlier version are derived data: dropped and rebuilt from the checked CSR arrays."""
    from test_layouts import tile_wise

    w = tile_wise((40, 64), 16, 0.5, np.float32, rng)
    p = spmm.prepare(w)
    good = p._csr
    bad_bounds = np.array([0, 10_000, good.shape[0]], dtype=np.int64)  # a slice past the rows
    csr = Csr(good.indptr, good.indices, good.data, good.shape,
              {(2, code): bad_bounds for code in range(3)})
    t = spmm.prepare(w.T.tocsr(), layout="csr")._csr
    bad_t = Csr(t.indptr, np.full_like(t.indices, 60_000), t.data, t.shape, {})
    form = p._structured
    unit_row = np.array(form.unit_row, copy=True)
    unit_row[:] = 2**30
    bad_panels = replace(form, _by_dtype={np.dtype(np.float64): replace(
        form, unit_row=unit_row, values=np.asarray(form.values, np.float64), _by_dtype={})})
    state = {"csr": csr, "csr_t": bad_t, "structured": bad_panels}

    def attempt():
        q = pickle.loads(pickled_state(state))
        x = make_dense((3, 40), np.float64, np.random.default_rng(0))
        m = q.to_scipy()
        return [bool(np.allclose(got, want)) for got, want in (
            (spmm.multiply(q, np.ones(64), **TWO_THREADS), m @ np.ones(64)),
            (spmm.multiply(x, q, **TWO_THREADS), x @ m),
            (spmm.multiply(x, q, **TWO_THREADS, kernel="tiled"), x @ m))]

    assert run_in_forked_child(lambda: outcome(attempt)) == ("returned", "", "[True, True, True]")


def test_an_n_m_offset_past_the_last_short_group_is_never_followed(rng):
    """An N:M form pickled with an offset beyond the matrix's last row (inside the group of m)
    would read outside x: the form is rebuilt from the CSR arrays instead."""
    from test_layouts import n_m_sparse

    w = n_m_sparse((6, 70), 2, 4, np.float64, rng)  # groups: rows 0-3 and 4-5 (short)
    p = spmm.prepare(w)
    form = p._structured
    offsets = np.array(form.offsets, copy=True)
    offsets[:, 2:, :] = 3  # the last group's slots point at row 4 + 3 = 7 >= 6
    state = legacy_state(p)
    state["structured"] = replace(form, offsets=offsets, _by_dtype={})

    def attempt():
        q = pickle.loads(pickled_state(state))
        x = make_dense((5, 6), np.float64, np.random.default_rng(1))
        return bool(np.allclose(spmm.multiply(x, q, **TWO_THREADS), x @ q.to_scipy()))

    assert run_in_forked_child(lambda: outcome(attempt)) == ("returned", "", "True")


def test_a_legacy_state_of_the_wrong_kinds_is_a_value_error(rng):
    _, p = prepared(NARROW, rng)
    state = legacy_state(p)
    state["csr"] = {"indptr": p._csr.indptr}
    with pytest.raises(ValueError, match="expected the forms of a PreparedMatrix"):
        pickle.loads(pickled_state(state))


def test_protocol_5_moves_the_canonical_arrays_out_of_band_without_copies(rng):
    """Only the CSR arrays are pickled (no transpose, slices or converted values, though they
    were built), and pickle protocol 5 hands them to ``buffer_callback`` as they are."""
    _, p = prepared(NARROW, rng)
    x = make_dense((4, NARROW[0]), np.float32, rng)
    expected = x @ p  # builds the transpose and its float32 copy, and the slices
    buffers: list[pickle.PickleBuffer] = []
    blob = pickle.dumps(p, protocol=5, buffer_callback=buffers.append)
    canonical = (p._csr.indptr, p._csr.indices, p._csr.data)
    assert len(buffers) == 3
    for buffer, array in zip(buffers, canonical, strict=True):
        raw = np.frombuffer(buffer.raw(), dtype=np.uint8)
        assert raw.nbytes == array.nbytes and np.shares_memory(raw, array)
    assert len(blob) < 1000  # the arrays are not in it
    q = pickle.loads(blob, buffers=buffers)
    np.testing.assert_array_equal(x @ q, expected)


def test_out_of_band_buffers_changed_after_loading_do_not_change_the_matrix(rng):
    _, p = prepared(NARROW, rng)
    buffers: list[pickle.PickleBuffer] = []
    blob = pickle.dumps(p, protocol=5, buffer_callback=buffers.append)
    writable = [bytearray(b.raw()) for b in buffers]  # e.g. received from another process
    q = pickle.loads(blob, buffers=writable)
    expected = q @ np.ones(NARROW[1])
    for buffer in writable:
        buffer[:] = b"\xff" * len(buffer)  # every index and pointer now out of range
    np.testing.assert_array_equal(q @ np.ones(NARROW[1]), expected)
    assert_restored_matches_its_scipy_form(q)


def test_a_copy_is_rebuilt_and_checked_like_a_pickle(rng):
    import copy

    _, p = prepared(NARROW, rng, layout="tile", tile=16)
    for q in (copy.copy(p), copy.deepcopy(p)):
        assert (q.layout, q.block) == ("tile", (1, 16))
        assert_restored_matches_its_scipy_form(q)


def test_a_byte_swapped_float_array_in_a_state_is_converted(rng):
    _, p = prepared(NARROW, rng)
    state = p.__getstate__()
    state["data"] = state["data"].astype(">f8")
    q = pickle.loads(pickled_state(state))
    assert q.dtype == np.dtype(np.float64)
    assert_restored_matches_its_scipy_form(q)


def test_a_restored_scipy_matrix_reference_is_the_canonical_matrix(rng):
    a, p = prepared(NARROW, rng)
    q = pickle.loads(pickle.dumps(p))
    m = q.to_scipy()
    assert m.has_canonical_format
    np.testing.assert_array_equal(m.toarray(), sp.csr_array(a).toarray())
