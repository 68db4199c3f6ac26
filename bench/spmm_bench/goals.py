"""Goals: ratios of two measured series on a set of workloads, read from a data file.

A goal's value on a workload at a thread count is ``time(denominator) / time(numerator)``, the
numerator's speed over the denominator's (with ``per_flop``, their useful GFLOP/s, for twins of
different sizes); with the denominator ``bandwidth``, the numerator's
GB/s of minimal bytes over the read bandwidth measured in the run. Each goal gives one row per
thread count (and per ``each`` group): met, missed, or not measured with the reason (a skipped
peer, a workload not in the run), never passed by default. bench/goals.json describes the
format in its ``about`` field; docs/benchmarks.md shows it.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

import numpy as np

from .views import _ok, ceiling

ABSENT = "no such workload in this run"
TWIN_KEYS = ("family", "kind", "shape", "pattern", "sparsity", "n", "dtype", "format")


def _equal(have: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(have, (int, float)):
        return abs(have - want) < 1e-9
    return have == want


def matches(wl: dict[str, Any], conditions: dict[str, Any]) -> bool:
    """Whether ``wl`` meets every condition: a value, a list of values (for a field that is
    not itself a list, like ``shape``), or {min, max}."""
    for key, want in conditions.items():
        have = wl.get(key)
        if isinstance(want, dict):
            if have is None or not want.get("min", have) - 1e-9 <= have <= want.get(
                    "max", have) + 1e-9:
                return False
        elif not any(_equal(have, w) for w in (
                want if isinstance(want, list) and not isinstance(have, list) else [want])):
            return False
    return True


def _find(by: dict, wid: str, spec: Any, threads: int,
          aliases: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The record of ``spec`` (a label, an alias or ``{"fastest": [...]}``) on ``wid`` at
    ``threads``, or None and why. A series measured only at one thread (scipy, the serial
    backend) stands at every thread count. A peer (any library but spmm) is credited with
    its best time at any thread count up to ``threads``: a library slower with more threads
    could have been run with fewer."""
    spec = aliases.get(spec, spec) if isinstance(spec, str) else spec
    if isinstance(spec, dict):
        found = [_find(by, wid, s, threads, aliases) for s in spec["fastest"]]
        ok = [r for r, _ in found if r is not None]
        why = "; ".join(sorted({w for r, w in found if r is None}))
        return (min(ok, key=lambda r: r["median"]), why) if ok else (None, why)
    at = by.get((wid, spec), {})
    r = at.get(threads) or (at.get(1) if set(at) == {1} else None)
    if not spec.startswith("spmm"):
        fewer = [x for t, x in at.items() if t <= threads and _ok(x)]
        if fewer:
            r = min(fewer, key=lambda x: x["median"])
    if r is None or not _ok(r):
        return None, f"{spec} " + (f"{r['status']}: {r.get('reason')}" if r else "not in this run")
    return r, ""


def _value(results: dict[str, Any], by: dict, goal: dict[str, Any], wid: str, t: int,
           aliases: dict[str, Any]) -> dict[str, Any]:
    """One workload's figure for ``goal`` at ``t`` threads, or the reason there is none."""
    W, ceilings, cpus = results["workloads"], results["ceilings"], results["cpus"]
    sides, flops = [], []
    for side in (goal["numerator"], goal["denominator"]):
        spec = side if isinstance(side, dict) and "series" in side else {"series": side}
        target = wid
        if "workload" in spec:  # the twin: this workload with some fields replaced
            want = {**W[wid], **spec["workload"]}
            target = next((w for w, d in W.items()
                           if all(_equal(d[k], want[k]) for k in TWIN_KEYS)), None)
            if target is None:
                return {"workload": wid, "reason": f"no twin workload {spec['workload']}"}
        if spec["series"] == "bandwidth":
            sides.append({"label": "bandwidth", "gbs": ceiling(ceilings, t, cpus)[
                "bandwidth_gbs"]})
            continue
        r, why = _find(by, target, spec["series"], spec.get("threads", t), aliases)
        if r is None:
            return {"workload": wid, "reason": why}
        sides.append(r)
        d = W[target]
        flops.append(2 * math.prod(d["shape"]) * (1 - d["sparsity"]) * d["n"])
    num, den = sides
    if goal.get("min_seconds") and min(num["median"], den.get("median", 1)) < goal["min_seconds"]:
        return {"workload": wid, "excluded": "shorter than min_seconds"}
    if goal.get("compute_bound"):
        c = ceiling(ceilings, 1, cpus)
        if (num.get("arithmetic_intensity") or 0) < c["peak_gflops"].get(
                W[wid]["dtype"], 0) / c["bandwidth_gbs"]:
            return {"workload": wid, "excluded": "left of the ridge point: memory-bound"}
    detail = {"workload": wid, "numerator": num["label"], "denominator": den["label"],
              "value": num["gbs"] / den["gbs"] if den["label"] == "bandwidth"
              else den["median"] / num["median"]}
    if goal.get("per_flop") and den["label"] != "bandwidth":
        # Useful GFLOP/s over useful GFLOP/s (2 nnz n, nnz from the shape and sparsity, as
        # the runner counts them): sides on twins of different sizes.
        detail["value"] *= flops[0] / flops[1]
    if goal.get("structured_layout") and num.get("layout_used") in (None, "csr"):
        detail["miss_reason"] = "spmm ran the CSR form (no structured layout)"
    if num.get("disturbed") or den.get("disturbed"):
        detail["disturbed"] = True
    return detail


def meets(value: float, goal: dict[str, Any]) -> bool:
    low, high = goal.get("at_least"), goal.get("at_most")
    return (low is None or value >= low) and (high is None or value <= high)


def _shortfall(value: float, goal: dict[str, Any]) -> float:
    """How far ``value`` is outside the goal's range, in log terms (the worst: the largest)."""
    low, high = goal.get("at_least"), goal.get("at_most")
    return max(np.log(low / value) if low else -np.inf, np.log(value / high) if high else -np.inf)


def _row(goal: dict[str, Any], t: int, group: dict[str, Any],
         details: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [d for d in details if "value" in d]
    row = {"name": goal["name"], "description": goal["description"], "threads": t,
           "group": group, "at_least": goal.get("at_least"), "at_most": goal.get("at_most"),
           "aggregate": goal.get("aggregate", "every"), "workloads": len(measured),
           "passing": None, "measured": None, "worst": None, "status": "not measured",
           "reason": None, "details": details}
    if not measured:
        row["reason"] = "; ".join(sorted({d["reason"] for d in details})) or ABSENT
        return row
    passed = [meets(d["value"], goal) and not d.get("miss_reason") for d in measured]
    worst = max(measured, key=lambda d: _shortfall(d["value"], goal))
    if row["aggregate"] == "median":
        value = statistics.median(d["value"] for d in measured)
        met = meets(value, goal)
    else:
        value, met = worst["value"], all(passed)
    missing = [d["reason"] for d in details if "value" not in d]
    notes = sorted({d["miss_reason"] for d in measured if d.get("miss_reason")})
    notes += [f"{len(missing)} workload(s) not measured: {missing[0]}"] if missing else []
    notes += ["a disturbed point counted"] if any(d.get("disturbed") for d in measured) else []
    row.update(passing=sum(passed), worst=worst["workload"], measured=value,
               status="met" if met else "missed", reason="; ".join(notes) or None)
    return row


def evaluate(results: dict[str, Any], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal of ``spec``, thread count and ``each`` group. ``measured`` is the
    worst workload's value, or the median when the goal's ``aggregate`` is ``median``."""
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in results["measurements"]:
        by[(r["workload"], r["label"])][r["threads"]] = r
    run_threads = sorted(results["options"]["threads"])
    view = {"workloads": results["workloads"], "cpus": results["machine"]["cpus_used"],
            "ceilings": {int(t): c for t, c in results["machine"]["ceilings"].items()}}
    rows = []
    for goal in spec["goals"]:
        threads = goal.get("threads", "all")
        threads = {"all": run_threads, "top": run_threads[-1:]}.get(threads, threads) if (
            isinstance(threads, str)) else threads
        groups: dict[tuple, list[str]] = defaultdict(list)
        for w, wl in results["workloads"].items():
            if matches(wl, goal.get("workloads", {})):
                groups[tuple(wl[k] for k in goal.get("each", []))].append(w)
        for t in threads:
            for group, wids in (groups or {(): []}).items():
                details = [_value(view, by, goal, w, t, spec.get("series", {})) for w in wids]
                kept = [d for d in details if "excluded" not in d]
                names = goal.get("each", []) if group else []
                rows.append(_row(goal, t, dict(zip(names, group, strict=True)), kept))
                if details and not kept:
                    rows[-1]["reason"] = f"no workload qualifies: {details[0]['excluded']}"
    return rows
