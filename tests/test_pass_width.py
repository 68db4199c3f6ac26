"""Passes sized by the L2 cache: what ``x @ p`` reads of X per pass stays in L2.

The CSR kernel of a prepared matrix cuts its passes over the batch, and where that is not
enough the inner dimension into blocks, by the L2 size read at run time; the panels kernel
groups its packed batch rows by it and the N:M kernel's batch passes block W's groups by it.
``spmm._testing.l2_cache_bytes`` replaces the size, so that small matrices take the paths that
large ones take on a real L2: every product must still equal scipy's, for every instruction
set, backend, thread count, dtype and stored value format, with odd shapes and ragged passes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    SIMD_LEVELS,
    THREAD_COUNTS,
    VALUE_DTYPES,
    assert_product_matches_scipy,
    ids,
    make_csr,
    make_dense,
)

import spmm
from spmm import _spmm_ext, _testing

# An L2 of 256 bytes: a pass of one vector, blocks of 8 inputs, groups of a few rows.
TINY_L2 = 256

# Batches: two columns, a pass of one vector and a tail, several passes and a ragged last one
# (vectors of 4 to 16 lanes), and the N:M broadcast passes (from 32 rows; 70 = a full pass of 64
# and a ragged one).
BATCHES = (2, 17, 33, 70)

# Stored value formats of a prepared matrix: as given, and the reduced ones (float32 sums).
VALUE_FORMATS = (None, "bfloat16", "float16", "int8")


def _getconf_l2() -> int | None:
    """glibc's L2 size (what sysconf(_SC_LEVEL2_CACHE_SIZE) returns), or None."""
    try:
        out = subprocess.run(["getconf", "LEVEL2_CACHE_SIZE"], capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return int(out) if out.isdigit() else None


def _sysfs_l2() -> int | None:
    """The level-2 data or unified cache of cpu0 as sysfs lists it, or None."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        if level == "2" and kind != "Instruction":
            unit = {"K": 1 << 10, "M": 1 << 20}.get(size[-1], 1)
            return int(size.rstrip("KM")) * unit
    return None


def test_the_l2_size_is_read_from_the_system_and_shown_by_show_config():
    size, source = _spmm_ext.l2_cache_bytes(), _spmm_ext.l2_cache_source()
    expected = {"sysconf": _getconf_l2, "sysfs": _sysfs_l2, "fallback": lambda: 1 << 20}
    assert source in expected
    if source != "sysconf" or shutil.which("getconf"):
        assert size == expected[source]()
    runtime = spmm.show_config(mode="dicts")["runtime"]
    assert (runtime["l2_cache_bytes"], runtime["l2_cache_source"]) == (size, source)


def test_show_config_prints_the_l2_size(capsys):
    spmm.show_config()
    shown = f"L2 cache:           {_spmm_ext.l2_cache_bytes() // 1024} KiB"
    assert shown in capsys.readouterr().out


def test_the_testing_hook_replaces_the_l2_size_and_restores_it():
    before = _spmm_ext.l2_cache_bytes()
    with _testing.l2_cache_bytes(4096):
        assert (_spmm_ext.l2_cache_bytes(), _spmm_ext.l2_cache_source()) == (4096, "test")
    assert _spmm_ext.l2_cache_bytes() == before
    assert _spmm_ext.l2_cache_source() != "test"


@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_the_testing_hook_refuses_a_size_that_is_not_a_positive_int(value):
    with pytest.raises(ValueError, match="positive number of bytes"):
        with _testing.l2_cache_bytes(value):
            pass


@pytest.mark.parametrize("values", VALUE_FORMATS, ids=ids(VALUE_FORMATS))
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("shape", [(37, 29), (130, 70)], ids=["37x29", "130x70"])
def test_csr_passes_and_inner_blocks_on_a_tiny_l2_equal_the_whole_product(
    shape, level, values, monkeypatch, rng
):
    monkeypatch.setenv("SPMM_SIMD", level)
    w = make_csr(shape, 0.3, np.float32, np.int32, rng)
    p = spmm.prepare(w, layout="csr", values=values)
    for batch in BATCHES:
        x = make_dense((batch, shape[0]), np.float32, rng)
        whole = spmm.multiply(x, p)
        with _testing.l2_cache_bytes(TINY_L2):
            blocked = spmm.multiply(x, p)
        if values is None:
            assert_product_matches_scipy(blocked, x, w, err_msg=f"{level}, batch {batch}")
        # Blocks change only the order of the sums.
        np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max(),
                                   err_msg=f"{level}, {values}, batch {batch}")


@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("threads", THREAD_COUNTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_csr_inner_blocks_equal_scipy_for_every_backend_thread_count_and_dtype(
    backend, threads, dtype, rng
):
    w = make_csr((150, 90), 0.2, dtype, np.int64, rng)
    p = spmm.prepare(w)
    x = make_dense((33, 150), dtype, rng)
    with _testing.l2_cache_bytes(TINY_L2):
        result = spmm.multiply(x, p, backend=backend, num_threads=threads)
    assert_product_matches_scipy(result, x, w, err_msg=f"{backend}, {threads} threads")


def test_a_users_unsorted_matrix_takes_narrow_passes_on_a_tiny_l2_and_equals_scipy(rng):
    # A user's CSC W is read by the CSR kernel as it is; its rows (W's columns) may be
    # unsorted, so it is never cut by column: its passes narrow instead.
    w = sp.csc_array(make_csr((61, 45), 0.3, np.float64, np.int32, rng))
    for j in range(w.shape[1]):
        lo, hi = w.indptr[j], w.indptr[j + 1]
        order = lo + rng.permutation(hi - lo)
        w.indices[lo:hi], w.data[lo:hi] = w.indices[order], w.data[order]
    w.has_sorted_indices = False
    x = make_dense((40, 61), np.float64, rng)
    with _testing.l2_cache_bytes(TINY_L2):
        assert_product_matches_scipy(spmm.multiply(x, w), x, w)


@pytest.mark.parametrize("threads", THREAD_COUNTS)
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("product", ["X @ W, W in CSC", "A @ B, A in CSR"])
def test_a_users_sorted_matrix_is_cut_by_column_on_a_tiny_l2_and_equals_scipy(
    product, dtype, level, threads, monkeypatch, rng
):
    # Sorted rows (scipy's canonical form, and duplicates kept side by side) are checked,
    # then read in blocks of the inner dimension as a prepared matrix's are.
    monkeypatch.setenv("SPMM_SIMD", level)
    csr = make_csr((61, 45), 0.3, dtype, np.int32, rng, empty_rows=(0, 30))
    cols = csr.shape[1]
    if product.startswith("X"):
        w = sp.csc_array(csr.T)  # W (45 x 61) read by rows of Wᵀ, csr's rows
        left, right = make_dense((40, cols), dtype, rng), w
    else:
        left, right = csr, make_dense((cols, 40), dtype, rng)
    sparse = right if product.startswith("X") else left
    sparse.indices[1:3] = sparse.indices[1]  # a duplicate, still in order
    with _testing.l2_cache_bytes(TINY_L2):
        result = spmm.multiply(left, right, num_threads=threads, kernel="tiled")
    assert_product_matches_scipy(result, left, right, err_msg=f"{level}, {threads} threads")


@pytest.mark.parametrize("product", ["X @ W, W in CSC", "A @ B, A in CSR"])
def test_a_column_out_of_range_in_a_users_sorted_matrix_cut_by_column_is_a_value_error(
    product, rng
):
    csr = make_csr((61, 45), 0.3, np.float64, np.int32, rng)
    csr.indices[csr.indptr[2] - 1] = csr.shape[1] + 5  # the last of its row: still sorted
    if product.startswith("X"):
        w = sp.csc_array((csr.data, csr.indices, csr.indptr), shape=csr.shape[::-1])
        left, right = make_dense((40, csr.shape[1]), np.float64, rng), w
    else:
        left, right = csr, make_dense((csr.shape[1], 40), np.float64, rng)
    with _testing.l2_cache_bytes(TINY_L2), pytest.raises(ValueError, match="out of range"):
        spmm.multiply(left, right, kernel="tiled")


def n_m_weights(shape, n, m, rng):
    w = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    return spmm.prune(w.astype(np.float32), pattern="n_m", n=n, m=m)


def tile_weights(shape, width, rng):
    rows, cols = shape
    kept = np.repeat(rng.random((rows, -(-cols // width))) < 0.4, width, axis=1)[:, :cols]
    return sp.csr_array(np.where(kept, rng.uniform(0.5, 1.5, shape), 0).astype(np.float32))


@pytest.mark.parametrize("values", VALUE_FORMATS, ids=ids(VALUE_FORMATS))
@pytest.mark.parametrize("level", SIMD_LEVELS)
@pytest.mark.parametrize("structure", ["n_m-2:4", "n_m-1:8", "tile-32"])
def test_structured_groups_and_blocks_on_a_tiny_l2_equal_the_whole_product(
    structure, level, values, monkeypatch, rng
):
    monkeypatch.setenv("SPMM_SIMD", level)
    if structure == "tile-32":
        w = tile_weights((70, 100), 32, rng)
        p = spmm.prepare(w, layout="tile", tile=32, values=values)
    else:
        n, m = (2, 4) if structure == "n_m-2:4" else (1, 8)
        w = n_m_weights((66, 130), n, m, rng)
        p = spmm.prepare(w, layout="n_m", n_m=(n, m), values=values)
    for batch in BATCHES:
        x = make_dense((batch, w.shape[0]), np.float32, rng)
        whole = spmm.multiply(x, p)
        with _testing.l2_cache_bytes(TINY_L2):
            blocked = spmm.multiply(x, p, num_threads=2)
        if values is None:
            assert_product_matches_scipy(blocked, x, w, err_msg=f"{level}, batch {batch}")
        np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max(),
                                   err_msg=f"{level}, {values}, batch {batch}")
