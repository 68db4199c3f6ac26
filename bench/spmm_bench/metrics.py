"""Figures derived from the timings: GFLOP/s, speedups, arithmetic intensity, roofline
fraction, break-even sparsity.

- Useful flops: ``2 nnz n`` (one multiply and one add per stored entry and dense column);
  the dense product's useful GFLOP/s is therefore its real rate times the density.
- Minimal bytes: the sparse operand's values, column indices and row pointers (of the CSR the
  fast forms read: Wᵀ for X @ W), plus the dense input and the output, each moved once.
- Roofline: ``min(peak, intensity x bandwidth)`` with the peak and bandwidth the suite measured
  at the same thread count (capped at the CPUs available).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .defaults import DEFAULT_PARTITION

NOT_TIMED_VARIANTS = ("prepare",)
# The dense products (numpy's BLAS, PyTorch's nn.Linear): baselines, not sparse peers. Their
# work is not the sparse product's (no intensity, no roofline, no break-even of their own).
DENSE_LIBRARIES = ("dense", "torch-dense")


def label(record: dict[str, Any]) -> str:
    """A short name for the series a measurement belongs to (plots and tables)."""
    if record["library"] != "spmm":
        return record["library"]
    parts = ["spmm", record["backend"]]
    if record.get("kernel") not in (None, "auto"):
        parts.append(record["kernel"])
    if record.get("partition") not in (None, DEFAULT_PARTITION):
        parts.append(f"{record['partition']}-partition")
    if record.get("variant") not in (None, "prepared"):
        parts.append(record["variant"])
    if record.get("simd"):  # a level forced for the kernel ablation
        parts.append(record["simd"])
    return " ".join(parts)


def minimal_bytes(workload: dict[str, Any], nnz: int, index_itemsize: int) -> int:
    """Bytes a product must move at least (see the module docstring)."""
    value = np.dtype(workload["dtype"]).itemsize
    rows, cols = workload["shape"]
    csr_rows = cols if workload["kind"] == "xw" else rows  # Wᵀ has a row per output unit
    dense_in = workload["dense_shape"][0] * workload["dense_shape"][1]
    out = workload["out_shape"][0] * workload["out_shape"][1]
    sparse = nnz * (value + index_itemsize) + (csr_rows + 1) * index_itemsize
    return sparse + (dense_in + out) * value


def ceilings(machine: dict[int, dict[str, Any]], threads: int, cpus: int,
             dtype: str) -> tuple[float | None, float | None]:
    """Measured (peak GFLOP/s, bandwidth GB/s) for ``threads``, capped at the CPUs."""
    usable = [t for t in machine if t <= min(threads, cpus)]
    if not usable:
        return None, None
    m = machine[max(usable)]
    return m["peak_gflops"].get(dtype), m["bandwidth_gbs"]


def enrich(records: list[dict[str, Any]], machine: dict[int, dict[str, Any]],
           cpus: int, workloads: dict[str, dict[str, Any]]) -> None:
    """Add the derived figures to every successful record, in place.

    Parameters
    ----------
    records : list of dict
        The measurements; each has ``workload_id``, ``median``, ``min``, ``threads``.
    machine : dict
        The measured ceilings by thread count (``peak_gflops`` per dtype, ``bandwidth_gbs``).
    cpus : int
        CPUs available: thread counts above it get the ceilings of this many.
    workloads : dict
        Every workload's full description, by id (shapes, nnz, index dtype).
    """
    scipy = {r["workload_id"]: r["median"] for r in records
             if r["library"] == "scipy" and r["status"] == "ok"}
    dense = {(r["workload_id"], r["threads"]): r["median"] for r in records
             if r["library"] == "dense" and r["status"] == "ok"}
    for r in records:
        r["label"] = label(r)
        for key in ("gflops", "gflops_best", "speedup_vs_scipy", "speedup_vs_dense",
                    "arithmetic_intensity", "roofline_gflops", "roofline_fraction"):
            r.setdefault(key, None)
        if r["status"] != "ok" or r.get("variant") in NOT_TIMED_VARIANTS:
            continue
        wl = workloads[r["workload_id"]]
        flops = 2 * wl["nnz"] * wl["n"]
        r["flops"] = flops
        r["gflops"] = flops / r["median"] / 1e9
        r["gflops_best"] = flops / r["min"] / 1e9
        if wl["id"] in scipy:
            r["speedup_vs_scipy"] = scipy[wl["id"]] / r["median"]
        if (wl["id"], r["threads"]) in dense:
            r["speedup_vs_dense"] = dense[(wl["id"], r["threads"])] / r["median"]
        if r["library"] in DENSE_LIBRARIES:
            continue  # its work is not the sparse product's: no intensity, no roofline
        nbytes = minimal_bytes(wl, wl["nnz"], np.dtype(wl["index_dtype"]).itemsize)
        intensity = flops / nbytes
        r["arithmetic_intensity"] = intensity
        peak, bandwidth = ceilings(machine, r["threads"], cpus, wl["dtype"])
        if peak and bandwidth:
            bound = min(peak, intensity * bandwidth)
            r["roofline_gflops"] = bound
            r["roofline_fraction"] = r["gflops"] / bound


def break_even(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lowest sparsity from which each sparse library beats the dense product.

    Per (family, shape, pattern, batch, dtype, threads, library): over the measured
    sparsities, the lowest ``s`` such that the library is faster than dense (same threads) at
    ``s`` and at every measured sparsity above it. ``None`` when it loses at the sparsest
    point; when it wins everywhere, the lowest measured sparsity, flagged ``at_or_below``.
    """
    dense = {(r["workload_id"], r["threads"]): r["median"] for r in records
             if r["library"] == "dense" and r["status"] == "ok"}
    series: dict[tuple, dict[float, bool]] = defaultdict(dict)
    for r in records:
        wl = r["workload"]
        if (r["status"] != "ok" or r["library"] in DENSE_LIBRARIES or wl["kind"] != "xw"
                or r.get("variant") != ("prepared" if r["library"] == "spmm" else "call")
                or r.get("partition") not in (None, DEFAULT_PARTITION)
                or (wl["id"], r["threads"]) not in dense):
            continue
        key = (wl["family"], tuple(wl["shape"]), wl["pattern"], wl["n"], wl["dtype"],
               r["threads"], r["label"])
        series[key][wl["sparsity"]] = r["median"] < dense[(wl["id"], r["threads"])]
    out = []
    for (family, shape, pattern, batch, dtype, threads, name), wins in sorted(series.items()):
        sparsities = sorted(wins)
        lowest = None
        for s in reversed(sparsities):
            if not wins[s]:
                break
            lowest = s
        out.append({
            "family": family, "shape": list(shape), "pattern": pattern, "batch": batch,
            "dtype": dtype, "threads": threads, "library": name,
            "break_even_sparsity": lowest,
            "at_or_below": lowest is not None and lowest == sparsities[0],
            "sparsities": sparsities,
            "beats_dense": [wins[s] for s in sparsities],
        })
    return out


def describe_break_even(entry: dict[str, Any]) -> str:
    """``"from 80 %"``, ``"<= 50 %"`` or ``"> 99 %"`` (never at the measured points)."""
    s = entry["break_even_sparsity"]
    if s is None:
        return f"> {entry['sparsities'][-1] * 100:g} %"
    if entry["at_or_below"]:
        return f"<= {s * 100:g} %"
    return f"from {s * 100:g} %"
