"""The runner: the measurement grid, one worker process per (library group, thread count),
rounds, re-measurement of disturbed points.

Several threading runtimes in one process (spmm's OpenMP, MKL's, PyTorch's, OpenBLAS's)
oversubscribe or spin, and MKL obeys only thread limits set before its process starts. So each
(library group, thread count) runs in a fresh process whose environment sets every runtime's
thread count (``machine.THREAD_VARS``) and unsets ``machine.UNSET_VARS``; whether the limit held
is checked afterwards from CPU time / wall time. The grid is measured in ``rounds`` passes, the
group order rotating, and each point's samples from all passes are pooled, so a disturbance
that lasts one pass moves no median. A point that still looks disturbed (:func:`disturbed`) is
measured again in a fresh process, and marked if it stays so.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import goals, machine, peers, suites, views, worker
from .matrices import Store, read_matrix_market

BACKENDS = ("serial", "openmp", "threads")
KERNELS = ("auto", "naive", "reordered", "tiled")
PARTITIONS = ("rows", "nnz", "dynamic")
SILENT_WORKER_SECONDS = 900.0  # a worker silent this long is hung: killed, its case failed
# The auto check skips naive where a call takes seconds and cannot win: naive ran 4-6x slower
# than tiled from 16 columns up (python bench/kernel_choice.py).
NAIVE_MAX_FLOPS, NAIVE_MIN_WIDTH = 5e8, 64
# Disturbed: below one busy core (another process had the CPU); above the thread limit (more
# cores busy than allowed); the median far above the fastest sample (most samples slowed); more
# threads much slower than fewer on a call too long for a parallel region's fixed cost.
MIN_CPU_WALL, LIMIT_SLACK, MAX_MEDIAN_OVER_MIN = 0.75, 0.15, 1.3
MAX_SLOWDOWN_WITH_MORE_THREADS, MIN_SECONDS_FOR_SLOWDOWN = 1.5, 2e-4
BENCH_DIR = Path(__file__).resolve().parent.parent
# A worker imports the harness from bench/ and runs in the scratch directory: neither the
# repository root nor its uncompiled spmm/ is ever on its path.
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from spmm_bench.worker import main; main(sys.argv[2])")
CASE_KEYS = ("workload", "library", "threads", "backend", "kernel", "partition", "operand",
             "simd", "label", "key", "group")


@dataclass
class Options:
    """What to measure (from the command line)."""

    suite: str | None = "quick"
    threads: list[int] = field(default_factory=lambda: [1])
    scaling_threads: list[int] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=lambda: ["float32"])
    repeat: int = 9
    rounds: int = 3
    budget_seconds: float = 1.0
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    kernels: list[str] = field(default_factory=lambda: ["auto"])
    peers: list[str] = field(default_factory=lambda: list(suites.PEERS))
    matrix: str | None = None
    only: list[str] = field(default_factory=list)
    isolate: bool = True
    goals: str = str(BENCH_DIR / "goals.json")


def _case(wl: suites.Workload, library: str, threads: int, backend: str | None = None,
          kernel: str | None = None, partition: str | None = None, operand: str = "given",
          simd: str | None = None) -> dict[str, Any]:
    case = {"workload": wl.id, "library": library, "threads": threads, "backend": backend,
            "kernel": kernel or ("auto" if backend else None), "partition": partition,
            "operand": operand, "simd": simd}
    case["label"] = suites.label(case)
    case["key"] = f"{wl.id}|{case['label']}|{threads}"
    case["group"] = f"spmm-{backend or 'default'}" if library == "spmm" else library
    return case


def plan(wl: suites.Workload, o: Options, backends: list[str], levels: list[str],
         default_levels: set[str | None]) -> list[dict[str, Any]]:
    """Every measurement of ``wl``: scipy, then its series sets (see :mod:`suites`).
    ``default_levels``: the process's default SIMD level and the one whose float kernels it
    runs, which the series leave alone."""
    series, threads = set(wl.series), sorted(set(o.threads))
    cases = [_case(wl, "scipy", 1)]  # serial: the reference, and the baseline at every count
    if "peers" in series:
        cases += [_case(wl, p, t) for p in wl.peers if p in o.peers for t in threads]

    def spmm(backend: str | None, counts: list[int], **kw: Any) -> list[dict[str, Any]]:
        return [_case(wl, "spmm", t, backend, **kw)
                for t in ([1] if backend == "serial" else counts)]

    def level(name: str) -> str | None:  # the process default is left alone (None)
        return None if name in default_levels else name

    single = "serial" if "serial" in backends else backends[0]
    parallel = [b for b in backends if b != "serial"]
    if "backends" in series:
        kernels = dict.fromkeys([*o.kernels, *(["tiled"] if "layout" in series else [])])
        cases += [c for b in backends for k in kernels
                  for c in spmm(b, threads, kernel=k, operand="prepared")]
    if "default" in series:
        cases += (spmm(None, threads) + spmm(None, threads, operand="prepared")
                  + spmm(None, threads[:1], operand="prepare"))
    if "kernels" in series:
        best = level(levels[-1]) if levels else None
        cases += [c for k in KERNELS
                  for c in spmm(single, [1], kernel=k, operand="prepared", simd=best)]
    if "ablation" in series:
        cases += [c for s in suites.ablation_steps(levels) for c in spmm(
            single, [1], kernel=s["kernel"], operand=s["operand"], simd=level(s["simd"]))]
    if "partition" in series and threads[-1] > 1:
        cases += [c for b in parallel for p in PARTITIONS
                  for c in spmm(b, threads[-1:], partition=p, operand="prepared")]
    if "scaling" in series:
        cases += [c for b in parallel for c in spmm(b, o.scaling_threads, operand="prepared")]
    if "formats" in series:
        cases += spmm(None, threads) + spmm(None, threads, operand="prepared-csr")
    return list({c["key"]: c for c in cases}.values())


def skip_reason(case: dict[str, Any], wl: suites.Workload,
                missing: dict[str, str | None]) -> str | None:
    """Why a case is not measured, decided before any worker starts."""
    reason = missing[case["library"]] or peers.get(case["library"]).skip_reason(wl)
    flops = 2 * math.prod(wl.matrix.shape) * (1 - wl.matrix.sparsity) * wl.n
    if (not reason and case["kernel"] == "naive" and case["operand"] == "prepared"
            and wl.n >= NAIVE_MIN_WIDTH and flops > NAIVE_MAX_FLOPS):
        reason = (f"not measured: naive on {flops / 1e9:.2f} GFLOP at n = {wl.n} would take "
                  f"seconds per call (skipped above {NAIVE_MAX_FLOPS / 1e9:g} GFLOP when "
                  f"n >= {NAIVE_MIN_WIDTH})")
    return reason


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker limited to ``threads`` threads."""
    env = {k: v for k, v in os.environ.items() if k not in machine.UNSET_VARS}
    env.update(dict.fromkeys(machine.THREAD_VARS, str(threads)))
    if "MKL_RT" not in env and peers.find_mkl_rt():
        env["MKL_RT"] = peers.find_mkl_rt()
    return env


class Progress:
    """A tqdm bar when tqdm is installed, else a plain line per group."""

    def __init__(self, enabled: bool) -> None:
        self.total = self.done = 0
        self.enabled, self.bar = enabled, None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="pt", dynamic_ncols=True) if enabled else None
        except ImportError:
            pass

    def add(self, n: int) -> None:
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total

    def step(self, text: str | None = None) -> None:
        """One more point done, or (with ``text``) what runs now."""
        self.done += text is None
        if self.bar is not None:
            self.bar.update(text is None)
            if text:
                self.bar.set_description(text)
        elif self.enabled and text:
            print(f"[{self.done}/{self.total}] {text}", file=sys.stderr, flush=True)


class Runner:
    """Launches the workers; holds the scratch directory, the workers' facts and the notes."""

    def __init__(self, options: Options, progress: bool) -> None:
        self.options, self.cpus = options, machine.cpu_count()
        self.workdir = Path(tempfile.mkdtemp(prefix="spmm-bench-"))
        self.progress = Progress(progress)
        self.workers: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def run_job(self, job: dict[str, Any], receive: Callable[[dict[str, Any]], None]) -> None:
        """Run ``job`` in a fresh process (or here, without isolation). A worker that dies
        costs only its current case: that one fails, a new process takes the rest."""
        if not self.options.isolate:
            import threadpoolctl

            with threadpoolctl.threadpool_limits(limits=job["threads"]):
                self.workers.append({**worker.run_job(job, receive), "isolated": False})
            return
        remaining = job["cases"]
        while remaining:
            path = self.workdir / f"job{len(self.workers)}.json"
            path.write_text(json.dumps({**job, "cases": remaining}))
            seen, info, started = set(), {}, time.perf_counter()
            with open(path.with_suffix(".log"), "w") as log, subprocess.Popen(
                    [sys.executable, "-X", "faulthandler", "-c", BOOTSTRAP, str(BENCH_DIR),
                     str(path)], cwd=self.workdir, env=worker_env(job["threads"]),
                    stdout=subprocess.PIPE, stderr=log, text=True) as proc:
                kill = threading.Timer(SILENT_WORKER_SECONDS, proc.kill)
                kill.start()
                for line in proc.stdout or ():
                    kill.cancel()
                    kill = threading.Timer(SILENT_WORKER_SECONDS, proc.kill)
                    kill.start()
                    if line.startswith(worker.RECORD):
                        record = json.loads(line[len(worker.RECORD):])
                        seen.add(record["key"])
                        receive(record)
                    elif line.startswith(worker.INFO):
                        info = json.loads(line[len(worker.INFO):])
                kill.cancel()
                code = proc.wait()
            self.workers.append({**info, "group": job["group"], "threads": job["threads"],
                                 "isolated": True, "exit_code": code,
                                 "wall_seconds": time.perf_counter() - started})
            remaining = [c for c in remaining if c["key"] not in seen]
            if remaining:
                tail = path.with_suffix(".log").read_text(errors="replace").splitlines()[-3:]
                receive({"key": remaining.pop(0)["key"], "status": "failed",
                         "reason": f"worker died (exit code {code}): {' | '.join(tail)}"})

    def ceilings(self, counts: list[int], dtypes: list[str]) -> tuple[dict[int, dict], dict]:
        """The ceilings at each thread count (a suspicious one measured twice, the best kept)
        and the facts of the first machine worker (spmm's configuration)."""
        found: dict[int, dict[str, Any]] = {}

        def measure(t: int) -> dict[str, Any]:
            got: dict[str, Any] = {}
            self.progress.step(f"machine t={t}")
            self.run_job({"group": "machine", "library": "machine", "threads": t,
                          "dtypes": dtypes, "tiny": self.options.suite == "tiny",
                          "cases": [{"key": "machine"}]}, got.update)
            return got

        for t in counts:
            found[t] = measure(t)
            fewer = [c for c in counts if c < t]
            if found[t]["disturbed"] or (fewer and any(
                    v < found[fewer[-1]]["peak_gflops"][d]
                    for d, v in found[t]["peak_gflops"].items())):
                found[t] = {**machine.best_of(found[t], measure(t)), "remeasured": True}
        return found, next(w for w in self.workers if w["group"] == "machine")

    def measure(self, cases: list[dict[str, Any]], workloads: dict[str, suites.Workload],
                records: dict[str, dict[str, Any]], rounds: int, samples: int,
                min_samples: int) -> None:
        """Measure ``cases`` in ``rounds`` passes over their groups, scipy's first (its
        results are the references); pool each point's samples into ``records``."""
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for c in cases:
            groups.setdefault((c["group"], c["threads"]), []).append(c)
        order = sorted(groups, key=lambda g: (g[0] != "scipy", g))

        def receive(record: dict[str, Any]) -> None:
            _pool(records[record["key"]], record)
            self.progress.step()

        for r in range(rounds):
            for group, threads in order[r % len(order):] + order[:r % len(order)]:
                members = groups[(group, threads)]
                self.progress.step(f"round {r + 1}/{rounds} {group} t={threads}")
                self.run_job({"group": group, "library": members[0]["library"],
                              "threads": threads, "workdir": str(self.workdir),
                              "samples": samples, "min_samples": min_samples,
                              "budget": self.options.budget_seconds / rounds, "cases": members,
                              "workloads": {c["workload"]: workloads[c["workload"]].describe()
                                            for c in members}}, receive)


def _pool(into: dict[str, Any], record: dict[str, Any]) -> None:
    """Add one pass's record of a point to its pooled record (a failure anywhere fails it)."""
    if into["status"] != "ok":
        return
    samples = record.pop("samples", None) or []
    for key in ("cpu_seconds", "wall_seconds"):
        into[key] = into.get(key, 0.0) + record.pop(key, 0.0)
    into.update(record)
    into["samples"] = into.get("samples", []) + samples
    if samples:
        into["round_medians"] = [*into.get("round_medians", []), statistics.median(samples)]


def _summarize(r: dict[str, Any]) -> None:
    """Median, min, max and CPU/wall of a pooled record, and whether its limit held."""
    if r["status"] == "ok" and r.get("samples"):
        s = r["samples"]
        r.update(median=statistics.median(s), min=min(s), max=max(s))
        r["cpu_wall_ratio"] = r["cpu_seconds"] / r["wall_seconds"] if r["wall_seconds"] else None
        r["thread_limit_ok"] = r["cpu_wall_ratio"] is None or (
            r["cpu_wall_ratio"] <= r["threads"] * (1 + LIMIT_SLACK) + LIMIT_SLACK)


def disturbed(records: list[dict[str, Any]], cpus: int) -> dict[str, list[str]]:
    """Every disturbed point (by key) with its reasons."""
    found: dict[str, list[str]] = {}
    by_config: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] != "ok" or r.get("median") is None:
            continue
        ratio, reasons = r.get("cpu_wall_ratio"), []
        if ratio is not None and ratio < MIN_CPU_WALL:
            reasons.append(f"cpu/wall {ratio:.2f} < {MIN_CPU_WALL}: another process had the CPU")
        if r.get("thread_limit_ok") is False:
            reasons.append(f"cpu/wall {ratio:.2f} above the limit of {r['threads']} threads")
        if len(r["samples"]) >= 3 and r["median"] > MAX_MEDIAN_OVER_MIN * r["min"]:
            reasons.append(f"median {r['median'] / r['min']:.2f}x the minimum: most samples slowed")
        if reasons:
            found[r["key"]] = reasons
        if r["operand"] != "prepare" and r["threads"] <= cpus:
            by_config.setdefault((r["workload"], r["label"]), []).append(r)
    for group in by_config.values():
        for more in group:
            for fewer in (f for f in group if f["threads"] < more["threads"]):
                slowdown = more["median"] / fewer["median"]
                if (slowdown > MAX_SLOWDOWN_WITH_MORE_THREADS
                        and more["median"] > MIN_SECONDS_FOR_SLOWDOWN):
                    found.setdefault(more["key"], []).append(
                        f"{slowdown:.1f}x slower with {more['threads']} threads than with "
                        f"{fewer['threads']}")
    return found


def run(options: Options, progress: bool = True, log: Callable[[str], None] | None = None,
        command: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark ``options`` describe; return everything ``results.json`` holds."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    runner = Runner(options, progress)
    try:
        results = _run(runner, options, log)
    finally:
        if runner.progress.bar is not None:
            runner.progress.bar.close()
        shutil.rmtree(runner.workdir, ignore_errors=True)
    results.update(command=command, started=started.isoformat(timespec="seconds"),
                   duration_seconds=time.perf_counter() - t0)
    return results


def _workloads(o: Options) -> dict[str, suites.Workload]:
    found = suites.workloads(o.suite, o.dtypes) if o.suite else []
    if o.matrix:
        a = read_matrix_market(o.matrix)
        found += suites.file_workloads(str(Path(o.matrix).resolve()), a.shape,
                                       1 - a.nnz / (a.shape[0] * a.shape[1]), o.dtypes)
    found = [wl for wl in found if not o.only or any(text in wl.id for text in o.only)]
    if not found:
        raise ValueError(f"--only {','.join(o.only)} matches no workload of the suite")
    return {wl.id: wl for wl in found}


def _run(runner: Runner, o: Options, log: Callable[[str], None]) -> dict[str, Any]:
    workloads = _workloads(o)
    log(f"spmm bench: {len(workloads)} workloads ({o.suite or 'matrix file'}), threads "
        f"{o.threads}, dtypes {o.dtypes}, {o.rounds} rounds; scratch {runner.workdir}")
    facts = Store(runner.workdir).prepare(list(workloads.values()), log)
    counts = sorted({1, *(t for t in o.threads + o.scaling_threads if t <= runner.cpus)})
    runner.progress.add(len(counts))
    ceilings, spmm_facts = runner.ceilings(counts, sorted({wl.dtype for wl in workloads.values()}))
    available = spmm_facts.get("spmm_backends") or list(o.backends)
    runner.notes += [f"backend {b!r} is not in this build of spmm ({available})"
                     for b in o.backends if b not in available]
    if spmm_facts.get("spmm_error"):
        runner.notes.append(f"spmm could not be loaded: {spmm_facts['spmm_error']}")
    config = spmm_facts.get("spmm_config") or {}
    levels = suites.float_levels(config)
    missing = {name: peers.get(name).missing() for name in ("scipy", "spmm", *o.peers)}
    records, to_run = {}, []
    for wl in workloads.values():
        for case in plan(wl, o, [b for b in o.backends if b in available], levels,
                         suites.default_levels(config)):
            reason = skip_reason(case, wl, missing)
            records[case["key"]] = {**case, "status": "skipped" if reason else "ok",
                                    "reason": reason}
            to_run += [] if reason else [case]
    runner.progress.add(len(to_run) * o.rounds)
    runner.measure(to_run, workloads, records, o.rounds, max(1, math.ceil(o.repeat / o.rounds)),
                   1 if o.rounds >= 3 else 3)
    for r in records.values():
        _summarize(r)
    again = disturbed(list(records.values()), runner.cpus)
    for key in views.auto_check_suspects(list(records.values())):
        again.setdefault(key, ["auto check flagged: measured again with its rival"])
    if again:
        log(f"measuring {len(again)} disturbed or flagged points again in fresh processes")
        for key, reasons in again.items():
            records[key] = {**{k: records[key][k] for k in CASE_KEYS}, "status": "ok",
                            "reason": None, "first_attempt": {
                                "median": records[key].get("median"), "reasons": reasons}}
        runner.progress.add(len(again))
        runner.measure([records[k] for k in again], workloads, records, 1, o.repeat, 3)
        for key in again:
            _summarize(records[key])
    still = disturbed(list(records.values()), runner.cpus)
    for r in records.values():
        r["disturbed_reasons"] = still.get(r["key"], [])
        r["disturbed"] = bool(r["disturbed_reasons"])
    described = {wid: {**wl.describe(), **facts[wl.matrix.id]} for wid, wl in workloads.items()}
    return assemble(o, list(records.values()), described, ceilings, spmm_facts, runner, missing)


def assemble(o: Options, records: list[dict[str, Any]], workloads: dict[str, dict[str, Any]],
             ceilings: dict[int, dict[str, Any]], spmm_facts: dict[str, Any], runner: Runner,
             missing: dict[str, str | None]) -> dict[str, Any]:
    """``results.json``'s content: the run, the machine, the records, every view, the goals."""
    for w in runner.workers:  # a limit that did not hold makes every figure of that worker
        said = w.get("library_threads")
        if said is not None and said != w["threads"]:
            runner.notes.append(f"{w['group']} said it would use {said} threads in a worker "
                                f"limited to {w['threads']}")
    order = {w: i for i, w in enumerate(workloads)}
    records.sort(key=lambda r: (order[r["workload"]], r["label"], r["threads"]))
    views.enrich(records, workloads, ceilings, runner.cpus)
    blas = {(p.get("internal_api"), p.get("version"), p.get("architecture")): p
            for w in runner.workers for p in w.get("threadpool_info") or []
            if p.get("user_api") == "blas"}
    results = {
        "schema": 2, "options": asdict(o), "notes": runner.notes,
        "machine": {**machine.describe(), "ceilings": {str(t): c for t, c in ceilings.items()},
                    "blas": [{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                                    "threading_layer", "filepath")}
                             for p in blas.values()],
                    "worker_environment": {"set_to_threads": machine.THREAD_VARS,
                                           "unset": machine.UNSET_VARS}},
        "spmm": spmm_facts.get("spmm_config"), "spmm_explain": spmm_facts.get("spmm_explain"),
        "libraries": {name: {"status": "skipped" if missing[name] else "available",
                             "reason": missing[name], "forms": peers.get(name).forms}
                      for name in ("scipy", "spmm", *o.peers)},
        "workers": runner.workers, "workloads": workloads, "measurements": records}
    results["views"] = {"ablation": views.ablation(results),
                        "auto_check": views.auto_check(records),
                        "prepare_payoff": views.prepare_payoff(records),
                        "break_even": views.break_even(results),
                        "formats": views.formats(results)}
    try:
        with open(o.goals) as f:
            spec = json.load(f)
        results["goals"] = {"file": o.goals, "series": spec.get("series", {}),
                            "rows": goals.evaluate(results, spec)}
    except (OSError, ValueError, KeyError) as exc:
        runner.notes.append(f"goals not evaluated: {type(exc).__name__}: {exc}")
        results["goals"] = {"file": o.goals, "series": {}, "rows": []}
    return results
