"""dask arrays in spmm.multiply: lazy products, on dask's local schedulers and on a cluster of
worker processes; the matrix shipped once; spmm's threads inside dask tasks.

dask is optional, so this file is skipped where it is not installed; CI installs it and sets
SPMM_REQUIRE_DASK=1, which turns the skip into a failure. The cluster tests share one
``distributed.LocalCluster`` of two worker processes (one of 1 thread, one of 2) per module.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_product_matches_scipy, run_interpreter, run_python

import spmm
from spmm import _dask_bridge, _spmm_ext

if os.environ.get("SPMM_REQUIRE_DASK") == "1":
    import dask
else:
    dask = pytest.importorskip(
        "dask", reason='dask is optional and not installed (pip install ".[dask]")')
    pytest.importorskip("distributed", reason='distributed is optional and not installed '
                        '(pip install ".[dask]")')

import dask.array as da
import distributed
from dask._task_spec import DataNode
from dask.sizeof import sizeof

from spmm import _dask

CPUS = _spmm_ext.affinity_cpus() or 1


def expected_product(a: Any, b: Any) -> tuple[Any, Any]:
    """The operands as in-memory scipy / numpy objects (to compare with scipy)."""
    def concrete(x: Any) -> Any:
        if isinstance(x, da.Array):
            return x.compute(scheduler="sync")
        if isinstance(x, spmm.PreparedMatrix):
            return x.to_scipy()
        return x
    return concrete(a), concrete(b)


def sparse_blocks(m: sp.sparray, chunks: tuple[int, int]) -> da.Array:
    """A dask array whose chunks are scipy CSR arrays."""
    return da.from_array(m, chunks=chunks, asarray=False)


def w_matrix(rng: np.random.Generator, dtype: Any = np.float32) -> sp.csc_array:
    return sp.random_array((60, 40), density=0.2, format="csc", dtype=dtype, rng=rng)


def a_matrix(rng: np.random.Generator) -> sp.csr_array:
    return sp.random_array((70, 48), density=0.15, format="csr", rng=rng)


# Each supported combination: (a, b) from a generator, and the result's chunks.
CASES: dict[str, Callable[[np.random.Generator], tuple[Any, Any, tuple]]] = {
    "X by rows @ scipy W": lambda rng: (
        da.from_array(rng.standard_normal((50, 60)).astype(np.float32), chunks=(20, 60)),
        w_matrix(rng), ((20, 20, 10), (40,))),
    "X by rows and columns @ scipy W (rechunked to whole rows)": lambda rng: (
        da.from_array(rng.standard_normal((50, 60)), chunks=(20, 25)),
        w_matrix(rng).tocsr(), ((20, 20, 10), (40,))),
    "X @ PreparedMatrix": lambda rng: (
        da.from_array(rng.standard_normal((50, 60)).astype(np.float32), chunks=(16, 30)),
        spmm.prepare(w_matrix(rng)), ((16, 16, 16, 2), (40,))),
    "1-D x @ scipy W": lambda rng: (
        da.from_array(rng.standard_normal(60), chunks=25), w_matrix(rng), ((40,),)),
    "scipy A @ B by columns": lambda rng: (
        a_matrix(rng), da.from_array(rng.standard_normal((48, 30)), chunks=(48, 8)),
        ((70,), (8, 8, 8, 6))),
    "PreparedMatrix A @ B by rows and columns (rechunked to whole columns)": lambda rng: (
        spmm.prepare(a_matrix(rng)), da.from_array(rng.standard_normal((48, 30)),
                                                   chunks=(20, 16)), ((70,), (16, 14))),
    "scipy A @ 1-D b": lambda rng: (
        a_matrix(rng), da.from_array(rng.standard_normal(48), chunks=10), ((70,),)),
    "sparse row blocks @ numpy B": lambda rng: (
        sparse_blocks(a_matrix(rng), (30, 48)), rng.standard_normal((48, 5)),
        ((30, 30, 10), (5,))),
    "sparse blocks split by columns @ numpy B (partial products summed)": lambda rng: (
        sparse_blocks(a_matrix(rng), (30, 20)), rng.standard_normal((48, 5)),
        ((30, 30, 10), (5,))),
    "sparse blocks split by columns @ dask B (partial products summed)": lambda rng: (
        sparse_blocks(a_matrix(rng), (30, 20)), da.from_array(rng.standard_normal((48, 9)),
                                                              chunks=(13, 4)),
        ((30, 30, 10), (4, 4, 1))),
    "sparse row blocks @ 1-D numpy b": lambda rng: (
        sparse_blocks(a_matrix(rng), (25, 48)), rng.standard_normal(48), ((25, 25, 20),)),
    "dask X @ sparse blocks of W": lambda rng: (
        da.from_array(rng.standard_normal((50, 60)), chunks=(25, 60)),
        sparse_blocks(w_matrix(rng, np.float64).tocsr(), (25, 15)), ((25, 25), (15, 15, 10))),
    "numpy X @ sparse blocks of W": lambda rng: (
        rng.standard_normal((50, 60)),
        sparse_blocks(w_matrix(rng, np.float64).tocsr(), (25, 15)), ((50,), (15, 15, 10))),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest, rng: np.random.Generator) -> tuple[Any, Any, tuple]:
    return CASES[request.param](rng)


def assert_lazy_product(y: Any, a: Any, b: Any, chunks: tuple) -> None:
    """``y`` is a dask array of ``a @ b``'s shape, dtype and ``chunks``, computing which
    gives scipy's product."""
    a_mem, b_mem = expected_product(a, b)
    assert isinstance(y, da.Array)
    assert y.chunks == chunks
    value = y.compute()
    assert y.shape == value.shape and y.dtype == value.dtype
    assert_product_matches_scipy(value, a_mem, b_mem)


# --------------------------------------------------------------------------------------------
# dask is never a dependency.


def test_import_spmm_and_products_do_not_import_dask():
    proc = run_python("""
        import sys
        import numpy as np, scipy.sparse as sp, spmm
        a = sp.random_array((20, 10), density=0.3, format="csr", rng=0)
        spmm.multiply(a, np.ones((10, 3)))
        p = spmm.prepare(a)
        spmm.multiply(np.ones((4, 20)), p)
        sys.getsizeof(p), p.__dask_tokenize__(), spmm.get_config()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Lazy products on dask's local scheduler.


def test_multiply_of_each_supported_combination_is_lazy_and_equals_scipy(case):
    a, b, chunks = case
    assert_lazy_product(spmm.multiply(a, b), a, b, chunks)


def test_matmul_operators_with_a_prepared_matrix_are_lazy(rng):
    w = w_matrix(rng)
    p = spmm.prepare(w)
    x = da.from_array(rng.standard_normal((50, 60)).astype(np.float32), chunks=(20, 60))
    assert_lazy_product(x @ p, x, w, ((20, 20, 10), (40,)))
    b = da.from_array(rng.standard_normal((40, 7)).astype(np.float32), chunks=(40, 4))
    assert_lazy_product(p @ b, w, b, ((60,), (4, 3)))


def test_building_the_product_computes_nothing(rng):
    def unreachable(block: np.ndarray) -> np.ndarray:
        raise AssertionError("a block was computed while the graph was built")

    x = da.from_array(rng.standard_normal((40, 60)), chunks=(10, 60)).map_blocks(unreachable,
                                                                              dtype=float)
    y = spmm.multiply(x, w_matrix(rng))
    assert isinstance(y, da.Array)
    with pytest.raises(AssertionError, match="a block was computed"):
        y.compute(scheduler="sync")


def test_the_in_memory_operand_is_one_key_of_the_graph_not_embedded_in_tasks(rng):
    p = spmm.prepare(sp.random_array((2000, 500), density=0.1, format="csr", rng=rng))
    x = da.from_array(rng.standard_normal((64, 2000)), chunks=(8, 2000))
    y = x @ p
    graph = dict(y.__dask_graph__())
    holding = [key for key, node in graph.items()
               if isinstance(node, DataNode) and node.value is p]
    assert len(holding) == 1
    assert holding[0] == f"PreparedMatrix-{dask.base.tokenize(p)}"  # client.scatter's key
    products = [node for key, node in graph.items() if key[0] == y.name]
    assert len(products) == 8 and all(holding[0] in node.dependencies for node in products)
    # Eight tasks that each held the matrix would weigh eight matrices.
    assert sum(len(pickle.dumps(node)) for node in products) < p.nbytes / 10


def test_two_products_of_one_matrix_in_one_graph_share_its_key(rng):
    w = w_matrix(rng)
    x1 = da.from_array(rng.standard_normal((30, 60)), chunks=(10, 60))
    x2 = da.from_array(rng.standard_normal((20, 60)), chunks=(10, 60))
    both = da.concatenate([spmm.multiply(x1, w), spmm.multiply(x2, w)])
    held = [k for k, node in dict(both.__dask_graph__()).items()
            if isinstance(node, DataNode) and node.value is w]
    assert len(held) == 1
    assert_product_matches_scipy(both.compute(), np.vstack([x1.compute(), x2.compute()]), w)


def test_keywords_and_set_config_at_build_time_reach_the_tasks(rng, monkeypatch):
    seen = []
    original = _dask.__dict__["_multiply"]

    def recording(a: Any, b: Any, **options: Any) -> np.ndarray:
        seen.append(options)
        return original(a, b, **options)

    monkeypatch.setattr(_dask, "_multiply", recording)
    x = da.from_array(rng.standard_normal((20, 60)), chunks=(10, 60))
    with spmm.config_context(backend="serial", num_threads=3):
        y = spmm.multiply(x, w_matrix(rng), kernel="naive", num_threads=2)
    seen.clear()
    y.compute(scheduler="sync")  # outside the context
    assert seen == [{"backend": "serial", "num_threads": 2, "kernel": "naive"}] * 2


# --------------------------------------------------------------------------------------------
# Bad input: errors when the product is built, as for in-memory operands.


def test_unknown_chunk_sizes_are_a_value_error_saying_compute_chunk_sizes(rng):
    x = da.from_array(rng.standard_normal((40, 60)), chunks=(10, 60))
    x = x[x[:, 0] > 0]  # a boolean mask: unknown row counts
    with pytest.raises(ValueError, match=r"unknown chunk sizes \(NaN\).*compute_chunk_sizes"):
        spmm.multiply(x, w_matrix(rng))


def test_out_with_a_dask_operand_is_a_type_error_saying_the_result_is_lazy(rng):
    x = da.from_array(rng.standard_normal((40, 60)), chunks=(10, 60))
    with pytest.raises(TypeError, match=r"out= cannot be used .* dask.array.store"):
        spmm.multiply(x, w_matrix(rng), out=np.empty((40, 40)))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_two_operands_of_one_kind_are_a_type_error(rng, kind):
    if kind == "dense":
        a = da.ones((4, 5), chunks=2)
        b, match = np.ones((5, 3)), "got two dense operands"
    else:
        a = sparse_blocks(a_matrix(rng), (30, 48))
        b, match = a_matrix(rng).T, "got two sparse operands"
    with pytest.raises(TypeError, match=match):
        spmm.multiply(a, b)


def test_shape_mismatch_is_a_value_error_quoting_the_shapes(rng):
    x = da.ones((40, 59), chunks=(10, 59))
    with pytest.raises(ValueError, match=re.escape("a has shape (40, 59) and b has shape "
                                                   "(60, 40)")):
        spmm.multiply(x, w_matrix(rng))


def test_unsupported_dtypes_and_chunk_types_are_type_errors(rng):
    with pytest.raises(TypeError, match="unsupported dense operand dtype complex128"):
        spmm.multiply(da.ones((4, 60), dtype=complex, chunks=2), w_matrix(rng))
    masked = da.ma.masked_greater(da.ones((4, 60), chunks=2), 2)  # a mask spmm would drop
    with pytest.raises(TypeError, match=r"chunks must be numpy arrays or scipy.sparse.*"
                       r"MaskedArray"):
        spmm.multiply(masked, w_matrix(rng))


def test_a_three_dimensional_dask_operand_is_a_value_error(rng):
    with pytest.raises(ValueError, match="must be 1-D or 2-D; got 3-D"):
        spmm.multiply(da.ones((2, 4, 60), chunks=2), w_matrix(rng))


def test_a_corrupt_scipy_matrix_is_reported_when_the_product_is_built():
    w = sp.csr_array((np.ones(3), np.array([0, 1, 9]), np.array([0, 2, 3])), shape=(2, 4))
    with pytest.raises(ValueError, match=r"corrupt|out of range"):
        spmm.multiply(da.ones((5, 2), chunks=(2, 2)), w)


def test_explain_with_a_dask_operand_is_a_type_error_that_says_explain_a_block(rng):
    with pytest.raises(TypeError, match=r"explain a block"):
        spmm.explain(da.ones((4, 60), chunks=2), w_matrix(rng))


# --------------------------------------------------------------------------------------------
# PreparedMatrix: token, size, pickling.


def test_prepared_token_is_deterministic_cached_and_equal_for_an_unpickled_copy(rng,
                                                                                monkeypatch):
    w = w_matrix(rng)
    p = spmm.prepare(w)
    token = dask.base.tokenize(p)
    assert token == dask.base.tokenize(spmm.prepare(w))
    assert token == dask.base.tokenize(pickle.loads(pickle.dumps(p)))
    different = w.copy()
    different.data[0] += 1
    assert token != dask.base.tokenize(spmm.prepare(different))
    assert token != dask.base.tokenize(spmm.prepare(w, layout="tile", tile=8))
    monkeypatch.setattr(_dask_bridge, "fingerprint", lambda state: pytest.fail("rehashed"))
    assert dask.base.tokenize(p) == token  # kept from the first call


def test_dask_sizeof_of_a_prepared_matrix_is_its_memory_and_grows_with_its_forms(rng):
    p = spmm.prepare(w_matrix(rng))
    before = sizeof(p)
    assert before >= p.nbytes > 0
    spmm.multiply(np.ones((3, 60), np.float32), p)  # builds the transposed form
    assert sizeof(p) >= p.nbytes > before - 200


def test_prepared_matrix_pickles_its_arrays_out_of_band_without_copies(rng):
    p = spmm.prepare(sp.random_array((500, 300), density=0.2, format="csr", rng=rng))
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(p, protocol=5, buffer_callback=buffers.append)
    assert len(data) < 1000  # the arrays are not in the pickle itself
    arrays = [p._csr.indptr, p._csr.indices, p._csr.data]
    assert len(buffers) == 3
    for buffer, array in zip(buffers, arrays, strict=True):
        assert np.shares_memory(np.asarray(buffer.raw()), array)
    restored = pickle.loads(data, buffers=buffers)
    x = np.ones((4, 500))
    assert_product_matches_scipy(spmm.multiply(x, restored), x, p.to_scipy())


# --------------------------------------------------------------------------------------------
# The thread budget on dask's local schedulers.


def threads_in_tasks(scheduler: str, **options: Any) -> set[int]:
    """spmm's default thread count inside the tasks of a graph run by ``scheduler``."""
    def threads(block: np.ndarray) -> np.ndarray:
        return np.full((1, 1), spmm.get_config()["num_threads"])

    x = da.zeros((8, 1), chunks=1).map_blocks(threads, dtype=int)
    return set(x.compute(scheduler=scheduler, **options).ravel().tolist())


def test_threaded_scheduler_tasks_share_the_cores_among_its_pool():
    assert threads_in_tasks("threads", num_workers=2) == {max(1, CPUS // 2)}
    assert threads_in_tasks("threads", num_workers=1) == {CPUS}
    assert threads_in_tasks("sync") == {CPUS}
    assert spmm.get_config()["num_threads"] == CPUS  # outside tasks


def test_environment_and_set_config_override_the_budget_in_tasks(monkeypatch):
    monkeypatch.setenv("SPMM_NUM_THREADS", "3")
    assert threads_in_tasks("threads", num_workers=2) == {3}
    monkeypatch.delenv("SPMM_NUM_THREADS")

    def configured(block: np.ndarray) -> np.ndarray:
        spmm.set_config(num_threads=5)
        return np.full((1, 1), spmm.get_config()["num_threads"])

    x = da.zeros((4, 1), chunks=1).map_blocks(configured, dtype=int)
    assert set(x.compute(scheduler="threads", num_workers=2).ravel()) == {5}


# --------------------------------------------------------------------------------------------
# A cluster of two worker processes: one of 1 thread, one of 2.


def _count_arrivals() -> None:
    """Run on a worker: count the PreparedMatrix objects unpickled from now on."""
    from spmm import _prepared

    cls = _prepared.PreparedMatrix
    if not hasattr(cls, "arrivals"):
        unpickle = cls.__setstate__

        def counting(self: Any, state: Any) -> None:
            type(self).arrivals += 1
            unpickle(self, state)

        cls.__setstate__ = counting
    cls.arrivals = 0


def _arrivals() -> int:
    from spmm import _prepared
    return _prepared.PreparedMatrix.arrivals


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    # The scheduler (in this process) assigns every task up front and never moves one: with
    # work stealing or root-task queuing a worker that has dropped the matrix after its share
    # can be handed another task and fetch it again, which would make the arrivals counted
    # below depend on timing (docs/dask.md says so).
    with dask.config.set({"distributed.scheduler.work-stealing": False,
                          "distributed.scheduler.worker-saturation": float("inf")}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    (name, spec), = cluster.new_worker_spec().items()
    cluster.worker_spec[name] = {**spec, "options": {**spec["options"], "nthreads": 2}}
    cluster.scale(2)
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield client
    cluster.close()


def worker_by_threads(client: distributed.Client, nthreads: int) -> str:
    return next(a for a, n in client.nthreads().items() if n == nthreads)


def test_cluster_products_of_each_supported_combination_equal_scipy(client, case):
    a, b, chunks = case
    y = spmm.multiply(a, b)
    a_mem, b_mem = expected_product(a, b)
    assert y.chunks == chunks
    assert_product_matches_scipy(client.compute(y).result(), a_mem, b_mem)


def test_the_matrix_reaches_each_worker_once_per_graph_and_once_if_scattered(client, rng):
    p = spmm.prepare(sp.random_array((600, 400), density=0.1, format="csr", rng=rng))
    x = da.from_array(rng.standard_normal((400, 600)), chunks=(25, 600))
    client.run(_count_arrivals)
    y = client.persist(x @ p)
    distributed.wait(y)
    computed_on = {w for holders in client.who_has(y).values() for w in holders}
    assert len(computed_on) == 2  # both workers ran products: the matrix went to each
    assert client.run(_arrivals) == dict.fromkeys(client.nthreads(), 1)
    assert_product_matches_scipy(y.compute(), x.compute(), p.to_scipy())
    del y

    # Another matrix (another key): the release of the first one's key, which the scheduler
    # handles in its own time, cannot then undo the scatter below.
    q = spmm.prepare(sp.random_array((600, 400), density=0.1, format="csr", rng=rng))
    client.run(_count_arrivals)
    scattered = client.scatter(q, broadcast=True)
    assert client.run(_arrivals) == dict.fromkeys(client.nthreads(), 1)
    for _ in range(2):  # two graphs: the scattered copy serves both
        assert_product_matches_scipy(client.compute(x @ q).result(), x.compute(), q.to_scipy())
    assert client.run(_arrivals) == dict.fromkeys(client.nthreads(), 1)
    del scattered


def test_spmm_uses_one_thread_in_a_task_of_a_one_thread_worker(client):
    one = worker_by_threads(client, 1)
    threads = client.submit(lambda: spmm.get_config()["num_threads"], workers=[one],
                            pure=False).result()
    assert threads == 1
    outside_tasks = client.run(lambda: spmm.get_config()["num_threads"], workers=[one])
    assert outside_tasks == {one: CPUS}


def _two_products_at_once(_: int) -> tuple[int, int, int, list[int]]:
    """Run on a 2-thread worker, twice at once: wait until both tasks run, then report the
    default thread count, the plan's (default and with 2 threads asked for) and the thread
    pool's work of a product on the ``threads`` backend."""
    worker = distributed.get_worker()
    deadline = time.monotonic() + 30
    while len(worker.active_threads) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    rng = np.random.default_rng(0)
    w = sp.random_array((2048, 1024), density=0.2, format="csc", dtype=np.float32, rng=rng)
    x = rng.standard_normal((512, 2048), dtype=np.float32)
    before = _spmm_ext.pool_calls_taken()
    spmm.multiply(x, w, backend="threads")
    taken = [n - m for n, m in zip(_spmm_ext.pool_calls_taken(), before, strict=False)]
    return (spmm.get_config()["num_threads"], spmm.explain(x, w)["num_threads"],
            spmm.explain(x, w, num_threads=2)["num_threads"], taken)


def test_two_tasks_on_a_two_thread_worker_keep_two_spmm_threads_busy_in_all(client):
    two = worker_by_threads(client, 2)
    futures = client.map(_two_products_at_once, [0, 1], workers=[two], pure=False)
    results = client.gather(futures)
    for default, planned, asked_for_two, pool_work in results:
        assert (default, planned) == (1, 1)
        assert asked_for_two == 2  # the product is large enough to use two threads
        assert not any(pool_work)  # the pool's workers took none of it: the caller ran it
    assert sum(planned for _, planned, _, _ in results) == 2


def _slow_identity(block: np.ndarray) -> np.ndarray:
    time.sleep(0.1)
    return block


def _tasks_in_memory(dask_scheduler: distributed.Scheduler) -> int:
    return sum(task.state == "memory" for task in dask_scheduler.tasks.values())


def test_a_worker_killed_mid_graph_does_not_change_the_result(client, rng):
    w = sp.random_array((300, 200), density=0.1, format="csr", rng=rng)
    x_mem = rng.standard_normal((800, 300))
    x = da.from_array(x_mem, chunks=(25, 300)).map_blocks(_slow_identity)
    total = client.compute(spmm.multiply(x, w).sum(axis=0))
    pids = client.run(os.getpid)
    victim = worker_by_threads(client, 2)
    deadline = time.monotonic() + 60
    while client.run_on_scheduler(_tasks_in_memory) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not total.done()  # mid-graph
    os.kill(pids[victim], signal.SIGKILL)
    np.testing.assert_allclose(total.result(timeout=120), (x_mem @ w).sum(axis=0), rtol=1e-10)
    assert victim not in client.nthreads()  # it died: its replacement has another address
    client.wait_for_workers(2, timeout=60)


# --------------------------------------------------------------------------------------------
# The documentation's example and the benchmark harness's dask suite.

REPOSITORY = Path(__file__).resolve().parent.parent


def test_the_example_of_docs_dask_md_runs_as_written(tmp_path):
    text = (REPOSITORY / "docs" / "dask.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    printed = re.search(r"It prints\n\n```text\n(.*?)```", text, re.DOTALL).group(1)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    proc = run_interpreter([str(script)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == printed


def test_bench_dask_suite_checks_and_measures_each_product_on_a_cluster(tmp_path):
    proc = run_interpreter([str(REPOSITORY / "bench" / "run.py"), "--suite", "dask-tiny",
                            "--out", str(tmp_path), "--no-progress"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "dask.json").read_text())
    assert [r["product"]["kind"] for r in results["products"]] == ["xw", "ab"]
    for record in results["products"]:
        assert record["max_relative_error"] < 1e-4
        setups = [run["setup"] for run in record["runs"]]
        assert setups == ["in-process, 1 thread(s)", *(["in-process, 2 thread(s)"]
                                                        if CPUS > 1 else []),
                          "LocalCluster, 2 worker(s) x 1 thread"]
        cluster = record["runs"][-1]
        assert cluster["product_tasks"] == record["product"]["n"] // record["product"]["block"]
        assert cluster["graph_bytes"] > record["matrix_bytes"]  # the matrix, once
        assert cluster["graph_bytes"] < 2 * record["matrix_bytes"] + 100_000
    assert "| LocalCluster, 2 worker(s) x 1 thread |" in (tmp_path / "dask.md").read_text()
