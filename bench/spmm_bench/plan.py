"""Which measurements a run makes, and which worker process makes each.

A *case* is one measurement: a workload, a library (for spmm: a backend, kernel, partition,
variant and instruction-set level) and a thread count. Cases are grouped by (library group,
thread count); each group runs in its own worker process whose environment limits every
threading runtime to that count before any library is loaded. spmm's backends are separate
groups, so the OpenMP team of one never spins while the other is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import ablation, autocheck, libraries
from .defaults import DEFAULT_PARTITION
from .suites import Workload

BACKENDS = ("serial", "openmp", "threads")
KERNELS = ("auto", "naive", "reordered", "tiled")
PARTITIONS = ("rows", "nnz", "dynamic")
VARIANTS = ("prepared", "unprepared", "prepare")
# The CSR kernel measured beside ``auto`` on workloads tagged ``layout`` (structured weights).
LAYOUT_TWIN = "tiled"


@dataclass
class Options:
    """What to measure (from the command line)."""

    suite: str = "quick"
    threads: list[int] = field(default_factory=lambda: [1])
    scaling_threads: list[int] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=lambda: ["float32"])
    repeat: int = 7
    budget_seconds: float = 1.0
    backends: list[str] = field(default_factory=lambda: ["serial", "openmp", "threads"])
    kernels: list[str] = field(default_factory=lambda: ["auto"])
    peers: list[str] = field(default_factory=lambda: list(libraries.PEERS))
    matrix: str | None = None
    only: list[str] = field(default_factory=list)  # keep workloads whose id contains one
    isolate: bool = True


def case_key(case: dict[str, Any]) -> str:
    """A unique, readable id of a measurement."""
    return "|".join(str(case.get(k)) for k in
                    ("workload", "library", "backend", "kernel", "partition", "variant",
                     "simd", "threads"))


def group_name(case: dict[str, Any]) -> str:
    """The worker group: the library, and for spmm its backend."""
    if case["library"] == "spmm":
        return f"spmm-{case['backend']}"
    return case["library"]


def _case(wl: Workload, library: str, threads: int, **spmm: Any) -> dict[str, Any]:
    case = {"workload": wl.id, "library": library, "threads": threads,
            "backend": spmm.get("backend"), "kernel": spmm.get("kernel"),
            "partition": spmm.get("partition"), "variant": spmm.get("variant", "call"),
            "simd": spmm.get("simd")}
    if spmm.get("auto_check"):
        case["auto_check"] = True
    if spmm.get("budget_seconds") is not None:
        case["budget_seconds"] = spmm["budget_seconds"]
    case["key"] = case_key(case)
    case["group"] = group_name(case)
    return case


def one_thread_backend(backends: list[str]) -> str:
    """The backend of the one-thread kernel measurements: serial, unless the run left it out."""
    return "serial" if "serial" in backends else backends[0]


def cases_for(wl: Workload, options: Options, backends: list[str],
              simd_levels: list[str] | None = None,
              default_simd: str | None = None) -> list[dict[str, Any]]:
    """Every measurement of one workload, in the order they appear in the report.

    ``simd_levels`` are spmm's instruction-set levels here (lowest first) and ``default_simd``
    the one it uses unless told otherwise; a case's ``simd`` is None at that default (the
    worker then leaves ``SPMM_SIMD`` alone) and the level's name elsewhere.
    """
    threads = sorted(set(options.threads))
    top = threads[-1]
    cases = [_case(wl, "scipy", 1)]  # scipy is serial: one thread, the reference and baseline
    for peer in options.peers:
        cases += [_case(wl, peer, t) for t in threads]

    def spmm(backend: str, t: int, kernel: str = "auto", partition: str = DEFAULT_PARTITION,
             variant: str = "prepared", simd: str | None = None, auto_check: bool = False,
             budget_seconds: float | None = None) -> dict[str, Any]:
        return _case(wl, "spmm", 1 if backend == "serial" else t, backend=backend,
                     kernel=kernel, partition=partition, variant=variant, simd=simd,
                     auto_check=auto_check, budget_seconds=budget_seconds)

    # On structured weights, ``auto`` runs the layout prepare detected; the CSR form of the
    # same matrix (kernel "tiled", the fastest CSR kernel from 16 columns up) is measured
    # beside it on every backend and thread count, for issue 6's "structured beats CSR" target.
    kernels = list(options.kernels)
    if "layout" in wl.tags and LAYOUT_TWIN not in kernels:
        kernels.append(LAYOUT_TWIN)
    for backend in backends:
        for t in ([1] if backend == "serial" else threads):
            cases += [spmm(backend, t, kernel) for kernel in kernels]
    parallel = [b for b in backends if b != "serial"]
    default = (parallel or backends)[0]  # openmp when built with it, as spmm's default
    cases += [spmm(default, t, variant="unprepared")
              for t in ([1] if default == "serial" else threads)]
    cases.append(spmm(default, 1 if default == "serial" else threads[0], variant="prepare"))
    levels = simd_levels or []
    single = one_thread_backend(backends)
    best = ablation.case_value(levels[-1], default_simd) if levels else None
    cases += [spmm(single, 1, **spec)
              for spec in autocheck.case_specs(best, options.budget_seconds)]
    if "ablation" in wl.tags:
        cases += [spmm(single, 1, **spec)
                  for spec in ablation.case_specs(levels, default_simd)]
    if "partition" in wl.tags and top > 1:
        cases += [spmm(b, top, partition=p) for b in parallel for p in PARTITIONS]
    if "scaling" in wl.tags:
        cases += [spmm(b, t) for b in parallel for t in options.scaling_threads]
    unique: dict[str, dict[str, Any]] = {}
    for case in cases:
        unique.setdefault(case["key"], case)
    return list(unique.values())


# Order in which groups run: scipy first (it saves the reference results), then the rest.
GROUP_ORDER = ("scipy", "spmm-serial", "spmm-openmp", "spmm-threads", "dense")


def groups(cases: list[dict[str, Any]]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """Cases by (group, threads), scipy's first; within a group in workload order."""
    by_group: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for case in cases:
        by_group.setdefault((case["group"], case["threads"]), []).append(case)

    def order(key: tuple[str, int]) -> tuple[int, str, int]:
        name, threads = key
        rank = GROUP_ORDER.index(name) if name in GROUP_ORDER else len(GROUP_ORDER)
        return (rank, name, threads)

    return [(name, t, by_group[(name, t)]) for name, t in sorted(by_group, key=order)]
