"""Validation of ``kernel="auto"``: is it within 10 % of the fastest explicit kernel?

On every workload, at one thread, on a prepared matrix and at the best instruction set, spmm
runs ``auto`` and each explicit kernel (naive, reordered, tiled) in the same worker process,
one after the other (issue 5, item 7). The summary gives, per workload, its shape, density,
dense width and dtype, each kernel's time, what ``auto`` chose, and ``auto``'s time over the
fastest kernel's; it flags every workload where ``auto`` is more than :data:`TOLERANCE`
slower. This is the data behind the rule in ``spmm._api.choose_kernel``.

``naive`` is not measured where it would take long and cannot win (:func:`skip_reason`): such
a point is recorded as *skipped*, with the reason, never as measured.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from .defaults import DEFAULT_PARTITION

KERNELS = ("naive", "reordered", "tiled")
CHECKED = ("auto", *KERNELS)
TOLERANCE = 1.10  # issue 5, item 7: auto within 10 % of the fastest kernel

# naive is skipped above this many useful flops (2 nnz n) when the dense width is at least
# NAIVE_MIN_WIDTH: at about 2 GFLOP/s (the old full run and bench/kernel_choice.py on the
# 2-vCPU VM: 1.5-2.7 GFLOP/s from 16 columns up, 4-6x slower than tiled) one call takes a
# quarter of a second or more, and a measurement several of them.
NAIVE_MAX_FLOPS = 5e8
NAIVE_MIN_WIDTH = 64


def estimated_flops(wl: Any) -> float:
    """Useful flops of a :class:`suites.Workload` from its description (before generation)."""
    rows, cols = wl.matrix.shape
    return 2 * rows * cols * (1 - wl.matrix.sparsity) * wl.n


def skip_reason(case: dict[str, Any], wl: Any) -> str | None:
    """Why an explicit-kernel case of the check is not measured, or None."""
    if (case["library"] != "spmm" or case.get("kernel") != "naive"
            or not case.get("auto_check")):
        return None
    flops = estimated_flops(wl)
    if wl.n >= NAIVE_MIN_WIDTH and flops > NAIVE_MAX_FLOPS:
        return (f"not measured: naive on {flops / 1e9:.2f} GFLOP at n = {wl.n} would take "
                f"seconds per measurement, and naive is 4-6x slower than tiled from 16 columns "
                f"up (skipped above {NAIVE_MAX_FLOPS / 1e9:g} GFLOP when n >= "
                f"{NAIVE_MIN_WIDTH})")
    return None


def case_specs(level: str | None, budget_seconds: float) -> list[dict[str, Any]]:
    """The check's spmm configurations (serial backend, one thread, prepared matrix);
    ``level`` is the best instruction set as a case's ``simd`` (None: the process default).

    The explicit kernels get a quarter of the run's timing budget: it only shortens calls
    longer than a few milliseconds (shorter ones reach ``--repeat`` samples first), which is
    where the slow kernels are and where a few samples tell them apart.
    """
    return [{"kernel": k, "simd": level, "auto_check": True,
             **({"budget_seconds": budget_seconds / 4} if k != "auto" else {})}
            for k in CHECKED]


def _match(r: dict[str, Any], backend: str, simd: str | None) -> bool:
    return (r["library"] == "spmm" and r.get("backend") == backend and r["threads"] == 1
            and r.get("variant") == "prepared" and r.get("partition") == DEFAULT_PARTITION
            and r.get("kernel") in CHECKED and r.get("simd") == simd)


def summarize(measurements: list[dict[str, Any]], level: str, simd: str | None,
              backend: str) -> dict[str, Any]:
    """``auto`` against every explicit kernel, per workload.

    Parameters
    ----------
    measurements : list of dict
        The run's records.
    level : str
        The best instruction-set level: the one the check runs at.
    simd : str or None
        ``level`` as the cases' ``simd`` field (None when it is the process default).
    backend : str
        The backend the check ran on (serial, unless the run left it out).

    Returns
    -------
    dict
        ``simd``, ``backend``, ``tolerance``, ``rows`` (per workload: its parameters, each
        kernel's record ``keys``, ``times``/``min_times`` (median and fastest sample, seconds)
        or the reason it was not measured (``not_measured``), ``rechecked``, ``chose``,
        ``fastest``, ``auto_over_fastest`` on medians and ``auto_over_fastest_min`` on
        minima, ``flagged``), ``worst`` (the row with the largest ratio), ``flagged`` (ids).
    """
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for r in measurements:
        if _match(r, backend, simd):
            cells.setdefault(r["workload_id"], {}).setdefault(r["kernel"], r)
    rows = []
    for wid, kernels in cells.items():
        any_r = next(iter(kernels.values()))
        wl = any_r["workload"]
        row: dict[str, Any] = {
            "workload_id": wid, "suite": wl["suite"], "kind": wl["kind"],
            "shape": wl["shape"], "pattern": wl["pattern"], "nnz": wl.get("nnz"),
            "density": 1 - wl.get("actual_sparsity", wl["sparsity"]), "n": wl["n"],
            "dtype": wl["dtype"], "keys": {k: r["key"] for k, r in kernels.items()},
            "times": {}, "min_times": {}, "not_measured": {},
            "chose": None, "fastest": None, "auto_over_fastest": None,
            "auto_over_fastest_min": None, "flagged": False, "rechecked": False,
        }
        for name in CHECKED:
            r = kernels.get(name)
            if r is not None and r.get("auto_check_first"):
                row["rechecked"] = True
            if r is not None and r["status"] == "ok":
                row["times"][name] = r["median"]
                row["min_times"][name] = r["min"]
                if name == "auto":
                    row["chose"] = r.get("kernel_used")
            else:
                row["not_measured"][name] = (f"{r['status']}: {r.get('reason')}" if r
                                             else "not in this run")
        explicit = {k: t for k, t in row["times"].items() if k != "auto"}
        if explicit:
            row["fastest"] = min(explicit, key=explicit.get)
            if "auto" in row["times"]:
                row["auto_over_fastest"] = row["times"]["auto"] / explicit[row["fastest"]]
                row["auto_over_fastest_min"] = (row["min_times"]["auto"]
                                                / min(row["min_times"][k] for k in explicit))
                row["flagged"] = row["auto_over_fastest"] > TOLERANCE
        rows.append(row)
    rated = [r for r in rows if r["auto_over_fastest"] is not None]
    worst = max(rated, key=lambda r: r["auto_over_fastest"]) if rated else None
    return {"simd": level, "backend": backend, "tolerance": TOLERANCE, "rows": rows,
            "worst": worst["workload_id"] if worst else None,
            "worst_ratio": worst["auto_over_fastest"] if worst else None,
            "flagged": [r["workload_id"] for r in rows if r["flagged"]]}


def to_csv(summary: dict[str, Any]) -> str:
    """The check as CSV, one row per workload (for whoever fits the rule): times in seconds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["workload_id", "suite", "kind", "rows", "cols", "pattern", "nnz",
                     "density", "n", "dtype", "simd", *[f"{k}_s" for k in CHECKED], "chose",
                     "fastest", "auto_over_fastest", "auto_over_fastest_min", "flagged"])
    for r in summary["rows"]:
        writer.writerow([r["workload_id"], r["suite"], r["kind"], *r["shape"], r["pattern"],
                         r["nnz"], f"{r['density']:.6g}", r["n"], r["dtype"], summary["simd"],
                         *[f"{r['times'][k]:.6g}" if k in r["times"] else "" for k in CHECKED],
                         r["chose"] or "", r["fastest"] or "",
                         f"{r['auto_over_fastest']:.4f}" if r["auto_over_fastest"] else "",
                         f"{r['auto_over_fastest_min']:.4f}" if r["auto_over_fastest_min"]
                         else "", int(r["flagged"])])
    return buffer.getvalue()
