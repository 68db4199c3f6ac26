"""Per-call cost of each backend on small products: where running in parallel starts to pay.

Run: ``python bench/overhead.py [--rounds 3] [--backend openmp] [--isolated | --large]``.
For products of growing work ``(stored entries + rows) x dense columns`` it prints the median
time of one call of scipy, of spmm's serial backend, of each parallel backend on all CPUs
*forced* to run in parallel however small the product (marked ``*``), and of spmm as it is;
then the work from which each parallel backend beats the serial one at every larger size. The
larger of these crossings is the threshold below which spmm runs a product on the calling
thread (``spmm.show_config()`` reports it as ``parallel_min_work``). The variants are
interleaved size by size in one process, so their ratios compare; run it more than once on a
shared machine.

``--isolated`` then compares the parallel backends just above the threshold, each in a
process of its own, alternating, as spmm runs them by default: the difference of the medians
is the difference of their per-call overheads. ``--large`` does only that, on products of
about 1 and 10 ms, and prints threads / openmp (the goal: within 5 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from spmm_bench.worker import median_call_seconds

import spmm
from spmm import _spmm_ext
from spmm._testing import parallel_min_work

REPEAT = 301  # calls per median: tiny calls, so many are cheap
ROWS = tuple(round(2 ** (e / 2)) for e in range(6, 29))  # 8 .. 16384 rows, steps of sqrt(2)
K, PER_ROW, N = 256, 16, 16  # A: rows x 256, 16 stored entries per row; B: 256 x 16


def product(rows: int, rng: np.random.Generator) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    a = sp.random_array((rows, K), density=PER_ROW / K, format="csr", dtype=np.float32, rng=rng)
    return a, rng.standard_normal((K, N), dtype=np.float32), np.empty((rows, N), np.float32)


def crossing(works: list[int], serial: list[float], parallel: list[float]) -> int | None:
    """The smallest work from which ``parallel`` beats ``serial`` at every larger size, on
    the ratio smoothed by a running median of three sizes (one noisy size must not move it)."""
    ratios = [p / s for s, p in zip(serial, parallel, strict=True)]
    smooth = [statistics.median(ratios[max(0, i - 1):i + 2]) for i in range(len(ratios))]
    first = None
    for work, ratio in zip(works, smooth, strict=True):
        first = (first or work) if ratio < 1 else None
    return first


def sweep(rounds: int, backends: list[str]) -> tuple[list[int], dict[str, list[float]]]:
    """Median seconds per call of every variant at every size (median over rounds)."""
    rng, threads = np.random.default_rng(0), spmm.get_config()["num_threads"]
    products = [product(rows, rng) for rows in ROWS]

    def forced(backend: str) -> Callable:
        def call(a: sp.csr_array, b: np.ndarray, out: np.ndarray) -> None:
            with parallel_min_work(0):
                spmm.multiply(a, b, out=out, backend=backend, num_threads=threads)
        return call

    variants: dict[str, Callable] = {
        "scipy": lambda a, b, out: a @ b,
        "serial": lambda a, b, out: spmm.multiply(a, b, out=out, backend="serial"),
        **{f"{b}*": forced(b) for b in backends},
        "spmm": lambda a, b, out: spmm.multiply(a, b, out=out)}
    samples: dict[str, list[list[float]]] = {v: [[] for _ in ROWS] for v in variants}
    for _ in range(rounds):
        for i, ops in enumerate(products):
            for v, call in variants.items():
                time.sleep(0.05)  # the previous variant's spinning workers go to sleep
                samples[v][i].append(median_call_seconds(lambda c=call, o=ops: c(*o), REPEAT))
    works = [(a.nnz + a.shape[0]) * N for a, _, _ in products]
    return works, {v: [statistics.median(s) for s in per] for v, per in samples.items()}


def child(backend: str, rows_list: list[int], calls: int) -> None:
    """Print {rows: median seconds per call} of ``backend`` as spmm runs it by default."""
    rng, medians = np.random.default_rng(0), {}
    for rows in rows_list:
        a, b, out = product(rows, rng)
        medians[rows] = median_call_seconds(
            lambda a=a, b=b, out=out: spmm.multiply(a, b, out=out, backend=backend), calls)
    print(json.dumps(medians))


def isolated(rounds: int, backends: list[str], threshold: int, factors: tuple[int, ...],
             calls: int) -> None:
    """Each backend in its own process, alternating, on products of ``factors`` x the
    threshold's work."""
    rows_list = [max(1, -(-threshold * f // ((PER_ROW + 1) * N))) for f in factors]
    got: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
    for _ in range(rounds):
        for b in backends:
            done = subprocess.run([sys.executable, __file__, "--child", b, "--rows",
                                   ",".join(map(str, rows_list)), "--calls", str(calls)],
                                  check=True, capture_output=True, text=True)
            got[b].append(json.loads(done.stdout))
    both = set(backends) == {"openmp", "threads"}
    print(f"\neach backend in its own process ({rounds} alternating rounds of {calls} calls); "
          "median microseconds per call")
    print(f"{'rows':>7s} " + " ".join(f"{b:>8s}" for b in backends)
          + ("  threads - openmp  threads / openmp" if both else ""))
    for rows in rows_list:
        med = {b: statistics.median(r[str(rows)] for r in got[b]) * 1e6 for b in backends}
        print(f"{rows:7d} " + " ".join(f"{med[b]:8.1f}" for b in backends) + (
            f"  {med['threads'] - med['openmp']:+16.1f}  {med['threads'] / med['openmp']:16.3f}"
            if both else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="sweeps (median taken)")
    p.add_argument("--backend", action="append", choices=("openmp", "threads"),
                   help="parallel backend(s) to measure (default: all available)")
    p.add_argument("--isolated", action="store_true",
                   help="also compare the backends just above the threshold, one process each")
    p.add_argument("--large", action="store_true",
                   help="only compare the backends on products of about 1 and 10 ms")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--rows", help=argparse.SUPPRESS)
    p.add_argument("--calls", type=int, default=REPEAT * 10, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, [int(r) for r in args.rows.split(",")], args.calls)
    backends = args.backend or [b for b in spmm.available_backends() if b != "serial"]
    config, threshold = spmm.get_config(), _spmm_ext.parallel_min_work()
    print(f"spmm {spmm.__version__}, default backend {config['backend']}, "
          f"{config['num_threads']} threads, parallel_min_work = {threshold}")
    if args.large:  # about 1 and 10 ms: only how the backends run the slices differs
        return isolated(args.rounds, backends, threshold, (30, 300), 201)
    print(f"float32 A (rows x {K}, {PER_ROW} per row) @ B ({K} x {N}), out= given; median "
          f"microseconds per call ({REPEAT} calls, median of {args.rounds} rounds)")
    works, times = sweep(args.rounds, backends)
    print(f"{'rows':>6s} {'work':>9s} " + " ".join(f"{v:>8s}" for v in times) + "  spmm runs it")
    for i, (rows, work) in enumerate(zip(ROWS, works, strict=True)):
        where = ("on the calling thread" if work < threshold or config["num_threads"] == 1
                 else f"on {config['backend']}")
        print(f"{rows:6d} {work:9d} " + " ".join(f"{times[v][i] * 1e6:8.1f}" for v in times)
              + f"  {where}")
    print("* forced to run in parallel at every size (parallel_min_work = 0)")
    found = {b: crossing(works, times["serial"], times[f"{b}*"]) for b in backends}
    for b, work in found.items():
        print(f"crossing point, {b}: " + (f"beats serial from work {work}" if work
                                          else "never beats serial here"))
    if None not in found.values():
        print(f"every parallel backend beats serial from work {max(found.values())} "
              f"(built-in threshold: {threshold})")
    if args.isolated:
        isolated(args.rounds, backends, threshold, (1, 2, 4), REPEAT * 10)


if __name__ == "__main__":
    main()
