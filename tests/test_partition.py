"""How rows are split among threads: spmm._spmm_ext.partition_bounds(indptr, T, code)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import BACKENDS, INDEX_DTYPES, assert_product_matches_scipy, ids, make_csr, make_dense

import spmm
import spmm._testing
from spmm import _spmm_ext

# Also run with the extension built with AddressSanitizer and UBSan (.ci/run).
pytestmark = pytest.mark.asan

ROWS, NNZ, DYNAMIC = 0, 1, 2
CODES = {"rows": ROWS, "nnz": NNZ, "dynamic": DYNAMIC}
THREADS = (1, 2, 3, 4, 7, 16, 64)


def indptr_of(row_lengths, index_dtype=np.int64):
    indptr = np.zeros(len(row_lengths) + 1, dtype=index_dtype)
    np.cumsum(row_lengths, out=indptr[1:])
    return indptr


def power_law_rows(rows=2000, seed=3):
    """Row lengths of a power-law (Zipf) matrix, longest first as in a degree-sorted graph:
    a few rows of 400 entries, half the rows empty."""
    lengths = np.minimum(np.random.default_rng(seed).zipf(1.8, rows) - 1, 400)
    return np.sort(lengths)[::-1]


ROW_LENGTHS = {
    "power-law": power_law_rows(),
    "power-law-shuffled": np.random.default_rng(4).permutation(power_law_rows()),
    "uniform": np.full(97, 5),
    "all-empty": np.zeros(40, dtype=np.int64),
    "one-long-row-first": np.array([1000] + [1] * 50),
    "one-long-row-last": np.array([1] * 50 + [1000]),
    "empty-rows-at-ends": np.array([0, 0, 3, 4, 0, 5, 0, 0]),
    "three-rows": np.array([2, 7, 1]),
    "one-row": np.array([9]),
    "no-rows": np.array([], dtype=np.int64),
}


def slice_nnz(indptr, bounds):
    return np.diff(np.asarray(indptr)[np.asarray(bounds)])


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=ids(INDEX_DTYPES))
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("partition", CODES)
@pytest.mark.parametrize("matrix", ROW_LENGTHS)
def test_bounds_start_at_0_end_at_rows_and_never_decrease(
    matrix, partition, threads, index_dtype
):
    """Also when there are more threads than rows: every row is in exactly one slice."""
    lengths = ROW_LENGTHS[matrix]
    bounds = _spmm_ext.partition_bounds(indptr_of(lengths, index_dtype), threads, CODES[partition])
    assert isinstance(bounds, list) and len(bounds) >= 2
    assert bounds[0] == 0
    assert bounds[-1] == len(lengths)
    assert all(lo <= hi for lo, hi in itertools.pairwise(bounds)), bounds


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("matrix", ROW_LENGTHS)
def test_rows_gives_one_slice_per_thread_with_equal_row_counts(matrix, threads):
    """One slice per thread, but never more slices than rows (no thread gets nothing)."""
    rows = len(ROW_LENGTHS[matrix])
    bounds = _spmm_ext.partition_bounds(indptr_of(ROW_LENGTHS[matrix]), threads, ROWS)
    slices = max(1, min(threads, rows))
    assert len(bounds) == slices + 1
    sizes = np.diff(bounds)
    assert set(sizes) <= {rows // slices, -(-rows // slices)}, sizes
    assert sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("threads", (2, 3, 4, 7, 16))
@pytest.mark.parametrize("matrix", ["power-law", "power-law-shuffled", "uniform",
                                    "one-long-row-first", "one-long-row-last",
                                    "empty-rows-at-ends"])
def test_nnz_gives_slices_within_the_longest_row_of_an_equal_share(matrix, threads):
    lengths = ROW_LENGTHS[matrix]
    indptr = indptr_of(lengths)
    bounds = _spmm_ext.partition_bounds(indptr, threads, NNZ)
    slices = min(threads, len(lengths))  # never more slices than rows
    assert len(bounds) == slices + 1
    share = indptr[-1] / slices
    deviation = np.abs(slice_nnz(indptr, bounds) - share)
    assert deviation.max() <= lengths.max(), (slice_nnz(indptr, bounds), share)


def test_nnz_balances_a_power_law_matrix_far_better_than_equal_rows():
    """What the nnz partition is for: one slice must not get most of the work."""
    lengths = power_law_rows()
    assert lengths.max() < lengths.sum() / 8, "the test matrix must be balanceable"
    indptr = indptr_of(lengths)
    by_rows = slice_nnz(indptr, _spmm_ext.partition_bounds(indptr, 4, ROWS))
    by_nnz = slice_nnz(indptr, _spmm_ext.partition_bounds(indptr, 4, NNZ))
    assert by_nnz.max() - by_nnz.min() < (by_rows.max() - by_rows.min()) / 2
    assert by_nnz.max() <= indptr[-1] / 4 + lengths.max()


@pytest.mark.parametrize("threads", (2, 3, 4))
def test_dynamic_gives_many_nnz_balanced_chunks(threads):
    lengths = power_law_rows()
    indptr = indptr_of(lengths)
    bounds = _spmm_ext.partition_bounds(indptr, threads, DYNAMIC)
    chunks = len(bounds) - 1
    assert chunks > threads, "more chunks than threads, handed out on demand"
    deviation = np.abs(slice_nnz(indptr, bounds) - indptr[-1] / chunks)
    assert deviation.max() <= lengths.max()


@pytest.mark.parametrize("partition", CODES)
def test_more_threads_than_rows_still_covers_every_row_once(partition):
    indptr = indptr_of(ROW_LENGTHS["three-rows"])
    bounds = _spmm_ext.partition_bounds(indptr, 16, CODES[partition])
    assert len(bounds) - 1 <= 3, "no more slices than rows"
    covered = np.concatenate([np.arange(lo, hi) for lo, hi in itertools.pairwise(bounds)])
    np.testing.assert_array_equal(covered, [0, 1, 2])


def test_bounds_agree_for_int32_and_int64_indptr():
    lengths = power_law_rows()
    for code in CODES.values():
        for threads in THREADS:
            assert (_spmm_ext.partition_bounds(indptr_of(lengths, np.int32), threads, code)
                    == _spmm_ext.partition_bounds(indptr_of(lengths, np.int64), threads, code))


@pytest.mark.parametrize("bounds", [
    [0, 25, 20],          # a slice past the last row
    [0, 12, 5, 20],       # decreasing in between: rows 5 to 12 twice
    [0, -3, 20],          # a slice before the first row
    [1, 20], [0, 19], [20], [],
], ids=["past-the-end", "decreasing", "negative", "first-not-0", "last-not-rows", "one", "none"])
def test_slice_bounds_handed_to_the_extension_are_checked_in_full(bounds):
    """Slice bounds kept with a matrix are row ranges the kernels trust: every bound, not only
    the first and the last, is checked before a thread runs."""
    from conftest import outcome, run_in_forked_child

    from spmm import _config

    rng = np.random.default_rng(0)
    rows, cols = 20, 10
    indptr = indptr_of(rng.integers(0, 4, rows), np.int32)
    indices = rng.integers(0, cols, int(indptr[-1])).astype(np.int32)
    data = np.ones(len(indices))
    b, c = np.ones((cols, 3)), np.empty((rows, 3))
    threads = _config.codes("backend")["threads"]  # fork-safe, in the child below

    def call():  # kernel tiled, 2 threads, nnz partition, scalar SIMD, no minimum work
        config = (2, threads, 2, NNZ, 0, 0)
        return _spmm_ext.csr_product(indptr, indices, data, rows, cols, False, False, b, c,
                                     False, config, np.array(bounds, dtype=np.int64))

    kind, exc_type, message = run_in_forked_child(lambda: outcome(call))
    assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
    assert "slice bounds" in message


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "serial"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("form", ["csc A@B", "coo A@B", "csr X@W", "bsr X@W"])
def test_column_driven_products_split_the_dense_columns_when_private_outputs_are_too_big(
    form, dtype, backend, rng
):
    """Narrow scatters run on private outputs, wide ones and any past the private outputs'
    memory limit (forced down to 0 bytes here) split the dense columns, in whole cache lines
    of C: the result is the same."""
    fmt, product = form.split()
    a = make_csr((67, 53), 0.2, dtype, np.int32, rng)
    a = a.tobsr(blocksize=(1, 1)) if fmt == "bsr" else a.asformat(fmt)
    for width in (1, 7, 16, 33, 100):
        left, right = (a, make_dense((53, width), dtype, rng)) if product == "A@B" \
            else (make_dense((width, 67), dtype, rng), a)
        with spmm._testing.parallel_min_work(0):
            default = spmm.explain(left, right, backend=backend, num_threads=3)["reason"]
            with spmm._testing.private_outputs_max_bytes(0):
                split = spmm.explain(left, right, backend=backend, num_threads=3)["reason"]
                result = spmm.multiply(left, right, backend=backend, num_threads=3)
        assert_product_matches_scipy(result, left, right, err_msg=f"{form} width {width}")
        assert f"split the {width} dense columns" in split, split
        if width < 2 * (64 // np.dtype(dtype).itemsize) * 3:  # too few columns to split
            assert "private output" in default, default
