"""Running a suite: operands, machine ceilings, one worker process per (library, threads),
progress, re-measurement of disturbed points, derived figures.

Several OpenMP runtimes in one process (spmm's libgomp, MKL's Intel runtime, PyTorch's own)
oversubscribe or spin, and MKL obeys only thread limits set before its process starts
(MEASURED.md). So each (library, thread count) group runs in a fresh Python process whose
environment sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``SPMM_NUM_THREADS`` and unsets ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` (which make
OpenBLAS pick a slower kernel here); the record of each worker keeps the BLAS kernel
threadpoolctl saw. ``isolate=False`` runs every group in this process instead, for debugging
and for the harness's tests, where the limits then rely on threadpoolctl alone.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    ablation,
    autocheck,
    disturbance,
    libraries,
    machine,
    metrics,
    payoff,
    plan,
    suites,
    targets,
    worker,
)
from .progress import Progress
from .store import Store, read_matrix_market

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "SPMM_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
# Unset for benchmark processes only (never in tests or CI): OPENBLAS_CORETYPE=Haswell and
# OPENBLAS_L2_SIZE, set on the 2-core VM, make numpy's 2-thread SGEMM 1.9x slower; SPMM_BACKEND
# and SPMM_KERNEL would be overridden by the explicit keywords anyway.
UNSET_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SPMM_BACKEND", "SPMM_KERNEL")

# Keys every measurement has (None when it does not apply: a skipped point has no timing).
RECORD_DEFAULTS = ("reason", "median", "min", "max", "samples", "loops", "cpu_wall_ratio",
                   "first_call_seconds", "check", "kernel_used", "form_used", "simd_used",
                   "layout_used", "block_used")

# A worker silent for this long (one measurement takes seconds) is hung: it is killed and its
# current case recorded as failed.
CASE_TIMEOUT_SECONDS = 900.0

# The workload parameters each measurement carries (the rest is under "workloads", by id).
RECORD_WORKLOAD_KEYS = ("id", "suite", "kind", "family", "shape", "pattern", "sparsity",
                        "actual_sparsity", "n", "nnz", "dtype", "tags", "path")

BENCH_DIR = Path(__file__).resolve().parent.parent
# The worker imports the harness from bench/ only; its working directory is the scratch
# directory, so neither the repository root nor its uncompiled spmm/ is ever on its path.
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from spmm_bench.worker import main; main(sys.argv[2])")


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker limited to ``threads`` threads."""
    env = dict(os.environ)
    for var in UNSET_VARS:
        env.pop(var, None)
    for var in THREAD_VARS:
        env[var] = str(threads)
    if "MKL_RT" not in env:
        found = libraries.find_mkl_rt()
        if found:
            env["MKL_RT"] = found
    return env


class _Watchdog:
    """Kills ``proc`` when :meth:`alive` has not been called for ``timeout`` seconds."""

    def __init__(self, proc: subprocess.Popen, timeout: float) -> None:
        self.proc, self.timeout = proc, timeout
        self.last = time.monotonic()
        self.fired = False
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def alive(self) -> None:
        """The worker just spoke: restart the countdown."""
        self.last = time.monotonic()

    def stop(self) -> None:
        """The worker is done: stop watching."""
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(min(10.0, self.timeout / 4)):
            if time.monotonic() - self.last > self.timeout:
                self.fired = True
                self.proc.kill()
                return


class Runner:
    """One run: holds the scratch store, the progress display and every record."""

    def __init__(self, options: plan.Options, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.cpus = machine.cpu_count()
        self.workdir = Path(tempfile.mkdtemp(prefix="spmm-bench-"))
        self.store = Store(self.workdir)
        self.show_progress = progress
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.workers: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._jobs = 0
        self.progress: Progress | None = None

    # -- workers ---------------------------------------------------------------------------

    def _run_job(self, job: dict[str, Any], on_record: Callable[[dict[str, Any]], None]) -> None:
        """Run ``job`` in a fresh process (or inline), passing each record to ``on_record``.

        A worker that dies (a peer crashing) costs only the case it was on: that case is
        recorded as failed and a new process takes the remaining ones.
        """
        remaining = list(job["cases"])
        seen: set[str] = set()

        def receive(record: dict[str, Any]) -> None:
            seen.add(record["key"])
            on_record(record)

        if not self.options.isolate:
            import threadpoolctl

            with threadpoolctl.threadpool_limits(limits=job["threads"]):
                info = worker.run_job(job, receive)
            self.workers.append({**info, "isolated": False})
            return
        while True:
            self._jobs += 1
            path = self.workdir / f"job-{self._jobs}.json"
            log_path = self.workdir / f"job-{self._jobs}.log"
            path.write_text(json.dumps({**job, "cases": remaining}))
            info: dict[str, Any] = {}
            started = time.perf_counter()
            with open(log_path, "w") as log, subprocess.Popen(
                    [sys.executable, "-X", "faulthandler", "-c", BOOTSTRAP, str(BENCH_DIR),
                     str(path)],
                    cwd=self.workdir, env=worker_env(job["threads"]), stdout=subprocess.PIPE,
                    stderr=log, text=True) as proc:
                assert proc.stdout is not None
                watchdog = _Watchdog(proc, CASE_TIMEOUT_SECONDS)
                for line in proc.stdout:
                    watchdog.alive()
                    if line.startswith(worker.RECORD_PREFIX):
                        receive(json.loads(line[len(worker.RECORD_PREFIX):]))
                    elif line.startswith(worker.INFO_PREFIX):
                        info = json.loads(line[len(worker.INFO_PREFIX):])
                code = proc.wait()
                watchdog.stop()
                if watchdog.fired:
                    print(f"killed after {CASE_TIMEOUT_SECONDS:.0f} s without a result",
                          file=log)
            info.update({"isolated": True, "exit_code": code,
                         "wall_seconds": time.perf_counter() - started})
            self.workers.append(info)
            remaining = [c for c in remaining if c["key"] not in seen]
            if code == 0 or not remaining:
                if code != 0:
                    self.notes.append(f"worker {job['group']} t={job['threads']} exited with "
                                      f"code {code} after its last record")
                return
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            crashed = remaining.pop(0)
            receive({"key": crashed["key"], "status": "failed",
                     "reason": f"worker process died (exit code {code}) on this case: "
                               + " | ".join(tail)})
            if not remaining:
                return

    # -- phases ----------------------------------------------------------------------------

    def measure_machine(self, dtypes: list[str], size: str) -> tuple[dict[int, dict], dict]:
        """Bandwidth and GEMM peak for each thread count up to the CPUs; spmm's config.

        A thread count whose figures look disturbed is measured once more in a fresh process
        and the better figures kept (ceilings are maxima); if still disturbed, it is marked.
        """
        counts = sorted({1, *(t for t in self.options.threads + self.options.scaling_threads
                              if t <= self.cpus)})
        ceilings: dict[int, dict[str, Any]] = {}
        facts: dict[str, Any] = {}

        def measure(t: int) -> dict[str, Any]:
            assert self.progress is not None
            self.progress.describe(f"machine t={t}")
            job = {"group": "machine", "library": "machine", "threads": t, "dtypes": dtypes,
                   "size": size, "spmm_config": t == 1, "cases": [{"key": "machine"}],
                   "workdir": str(self.workdir)}
            got: dict[str, Any] = {}

            def keep(record: dict[str, Any]) -> None:
                got.update(record)
                self.progress.update()

            self._run_job(job, keep)
            return got

        for t in counts:
            ceilings[t] = measure(t)
            if t == 1 and self.workers:
                facts = self.workers[-1]
        suspicious = machine.disturbed_reasons(ceilings)
        if suspicious:
            assert self.progress is not None
            self.progress.add_total(len(suspicious))
            for t in suspicious:
                ceilings[t] = {**machine.best_of(ceilings[t], measure(t)), "remeasured": True,
                               "first_attempt_reasons": suspicious[t]}
            still = machine.disturbed_reasons(ceilings)
            for t in ceilings:
                ceilings[t]["disturbed_reasons"] = still.get(t, [])
                ceilings[t]["disturbed"] = t in still
        return ceilings, facts

    def run_cases(self, cases: list[dict[str, Any]], workloads: dict[str, suites.Workload],
                  records: dict[str, dict[str, Any]], attempt: int = 1) -> None:
        """Measure ``cases`` group by group; merge each result into ``records``."""
        by_key = {c["key"]: c for c in cases}
        for group, threads, group_cases in plan.groups(cases):
            assert self.progress is not None
            self.progress.describe(f"{group} t={threads}")
            library = group.split("-")[0] if group.startswith("spmm-") else group
            job = {"group": group, "library": library, "threads": threads,
                   "workdir": str(self.workdir), "repeat": self.options.repeat,
                   "budget_seconds": self.options.budget_seconds, "cases": group_cases,
                   "workloads": {c["workload"]: worker.workload_to_dict(workloads[c["workload"]])
                                 for c in group_cases}}

            def on_record(record: dict[str, Any]) -> None:
                case = by_key[record["key"]]
                records[record["key"]] = {**case, **record, "attempt": attempt}
                self.progress.update()

            self._run_job(job, on_record)

    def close(self) -> None:
        """Remove the scratch directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def _blas_libraries(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The BLAS libraries threadpoolctl saw in the workers (kernel included), and where."""
    found: dict[tuple, dict[str, Any]] = {}
    for w in workers:
        for pool in w.get("threadpool_info") or []:
            if pool.get("user_api") != "blas":
                continue
            key = tuple(pool.get(k) for k in ("internal_api", "version", "architecture",
                                                "filepath"))
            entry = found.setdefault(key, {**{k: pool.get(k) for k in (
                "internal_api", "version", "architecture", "threading_layer", "filepath")},
                "seen_in": []})
            entry["seen_in"].append(f"{w.get('group')} t={w.get('threads')}")
    return list(found.values())


def _skipped(case: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**case, "status": "skipped", "reason": reason, "attempt": 0}


def run(options: plan.Options, progress: bool = True,
        log: Callable[[str], None] | None = None,
        command: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark described by ``options``; return every result as one dict.

    Parameters
    ----------
    options : plan.Options
        Suite, thread counts, dtypes, repeats, backends, kernels, peers.
    progress : bool
        Show a progress bar (or plain progress lines without tqdm) on stderr.
    log : callable, optional
        Where status lines go (default: stderr).
    command : list of str, optional
        The command line, recorded in the results.

    Returns
    -------
    dict
        ``machine``, ``libraries``, ``workers``, ``workloads``, ``measurements``,
        ``break_even``, ``notes`` and the run's ``options``: what ``results.json`` holds.
    """
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    runner = Runner(options, progress=progress, log=log)
    try:
        return _run(runner, options, started, t0, command)
    finally:
        if runner.progress is not None:
            runner.progress.close()
        runner.close()


def _workloads(options: plan.Options) -> list[suites.Workload]:
    """The suite's workloads, the Matrix Market file's, filtered by ``--only``."""
    workloads = suites.workloads(options.suite, options.dtypes) if options.suite else []
    if options.matrix:
        a = read_matrix_market(options.matrix)
        sparsity = 1 - a.nnz / (a.shape[0] * a.shape[1])
        workloads += suites.file_workloads(str(Path(options.matrix).resolve()), a.shape,
                                           sparsity, options.dtypes)
    if options.only:
        workloads = [wl for wl in workloads if any(text in wl.id for text in options.only)]
        if not workloads:
            raise ValueError(f"--only {','.join(options.only)} matches no workload of the suite")
    return workloads


def _library_info(options: plan.Options) -> dict[str, dict[str, Any]]:
    """Each library's status (available, or skipped with the reason) and forms, decided
    without importing it in this process."""
    info: dict[str, dict[str, Any]] = {}
    for name in ["scipy", "spmm", *options.peers]:
        lib = libraries.get(name)
        reason = libraries.not_installed_reason(lib)
        info[name] = {"status": "skipped" if reason else "available", "reason": reason,
                      "forms": dict(lib.forms),
                      **({"variants": dict(lib.variants)} if name == "spmm" else {})}
    return info


def _case_of(record: dict[str, Any]) -> dict[str, Any]:
    """The case a record measured, to measure it again."""
    return {k: record[k] for k in ("workload", "library", "threads", "backend", "kernel",
                                   "partition", "variant", "simd", "auto_check",
                                   "budget_seconds", "key", "group")
            if k in record}


def _recheck_auto(runner: Runner, records: dict[str, dict[str, Any]],
                  by_id: dict[str, suites.Workload],
                  finished: Callable[[], list[dict[str, Any]]],
                  check: dict[str, Any]) -> int:
    """Measure ``auto`` and the fastest kernel once more, in a fresh process, on every
    workload the ``auto`` check flags, so that one slowed sample series cannot make the flag;
    the second figures replace the first (kept as ``auto_check_first``). Returns how many
    workloads were re-checked."""
    summary = autocheck.summarize(finished(), check["level"], check["simd"], check["backend"])
    flagged = [row for row in summary["rows"] if row["flagged"]]
    if not flagged:
        return 0
    keys = [row["keys"][name] for row in flagged for name in ("auto", row["fastest"])]
    runner.log(f"re-checking auto on {len(flagged)} flagged workloads in a fresh process")
    first = {key: records[key].get("median") for key in keys}
    assert runner.progress is not None
    runner.progress.add_total(len(keys))
    runner.run_cases([_case_of(records[key]) for key in keys], by_id, records, attempt=3)
    for key, median in first.items():
        records[key]["auto_check_first"] = {"median": median}
    return len(flagged)


def _remeasure_disturbed(runner: Runner, records: dict[str, dict[str, Any]],
                         by_id: dict[str, suites.Workload],
                         finished: Callable[[], list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Re-measure every disturbed point once, each group in a fresh process; return the
    points still disturbed afterwards (with their reasons)."""
    found = disturbance.find(finished(), runner.cpus)
    if not found:
        return {}
    runner.log(f"re-measuring {len(found)} disturbed points in fresh processes")
    first = {key: {"median": records[key].get("median"), "reasons": reasons}
             for key, reasons in found.items()}
    retry = [_case_of(records[key]) for key in found]
    assert runner.progress is not None
    runner.progress.add_total(len(retry))
    runner.run_cases(retry, by_id, records, attempt=2)
    for key, summary in first.items():
        records[key]["first_attempt"] = summary
        records[key]["remeasured"] = True
    # Marked even when only a comparison with a re-measured point flags it now.
    return disturbance.find(finished(), runner.cpus)


def _run(runner: Runner, options: plan.Options, started: datetime.datetime,
         t0: float, command: list[str] | None) -> dict[str, Any]:
    workloads = _workloads(options)
    by_id = {wl.id: wl for wl in workloads}
    runner.log(f"spmm bench: {len(workloads)} workloads ({options.suite or 'matrix file'}), "
               f"threads {options.threads}, dtypes {options.dtypes}; scratch {runner.workdir}")
    facts = runner.store.prepare(workloads, on_matrix=lambda mid: runner.log(f"  generating {mid}"))
    library_info = _library_info(options)

    size = "tiny" if options.suite == "tiny" else "full"
    machine_runs = len({1, *(t for t in options.threads + options.scaling_threads
                             if t <= runner.cpus)})
    runner.progress = Progress(machine_runs, enabled=runner.show_progress)
    ceilings, spmm_facts = runner.measure_machine(options.dtypes, size)
    available = spmm_facts.get("spmm_backends")
    if available is None:
        available = list(options.backends)
        runner.notes.append(f"could not read spmm's backends: {spmm_facts.get('spmm_error')}")
    backends = [b for b in options.backends if b in available]
    for b in options.backends:
        if b not in available:
            runner.notes.append(f"backend {b!r} is not in this build of spmm ({available})")

    simd_levels, default_simd = _simd_levels(spmm_facts)
    records: dict[str, dict[str, Any]] = {}
    to_run = []
    for wl in workloads:
        for case in plan.cases_for(wl, options, backends, simd_levels, default_simd):
            info = library_info[case["library"]]
            reason = (info["reason"] or libraries.get(case["library"]).skip_reason(wl)
                      or autocheck.skip_reason(case, wl))
            if reason:
                records[case["key"]] = _skipped(case, reason)
            else:
                to_run.append(case)
    runner.progress.add_total(len(to_run))
    runner.run_cases(to_run, by_id, records)

    def finished() -> list[dict[str, Any]]:
        """Copies of the records with their workload's parameters filled in."""
        out = []
        for r in records.values():
            wl = by_id[r["workload"]]
            full = {**wl.describe(), **facts[wl.matrix.id]}
            out.append({**dict.fromkeys(RECORD_DEFAULTS), **r, "workload_id": wl.id,
                        "dtype": wl.dtype,
                        "workload": {k: full[k] for k in RECORD_WORKLOAD_KEYS if k in full}})
        return out

    still = _remeasure_disturbed(runner, records, by_id, finished)
    single = plan.one_thread_backend(backends) if backends else "serial"
    best = simd_levels[-1] if simd_levels else default_simd
    check = {"level": best, "simd": ablation.case_value(best, default_simd) if best else None,
             "backend": single}
    if _recheck_auto(runner, records, by_id, finished, check):
        still = disturbance.find(finished(), runner.cpus)  # the re-checked points changed
    order = {wid: i for i, wid in enumerate(by_id)}
    # Records arrive group by group; the JSON and every table list them in suite order.
    measurements = sorted(finished(), key=lambda r: order[r["workload_id"]])
    for r in measurements:
        r.setdefault("remeasured", False)
        r["disturbed"] = r["key"] in still
        r["disturbed_reasons"] = still.get(r["key"], [])
        r["thread_limit_ok"] = disturbance.thread_limit_ok(r) if r["status"] == "ok" else None
    all_workloads = {wid: {**wl.describe(), **facts[wl.matrix.id]} for wid, wl in by_id.items()}
    metrics.enrich(measurements, ceilings, runner.cpus, all_workloads)

    for info in runner.workers:
        group = info["group"]
        library = group.split("-")[0] if group.startswith("spmm-") else group
        for name, version in (info.get("versions") or {}).items():
            library_info.setdefault(library, {}).setdefault("versions", {})[name] = version
    for name, info in library_info.items():
        loaded = [r for r in measurements if r["library"] == name]
        if info["status"] == "available" and loaded and all(
                r["status"] == "skipped" for r in loaded):
            info["status"], info["reason"] = "skipped", loaded[0]["reason"]

    description = machine.describe()
    description["measured"] = {str(t): c for t, c in sorted(ceilings.items())}
    description["blas"] = _blas_libraries(runner.workers)
    overridden = [v for v in UNSET_VARS if v in os.environ]
    if overridden:
        runner.notes.append(f"{', '.join(f'{v}={os.environ[v]}' for v in overridden)} set in "
                            "this environment: unset for the benchmark workers")
    description["worker_environment"] = {
        "set": {v: "<threads>" for v in THREAD_VARS}, "unset": list(UNSET_VARS),
        "mkl_rt": libraries.find_mkl_rt()}
    return {
        "schema": 1,
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_seconds": time.perf_counter() - t0,
        "options": {**options.__dict__},
        "machine": description,
        "spmm": spmm_facts.get("spmm_config"),
        "libraries": library_info,
        "workers": runner.workers,
        "workloads": all_workloads,
        "measurements": measurements,
        "break_even": metrics.break_even(measurements),
        "ablation": ablation.summarize(measurements, simd_levels, default_simd, single),
        "auto_check": autocheck.summarize(measurements, check["level"], check["simd"],
                                          single),
        "prepare_payoff": payoff.summarize(measurements),
        "targets": targets.evaluate(measurements, ceilings, runner.cpus, options.threads,
                                    library_info),
        "notes": runner.notes,
    }


def _simd_levels(spmm_facts: dict[str, Any]) -> tuple[list[str], str | None]:
    """spmm's instruction-set levels here (lowest first) and the one it uses by default, from
    the ``show_config`` the machine worker recorded (empty and None when spmm failed there)."""
    config = spmm_facts.get("spmm_config") or {}
    levels = list((config.get("build") or {}).get("simd_levels") or [])
    default = ((config.get("runtime") or {}).get("config") or {}).get("simd")
    return levels, default
