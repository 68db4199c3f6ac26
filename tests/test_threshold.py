"""Products below the work threshold run on the calling thread, whatever the backend, and
give scipy's result; the threshold is reported. (No timing is asserted: the threshold's value
comes from bench/overhead.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    PARALLEL_BACKENDS,
    assert_product_matches_scipy,
    make_csr,
    make_dense,
    run_python_json,
)

import spmm
from spmm import _spmm_ext

THRESHOLD = _spmm_ext.parallel_min_work()


def test_the_threshold_is_positive_and_reported_by_show_config(capsys):
    assert THRESHOLD > 0
    assert spmm.show_config(mode="dicts")["build"]["parallel_min_work"] == THRESHOLD
    spmm.show_config()
    assert re.search(rf"parallel min work: +{THRESHOLD} ", capsys.readouterr().out)


def widths_around_the_threshold(per_column: int) -> dict[str, int]:
    """Dense widths whose products do just less, and just more, work than the threshold."""
    below = (THRESHOLD - 1) // per_column
    return {"below": below, "above": below + 1}


@pytest.mark.parametrize("side", ["below", "above"])
@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_products_just_below_and_above_the_threshold_equal_scipy_on_every_backend(
    backend, num_threads, side, rng, default_parallel_threshold
):
    a = make_csr((701, 157), 0.05, np.float64, np.int32, rng, empty_rows=(0, 700))
    # A @ B works on A's rows; X @ W on the rows of W^T (W = a.T here: a's rows again).
    n = widths_around_the_threshold(a.nnz + a.shape[0])[side]
    assert ((a.nnz + a.shape[0]) * n < THRESHOLD) == (side == "below")
    b = make_dense((157, n), np.float64, rng)
    x = make_dense((n, 157), np.float64, rng)
    w = a.T.tocsr()
    for left, right in ((a, b), (x, w), (spmm.prepare(a), b)):
        result = spmm.multiply(left, right, backend=backend, num_threads=num_threads)
        scipy_left = left.to_scipy() if isinstance(left, spmm.PreparedMatrix) else left
        assert_product_matches_scipy(result, scipy_left, right)


CALLING_THREAD_CHILD = """
import json, os
import numpy as np, scipy.sparse as sp
import spmm
from spmm import _spmm_ext

def os_threads():
    return len(os.listdir("/proc/self/task"))

threshold = _spmm_ext.parallel_min_work()
a = sp.random_array((500, 300), density=0.02, format="csr", rng=0)
per_column = a.nnz + a.shape[0]
small = np.ones((300, (threshold - 1) // per_column))
large = np.ones((300, (threshold - 1) // per_column + 1))
report = {"threads at start": os_threads()}
for _ in range(3):
    spmm.multiply(a, small, backend=BACKEND, num_threads=3)
report["threads after small"] = os_threads()
report["pool workers after small"] = _spmm_ext.pool_workers()
spmm.multiply(a, large, backend=BACKEND, num_threads=3)
report["threads after large"] = os_threads()
report["pool workers after large"] = _spmm_ext.pool_workers()
print(json.dumps(report))
"""


@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
def test_below_the_threshold_no_thread_is_started_and_above_it_they_are(backend):
    """In a fresh process: products below the threshold start no pool worker and no OpenMP
    team (the process keeps its threads); the first one above it does."""
    report = run_python_json(CALLING_THREAD_CHILD.replace("BACKEND", repr(backend)))
    assert report["threads after small"] == report["threads at start"]
    assert report["pool workers after small"] == 0
    assert report["threads after large"] > report["threads at start"]
    assert report["pool workers after large"] == (2 if backend == "threads" else 0)


@pytest.mark.parametrize("side", ["below", "above"])
@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
def test_a_batch_1_product_counts_each_entry_as_several_columns_of_work(
    backend, side, rng, default_parallel_threshold
):
    """x @ p with one row of x reads the sliced layout, whose entries each cost a scalar load
    and an FMA of their own: it goes to the threads from (entries + outputs) x
    sliced_work_columns() of work, far below a wider product's entries."""
    columns = _spmm_ext.sliced_work_columns()
    assert columns > 1
    inputs, outputs = 200, 500
    below = -(-THRESHOLD // columns) - outputs - 1  # the most entries still below
    entries = below if side == "below" else below + 1
    assert ((entries + outputs) * columns < THRESHOLD) == (side == "below")
    cells = rng.permutation(inputs * outputs)[:entries]
    w = sp.csr_array((rng.standard_normal(entries), np.divmod(cells, outputs)),
                     shape=(inputs, outputs))
    p, x = spmm.prepare(w), make_dense((1, inputs), np.float64, rng)
    plan = spmm.explain(x, p, backend=backend, num_threads=2)
    assert plan["family"] == "sliced"
    assert plan["num_threads"] == (1 if side == "below" else 2)
    assert_product_matches_scipy(spmm.multiply(x, p, backend=backend, num_threads=2), x, w)
