"""Per-call cost of each backend on small products: where running in parallel starts to pay.

Run: ``python bench/overhead.py`` (after ``pip install .``; ``--rounds N`` repeats the sweep,
``--backend openmp`` limits the parallel backends measured). For products of growing work,
``(stored entries + rows) x dense columns``, it prints the median time of one call of scipy,
of spmm's serial backend, of each parallel backend at all CPUs *forced* to run in parallel
whatever the work (marked ``*``), and of spmm as it is (default backend and threshold); then
the crossing point of each parallel backend: the work from which it beats the serial backend
at every larger size. The larger crossing is the threshold below which spmm runs a product on
the calling thread whatever the backend (``kParallelMinWork`` in
``include/spmm/product.hpp``, reported by ``spmm.show_config()``); the last column says what
spmm does at each size with the threshold it was built with.

Variants are interleaved size by size, in one process, so that their ratios are comparable;
each median is over many calls. The machine is often shared, so run it more than once.

``--isolated`` then compares the parallel backends on products just above the threshold, each
backend in a process of its own (alternating, ``--rounds`` times), as spmm runs them by
default: the difference of their medians is the difference of their per-call overheads.
``--large`` does only that comparison, on products of about 1 and 10 ms, and prints the ratio
of the two backends' medians (issue 5, item 6: within 5 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from spmm_bench.timing import median_call_seconds

import spmm
from spmm import _api, _spmm_ext

REPEAT = 301  # calls per median: tiny calls, so many are cheap
ROWS = tuple(round(2 ** (e / 2)) for e in range(6, 29))  # 8 .. 16384 rows, steps of sqrt(2)
K, PER_ROW, N = 256, 16, 16  # A: rows x 256 with 16 stored entries per row; B: 256 x 16


@contextmanager
def forced_parallel() -> Iterator[None]:
    """Every product uses its backend's threads, however small (the tests' setting)."""
    saved = _api._parallel_min_work
    _api._parallel_min_work = 0
    try:
        yield
    finally:
        _api._parallel_min_work = saved


def work_of(a: sp.csr_array, n: int) -> int:
    """The work spmm compares with its threshold (product.hpp, less_work_than)."""
    return (a.nnz + a.shape[0]) * n


def crossing(works: list[int], serial: list[float], parallel: list[float]) -> int | None:
    """The smallest work from which ``parallel`` beats ``serial`` at every larger size.

    Judged on the ratio parallel / serial smoothed by a running median of three neighbouring
    sizes, so that one noisy size (a shared machine) does not move the crossing by a factor
    of two: near the crossing the two differ by less than the noise.
    """
    ratios = [p / s for s, p in zip(serial, parallel, strict=True)]
    smoothed = [statistics.median(ratios[max(0, i - 1):i + 2]) for i in range(len(ratios))]
    first = None
    for work, ratio in zip(works, smoothed, strict=True):
        if ratio < 1:
            first = work if first is None else first
        else:
            first = None
    return first


def measure(rounds: int, backends: list[str]) -> tuple[list[int], dict[str, list[float]]]:
    """Median seconds per call of every variant at every size (median over rounds)."""
    rng = np.random.default_rng(0)
    threads = spmm.get_config()["num_threads"]
    products = []
    for rows in ROWS:
        a = sp.random_array((rows, K), density=PER_ROW / K, format="csr", dtype=np.float32,
                            rng=rng)
        b = rng.standard_normal((K, N), dtype=np.float32)
        products.append((a, b, np.empty((rows, N), dtype=np.float32)))
    variants: dict[str, Callable] = {
        "scipy": lambda a, b, out: a @ b,
        "serial": lambda a, b, out: spmm.multiply(a, b, out=out, backend="serial"),
    }
    for backend in backends:
        def forced(a, b, out, backend=backend):
            with forced_parallel():
                return spmm.multiply(a, b, out=out, backend=backend, num_threads=threads)
        variants[f"{backend}*"] = forced
    variants["spmm"] = lambda a, b, out: spmm.multiply(a, b, out=out)
    samples: dict[str, list[list[float]]] = {v: [[] for _ in ROWS] for v in variants}
    for _ in range(rounds):
        for i, (a, b, out) in enumerate(products):
            for name, call in variants.items():
                time.sleep(0.05)  # let the previous variant's spinning workers go to sleep
                samples[name][i].append(
                    median_call_seconds(lambda call=call, a=a, b=b, out=out: call(a, b, out),
                                        REPEAT))
    works = [work_of(a, N) for a, _, _ in products]
    return works, {v: [statistics.median(s) for s in per_size] for v, per_size in
                   samples.items()}


ISOLATED_FACTORS = (1, 2, 4)  # products of about 1, 2 and 4 times the threshold's work
# --large: products of about 1 ms and 10 ms on the development VM (30 and 300 times the
# threshold's work), where the backends' per-call overheads are negligible and only how they
# run the two slices differs (issue 5, item 6: within 5 % of each other).
LARGE_FACTORS = (30, 300)
LARGE_CALLS = 201


def isolated_rows(threshold: int, factors: tuple[int, ...] = ISOLATED_FACTORS) -> list[int]:
    """Row counts whose products do ``factors`` times the threshold's work (at least 1 row)."""
    per_row = (PER_ROW + 1) * N
    return [max(1, -(-threshold * f // per_row)) for f in factors]


def child(backend: str, rows_list: list[int], calls: int = REPEAT * 10) -> None:
    """Print {rows: median seconds per call} of ``backend`` as spmm runs it by default."""
    rng = np.random.default_rng(0)
    medians = {}
    for rows in rows_list:
        a = sp.random_array((rows, K), density=PER_ROW / K, format="csr", dtype=np.float32,
                            rng=rng)
        b = rng.standard_normal((K, N), dtype=np.float32)
        out = np.empty((rows, N), dtype=np.float32)
        medians[rows] = median_call_seconds(
            lambda a=a, b=b, out=out: spmm.multiply(a, b, out=out, backend=backend),
            calls)
    print(json.dumps(medians))


def isolated(rounds: int, backends: list[str], threshold: int, large: bool = False) -> None:
    rows_list = isolated_rows(threshold, LARGE_FACTORS if large else ISOLATED_FACTORS)
    calls = LARGE_CALLS if large else REPEAT * 10
    results: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    for _ in range(rounds):
        for backend in backends:
            done = subprocess.run(
                [sys.executable, __file__, "--child", backend,
                 "--rows", ",".join(map(str, rows_list)), "--calls", str(calls)],
                check=True, capture_output=True, text=True)
            results[backend].append(json.loads(done.stdout))
    both = set(backends) == {"openmp", "threads"}
    print(f"\neach backend in its own process ({rounds} alternating rounds of "
          f"{calls} calls), as spmm runs it; median microseconds per call")
    print(f"{'rows':>7s} {'work':>10s} " + " ".join(f"{b:>8s}" for b in backends)
          + ("  threads - openmp  threads / openmp" if both else ""))
    for rows in rows_list:
        med = {b: statistics.median(r[str(rows)] for r in results[b]) * 1e6 for b in backends}
        work = (rows * PER_ROW + rows) * N  # about: the matrices are random
        line = f"{rows:7d} {work:10d} " + " ".join(f"{med[b]:8.1f}" for b in backends)
        if both:
            line += (f"  {med['threads'] - med['openmp']:+16.1f}"
                     f"  {med['threads'] / med['openmp']:16.3f}")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="sweeps (median taken)")
    parser.add_argument("--backend", action="append", choices=("openmp", "threads"),
                        help="parallel backend(s) to measure (default: all available)")
    parser.add_argument("--isolated", action="store_true",
                        help="also compare the backends just above the threshold, each in "
                             "its own process")
    parser.add_argument("--large", action="store_true",
                        help="compare the backends on large products (about 1 and 10 ms), "
                             "each in its own process, and nothing else")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=REPEAT * 10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, [int(r) for r in args.rows.split(",")], args.calls)
        return
    backends = args.backend or [b for b in spmm.available_backends() if b != "serial"]
    config = spmm.get_config()
    threshold = _spmm_ext.parallel_min_work()
    print(f"spmm {spmm.__version__}, default backend {config['backend']}, "
          f"{config['num_threads']} threads, parallel_min_work = {threshold}")
    print(f"float32 A (rows x {K}, {PER_ROW} stored per row) @ B ({K} x {N}), out= given; "
          f"median microseconds per call ({REPEAT} calls, median of {args.rounds} rounds)")
    if args.large:
        isolated(args.rounds, backends, threshold, large=True)
        return
    works, times = measure(args.rounds, backends)
    print(f"{'rows':>6s} {'work':>9s} " + " ".join(f"{v:>8s}" for v in times)
          + "  spmm runs it")
    for i, (rows, work) in enumerate(zip(ROWS, works, strict=True)):
        where = ("on the calling thread" if work < threshold or config["num_threads"] == 1
                 else f"on {config['backend']}")
        print(f"{rows:6d} {work:9d} " + " ".join(f"{times[v][i] * 1e6:8.1f}" for v in times)
              + f"  {where}")
    print("* forced to run in parallel at every size (parallel_min_work = 0)")
    crossings = {}
    for backend in backends:
        crossings[backend] = crossing(works, times["serial"], times[f"{backend}*"])
        found = crossings[backend]
        print(f"crossing point, {backend}: "
              + (f"beats serial from work {found}" if found else "never beats serial here"))
    found = [c for c in crossings.values() if c is not None]
    if len(found) == len(crossings):
        print(f"every parallel backend beats serial from work {max(found)} "
              f"(built-in threshold: {threshold})")
    if args.isolated:
        isolated(args.rounds, backends, threshold)


if __name__ == "__main__":
    main()
