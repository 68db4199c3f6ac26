"""The kernel ablation waterfall: what each optimization adds, one step at a time.

On the workloads tagged ``ablation``, at one thread, spmm runs as a chain of configurations in
which each step changes one thing (issue 5, item 9):

1. ``naive``: the textbook loop order, portable code (``SPMM_SIMD=scalar``);
2. ``reordered``: the loop order whose innermost loop walks contiguous memory, portable code;
3. ``tiled``: reordered with cache tiling, portable code;
4. ``SIMD``: the reordered loop compiled for the best instruction set (auto-vectorized for it,
   no register blocking);
5. ``register blocking``: the tiled kernel at that instruction set, which keeps a block of the
   output in vector registers (when the CPU has AVX-512, the AVX2 version is shown first);
6. ``prepared``: the same kernel on ``spmm.prepare(W)``: for X @ W the prepared matrix holds
   Wᵀ's CSR, so the conversion every earlier step pays on each call disappears.

Steps 1-5 multiply the scipy CSR matrix itself (spmm's *unprepared* call). The instruction
set of a step reaches spmm through ``SPMM_SIMD``, which the worker sets around each
measurement (spmm reads it at every call).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .defaults import DEFAULT_PARTITION

# Workloads the report draws, one X @ W and one A @ B, as (id prefix, id suffix) in order of
# preference: the 1024 x 4096 layer at batch 64 (also in the quick suite), the science matrix
# (the quick suite's is smaller) at n = 8; else the first ablation workload of the kind.
SHOWN = {"xw": (("dnn/1024x4096/uniform/s90/", "/batch64/float32"),),
         "ab": (("science/131072x131072/uniform/", "/n8/float32"),
                ("science/", "/n8/float32"))}


@dataclass(frozen=True)
class Step:
    """One configuration of the waterfall."""

    name: str
    kernel: str
    simd: str  # an instruction-set level spmm knows: scalar, avx2, avx512, neon
    variant: str  # "unprepared" (the scipy matrix) or "prepared" (spmm.prepare)
    meaning: str


def steps(levels: list[str]) -> list[Step]:
    """The waterfall's steps for the instruction-set levels ``levels`` (lowest first, as
    ``spmm.show_config`` lists them). Without a level above ``scalar`` the SIMD steps are
    left out: there is nothing for them to show."""
    best = levels[-1] if levels else "scalar"
    chain = [
        Step("naive", "naive", "scalar", "unprepared", "textbook loop order, portable code"),
        Step("reordered", "reordered", "scalar", "unprepared",
             "contiguous innermost loop, portable code"),
        Step("tiled", "tiled", "scalar", "unprepared", "reordered + cache tiling, portable code"),
    ]
    if best != "scalar":
        chain.append(Step(f"SIMD ({best})", "reordered", best, "unprepared",
                          f"the reordered loop compiled for {best}, no register blocking"))
        if best == "avx512" and "avx2" in levels:
            chain.append(Step("register blocking (avx2)", "tiled", "avx2", "unprepared",
                              "the register-blocked tiled kernel at the narrower AVX2 width"))
        chain.append(Step(f"register blocking ({best})", "tiled", best, "unprepared",
                          f"the register-blocked tiled kernel for {best}"))
    chain.append(Step("prepared", "tiled", best, "prepared",
                      "the same kernel on spmm.prepare(W): no per-call conversion"))
    return chain


def case_value(level: str, default: str | None) -> str | None:
    """A level as a case's ``simd`` field: None for the process default, so that a step at
    the default level is the same measurement as the run's other cases at it."""
    return None if level == default else level


def case_specs(levels: list[str], default: str | None) -> list[dict[str, Any]]:
    """The steps' spmm configurations (run on the serial backend at one thread)."""
    return [{"kernel": s.kernel, "variant": s.variant, "simd": case_value(s.simd, default)}
            for s in steps(levels)]


def _matches(r: dict[str, Any], step: Step, default: str | None, backend: str) -> bool:
    return (r["library"] == "spmm" and r.get("backend") == backend and r["threads"] == 1
            and r.get("partition") == DEFAULT_PARTITION and r.get("kernel") == step.kernel
            and r.get("variant") == step.variant
            and r.get("simd") == case_value(step.simd, default))


def summarize(measurements: list[dict[str, Any]], levels: list[str], default: str | None,
              backend: str) -> dict[str, Any]:
    """The waterfall of every ablation workload, from the run's measurements.

    Parameters
    ----------
    measurements : list of dict
        The run's records, with derived figures (``gflops``).
    levels : list of str
        spmm's instruction-set levels on this machine, lowest first.
    default : str or None
        The level spmm uses when ``SPMM_SIMD`` is not set by the harness (see
        :func:`case_value`).
    backend : str
        The backend the steps ran on (serial, unless the run left it out).

    Returns
    -------
    dict
        ``steps`` (each step's name, kernel, simd, variant, meaning), ``backend``,
        ``workloads`` (per ablation workload: each step's ``gflops``, ``median``,
        ``ratio_to_previous`` and ``ratio_to_first``; a step that did not run has ``status``
        and ``reason`` instead) and ``shown`` (the ids the report draws, by kind).
    """
    chain = steps(levels)
    rows = []
    ids = list(dict.fromkeys(r["workload_id"] for r in measurements
                             if "ablation" in r["workload"].get("tags", [])))
    for wid in ids:
        records = [r for r in measurements if r["workload_id"] == wid]
        out_steps: list[dict[str, Any]] = []
        first = previous = None
        for step in chain:
            found = next((r for r in records if _matches(r, step, default, backend)), None)
            entry: dict[str, Any] = {"name": step.name}
            if found is None or found["status"] != "ok" or not found.get("gflops"):
                entry.update(status=found["status"] if found else "missing",
                             reason=found.get("reason") if found else "not in this run",
                             gflops=None, median=None, ratio_to_previous=None,
                             ratio_to_first=None)
                previous = None
            else:
                g = found["gflops"]
                entry.update(status="ok", gflops=g, median=found["median"],
                             disturbed=bool(found.get("disturbed")),
                             arithmetic_intensity=found.get("arithmetic_intensity"),
                             roofline_gflops=found.get("roofline_gflops"),
                             ratio_to_previous=g / previous if previous else None,
                             ratio_to_first=g / first if first else None)
                first = first or g
                previous = g
            out_steps.append(entry)
        rows.append({"workload_id": wid, "workload": records[0]["workload"],
                     "steps": out_steps})
    return {"steps": [asdict(s) for s in chain], "backend": backend, "workloads": rows,
            "shown": _shown(rows)}


def _shown(rows: list[dict[str, Any]]) -> dict[str, str]:
    """One X @ W and one A @ B workload to draw, by :data:`SHOWN`'s preferences."""
    complete = [r for r in rows if all(s["status"] == "ok" for s in r["steps"])] or rows
    shown = {}
    for kind in ("xw", "ab"):
        candidates = [r["workload_id"] for r in complete if r["workload"]["kind"] == kind]
        preferred = [c for prefix, suffix in SHOWN[kind] for c in candidates
                     if c.startswith(prefix) and c.endswith(suffix)]
        if preferred or candidates:
            shown[kind] = (preferred or candidates)[0]
    return shown
