"""Plots of spmm's kernels (issue 5): the ablation waterfall, the kernels at the best
instruction set, and the waterfall's steps on the roofline. They draw the summaries
:mod:`runner` stores in ``results`` (``ablation``, ``auto_check``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .text import workload_name

STEP_COLORS = ("#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b",
               "#fd8d3c")


def _shown(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The waterfall rows of the workloads drawn (one X @ W, one A @ B)."""
    summary = results.get("ablation") or {}
    rows = {r["workload_id"]: r for r in summary.get("workloads") or []}
    return [rows[wid] for wid in (summary.get("shown") or {}).values() if wid in rows]


def waterfall(results: dict[str, Any], plt: Any, path: Path) -> Path | None:
    """GFLOP/s of each step, with its factor over the previous step, one panel per workload."""
    shown = _shown(results)
    if not shown:
        return None
    names = [s["name"] for s in results["ablation"]["steps"]]
    fig, axes = plt.subplots(1, len(shown), squeeze=False, figsize=(5.5 * len(shown), 4.6))
    for ax, row in zip(axes[0], shown, strict=True):
        values = [s["gflops"] or 0 for s in row["steps"]]
        ax.bar(range(len(names)), values, color=STEP_COLORS[:len(names)])
        top = max(values) or 1
        for i, step in enumerate(row["steps"]):
            if step["gflops"] is None:
                text = step["status"]
            elif step["ratio_to_previous"] is None:
                text = f"{step['gflops']:.3g}"
            else:
                text = f"{step['gflops']:.3g}\nx{step['ratio_to_previous']:.2f}"
            ax.text(i, (step["gflops"] or 0) + top * 0.02, text, ha="center", va="bottom",
                    fontsize=7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, top * 1.25)
        ax.set_ylabel("useful GFLOP/s (1 thread)")
        ax.set_title(workload_name(row["workload"]), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Kernel ablation waterfall: GFLOP/s per step, x = factor over the previous "
                 "step", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def kernel_ablation(results: dict[str, Any], plt: Any, path: Path) -> Path | None:
    """naive, reordered, tiled and auto at the best instruction set, on a prepared matrix,
    for each ablation workload (the ``auto`` check's measurements)."""
    check = results.get("auto_check") or {}
    kernels = ("naive", "reordered", "tiled", "auto")
    rows = [r for r in check.get("rows") or []
            if "ablation" in (results["workloads"].get(r["workload_id"], {}).get("tags") or [])
            and len(r["times"]) > 1]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 4.2))
    width = 0.8 / len(kernels)
    shades = {"naive": "#c6dbef", "reordered": "#6baed6", "tiled": "#08519c", "auto": "#fd8d3c"}
    for k, kernel in enumerate(kernels):
        xs, ys = [], []
        for i, r in enumerate(rows):
            if kernel in r["times"] and r["nnz"]:
                xs.append(i + k * width)
                ys.append(2 * r["nnz"] * r["n"] / r["times"][kernel] / 1e9)
        ax.bar(xs, ys, width=width, color=shades[kernel], label=kernel)
    ax.set_xticks([i + width * 1.5 for i in range(len(rows))])
    ax.set_xticklabels([workload_name(results["workloads"][r["workload_id"]]) for r in rows],
                       rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"useful GFLOP/s ({check['backend']}, 1 thread)")
    ax.set_title(f"Kernels at SPMM_SIMD={check['simd']} on a prepared matrix, and auto")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def roofline_steps(results: dict[str, Any], ax: Any, ceiling: dict[str, Any],
                   dtype: str) -> bool:
    """Draw the waterfall's steps of the shown workloads on ``ax`` under the one-thread
    ``ceiling``, each point labelled with its step; False when there is nothing to draw.

    Every step of a workload does the same useful work on the same bytes, so its points share
    one intensity: the labels are spread vertically, each joined to its point.
    """
    import numpy as np

    shown = [r for r in _shown(results) if r["workload"]["dtype"] == dtype]
    points = [(row, s) for row in shown for s in row["steps"]
              if s["gflops"] and s.get("arithmetic_intensity")]
    if not points:
        return False
    intensities = [s["arithmetic_intensity"] for _, s in points]
    x = np.logspace(np.log10(min(intensities) / 4), np.log10(max(max(intensities) * 8, 100)),
                    200)
    peak, bandwidth = ceiling["peak_gflops"][dtype], ceiling["bandwidth_gbs"]
    ax.plot(x, np.minimum(peak, x * bandwidth), color="black", lw=1,
            label=f"roofline 1t: {bandwidth:.0f} GB/s, {peak:.0f} GFLOP/s")
    markers = ("o", "s")
    for k, row in enumerate(shown):
        steps = [s for s in row["steps"] if s["gflops"] and s.get("arithmetic_intensity")]
        for i, s in enumerate(steps):
            ax.scatter(s["arithmetic_intensity"], s["gflops"], marker=markers[k % 2], s=22,
                       color=STEP_COLORS[i % len(STEP_COLORS)], edgecolor="black", zorder=3,
                       label=workload_name(row["workload"]) if i == 0 else None)
        _label(ax, steps, side=-1 if k % 2 else 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (useful flops / minimal bytes)")
    ax.set_ylabel("useful GFLOP/s")
    ax.set_title("Kernel ablation steps (1 thread)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    # Below the axes: inside, the legend would hide the labels of the lowest steps.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    return True


def _label(ax: Any, steps: list[dict[str, Any]], side: int) -> None:
    """Step names beside their points, at least a minimum spacing apart (in log10 GFLOP/s)."""
    spacing = 0.09
    order = sorted(steps, key=lambda s: s["gflops"])
    placed: list[float] = []
    for s in order:
        y = math.log10(s["gflops"])
        if placed and y < placed[-1] + spacing:
            y = placed[-1] + spacing
        placed.append(y)
        ax.annotate(s["name"], (s["arithmetic_intensity"], s["gflops"]),
                    xytext=(s["arithmetic_intensity"] * (2.2 if side > 0 else 1 / 2.2), 10**y),
                    ha="left" if side > 0 else "right", va="center", fontsize=6,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray"})
