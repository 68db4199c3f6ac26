"""Issue 5's and issue 6's targets, computed from one run's measurements: measured / target,
pass or miss.

Every target compares spmm *as shipped*: ``kernel="auto"`` on a prepared matrix with the
default partition, its fastest backend at the thread count (the serial backend counts at one
thread only). "Fastest peer" is the fastest of scipy (serial, so its one-thread figure at
every thread count), PyTorch, MKL and GraphBLAS on the workload at that thread count; dense is
numpy's BLAS product at the same thread count. A target whose workloads are not in the run, or
whose peer was skipped or failed, is *not measured* (with the reason), never passed or missed.

A row aggregates several workloads (layer shapes, patterns, sparsities) by its worst one, and
says how many pass; ``details`` lists each workload's figure.

Issue 6, item 3 (the structured suite, float32, batch 64 and 256, at each thread count):
spmm as shipped (``auto``, which runs the structured layout ``spmm.prepare`` detects; the
layout is in each detail) against dense for tile-wise and block weights, and against its own
CSR kernel (``tiled``, prepared, fastest backend) on the same matrix and on the uniform
matrix of the same sparsity. A structured comparison in which spmm ran the CSR form (no
layout detected, or an spmm without structured layouts) is a miss, whatever its ratio: two
CSR runs would otherwise pass or miss on noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from . import machine, metrics, plan
from .defaults import DEFAULT_PARTITION
from .text import workload_name

PEERS = ("scipy", "torch", "mkl", "graphblas")
DNN_BATCHES = (16, 64, 256)
# Issue 6, item 3: (pattern, sparsity, spmm's speedup over dense at least), batch 64 and 256.
STRUCTURED_BATCHES = (64, 256)
STRUCTURED_VS_DENSE = (("tilewise128", 0.75, 1.9), ("block32", 0.75, 2.5),
                       ("tilewise128", 0.5, 1.0))
STRUCTURED_PATTERNS = ("block32", "tilewise128", "nm4")
BREAK_EVEN_MAX = 0.6
# issue 5, item 6: on products this long a parallel region's fixed cost (microseconds) is
# below 1 %, so the backends' difference is their threading strategy, not their overhead.
LARGE_PRODUCT_SECONDS = 1e-3


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


class _Data:
    """The run's measurements indexed the ways the targets read them."""

    def __init__(self, measurements: list[dict[str, Any]], threads: list[int]) -> None:
        self.threads = sorted(set(threads))
        self.workloads: dict[str, dict[str, Any]] = {}
        self.best: dict[tuple[str, int], dict[str, Any]] = {}
        self.best_csr: dict[tuple[str, int], dict[str, Any]] = {}  # kernel plan.LAYOUT_TWIN
        self.backend: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.peers: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        self.dense: dict[tuple[str, int], dict[str, Any]] = {}
        for r in measurements:
            self.workloads.setdefault(r["workload_id"], r["workload"])
            if r["status"] != "ok" or not r.get("gflops"):
                continue
            wid, t = r["workload_id"], r["threads"]
            if r["library"] == "spmm":
                if (r.get("variant") != "prepared" or r.get("partition") != DEFAULT_PARTITION
                        or r.get("kernel") not in ("auto", plan.LAYOUT_TWIN)
                        or r.get("simd") is not None):
                    continue
                if r["kernel"] == "auto":
                    self.backend[(wid, r["backend"], t)] = r
                if r["backend"] == "serial" and t != 1:
                    continue
                best = self.best if r["kernel"] == "auto" else self.best_csr
                if (wid, t) not in best or r["gflops"] > best[(wid, t)]["gflops"]:
                    best[(wid, t)] = r
            elif r["library"] == "dense" and r.get("variant") == "call":
                self.dense[(wid, t)] = r
            elif r["library"] in PEERS and r.get("variant") == "call":
                for count in (self.threads if r["library"] == "scipy" else [t]):
                    self.peers[(wid, count)].append(r)

    def select(self, **conditions: Any) -> list[str]:
        """Ids of the workloads whose parameters match (floats compared with tolerance)."""
        out = []
        for wid, wl in self.workloads.items():
            ok = True
            for key, want in conditions.items():
                have = wl.get(key)
                if callable(want):
                    ok = ok and want(have)
                elif isinstance(want, float):
                    ok = ok and have is not None and _close(have, want)
                else:
                    ok = ok and have == want
            if ok:
                out.append(wid)
        return out


def _row(item: str, target: str, threads: int | None, op: str, goal: float, unit: str,
         details: list[dict[str, Any]], note: str = "", not_measured: str = "",
         issue: int = 5) -> dict[str, Any]:
    """A target row from per-workload ``details`` (each with ``value``, or ``reason``; a
    ``miss_reason`` makes a measured workload miss whatever its value)."""
    measured = [d for d in details if d.get("value") is not None]
    row: dict[str, Any] = {"issue": issue, "item": item, "target": target, "threads": threads,
                           "op": op, "goal": goal, "unit": unit, "details": details,
                           "note": note if details else "", "measured": None, "display": None,
                           "worst": None, "passing": None, "workloads": len(measured),
                           "pass": None, "status": "measured" if measured else "not measured",
                           "reason": None}
    if not measured:
        reasons = sorted({d["reason"] for d in details if d.get("reason")})
        row["reason"] = not_measured or "; ".join(reasons) or "no such workload in this run"
        return row
    passed = [(d["value"] >= goal if op == ">=" else d["value"] <= goal)
              and not d.get("miss_reason") for d in measured]
    worst = (min if op == ">=" else max)(measured, key=lambda d: d["value"])
    row.update(measured=worst["value"], worst=worst["workload"], passing=sum(passed))
    row["pass"] = all(passed)
    notes = [note] if note else []
    forced = [d for d in measured if d.get("miss_reason")]
    if forced:
        notes.append(f"{len(forced)} workload(s) missed: {forced[0]['miss_reason']}")
    if len(measured) < len(details):
        missing = [d for d in details if d.get("value") is None]
        notes.append(f"{len(missing)} workload(s) not measured: {missing[0].get('reason')}")
    row["note"] = "; ".join(notes)
    return row


def _skipped_peers(library_info: dict[str, Any], names: tuple[str, ...]) -> str:
    skipped = [f"{n} ({library_info[n].get('reason')})" for n in names
               if n in library_info and library_info[n].get("status") == "skipped"]
    not_run = [n for n in names if n not in library_info]
    parts = []
    if skipped:
        parts.append("skipped, not measured: " + ", ".join(skipped))
    if not_run:
        parts.append("not in this run (--peers): " + ", ".join(not_run))
    return "; ".join(parts)


def _vs_peers(data: _Data, wid: str, t: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Best spmm over the fastest of ``names`` on one workload at ``t`` threads."""
    wl = data.workloads[wid]
    spmm = data.best.get((wid, t))
    peers = [r for r in data.peers.get((wid, t), []) if r["library"] in names]
    detail: dict[str, Any] = {"workload": workload_name(wl), "workload_id": wid}
    if spmm is None:
        return {**detail, "reason": "spmm not measured"}
    if not peers:
        return {**detail, "reason": f"no measured {'/'.join(names)} at {t} thread(s)"}
    peer = max(peers, key=lambda r: r["gflops"])
    return {**detail, "value": spmm["gflops"] / peer["gflops"], "spmm": spmm["label"],
            "spmm_gflops": spmm["gflops"], "peer": peer["label"], "peer_gflops": peer["gflops"]}


def _vs_dense(data: _Data, wid: str, t: int) -> dict[str, Any]:
    wl = data.workloads[wid]
    spmm, dense = data.best.get((wid, t)), data.dense.get((wid, t))
    detail: dict[str, Any] = {"workload": workload_name(wl), "workload_id": wid}
    if spmm is None or dense is None:
        return {**detail, "reason": "dense not measured" if spmm else "spmm not measured"}
    detail.update(value=dense["median"] / spmm["median"], spmm=spmm["label"])
    if wl.get("family") == "structured":
        detail.update(_layout(spmm))
    return detail


def _layout(spmm: dict[str, Any]) -> dict[str, Any]:
    """The layout an spmm record ran (``layout_used``, ``block_used``)."""
    return {"layout_used": spmm.get("layout_used") or "csr", "block_used": spmm.get("block_used")}


CSR_MISS = ("spmm ran the CSR form (no structured layout detected, or spmm has no structured "
            "layouts)")


def _structured_vs_csr(data: _Data, wid: str, t: int) -> dict[str, Any]:
    """spmm as shipped (the structured layout) over spmm's CSR kernel on the same matrix."""
    spmm, csr = data.best.get((wid, t)), data.best_csr.get((wid, t))
    detail: dict[str, Any] = {"workload": workload_name(data.workloads[wid]), "workload_id": wid}
    if spmm is None or csr is None:
        return {**detail, "reason": f"spmm kernel {plan.LAYOUT_TWIN} not measured" if spmm
                else "spmm not measured"}
    detail.update(value=spmm["gflops"] / csr["gflops"], spmm=spmm["label"], csr=csr["label"],
                  spmm_gflops=spmm["gflops"], csr_gflops=csr["gflops"], **_layout(spmm))
    if detail["layout_used"] == "csr":
        detail["miss_reason"] = CSR_MISS
    return detail


def _structured_vs_uniform(data: _Data, wid: str, t: int) -> dict[str, Any]:
    """spmm on the structured matrix over spmm on the uniform one of the same sparsity, batch
    and dtype (useful GFLOP/s: the patterns' nnz differ by the rounding to whole tiles)."""
    wl = data.workloads[wid]
    detail: dict[str, Any] = {"workload": workload_name(wl), "workload_id": wid}
    twin = next(iter(data.select(family=wl["family"], kind=wl["kind"], pattern="uniform",
                                 sparsity=wl["sparsity"], n=wl["n"], dtype=wl["dtype"])), None)
    spmm = data.best.get((wid, t))
    uniform = data.best.get((twin, t)) if twin else None
    if spmm is None or uniform is None:
        return {**detail, "reason": "spmm not measured" if spmm is None else
                "spmm not measured on the uniform matrix of the same sparsity"}
    detail.update(value=spmm["gflops"] / uniform["gflops"], spmm_gflops=spmm["gflops"],
                  uniform_gflops=uniform["gflops"], uniform=twin, **_layout(spmm))
    if detail["layout_used"] == "csr":
        detail["miss_reason"] = CSR_MISS
    return detail


def _structured_targets(data: _Data) -> list[dict[str, Any]]:
    rows = []
    for t in data.threads:
        for batch in STRUCTURED_BATCHES:
            for pattern, sparsity, goal in STRUCTURED_VS_DENSE:
                ids = data.select(family="structured", kind="xw", pattern=pattern,
                                  sparsity=sparsity, n=batch, dtype="float32")
                rows.append(_row("3", f"structured {pattern} {sparsity * 100:g} %, batch "
                                      f"{batch}: spmm / dense BLAS", t, ">=", goal, "x",
                                 [_vs_dense(data, w, t) for w in ids], issue=6))
        for pattern in STRUCTURED_PATTERNS:
            ids = data.select(family="structured", kind="xw", pattern=pattern, dtype="float32",
                              n=lambda n: n in STRUCTURED_BATCHES)
            rows.append(_row("3", f"structured {pattern}, every sparsity, batch 64 and 256: "
                                  f"spmm / spmm CSR ({plan.LAYOUT_TWIN}) on the same matrix",
                             t, ">=", 1.0, "x", [_structured_vs_csr(data, w, t) for w in ids],
                             note="faster: above 1", issue=6))
            rows.append(_row("3", f"structured {pattern}, every sparsity, batch 64 and 256: "
                                  "spmm GFLOP/s / spmm on uniform of the same sparsity", t,
                             ">=", 1.0, "x", [_structured_vs_uniform(data, w, t) for w in ids],
                             note="faster: above 1", issue=6))
    return rows


def break_even(ratios: dict[float, float]) -> dict[str, Any]:
    """The lowest sparsity from which spmm beats dense at every sparser point measured.

    ``ratios`` maps sparsity to spmm's time over dense's (below 1: spmm wins). Returns
    ``sparsity`` (None: it never wins at the sparsest point), ``bracket`` (the losing and the
    winning sparsity around the crossing), ``estimate`` (the crossing, interpolating the log of
    the time ratio linearly in sparsity between them) and ``display``.
    """
    ss = sorted(ratios)
    lowest = None
    for s in reversed(ss):
        if ratios[s] >= 1:
            break
        lowest = s
    if lowest is None:
        return {"sparsity": None, "bracket": None, "estimate": None,
                "display": f"> {ss[-1] * 100:g} %"}
    i = ss.index(lowest)
    if i == 0:
        return {"sparsity": lowest, "bracket": None, "estimate": None,
                "display": f"<= {lowest * 100:g} %"}
    lo = ss[i - 1]
    a, b = math.log(ratios[lo]), math.log(ratios[lowest])
    estimate = lo + (lowest - lo) * a / (a - b)
    return {"sparsity": lowest, "bracket": [lo, lowest], "estimate": estimate,
            "display": f"{lowest * 100:g} % (loses at {lo * 100:g} %; crossing ~"
                       f"{estimate * 100:.0f} %)"}


def _dnn_targets(data: _Data, library_info: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    skipped = _skipped_peers(library_info, PEERS[1:])
    for t in data.threads:
        for batch in DNN_BATCHES:
            ids = data.select(family="dnn", kind="xw", sparsity=0.9, n=batch, dtype="float32")
            rows.append(_row("8", f"dnn 90 %, batch {batch}: spmm / fastest peer", t, ">=",
                             1.5, "x", [_vs_peers(data, w, t, PEERS) for w in ids], skipped))
            rows.append(_row("8", f"dnn 90 %, batch {batch}: spmm / dense BLAS", t, ">=", 3.0,
                             "x", [_vs_dense(data, w, t) for w in ids]))
        for batch in DNN_BATCHES:
            rows.append(_break_even_row(data, batch, t))
        ids = data.select(family="dnn", kind="xw", n=1, dtype="float32",
                          sparsity=lambda s: s is not None and s >= 0.7 - 1e-9)
        rows.append(_row("8", "dnn batch 1, sparsity >= 70 %: spmm / fastest peer", t, ">=",
                         1.5, "x", [_vs_peers(data, w, t, PEERS) for w in ids], skipped))
    return rows


def _break_even_row(data: _Data, batch: int, t: int) -> dict[str, Any]:
    series: dict[tuple, dict[float, float]] = defaultdict(dict)
    names: dict[tuple, str] = {}
    for wid in data.select(family="dnn", kind="xw", n=batch, dtype="float32"):
        spmm, dense = data.best.get((wid, t)), data.dense.get((wid, t))
        wl = data.workloads[wid]
        key = (tuple(wl["shape"]), wl["pattern"])
        names[key] = f"dnn {key[0][0]}x{key[0][1]} {key[1]} b{batch}"
        if spmm and dense:
            series[key][wl["sparsity"]] = spmm["median"] / dense["median"]
    details = []
    for key, name in names.items():
        ratios = series.get(key, {})
        if len(ratios) < 2:
            details.append({"workload": name, "reason": "fewer than two sparsities measured "
                                                        "against dense"})
            continue
        found = break_even(ratios)
        # Never winning counts as 100 %: a miss, and still a number JSON can hold.
        value = found["sparsity"] if found["sparsity"] is not None else 1.0
        details.append({"workload": name, "value": value, **found})
    row = _row("8", f"break-even sparsity vs dense BLAS, batch {batch}", t, "<=",
               BREAK_EVEN_MAX, "sparsity", details)
    worst = next((d for d in details if d.get("workload") == row["worst"]), None)
    row["display"] = worst["display"] if worst else None
    return row


def _science_targets(data: _Data, library_info: dict[str, Any],
                     ceilings: dict[int, dict[str, Any]], cpus: int) -> list[dict[str, Any]]:
    rows = []
    mkl_skipped = _skipped_peers(library_info, ("mkl",))
    llc = machine.largest_cache_bytes()
    for t in data.threads:
        for dtype in ("float32", "float64"):
            for n in (8, 64):
                ids = data.select(family="science", kind="ab", n=n, dtype=dtype)
                rows.append(_row("8", f"science n={n} {dtype} (uniform, powerlaw): "
                                      "spmm / MKL", t, ">=", 1.5, "x",
                                 [_vs_peers(data, w, t, ("mkl",)) for w in ids],
                                 not_measured=mkl_skipped if ids else ""))
            details = []
            for wid in data.select(family="science", kind="ab", n=1, dtype=dtype):
                r = data.best.get((wid, t))
                detail = {"workload": workload_name(data.workloads[wid]), "workload_id": wid}
                _, bandwidth = metrics.ceilings(ceilings, t, cpus, dtype)
                if r is None or not r.get("arithmetic_intensity") or not bandwidth:
                    details.append({**detail, "reason": "spmm or the bandwidth not measured"})
                    continue
                achieved = r["gflops"] / r["arithmetic_intensity"]  # GB/s: bytes = flops / AI
                moved = r["flops"] / r["arithmetic_intensity"]
                details.append({**detail, "value": achieved / bandwidth, "achieved_gbs": achieved,
                                "stream_gbs": bandwidth, "bytes_per_call": moved})
            note = ""
            sizes = [d["bytes_per_call"] for d in details if "bytes_per_call" in d]
            if sizes and llc and max(sizes) < llc:
                note = (f"the product moves {max(sizes) / 2**20:.0f} MiB, less than the "
                        f"{llc / 2**20:.0f} MiB last-level cache: it can run from cache, so the "
                        "fraction may exceed 1")
            rows.append(_row("8", f"science n=1 {dtype}: achieved / streaming bandwidth", t,
                             ">=", 0.8, "fraction", details, note))
    return rows


def _compute_bound(r: dict[str, Any], ceilings: dict[int, dict[str, Any]], cpus: int) -> bool:
    """At or right of the one-thread ridge point (peak / bandwidth) of the roofline."""
    peak, bandwidth = metrics.ceilings(ceilings, 1, cpus, r["dtype"])
    return bool(peak and bandwidth and r.get("arithmetic_intensity")
                and r["arithmetic_intensity"] >= peak / bandwidth)


def _parallel_targets(data: _Data, ceilings: dict[int, dict[str, Any]],
                      cpus: int) -> list[dict[str, Any]]:
    rows = []
    backends = sorted({b for (_, b, _) in data.backend if b != "serial"})
    top = data.threads[-1]
    for backend in backends:
        details = []
        for wid, wl in data.workloads.items() if 2 in data.threads else ():
            one, two = data.backend.get((wid, backend, 1)), data.backend.get((wid, backend, 2))
            if wl["family"] not in ("dnn", "science") or one is None or two is None:
                continue
            if _compute_bound(one, ceilings, cpus):
                details.append({"workload": workload_name(wl), "workload_id": wid,
                                "value": two["gflops"] / one["gflops"]})
        peak, bandwidth = metrics.ceilings(ceilings, 1, cpus, "float32")
        ridge = f"{peak / bandwidth:.1f}" if peak and bandwidth else "?"
        rows.append(_row("8", f"1 -> 2 threads, compute-bound dnn/science workloads: "
                              f"{backend}", 2, ">=", 1.8, "x", details,
                         note=f"compute-bound: arithmetic intensity at or above the one-thread "
                              f"ridge point (float32: {ridge} flop/byte)",
                         not_measured="no compute-bound dnn/science workload measured at 1 "
                                      "and 2 threads"))
        details = []
        for wid in data.select(family="science", pattern="powerlaw"):
            wl = data.workloads[wid]
            twin = next((u for u in data.select(family="science", pattern="uniform",
                                                n=wl["n"], dtype=wl["dtype"])), None)
            power = data.backend.get((wid, backend, top))
            uniform = data.backend.get((twin, backend, top)) if twin else None
            if power and uniform:
                details.append({"workload": workload_name(wl), "workload_id": wid,
                                "value": power["gflops"] / uniform["gflops"]})
        rows.append(_row("5", f"power-law / uniform GFLOP/s, science: {backend}", top, ">=",
                         0.9, "fraction", details if top > 1 else [],
                         not_measured="" if top > 1 else "needs more than one thread"))
    for t in data.threads:
        details = []
        for wid, wl in data.workloads.items():
            omp, pool = data.backend.get((wid, "openmp", t)), data.backend.get((wid, "threads", t))
            if omp and pool and min(omp["median"], pool["median"]) >= LARGE_PRODUCT_SECONDS:
                details.append({"workload": workload_name(wl), "workload_id": wid,
                                "value": abs(pool["median"] / omp["median"] - 1),
                                "threads_over_openmp": pool["median"] / omp["median"]})
        rows.append(_row("6", f"threads vs openmp on large products (>= "
                              f"{LARGE_PRODUCT_SECONDS * 1e3:g} ms): |time ratio - 1|", t,
                         "<=", 0.05, "fraction", details))
    return rows


def evaluate(measurements: list[dict[str, Any]], ceilings: dict[int, dict[str, Any]],
             cpus: int, threads: list[int], library_info: dict[str, Any]) -> dict[str, Any]:
    """Every target of issue 5, items 5, 6 and 8, and of issue 6, item 3.

    Parameters
    ----------
    measurements : list of dict
        The run's records with derived figures.
    ceilings : dict
        The measured roofline ceilings by thread count.
    cpus : int
        CPUs available.
    threads : list of int
        The run's thread counts.
    library_info : dict
        Each library's status, for the reasons a peer was skipped.

    Returns
    -------
    dict
        ``rows``: one per (target, thread count) with ``issue`` and ``item``, ``target``,
        ``threads``, ``op`` and ``goal``, ``measured`` (the worst workload's figure),
        ``worst``, ``passing`` of ``workloads``, ``pass`` (None when not measured),
        ``status``, ``reason``, ``note`` and ``details``; ``definitions``: what "spmm",
        "spmm_csr", "peer" and "dense" mean here.
    """
    data = _Data(measurements, threads)
    rows = (_dnn_targets(data, library_info)
            + _science_targets(data, library_info, ceilings, cpus)
            + _parallel_targets(data, ceilings, cpus)
            + _structured_targets(data))
    return {"rows": rows, "definitions": {
        "spmm": "kernel auto, prepared matrix (layout auto: structured where spmm.prepare "
                "detects it), default partition (auto: dynamic for one dense column, else nnz), "
                "fastest backend at the thread count (serial only at 1 thread)",
        "spmm_csr": f"the same with kernel {plan.LAYOUT_TWIN!r} (the CSR form)",
        "peer": "fastest of scipy (serial), torch, mkl, graphblas at the thread count",
        "dense": "numpy matmul (BLAS) at the same thread count"}}
