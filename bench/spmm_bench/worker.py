"""A worker: one process measuring one library at one thread count.

:mod:`runner` starts it with every threading runtime limited through the environment (MKL obeys
only variables set before its process starts). It reads a job file and, workload by workload:
binds each case (the library's best form, built before timing), calls it once and checks the
result against scipy's (a wrong result is recorded as failed and never timed), warms it up,
then takes the timed samples of all the workload's cases in turn, so that a slow spell of the
machine spreads over every case instead of falling on one. Each record is one line on stdout.

A case with an instruction-set level (``simd``: the kernel ablation's steps) runs with
``SPMM_SIMD`` set to it around every call; spmm reads the variable at each call.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import machine, peers
from .matrices import Store
from .suites import from_description

RECORD, INFO = "@@record ", "@@worker "
QUIET_SECONDS = 0.05  # outlasts the spinning of BLAS and OpenMP workers after a call
MIN_SAMPLE_SECONDS = 0.002  # short calls are looped so the timer's resolution does not matter
LONG_CALL_SECONDS = 0.25  # the checked call warmed such a call up: no second warm-up
MAX_LOOPS = 100_000
# The largest |error| may be this fraction of the largest |value| of scipy's result: summation
# orders differ, and with standard normal operands rounding stays near 1e-6 of that scale in
# float32, while a real error (a missing chunk, a wrong index) is of order 1.
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}


def compare(got: Any, expected: np.ndarray, dtype: str) -> tuple[bool, dict[str, Any]]:
    """Whether ``got`` equals scipy's ``expected`` to rounding, and why not."""
    got = np.asarray(got)
    if got.shape != expected.shape:
        return False, {"reason": f"result has shape {got.shape}, scipy's has {expected.shape}"}
    finite = np.isfinite(expected)
    if not np.array_equal(np.isfinite(got), finite):
        return False, {"reason": "NaN/Inf where scipy's result has none, or the reverse"}
    if expected.size == 0:
        return True, {"max_abs_error": 0.0, "tolerance": 0.0}
    diff = np.abs(np.where(finite, got - expected, 0))
    error = float(diff.max())
    tolerance = TOLERANCE[dtype] * (float(np.abs(np.where(finite, expected, 0)).max()) or 1.0)
    details = {"max_abs_error": error, "tolerance": tolerance}
    if not error <= tolerance:
        at = np.unravel_index(int(diff.argmax()), diff.shape)
        details["reason"] = (f"wrong result: max |error| {error:.3g} > tolerance "
                             f"{tolerance:.3g} (at {tuple(int(i) for i in at)}: got "
                             f"{got[at]!r}, scipy {expected[at]!r})")
    return error <= tolerance, details


@contextmanager
def simd(level: str | None) -> Iterator[None]:
    """``SPMM_SIMD=level`` within the block (untouched when ``level`` is None)."""
    saved = os.environ.get("SPMM_SIMD")
    if level is not None:
        os.environ["SPMM_SIMD"] = level
    try:
        yield
    finally:
        if level is not None and saved is None:
            del os.environ["SPMM_SIMD"]
        elif level is not None:
            os.environ["SPMM_SIMD"] = saved


def median_call_seconds(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of one call over ``repeat`` calls after a warm-up (for the small
    scripts, which time single calls, per-call overhead included)."""
    fn()
    return statistics.median(peers.call_seconds(fn) for _ in range(repeat))


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) < 500 else text[:500] + "..."


def _setup(lib: peers.Peer, ops: peers.Operands, case: dict[str, Any],
           store: Store) -> tuple[dict[str, Any], peers.Bound | None]:
    """Bind, check and warm up one case: its record, and its call unless it failed."""
    record: dict[str, Any] = {"key": case["key"], "status": "ok"}
    try:
        bound = lib.bind(ops, case)
    except peers.Skipped as exc:
        return {**record, "status": "skipped", "reason": str(exc)}, None
    except Exception as exc:  # a peer that cannot take this input fails, the run goes on
        return {**record, "status": "failed", "reason": f"setup raised {_error(exc)}"}, None
    record.update(bound.details)
    reference = store.load_reference(ops.workload)
    if bound.output is not None and reference is None and lib.name != "scipy":
        return {**record, "status": "skipped", "reason": "no scipy result to check against"}, None
    try:
        start = time.perf_counter()
        returned = bound.call()
        record["first_call_seconds"] = time.perf_counter() - start
        if bound.output is not None:
            got = bound.output(returned)
            if reference is None:  # scipy's first run: this is the reference
                store.save_reference(ops.workload, got)
                record["check"] = {"reference": True}
            else:
                ok, record["check"] = compare(got, reference, ops.workload.dtype)
                if not ok:
                    return {**record, "status": "failed",
                            "reason": record["check"]["reason"]}, None
        estimate = record["first_call_seconds"]
        if estimate < LONG_CALL_SECONDS:
            start = time.perf_counter()
            bound.call()  # second warm-up, and a steadier estimate than the first call
            estimate = time.perf_counter() - start
    except Exception as exc:
        return {**record, "status": "failed", "reason": f"raised {_error(exc)}",
                "traceback": traceback.format_exc(limit=-3)}, None
    record["loops"] = min(MAX_LOOPS, max(1, math.ceil(MIN_SAMPLE_SECONDS / max(estimate, 1e-7))))
    return record, bound


def measure(lib: peers.Peer, ops: peers.Operands, cases: list[dict[str, Any]], store: Store,
            job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    """Set up every case of one workload, then sample them in turn: up to ``samples`` each,
    stopping after ``budget`` seconds per case once ``min_samples`` are taken."""
    active = []
    for case in cases:
        with simd(case["simd"]):
            record, bound = _setup(lib, ops, case, store)
        if bound is None:
            emit(record)
        else:
            active.append((case, bound, record, {"samples": [], "cpu": 0.0, "wall": 0.0}))
    start = time.perf_counter()
    for i in range(job["samples"]):
        for case, bound, record, got in active:
            if record["status"] != "ok":
                continue
            with simd(case["simd"]):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                try:
                    for _ in range(record["loops"]):
                        bound.call()
                except Exception as exc:  # it passed its check: report, never crash
                    record.update(status="failed", reason=f"raised {_error(exc)} while timed")
                wall = time.perf_counter() - wall0
                got["cpu"] += time.process_time() - cpu0
                got["wall"] += wall
                got["samples"].append(wall / record["loops"])
        if (i + 1 >= job["min_samples"]
                and time.perf_counter() - start > job["budget"] * len(active)):
            break
    for _, _, record, got in active:
        ok = record["status"] == "ok"
        emit({**record, "samples": got["samples"] if ok else None,
              "cpu_seconds": got["cpu"], "wall_seconds": got["wall"]})
    if lib.uses_blas:
        time.sleep(QUIET_SECONDS)


def run_job(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run every case of ``job``; return the worker's facts (environment, thread pools)."""
    threads = job["threads"]
    info: dict[str, Any] = {"group": job["group"], "threads": threads, "pid": os.getpid(),
                            "environment": {k: os.environ[k] for k in machine.RELEVANT_ENV
                                            if k in os.environ}}
    if job["library"] == "machine":
        emit({"key": "machine", **machine.ceilings(threads, job["dtypes"], job["tiny"])})
        try:
            import spmm

            info["spmm_config"] = spmm.show_config(mode="dicts")
            info["spmm_backends"] = spmm.available_backends()
            info["spmm_explain"] = hasattr(spmm, "explain")
        except Exception as exc:  # spmm missing or misconfigured: the run reports it
            info["spmm_error"] = _error(exc)
    else:
        lib = peers.get(job["library"])
        try:
            lib.load(threads)
        except Exception as exc:  # e.g. sparse_dot_mkl without a loadable libmkl_rt
            for case in job["cases"]:
                emit({"key": case["key"], "status": "skipped",
                      "reason": f"cannot load {lib.name}: {_error(exc)}"})
            return {**info, "load_error": _error(exc)}
        info["library_threads"] = lib.threads_reported()
        store = Store(job["workdir"])
        order = list(dict.fromkeys(c["workload"] for c in job["cases"]))
        for wid in order:  # one workload's operands in memory at a time
            wl = from_description(job["workloads"][wid])
            ops = peers.Operands(wl, *store.load(wl))
            measure(lib, ops, [c for c in job["cases"] if c["workload"] == wid], store, job,
                    emit)
            del ops
    try:
        import threadpoolctl

        info["threadpool_info"] = threadpoolctl.threadpool_info()
    except Exception as exc:  # threadpoolctl cannot inspect some runtimes
        info["threadpool_info_error"] = _error(exc)
    return info


def main(job_path: str) -> None:
    """A worker process's entry point: one JSON line per record, then the worker's facts."""
    with open(job_path) as f:
        job = json.load(f)

    def emit(record: dict[str, Any]) -> None:
        sys.stdout.write(RECORD + json.dumps(record, default=str) + "\n")
        sys.stdout.flush()

    info = run_job(job, emit)
    sys.stdout.write(INFO + json.dumps(info, default=str) + "\n")
    sys.stdout.flush()
