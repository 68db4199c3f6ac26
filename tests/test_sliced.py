"""The one-column layout of a prepared matrix: ``x @ p`` with one row of ``x`` reads the rows of
Wᵀ sorted by length, in slices of 16 stored column by column (``spmm._sliced``), and equals
scipy for every dtype, index type, value format, instruction set, backend and thread count."""

from __future__ import annotations

import contextlib
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    PARTITIONS,
    SIMD_LEVELS,
    THREAD_COUNTS,
    assert_product_matches_scipy,
    make_csr,
    make_dense,
)

import spmm
from spmm import _policy, _sliced, _spmm_ext, _testing
from spmm._pipeline import multiply_with_partition

SLICE = _sliced.SLICE_ROWS


def weights(shape, density, dtype, rng, **kw):
    """W (inputs x outputs) in CSR with int32 indices."""
    return make_csr(shape, density, dtype, np.int32, rng, **kw)


def skewed(rng, dtype=np.float32):
    """W whose outputs (rows of Wᵀ) have every length from 0 to past two slices' worth of
    entries, so slices hold rows of unequal lengths and short columns."""
    inputs, outputs = 101, 53
    dense = np.zeros((inputs, outputs), dtype=dtype)
    for j in range(outputs):
        kept = rng.choice(inputs, size=(j * 7) % (inputs + 1), replace=False)
        dense[kept, j] = rng.standard_normal(len(kept))
    return sp.csr_array(dense)


# Shapes of W (inputs x outputs) beyond the ordinary: no outputs, no inputs, one input, one
# output, prime sizes, fewer outputs than a slice, a slice and one more, every output empty.
ODD = {
    "no-outputs": ((7, 0), 0.5),
    "no-inputs": ((0, 9), 0.5),
    "one-input": ((1, 40), 0.6),
    "one-output": ((40, 1), 0.6),
    "prime": ((97, 131), 0.13),
    "under-a-slice": ((30, SLICE - 3), 0.4),
    "slice-and-one": ((30, SLICE + 1), 0.4),
    "all-outputs-empty": ((12, 35), 0.0),
}


def one_row(w, dtype, rng):
    return make_dense((1, w.shape[0]), dtype, rng)


def test_auto_reads_the_sliced_layout_at_batch_1_and_the_csr_form_otherwise(rng):
    w = weights((50, 70), 0.2, np.float32, rng)
    p = spmm.prepare(w)
    assert spmm.explain(one_row(w, np.float32, rng), p)["family"] == "sliced"
    assert spmm.explain(make_dense((2, 50), np.float32, rng), p)["family"] == "csr_rows"
    assert spmm.explain(one_row(w, np.float32, rng), p, kernel="tiled")["family"] == "csr_rows"
    assert spmm.explain(p, make_dense(70, np.float32, rng))["family"] == "csr_rows"


@pytest.mark.parametrize("gathers", ["fast", "slow"])
def test_every_simd_level_runs_the_gather_body_of_the_sliced_layout_unless_gathers_are_slow(
        gathers, monkeypatch, rng):
    """The dot-product levels (VNNI, BF16) run the avx2 / avx512 body, not the portable one;
    where gathers are slower than scalar loads, every level runs the portable loop."""
    w = weights((50, 70), 0.2, np.float32, rng)
    p = spmm.prepare(w)
    x = one_row(w, np.float32, rng)
    for level in SIMD_LEVELS:
        monkeypatch.setenv("SPMM_SIMD", level)
        with _testing.slow_gathers(gathers == "slow"):
            plan = spmm.explain(x, p)
            result = x @ p
        # NEON has no gather: the portable loop
        portable = gathers == "slow" or level in ("scalar", "neon")
        want = "scalar" if portable else level.split("_")[0]
        assert (plan["kernel"], plan["simd"]) == (
            "sliced.portable" if portable else "sliced.tiled", want), level
        assert ("scalar loads" in plan["reason"]) == (gathers == "slow"), plan["reason"]
        assert_product_matches_scipy(result, x, w, err_msg=level)


def _cpu_vendor_and_family() -> tuple[str, int] | None:
    """The x86 vendor and family Linux reports, or None on a CPU without them (Arm)."""
    with open("/proc/cpuinfo") as info:
        fields = dict(line.split(":", 1) for line in info if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    if "vendor_id" not in fields or "cpu family" not in fields:
        return None
    return fields["vendor_id"], int(fields["cpu family"])


def test_gathers_count_as_slow_exactly_on_amd_family_19h():
    """Zen 3 and Zen 4 run a gather as a sequence of loads; other x86 CPUs and Arm do not
    count (Arm has no gather: its sliced body is the portable one anyway)."""
    cpu = _cpu_vendor_and_family()
    assert _spmm_ext.slow_gathers() == (cpu == ("AuthenticAMD", 0x19))
    assert _policy.SLOW_GATHERS == _spmm_ext.slow_gathers()


def test_a_matrix_with_activations_keeps_its_dot_product_kernels_at_batch_1(rng):
    w = weights((64, 48), 0.2, np.float32, rng)
    p = spmm.prepare(w, values="int8", activations="int8")
    x = one_row(w, np.float32, rng)
    assert spmm.explain(x, p)["family"] == "csr_rows"
    _ = x @ p
    assert not p._sliced, "no sliced layout built"


# An L2 so small that every layout counts as far beyond the cache: the portable body then
# prefetches its streams ahead (what a W of many times the L2 gets).
STREAMED_L2_BYTES = 1


@pytest.mark.parametrize("place", ["cached", "streamed"])
@pytest.mark.parametrize("gathers", ["fast", "slow"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("case", ["skewed", *ODD])
def test_batch_1_equals_scipy_at_every_simd_level(case, level, dtype, gathers, place,
                                                  monkeypatch, rng):
    monkeypatch.setenv("SPMM_SIMD", level)
    w = skewed(rng, dtype) if case == "skewed" else weights(*ODD[case], dtype, rng)
    p = spmm.prepare(w)
    x = one_row(w, dtype, rng)
    streamed = _testing.l2_cache_bytes(STREAMED_L2_BYTES) if place == "streamed" else (
        contextlib.nullcontext())
    with _testing.slow_gathers(gathers == "slow"), streamed:
        assert_product_matches_scipy(x @ p, x, w, err_msg=level)
        assert_product_matches_scipy(x[0] @ p, x[0], w, err_msg=f"{level}, 1-D")


@pytest.mark.parametrize("values", ["bfloat16", "float16", "int8"])
def test_reduced_values_at_batch_1_keep_one_form_per_orientation(values, rng):
    """A reduced matrix is for its bytes: no second copy of its entries (its kernels are
    checked at every level by tests/cpp/check_sliced.cpp)."""
    w = weights((97, 131), 0.13, np.float32, rng)
    p = spmm.prepare(w, values=values)
    x = one_row(w, np.float32, rng)
    assert spmm.explain(x, p)["family"] == "csr_rows"
    assert_product_matches_scipy(x @ p, x, p.to_scipy(), err_msg=values)
    assert not p._sliced


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("threads", THREAD_COUNTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_1_equals_scipy_for_every_backend_thread_count_and_partition(
        backend, threads, partition, rng):
    w = skewed(rng)
    p = spmm.prepare(w)
    x = one_row(w, np.float32, rng)
    with _testing.parallel_min_work(0):
        result = multiply_with_partition(x, p, backend=backend, num_threads=threads,
                                         partition=partition)
    assert_product_matches_scipy(result, x, w)


def test_indices_of_every_width_equal_scipy(rng):
    """uint16 up to 65,536 inputs, int32 beyond."""
    for inputs, index in ((300, np.uint16), (70_000, np.int32)):
        w = weights((inputs, 40), 20 / inputs, np.float64, rng)
        p = spmm.prepare(w)
        x = one_row(w, np.float64, rng)
        assert_product_matches_scipy(x @ p, x, w)
        assert p.sliced(np.dtype(np.float64)).indices.dtype == index


def test_a_float32_matrix_times_float64_x_reads_a_float64_layout(rng):
    w = weights((60, 45), 0.3, np.float32, rng)
    p = spmm.prepare(w)
    x = one_row(w, np.float64, rng)
    assert_product_matches_scipy(x @ p, x, w)
    assert p.sliced(np.dtype(np.float64)).values.dtype == np.float64


def test_an_inf_or_nan_in_x_reaches_exactly_the_outputs_scipy_reaches(rng):
    """Short columns are not padded: no output reads an input it does not store."""
    w = skewed(rng)
    x = one_row(w, np.float32, rng)
    x[0, 3], x[0, 50] = np.inf, np.nan
    with np.errstate(invalid="ignore"):
        expected = w.T @ x[0]  # scipy's sparse product: only stored entries
    assert np.isnan(expected).any() and not np.isnan(expected).all()
    np.testing.assert_array_equal(np.isnan(x[0] @ spmm.prepare(w)), np.isnan(expected))


def test_a_strided_x_is_read_as_its_values(rng):
    w = skewed(rng)
    p = spmm.prepare(w)
    big = make_dense((3, 3 * w.shape[0]), np.float32, rng)
    for x in (big[1:2, ::3], big[1:2, ::-3]):
        assert_product_matches_scipy(x @ p, x, w)


def test_the_layout_holds_the_csr_entries_sorted_by_row_length(rng):
    w = skewed(rng)
    p = spmm.prepare(w)
    form = p.sliced(np.dtype(np.float32))
    t = p.csr_transposed(np.dtype(np.float32))
    lengths = np.diff(t.indptr)
    assert np.array_equal(form.lens, lengths[form.perm])
    assert np.all(np.diff(form.lens) <= 0), "longest first"
    assert np.array_equal(np.sort(form.perm), np.arange(w.shape[1]))
    assert form.slice_ptr[-1] == t.nnz, "no padding"
    # Slice 0, column 0: the first entry of each of its rows, lane by lane.
    first = [t.indices[t.indptr[r]] for r in form.perm[:SLICE]]
    assert list(form.indices[:SLICE]) == first


def test_the_layout_is_built_on_first_batch_1_use_and_counted_in_nbytes(rng):
    w = weights((200, 300), 0.1, np.float32, rng)
    p = spmm.prepare(w)
    x = one_row(w, np.float32, rng)
    _ = make_dense((4, 200), np.float32, rng) @ p  # builds the CSR form of the transpose
    before = p.nbytes
    _ = x @ p
    form = p.sliced(np.dtype(np.float32))
    assert p.nbytes == before + sum(a.nbytes for a in form.arrays())
    assert p.footprint()["prepared"] == p.nbytes
    # The entries, and per output a length and a position, per slice an offset.
    assert sum(a.nbytes for a in form.arrays()) == (
        p.nnz * 6 + w.shape[1] * 8 + 8 * (-(-w.shape[1] // SLICE) + 1))


def test_a_pickle_keeps_only_the_canonical_arrays_and_the_layout_is_rebuilt(rng):
    w = skewed(rng)
    p = spmm.prepare(w)
    x = one_row(w, np.float32, rng)
    expected = x @ p
    fresh = pickle.dumps(spmm.prepare(w))
    assert len(pickle.dumps(p)) == len(fresh), "the layout is not pickled"
    q = pickle.loads(pickle.dumps(p))
    assert not q._sliced, "rebuilt on first use, not restored"
    np.testing.assert_array_equal(x @ q, expected)
    assert q._sliced


def test_a_corrupted_pickle_is_refused_before_any_layout_is_built(rng):
    p = spmm.prepare(skewed(rng))
    state = p.__getstate__()
    indices = state["indices"].copy()
    indices[0] = p.shape[0] + 5  # an input beyond W's rows
    q = spmm.PreparedMatrix.__new__(spmm.PreparedMatrix)
    with pytest.raises(ValueError, match="out of range"):
        q.__setstate__({**state, "indices": indices})


def test_the_extension_refuses_a_layout_of_the_wrong_length(rng):
    w = skewed(rng)
    form = spmm.prepare(w).sliced(np.dtype(np.float32))
    x = one_row(w, np.float32, rng)
    out = np.empty((1, w.shape[1]), np.float32)
    codes = (2, 0, 1, 1, 0, -1)
    with pytest.raises(ValueError, match="slice_ptr"):
        spmm._spmm_ext.sliced_product(form.slice_ptr[:-1], form.lens, form.perm, form.indices,
                                      form.values, 0, None, *form.shape, x, out, True, codes)
    with pytest.raises(ValueError, match="entries"):
        spmm._spmm_ext.sliced_product(form.slice_ptr, form.lens, form.perm, form.indices[:-1],
                                      form.values, 0, None, *form.shape, x, out, True, codes)
    with pytest.raises(ValueError, match="perm"):
        spmm._spmm_ext.sliced_product(form.slice_ptr, form.lens, form.perm[:-1], form.indices,
                                      form.values, 0, None, *form.shape, x, out, True, codes)
