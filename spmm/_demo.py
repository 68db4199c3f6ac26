"""``python -m spmm demo``: a pruned-layer product on every backend, timed against scipy."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from . import _config
from ._pipeline import multiply
from ._prepared import prepare

# Pause before each measurement: OpenMP (libgomp) and OpenBLAS workers keep spinning for a
# while after their last call, stealing a core from whatever is measured next on a small
# machine. 50 ms is far longer than their spin periods.
_QUIET_SECONDS = 0.05


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    time.sleep(_QUIET_SECONDS)
    fn()  # warm-up: first-touch of the output, pool start-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_demo(batch: int = 64, n_in: int = 1024, n_out: int = 4096, sparsity: float = 0.9,
             repeat: int = 15, seed: int = 0) -> list[dict]:
    """Time ``X @ W`` (W pruned to ``sparsity``) with scipy and with spmm on each backend.

    Parameters
    ----------
    batch, n_in, n_out : int
        X is ``batch x n_in`` (dense activations), W is ``n_in x n_out`` (pruned weights).
    sparsity : float
        Fraction of W's entries that are zero.
    repeat : int
        Timed repetitions; the median is reported.
    seed : int
        Seed of the random matrices.

    Returns
    -------
    list of dict
        One row per measurement: ``name``, ``seconds``, ``gflops`` (useful: 2 nnz batch per
        second) and ``speedup`` over scipy. Every spmm result is checked against scipy first.
    """
    rng = np.random.default_rng(seed)
    w = sp.random_array((n_in, n_out), density=1 - sparsity, format="csr",
                        dtype=np.float32, rng=rng)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    expected = x @ w
    flops = 2.0 * w.nnz * batch
    threads = _config.get_config()["num_threads"]

    rows = [("scipy (X @ W, CSR)", lambda: x @ w)]
    prepared = prepare(w)
    for backend in _config.available_backends():
        rows.append((f"spmm {backend}, {threads if backend != 'serial' else 1} thr, CSR input",
                     lambda b=backend: multiply(x, w, backend=b, num_threads=threads)))
        rows.append((f"spmm {backend}, {threads if backend != 'serial' else 1} thr, prepared",
                     lambda b=backend: multiply(x, prepared, backend=b, num_threads=threads)))
    results = []
    for name, fn in rows:
        got = fn()
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
            raise AssertionError(f"{name}: result differs from scipy")
        seconds = _median_seconds(fn, repeat)
        results.append({"name": name, "seconds": seconds, "gflops": flops / seconds / 1e9})
    base = results[0]["seconds"]
    for r in results:
        r["speedup"] = base / r["seconds"]
    return results


def main(argv: list[str] | None = None) -> None:
    """Print the demo's table."""
    batch, n_in, n_out, sparsity = 64, 1024, 4096, 0.9
    print(f"spmm demo: X ({batch} x {n_in}, float32) @ W ({n_in} x {n_out}, "
          f"{sparsity:.0%} pruned), median of 15 runs, checked against scipy")
    results = run_demo(batch, n_in, n_out, sparsity)
    print(f"{'':40s} {'time (ms)':>10s} {'GFLOP/s':>9s} {'vs scipy':>9s}")
    for r in results:
        print(f"{r['name']:40s} {r['seconds'] * 1e3:10.3f} {r['gflops']:9.2f} "
              f"{r['speedup']:8.2f}x")
    print("(GFLOP/s counts useful work, 2 x nnz x batch; times from one run on this machine.)")
