"""Timing one call: warm-up, then the median of repeats, with min, max and CPU/wall ratio.

Threaded code is timed by the wall clock (``time.perf_counter``). The process's CPU time
(``time.process_time``, all threads) over the same interval, divided by the wall time, tells
how many cores were busy: about the thread count when the limit holds, above it when a library
ignores its limit, below one when another process took the CPU.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

# OpenBLAS and OpenMP workers keep spinning after a call; on a 2-core machine that steals a
# core from whatever runs next (MEASURED.md: 10x slowdowns). 50 ms outlasts their spin
# (spmm's demo, measured on the 2-core VM).
QUIET_SECONDS = 0.05

# A sample repeats a short call until it lasts this long, so that timer resolution and the
# cost of the timing loop stay far below the measured time.
MIN_SAMPLE_SECONDS = 0.002

# A call longer than this has been warmed up by its checked first call: no second warm-up.
LONG_CALL_SECONDS = 0.25

MIN_SAMPLES = 3
MAX_LOOPS = 100_000


def quiet() -> None:
    """Let spinning BLAS/OpenMP workers go to sleep before the next measurement."""
    time.sleep(QUIET_SECONDS)


def measure(fn: Callable[[], Any], first_call_seconds: float, repeat: int,
            budget_seconds: float) -> dict[str, Any]:
    """Time ``fn`` after it has been called once (the checked call, which was the first
    warm-up).

    Parameters
    ----------
    fn : callable
        The call to time, with its operands and output prepared.
    first_call_seconds : float
        How long the first (checked) call took: it sizes the loops of short calls.
    repeat : int
        Number of timed samples wanted.
    budget_seconds : float
        After this much timing, stop once :data:`MIN_SAMPLES` samples are taken (the large
        science products would otherwise take minutes each).

    Returns
    -------
    dict
        ``median``, ``min``, ``max`` (seconds per call), ``samples`` (each sample's seconds
        per call), ``loops`` (calls per sample), ``cpu_wall_ratio``.
    """
    if first_call_seconds < LONG_CALL_SECONDS:
        start = time.perf_counter()
        fn()  # second warm-up, and a steadier estimate than the first call
        estimate = time.perf_counter() - start
    else:
        estimate = first_call_seconds
    loops = 1
    if estimate < MIN_SAMPLE_SECONDS:
        loops = min(MAX_LOOPS, math.ceil(MIN_SAMPLE_SECONDS / max(estimate, 1e-7)))
    samples = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - start) / loops)
        if len(samples) >= MIN_SAMPLES and time.perf_counter() - wall0 > budget_seconds:
            break
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
        "loops": loops,
        "cpu_wall_ratio": cpu / wall if wall > 0 else None,
    }


def fastest(candidates: dict[str, Callable[[], Any]], calls: int = 2) -> str:
    """The name of the fastest of ``candidates`` (equivalent calls): each is called once to
    warm up, then timed ``calls`` times; the best time wins."""
    best_name, best = "", float("inf")
    for name, fn in candidates.items():
        fn()
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if elapsed < best:
                best_name, best = name, elapsed
    return best_name


def median_call_seconds(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of one call of ``fn`` over ``repeat`` calls, after one warm-up call.

    For the small stand-alone scripts in bench/ (kernel_choice.py, overhead.py), which time
    single calls (per-call overhead included) rather than the harness's looped samples.
    """
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
