"""Everything derived from the one measurement grid: GFLOP/s and roofline, the kernel
waterfall, ``auto`` against every kernel, what ``prepare`` costs and saves, the break-even
sparsity, the formats table, and the goals of a goals file.

- Useful flops: ``2 nnz n``; the dense product's useful GFLOP/s is its real rate times the
  density.
- Minimal bytes: the values, column indices and row pointers of the CSR the fast forms read
  (Wᵀ's for X @ W), plus the dense input and the output, each moved once.
- Roofline: ``min(peak, intensity x bandwidth)`` with the ceilings measured at the same thread
  count (capped at the CPUs).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from . import suites

DENSE_LIBRARIES = ("dense", "torch-dense")  # baselines: no roofline, no break-even of their own
AUTO_TOLERANCE = 1.10  # auto is flagged when more than 10 % slower than the fastest kernel


def minimal_bytes(wl: dict[str, Any]) -> int:
    value, index = np.dtype(wl["dtype"]).itemsize, np.dtype(wl["index_dtype"]).itemsize
    rows = wl["shape"][1] if wl["kind"] == "xw" else wl["shape"][0]
    dense = wl["dense_shape"][0] * wl["dense_shape"][1] + wl["out_shape"][0] * wl["out_shape"][1]
    return wl["nnz"] * (value + index) + (rows + 1) * index + dense * value


def ceiling(ceilings: dict[int, dict[str, Any]], threads: int, cpus: int) -> dict[str, Any]:
    """The ceilings measured at ``threads``, capped at the CPUs."""
    usable = [t for t in ceilings if t <= min(threads, cpus)] or [min(ceilings)]
    return ceilings[max(usable)]


def enrich(records: list[dict[str, Any]], workloads: dict[str, dict[str, Any]],
           ceilings: dict[int, dict[str, Any]], cpus: int) -> None:
    """Add GFLOP/s, speedups, intensity and roofline to every timed record, in place."""
    scipy = {r["workload"]: r["median"] for r in records if r["library"] == "scipy" and _ok(r)}
    dense = {(r["workload"], r["threads"]): r["median"] for r in records
             if r["library"] == "dense" and _ok(r)}
    for r in records:
        for key in ("median", "min", "max", "gflops", "speedup_vs_scipy", "speedup_vs_dense",
                    "arithmetic_intensity", "roofline_gflops", "roofline_fraction", "gbs"):
            r.setdefault(key, None)
        if not _ok(r) or r["operand"] == "prepare":
            continue
        wl = workloads[r["workload"]]
        r["flops"] = 2 * wl["nnz"] * wl["n"]
        r["gflops"] = r["flops"] / r["median"] / 1e9
        r["speedup_vs_scipy"] = scipy[wl["id"]] / r["median"] if wl["id"] in scipy else None
        if (wl["id"], r["threads"]) in dense:
            r["speedup_vs_dense"] = dense[(wl["id"], r["threads"])] / r["median"]
        if r["library"] not in DENSE_LIBRARIES:
            nbytes = minimal_bytes(wl)
            r["arithmetic_intensity"] = r["flops"] / nbytes
            r["gbs"] = nbytes / r["median"] / 1e9
            c = ceiling(ceilings, r["threads"], cpus)
            peak = c["peak_gflops"].get(wl["dtype"])
            if peak:
                r["roofline_gflops"] = min(peak, r["arithmetic_intensity"] * c["bandwidth_gbs"])
                r["roofline_fraction"] = r["gflops"] / r["roofline_gflops"]


def _ok(r: dict[str, Any]) -> bool:
    return r["status"] == "ok" and r.get("median") is not None


def _kernel_groups(records: list[dict[str, Any]]) -> dict[tuple, dict[str, dict[str, Any]]]:
    """The ``auto`` check's points: spmm at one thread on a prepared matrix, by (workload,
    backend, level) and kernel, where auto and at least two explicit kernels ran."""
    groups: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if (r["library"] == "spmm" and r["backend"] and r["threads"] == 1
                and r["operand"] == "prepared" and r["partition"] is None):
            groups[(r["workload"], r["backend"], r["simd"])][r["kernel"]] = r
    return {k: g for k, g in groups.items() if "auto" in g and len(g) > 2}


def auto_check(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload: each kernel's median, what auto chose (``spmm.explain``), the fastest
    explicit kernel, auto's time over it on medians and on the fastest samples, the flag."""
    rows = []
    for (wid, backend, level), kernels in _kernel_groups(records).items():
        times = {k: r["median"] for k, r in kernels.items() if _ok(r)}
        mins = {k: r["min"] for k, r in kernels.items() if _ok(r)}
        explicit = {k: t for k, t in times.items() if k != "auto"}
        row = {"workload": wid, "backend": backend, "simd": level, "times": times,
               "not_measured": {k: f"{r['status']}: {r.get('reason')}"
                                for k, r in kernels.items() if not _ok(r)},
               "chose": kernels["auto"].get("kernel_used"), "fastest": None, "ratio": None,
               "ratio_min": None, "flagged": False,
               "rechecked": any(r.get("first_attempt") for r in kernels.values())}
        if explicit and "auto" in times:
            row["fastest"] = min(explicit, key=explicit.get)
            row["ratio"] = times["auto"] / explicit[row["fastest"]]
            row["ratio_min"] = mins["auto"] / min(mins[k] for k in explicit)
            row["flagged"] = row["ratio"] > AUTO_TOLERANCE
        rows.append(row)
    return rows


def auto_check_suspects(records: list[dict[str, Any]]) -> list[str]:
    """Keys of auto and its fastest rival where auto was flagged: they are measured again,
    back to back in a fresh process, so one slowed pass cannot make the flag."""
    keys = []
    for row in auto_check(records):
        if row["flagged"]:
            group = _kernel_groups(records)[(row["workload"], row["backend"], row["simd"])]
            keys += [group["auto"]["key"], group[row["fastest"]]["key"]]
    return keys


def ablation(results: dict[str, Any]) -> dict[str, Any]:
    """The waterfall of every workload with the ``ablation`` series set."""
    config = results.get("spmm") or {}
    levels = suites.float_levels(config)
    default = suites.default_levels(config)
    backends = results["options"]["backends"]
    single = "serial" if "serial" in backends else backends[0]
    steps = suites.ablation_steps(levels)
    index = {(r["workload"], r["label"], r["threads"]): r for r in results["measurements"]}
    rows = []
    for wid, wl in results["workloads"].items():
        if "ablation" not in wl["series"]:
            continue
        got, first, previous = [], None, None
        for s in steps:
            case = {"library": "spmm", "backend": single, "kernel": s["kernel"],
                    "partition": None, "operand": s["operand"],
                    "simd": None if s["simd"] in default else s["simd"]}
            r = index.get((wid, suites.label(case), 1))
            g = r["gflops"] if r and _ok(r) else None
            got.append({"name": s["name"], "gflops": g, "median": r and r.get("median"),
                        "kernel_used": r and r.get("kernel_used"),
                        "status": r["status"] if r else "missing",
                        "disturbed": bool(r and r.get("disturbed")),
                        "arithmetic_intensity": r and r.get("arithmetic_intensity"),
                        "ratio_to_previous": g / previous if g and previous else None,
                        "ratio_to_first": g / first if g and first else None})
            first, previous = first or g, g
        rows.append({"workload": wid, "steps": got})
    return {"backend": single, "steps": steps, "workloads": rows}


def prepare_payoff(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``spmm.prepare``'s cost against what it saves per default call, and its bytes."""
    calls = {(r["workload"], r["label"], r["threads"]): r for r in records if _ok(r)}
    rows = []
    for cost in (r for r in records if r["label"] == "spmm prepare" and _ok(r)):
        slow = calls.get((cost["workload"], "spmm", cost["threads"]))
        fast = calls.get((cost["workload"], "spmm prepared", cost["threads"]))
        saving = slow["median"] - fast["median"] if slow and fast else None
        rows.append({"workload": cost["workload"], "threads": cost["threads"],
                     "prepare_seconds": cost["median"], "layout": cost.get("layout_used"),
                     "unprepared_seconds": slow and slow["median"],
                     "prepared_seconds": fast and fast["median"],
                     "calls_to_pay_off": cost["median"] / saving if saving and saving > 0
                     else None, "pays_off": None if saving is None else saving > 0,
                     **(cost.get("footprint") or {})})
    return rows


def compared(wl: dict[str, Any]) -> bool:
    """Whether a workload is in the peer tables and plots (a formats-only workload is in the
    formats table instead)."""
    return "peers" in wl["series"] or "formats" not in wl["series"]


def main_series(r: dict[str, Any]) -> bool:
    """The series the summary tables, the peer plots and the break-even compare: every
    library's best form, spmm's default call, and spmm's backends on a prepared matrix."""
    return r["library"] != "spmm" or (
        r["partition"] is None and r["simd"] is None and r["kernel"] in (None, "auto")
        and (r["operand"] == "prepared" if r["backend"] else r["operand"] == "given"))


def break_even(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per X @ W series (shape, pattern, batch, dtype, threads, library): the lowest sparsity
    from which it beats the dense product at every sparser point measured."""
    dense = {(r["workload"], r["threads"]): r["median"] for r in results["measurements"]
             if r["library"] == "dense" and _ok(r)}
    series: dict[tuple, dict[float, bool]] = defaultdict(dict)
    for r in results["measurements"]:
        wl = results["workloads"][r["workload"]]
        if (_ok(r) and main_series(r) and r["library"] not in DENSE_LIBRARIES
                and wl["kind"] == "xw" and (r["workload"], r["threads"]) in dense):
            key = (wl["family"], tuple(wl["shape"]), wl["pattern"], wl["n"], wl["dtype"],
                   r["threads"], r["label"])
            series[key][wl["sparsity"]] = r["median"] < dense[(r["workload"], r["threads"])]
    out = []
    for (family, shape, pattern, n, dtype, threads, name), wins in sorted(series.items()):
        ss = sorted(wins)
        lowest = None
        for s in reversed(ss):
            if not wins[s]:
                break
            lowest = s
        out.append({"family": family, "shape": list(shape), "pattern": pattern, "batch": n,
                    "dtype": dtype, "threads": threads, "library": name,
                    "break_even_sparsity": lowest, "sparsities": ss,
                    "at_or_below": lowest is not None and lowest == ss[0]})
    return out


def formats(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per workload of the ``formats`` set and thread count: scipy on the object, spmm's
    default call on it, spmm on ``prepare(a, layout="csr")``, the best other peer, and what
    spmm said it ran (``spmm.explain``)."""
    cells: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in results["measurements"]:
        if "formats" in results["workloads"][r["workload"]]["series"]:
            cells[(r["workload"], r["threads"])][r["label"]] = r
    threads = sorted(set(results["options"]["threads"]))
    rows = []
    for wid, wl in results["workloads"].items():
        if "formats" not in wl["series"]:
            continue
        for t in threads:
            cell = {**cells.get((wid, 1), {}), **cells.get((wid, t), {})}
            if t != 1:  # only the serial libraries stand at every count
                cell = {k: v for k, v in cell.items() if v["threads"] == t or k == "scipy"}
            scipy, spmm, prepared = (cell.get(k) for k in ("scipy", "spmm", "spmm prepared-csr"))
            others = [r for k, r in cell.items() if r["library"] not in ("spmm", "scipy")
                      and _ok(r)]
            best = min(others, key=lambda r: r["median"]) if others else None
            explain = (spmm or {}).get("explain") or {}
            rows.append({
                "workload": wid, "threads": t, "format": wl["format"], "kind": wl["kind"],
                "n": wl["n"], "dtype": wl["dtype"],
                **{f"{k}_seconds": r["median"] if r and _ok(r) else None
                   for k, r in (("scipy", scipy), ("spmm", spmm), ("prepared", prepared))},
                "best_peer": best and best["label"], "best_peer_seconds": best and best["median"],
                "kernel": explain.get("kernel", (spmm or {}).get("kernel_used")),
                "reason": explain.get("reason"), "disturbed": any(
                    r.get("disturbed") for r in (scipy, spmm, prepared) if r)})
    return rows
