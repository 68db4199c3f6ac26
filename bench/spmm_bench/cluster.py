"""The dask suite: spmm products on dask arrays, in one process and on LocalClusters.

For each product of :data:`suites.CLUSTERS` (the suite as data), one process measures:

* ``in-process``: the same blocks multiplied one after the other by ``spmm.multiply``, at 1
  thread and at all CPUs (no dask): the compute a cluster has to beat;
* ``LocalCluster``: the lazy product on a cluster of 1 and of 2 worker processes of one thread
  each, each output block reduced on its worker (its column sums: the result is never gathered
  into one array). The first graph ships the matrix and warms the workers; the second is timed.

From each cluster run: the wall time, useful GFLOP/s (2 nnz n), the tasks' compute time (from
the scheduler's task stream), dask's overhead per task (wall x task slots - compute, per
task), the bytes the client sent in the graph and the bytes the workers sent each other. A
graph of many one-row products measures the overhead per task on its own.

The operands are generated where they are used (X's blocks from a seed per block, on the
workers), so that nothing but the matrix and the graph travels from the client. The result is
checked against scipy on one block before anything is timed.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

import spmm

from . import matrices
from .suites import ClusterProduct

TIMED_PRODUCT_PREFIX = "spmm-multiply"


def x_block(block: np.ndarray | None, block_id: tuple[int, ...] | None = None, *,
            columns: int, value_type: str) -> np.ndarray:
    """X's block ``block_id``: uniform values from a seed of its own (a block of X is made
    where it is used, never sent)."""
    rows = block.shape[0]
    seed = 0 if block_id is None else block_id[0]
    return np.random.default_rng(seed).random((rows, columns), dtype=np.dtype(value_type))


def operands(product: ClusterProduct) -> tuple[Any, Any]:
    """The product's lazy dense operand and its in-memory (prepared) sparse operand."""
    import dask.array as da

    w = spmm.prepare(matrices.generate(product.matrix).astype(product.dtype))
    rows, cols = product.matrix.shape
    inner = rows if product.kind == "xw" else cols
    stub = da.empty((product.n, 1), chunks=(product.block, 1), dtype=product.dtype)
    x = stub.map_blocks(x_block, columns=inner, value_type=product.dtype,
                        chunks=(product.block, inner), dtype=product.dtype,
                        meta=np.empty((0, 0), product.dtype))
    if product.kind == "ab":  # B = X.T: its blocks are columns
        x = x.T
    return x, w


def lazy_product(x: Any, w: Any, kind: str) -> Any:
    """The product, each output block reduced on its worker to its column (or row) sums."""
    y = spmm.multiply(x, w) if kind == "xw" else spmm.multiply(w, x)
    axis = 0 if kind == "xw" else 1
    return y.map_blocks(lambda b: b.sum(axis=axis, keepdims=True), dtype=y.dtype,
                        chunks=tuple((1,) * len(c) if a == axis else c
                                     for a, c in enumerate(y.chunks)))


def check(x: Any, w: Any, kind: str) -> float:
    """The largest relative error of the first output block against scipy."""
    first = x.blocks[0, 0]
    dense = first.compute(scheduler="sync")
    scipy_w = w.to_scipy()
    expected = dense @ scipy_w if kind == "xw" else scipy_w @ dense
    got = (spmm.multiply(first, w) if kind == "xw" else spmm.multiply(w, first)).compute(
        scheduler="sync")
    return float(np.abs(got - expected).max() / max(1e-30, np.abs(expected).max()))


def in_process(x: Any, w: Any, kind: str, threads: int) -> dict[str, float]:
    """The blocks' products one after the other in this process: seconds of spmm alone."""
    blocks = x.to_delayed().ravel()
    seconds = 0.0
    for block in blocks:
        dense = block.compute(scheduler="sync")
        start = time.perf_counter()
        if kind == "xw":
            spmm.multiply(dense, w, num_threads=threads)
        else:
            spmm.multiply(w, dense, num_threads=threads)
        seconds += time.perf_counter() - start
    return {"seconds": seconds, "tasks": len(blocks)}


def on_cluster(x: Any, w: Any, kind: str, workers: int) -> dict[str, Any]:
    """The lazy product on a LocalCluster of ``workers`` one-thread worker processes."""
    import cloudpickle
    import distributed

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        reduced = lazy_product(x, w, kind)
        reduced.compute()  # warm-up: imports, the matrix's first trip, the plans
        client.run(_forget_transfers)
        graph = reduced.__dask_graph__()
        graph_bytes = len(cloudpickle.dumps(dict(graph), protocol=5))  # as the client sends it
        with distributed.get_task_stream(client) as stream:
            start = time.perf_counter()
            reduced.compute()
            wall = time.perf_counter() - start
        compute = sum(_duration(t) for t in stream.data)
        products = [t for t in stream.data if _is_product(t)]
        transfers = client.run(_transferred)
        return {"wall_seconds": wall, "tasks": len(stream.data),
                "product_tasks": len(products),
                "product_compute_seconds": sum(_duration(t) for t in products),
                "all_compute_seconds": compute,
                "overhead_per_task_seconds": max(0.0, wall * workers - compute)
                / max(1, len(stream.data)),
                "graph_bytes": graph_bytes, "worker_transfer_bytes": sum(transfers.values()),
                "tiny_task_overhead_seconds": _tiny_task_overhead(client, w, kind, workers)}


def _tiny_task_overhead(client: Any, w: Any, kind: str, workers: int) -> float:
    """Wall seconds per task slot of a graph of one-row products (dask's cost per task)."""
    import dask.array as da

    rows, cols = w.shape
    inner, tasks = (rows if kind == "xw" else cols), 200
    x = da.ones((tasks, inner), chunks=(1, inner), dtype=w.dtype)
    y = spmm.multiply(x, w) if kind == "xw" else spmm.multiply(w, x.T)
    y.sum().compute()  # warm-up
    start = time.perf_counter()
    y.sum().compute()
    return (time.perf_counter() - start) * workers / tasks


def _duration(task: dict[str, Any]) -> float:
    return sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")


def _is_product(task: dict[str, Any]) -> bool:
    key = task["key"]
    name = key[0] if isinstance(key, tuple) else key
    return str(name).startswith(TIMED_PRODUCT_PREFIX)


def _forget_transfers(dask_worker: Any) -> None:
    dask_worker.transfer_incoming_log.clear()


def _transferred(dask_worker: Any) -> int:
    return sum(entry["total"] for entry in dask_worker.transfer_incoming_log)


def run(products: list[ClusterProduct], cpus: int, progress: bool = True) -> dict[str, Any]:
    """Measure every product; the results as a JSON-ready dict."""
    results = []
    for product in products:
        x, w = operands(product)
        flops = 2 * w.nnz * product.n
        record: dict[str, Any] = {"product": asdict(product), "id": product.id,
                                  "nnz": w.nnz, "matrix_bytes": w.nbytes, "flops": flops,
                                  "max_relative_error": check(x, w, product.kind), "runs": []}
        for threads in sorted({1, cpus}):
            if progress:
                print(f"{product.id}: in-process, {threads} thread(s)", flush=True)
            run_ = {"setup": f"in-process, {threads} thread(s)", "slots": threads,
                    **in_process(x, w, product.kind, threads)}
            run_["gflops"] = flops / run_["seconds"] / 1e9
            record["runs"].append(run_)
        for workers in product.workers:
            if progress:
                print(f"{product.id}: LocalCluster, {workers} worker(s)", flush=True)
            run_ = {"setup": f"LocalCluster, {workers} worker(s) x 1 thread", "slots": workers,
                    **on_cluster(x, w, product.kind, workers)}
            run_["gflops"] = flops / run_["wall_seconds"] / 1e9
            record["runs"].append(run_)
        results.append(record)
    return {"suite": "dask", "products": results}


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table per product."""
    lines = []
    for record in results["products"]:
        lines += [f"### {record['id']}", "",
                  f"matrix: {record['nnz']} stored entries, {record['matrix_bytes']} bytes "
                  f"prepared; {record['flops'] / 1e9:.1f} GFLOP per product; max relative "
                  f"error of the first block vs scipy {record['max_relative_error']:.1e}", "",
                  "| setup | wall s | GFLOP/s | tasks | product compute s | overhead/task ms "
                  "| tiny-task overhead ms | graph bytes | worker-to-worker bytes |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in record["runs"]:
            if "wall_seconds" in r:
                lines.append(
                    f"| {r['setup']} | {r['wall_seconds']:.2f} | {r['gflops']:.1f} | "
                    f"{r['tasks']} | {r['product_compute_seconds']:.2f} | "
                    f"{r['overhead_per_task_seconds'] * 1e3:.1f} | "
                    f"{r['tiny_task_overhead_seconds'] * 1e3:.1f} | {r['graph_bytes']} | "
                    f"{r['worker_transfer_bytes']} |")
            else:
                lines.append(f"| {r['setup']} | {r['seconds']:.2f} | {r['gflops']:.1f} | "
                             f"{r['tasks']} | {r['seconds']:.2f} | | | | |")
        lines.append("")
    return "\n".join(lines)
