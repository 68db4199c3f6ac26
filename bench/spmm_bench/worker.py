"""A worker: one process measuring one library at one thread count.

Started by :mod:`runner` with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``SPMM_NUM_THREADS`` set to the thread count (MKL obeys only
variables set before its process starts), it reads a job file, loads the library, and for each
case: binds the operands in the library's best form, calls it once and checks the result
against scipy's (a wrong answer is recorded as a failure and never timed), then times it. Each
record is printed on stdout as one line, so the parent can show progress as it goes.

A case with an instruction-set level (``simd``, the kernel ablation's steps) is bound, checked
and timed with ``SPMM_SIMD`` set to it; spmm reads the variable at every call, so one worker
serves every level, and the record's ``simd_used`` is what spmm reported under it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import checking, libraries, machine, timing
from .store import Store
from .suites import MatrixSpec, Workload

RECORD_PREFIX = "@@record "
INFO_PREFIX = "@@worker "


def workload_from_dict(d: dict[str, Any]) -> Workload:
    """The :class:`Workload` that :func:`workload_to_dict` described (job files are JSON)."""
    m = d["matrix"]
    spec = MatrixSpec(m["family"], tuple(m["shape"]), m["pattern"], m["sparsity"],
                      m.get("path", ""))
    return Workload(d["suite"], d["kind"], spec, d["n"], d["dtype"], tuple(d["tags"]))


def workload_to_dict(wl: Workload) -> dict[str, Any]:
    """A JSON-able description from which :func:`workload_from_dict` rebuilds ``wl``."""
    m = wl.matrix
    return {"suite": wl.suite, "kind": wl.kind, "n": wl.n, "dtype": wl.dtype,
            "tags": list(wl.tags),
            "matrix": {"family": m.family, "shape": list(m.shape), "pattern": m.pattern,
                       "sparsity": m.sparsity, "path": m.path}}


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) < 500 else text[:500] + "..."


@contextmanager
def simd_environment(level: str | None) -> Iterator[None]:
    """``SPMM_SIMD=level`` within the block (unchanged when ``level`` is None)."""
    if level is None:
        yield
        return
    saved = os.environ.get("SPMM_SIMD")
    os.environ["SPMM_SIMD"] = level
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SPMM_SIMD", None)
        else:
            os.environ["SPMM_SIMD"] = saved


def _measure_case(lib: libraries.Library, ops: libraries.Operands, case: dict[str, Any],
                  store: Store, job: dict[str, Any]) -> dict[str, Any]:
    with simd_environment(case.get("simd")):
        return _measure_case_here(lib, ops, case, store, job)


def _measure_case_here(lib: libraries.Library, ops: libraries.Operands,
                       case: dict[str, Any], store: Store,
                       job: dict[str, Any]) -> dict[str, Any]:
    wl = ops.workload
    record: dict[str, Any] = {"key": case["key"], "status": "ok"}
    try:
        bound = lib.bind(ops, case)
    except libraries.Skipped as exc:
        return {**record, "status": "skipped", "reason": str(exc)}
    except Exception as exc:  # a peer that cannot take this input is a failure, not a crash
        return {**record, "status": "failed", "reason": f"setup raised {_short_error(exc)}"}
    record.update(bound.details)
    reference = None
    if bound.output is not None and lib.name != "scipy":
        reference = store.load_reference(wl)
        if reference is None:
            return {**record, "status": "skipped",
                    "reason": "no scipy reference to check against (scipy's run failed)"}
    try:
        start = time.perf_counter()
        returned = bound.call()
        first = time.perf_counter() - start
        if bound.output is not None:
            got = bound.output(returned)
            if lib.name == "scipy":
                store.save_reference(wl, got)
                record["check"] = {"reference": True}
            else:
                ok, details = checking.compare(got, reference, wl.dtype)
                record["check"] = details
                if not ok:
                    return {**record, "status": "failed", "reason": details["reason"]}
            del got, returned
        budget = case.get("budget_seconds", job["budget_seconds"])
        result = timing.measure(bound.call, first, job["repeat"], budget)
    except Exception as exc:
        return {**record, "status": "failed", "reason": f"raised {_short_error(exc)}",
                "traceback": traceback.format_exc(limit=-3)}
    finally:
        if lib.uses_blas:
            timing.quiet()
    record["first_call_seconds"] = first
    record.update(result)
    return record


def run_job(job: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run every case of ``job``, passing each record to ``emit``; return the worker's facts.

    ``job`` holds ``library``, ``threads``, ``workdir``, ``repeat``, ``budget_seconds``,
    ``cases`` (in workload order) and ``workloads`` (id -> description).
    """
    started = time.perf_counter()
    threads = job["threads"]
    info: dict[str, Any] = {"group": job["group"], "threads": threads, "pid": os.getpid(),
                            "environment": {k: os.environ.get(k) for k in machine.RELEVANT_ENV
                                            if k in os.environ}}
    if job["library"] == "machine":
        emit({"key": "machine", "status": "ok",
              **machine.measure(threads, job["dtypes"], job.get("size", "full"))})
        info.update(_runtime_facts(spmm_config=job.get("spmm_config", False)))
        return info
    lib = libraries.get(job["library"])
    try:
        lib.load(threads)
    except Exception as exc:  # e.g. sparse_dot_mkl without a loadable libmkl_rt
        for case in job["cases"]:
            emit({"key": case["key"], "status": "skipped",
                  "reason": f"cannot load {lib.name}: {_short_error(exc)}"})
        info["load_error"] = _short_error(exc)
        return info
    store = Store(job["workdir"])
    current: libraries.Operands | None = None
    for case in job["cases"]:
        if current is None or current.workload.id != case["workload"]:
            current = None  # free the previous workload's operands first
            wl = workload_from_dict(job["workloads"][case["workload"]])
            current = libraries.Operands(wl, store.load_matrix(wl), store.load_dense(wl))
        emit(_measure_case(lib, current, case, store, job))
    info["versions"] = lib.versions()
    info.update(_runtime_facts())
    info["seconds"] = time.perf_counter() - started
    return info


def _runtime_facts(spmm_config: bool = False) -> dict[str, Any]:
    """Thread pools as threadpoolctl sees them now (BLAS kernel included), and optionally
    spmm's ``show_config``."""
    facts: dict[str, Any] = {"cpus": machine.cpu_count()}
    try:
        import threadpoolctl

        facts["threadpool_info"] = threadpoolctl.threadpool_info()
    except Exception as exc:  # threadpoolctl cannot inspect some runtimes
        facts["threadpool_info_error"] = _short_error(exc)
    if spmm_config:
        try:
            import spmm

            facts["spmm_config"] = spmm.show_config(mode="dicts")
            facts["spmm_backends"] = spmm.available_backends()
        except Exception as exc:  # spmm missing or misconfigured: the run reports it
            facts["spmm_error"] = _short_error(exc)
    return facts


def main(job_path: str) -> None:
    """Entry point of a worker process: run the job, one JSON line per record."""
    with open(job_path) as f:
        job = json.load(f)

    def emit(record: dict[str, Any]) -> None:
        sys.stdout.write(RECORD_PREFIX + json.dumps(record, default=str) + "\n")
        sys.stdout.flush()

    info = run_job(job, emit)
    sys.stdout.write(INFO_PREFIX + json.dumps(info, default=str) + "\n")
    sys.stdout.flush()
