"""PNG plots of a run (matplotlib, Agg backend). Without matplotlib the plots are skipped with
a note in the results; everything else still works.

Each function draws one figure from ``results`` (the dict of ``results.json``) and returns the
file it wrote, or None when the run has nothing to draw for it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from . import plots_kernels
from .defaults import DEFAULT_PARTITION
from .text import workload_name

FILES = {
    "speedup": "speedup_vs_sparsity.png",
    "scaling": "thread_scaling.png",
    "ablation": "kernel_ablation.png",
    "waterfall": "kernel_waterfall.png",
    "break_even": "break_even.png",
    "roofline": "roofline.png",
}
PEERS_FILE = "peers_{suite}.png"

COLORS = {"scipy": "#7f7f7f", "dense": "#000000", "torch-dense": "#ff9896",
          "spmm serial": "#9ecae1", "spmm openmp": "#1f77b4", "spmm threads": "#ff7f0e",
          "torch": "#d62728", "mkl": "#2ca02c", "graphblas": "#9467bd"}
PATTERN_STYLES = {"uniform": "-", "pruned": "--", "block32": ":", "tilewise128": "-.",
                  "nm4": (0, (3, 1, 1, 1, 1, 1))}


def _color(name: str) -> str:
    return COLORS.get(name, COLORS.get(" ".join(name.split()[:2]), "#8c564b"))


def _legend_below(fig: Any, ax: Any, ncol: int) -> float:
    """A figure legend under the axes; returns the bottom margin (figure fraction) it needs."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7)
    rows = -(-len(labels) // ncol)
    return min(0.5, (0.17 * rows + 0.15) / fig.get_size_inches()[1])


def _ok(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["measurements"] if r["status"] == "ok" and r.get("gflops")]


def _main_spmm(r: dict[str, Any]) -> bool:
    return (r["library"] == "spmm" and r["variant"] == "prepared" and r["kernel"] == "auto"
            and r["partition"] == DEFAULT_PARTITION)


def _top(results: dict[str, Any]) -> int:
    return max(results["options"]["threads"])


def _series(r: dict[str, Any], top: int) -> bool:
    """The main comparison: scipy, serial spmm at 1 thread, everything else at ``top``."""
    if r["library"] == "scipy":
        return True
    if r["library"] == "spmm":
        if not _main_spmm(r):
            return False
        return r["threads"] == 1 if r["backend"] == "serial" else r["threads"] == top
    return r.get("variant") == "call" and r["threads"] == top


def speedup_vs_sparsity(results: dict[str, Any], plt: Any, path: Path) -> Path | None:
    """DNN layers: spmm's speedup over scipy against sparsity, per backend."""
    top = _top(results)
    rs = [r for r in _ok(results) if r["workload"]["family"] == "dnn" and _main_spmm(r)
          and r["speedup_vs_scipy"] and (r["threads"] == top or r["backend"] == "serial")]
    if not rs:
        return None
    shapes = sorted({tuple(r["workload"]["shape"]) for r in rs})
    batches = sorted({r["workload"]["n"] for r in rs})
    fig, axes = plt.subplots(len(shapes), len(batches), squeeze=False, sharey=True,
                             figsize=(3.2 * len(batches), 2.6 * len(shapes) + 0.8))
    lines: dict[tuple, list] = defaultdict(list)
    for r in rs:
        wl = r["workload"]
        lines[(tuple(wl["shape"]), wl["n"], r["label"], r["threads"], wl["pattern"])].append(
            (wl["sparsity"] * 100, r["speedup_vs_scipy"]))
    for (shape, batch, name, threads, pattern), points in sorted(lines.items()):
        ax = axes[shapes.index(shape)][batches.index(batch)]
        points.sort()
        ax.plot(*zip(*points, strict=True), PATTERN_STYLES.get(pattern, "-"), marker="o",
                markersize=3, color=_color(name), label=f"{name} {threads}t, {pattern}")
    for i, shape in enumerate(shapes):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            ax.axhline(1, color="gray", lw=0.8)
            ax.set_yscale("log")
            ax.set_title(f"W {shape[0]}x{shape[1]}, batch {batch}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if i == len(shapes) - 1:
                ax.set_xlabel("sparsity (%)")
            if j == 0:
                ax.set_ylabel("speedup over scipy")
    bottom = _legend_below(fig, axes[0][0], ncol=min(3, len(batches) + 1))
    fig.suptitle("spmm X @ W: speedup over scipy vs sparsity, per backend\n"
                 "(solid: uniform, dashed: magnitude-pruned)", fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 0.94))
    fig.savefig(path, dpi=110)
    return path


def _select_for_peers(rs: list[dict[str, Any]], suite: str) -> list[str]:
    """Workload ids to show: all, except the DNN grid, cut to one layer and three sparsities."""
    ids = list(dict.fromkeys(r["workload_id"] for r in rs if r["workload"]["suite"] == suite))
    if suite != "dnn":
        return ids
    keep = []
    for r in rs:
        wl = r["workload"]
        if (wl["suite"] == "dnn" and tuple(wl["shape"]) == (1024, 4096)
                and wl["pattern"] == "uniform" and wl["sparsity"] in (0.7, 0.9, 0.99)):
            keep.append(r["workload_id"])
    return list(dict.fromkeys(keep))


def peers(results: dict[str, Any], plt: Any, out: Path) -> list[Path]:
    """spmm against the peers, one figure per suite: GFLOP/s per workload."""
    top = _top(results)
    rs = [r for r in _ok(results) if _series(r, top)]
    written = []
    for suite in dict.fromkeys(r["workload"]["suite"] for r in rs):
        ids = _select_for_peers(rs, suite)
        names = sorted({r["label"] for r in rs if r["workload_id"] in ids},
                       key=lambda n: list(COLORS).index(n) if n in COLORS else 99)
        cells = {(r["workload_id"], r["label"]): r for r in rs}
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.16 * len(ids) * (len(names) + 1)))
        height = 1 / (len(names) + 1)
        for k, name in enumerate(names):
            ys, xs = [], []
            for i, wid in enumerate(ids):
                if (wid, name) in cells:
                    ys.append(i + k * height)
                    xs.append(cells[(wid, name)]["gflops"])
            threads = 1 if name in ("scipy", "spmm serial") else top
            ax.barh(ys, xs, height=height, color=_color(name), label=f"{name} ({threads}t)")
        ax.set_yticks([i + height * (len(names) - 1) / 2 for i in range(len(ids))])
        ax.set_yticklabels([workload_name(cells[next(k for k in cells if k[0] == wid)]
                                          ["workload"]) for wid in ids], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("useful GFLOP/s (2 nnz n / s), log scale")
        ax.grid(alpha=0.3, axis="x", which="both")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.set_title(f"{suite}: spmm vs peers, each library at its best form")
        fig.tight_layout()
        path = out / PEERS_FILE.format(suite=suite)
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def thread_scaling(results: dict[str, Any], plt: Any, path: Path) -> Path | None:
    """Useful GFLOP/s against threads, OpenMP against the thread pool."""
    rs = [r for r in _ok(results) if _main_spmm(r) and r["backend"] != "serial"
          and "scaling" in r["workload"]["tags"]]
    ids = list(dict.fromkeys(r["workload_id"] for r in rs))
    if not ids or len({r["threads"] for r in rs}) < 2:
        return None
    cpus = results["machine"]["cpus_used"]
    cols = min(3, len(ids))
    rows = -(-len(ids) // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(4 * cols, 3 * rows + 0.4))
    for ax, wid in zip(axes.flat, ids, strict=False):  # the grid may have spare axes
        by_backend: dict[str, list] = defaultdict(list)
        for r in rs:
            if r["workload_id"] == wid:
                by_backend[r["label"]].append((r["threads"], r["gflops"], r.get("disturbed")))
        for name, points in sorted(by_backend.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    color=_color(name), label=name)
            for t, g, disturbed in points:
                if disturbed:
                    ax.plot(t, g, "x", color="red", markersize=9)
        ax.axvline(cpus, color="gray", ls="--", lw=0.8)
        ax.set_xticks(sorted({r["threads"] for r in rs}))
        ax.set_title(workload_name(next(r for r in rs if r["workload_id"] == wid)["workload"]),
                     fontsize=8)
        ax.set_xlabel(f"threads (dashed: {cpus} CPUs; beyond: oversubscribed)")
        ax.set_ylabel("useful GFLOP/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ids):]:
        ax.set_visible(False)
    fig.suptitle("Thread scaling: OpenMP vs std::thread pool backend (red x: disturbed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def break_even(results: dict[str, Any], plt: Any, path: Path) -> Path | None:
    """The lowest sparsity from which each library beats dense."""
    shown = ("scipy", "spmm serial", "spmm openmp", "spmm threads", "torch", "mkl", "graphblas")
    entries = [e for e in results["break_even"] if e["family"] == "dnn" and e["library"] in shown]
    if not entries:
        return None
    shapes = sorted({tuple(e["shape"]) for e in entries})
    threads = sorted({e["threads"] for e in entries})
    fig, axes = plt.subplots(len(threads), len(shapes), squeeze=False, sharey=True,
                             figsize=(max(6.0, 4 * len(shapes)), 3.2 * len(threads) + 0.8))
    ceiling = max(max(e["sparsities"]) for e in entries) * 100
    lines: dict[tuple, list] = defaultdict(list)
    for e in entries:
        s = e["break_even_sparsity"]
        y = ceiling + 1.5 if s is None else s * 100
        lines[(tuple(e["shape"]), e["threads"], e["library"], e["pattern"])].append(
            (e["batch"], y, s is None, e["at_or_below"]))
    for (shape, t, name, pattern), points in sorted(lines.items()):
        ax = axes[threads.index(t)][shapes.index(shape)]
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points],
                PATTERN_STYLES.get(pattern, "-"), color=_color(name), label=f"{name}, {pattern}")
        for b, y, never, below in points:
            ax.plot(b, y, "x" if never else ("v" if below else "o"), color=_color(name),
                    markersize=5)
    batches = sorted({e["batch"] for e in entries})
    for i, t in enumerate(threads):
        for j, shape in enumerate(shapes):
            ax = axes[i][j]
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches)
            ax.set_xticklabels([str(b) for b in batches])
            ax.axhline(ceiling + 1.5, color="gray", lw=0.6, ls=":")
            ax.set_title(f"W {shape[0]}x{shape[1]}, {t} thread{'s' * (t > 1)}", fontsize=9)
            ax.set_xlabel("batch")
            if j == 0:
                ax.set_ylabel("break-even sparsity (%)")
            ax.grid(alpha=0.3)
    bottom = _legend_below(fig, axes[0][0], ncol=max(2, min(4, len(shapes) + 1)))
    fig.suptitle("Break-even sparsity: the lowest from which each library beats dense\n"
                 "(x: never, v: already at the lowest measured sparsity)", fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 0.93))
    fig.savefig(path, dpi=110)
    return path


def roofline(results: dict[str, Any], plt: Any, path: Path) -> Path | None:
    """Every sparse measurement against the measured ceilings."""
    import numpy as np

    measured = results["machine"].get("measured") or {}
    # Points at a forced instruction set are the ablation's: the right-hand panel has them.
    rs = [r for r in _ok(results) if r.get("arithmetic_intensity")
          and r.get("variant") in ("call", "prepared") and not r.get("simd")]
    if not measured or not rs:
        return None
    dtypes = results["options"]["dtypes"]
    counts = sorted(int(t) for t in measured)
    shown_threads = sorted({counts[0], counts[-1]})
    fig, (ax, steps_ax) = plt.subplots(1, 2, figsize=(14, 5.5),
                                       gridspec_kw={"width_ratios": [8, 6]})
    if not plots_kernels.roofline_steps(results, steps_ax, measured[str(counts[0])], dtypes[0]):
        steps_ax.set_visible(False)
    intensities = [r["arithmetic_intensity"] for r in rs]
    x = np.logspace(np.log10(min(intensities) / 2), np.log10(max(max(intensities) * 4, 100)), 200)
    for t in shown_threads:
        c = measured[str(t)]
        for dtype in dtypes[:1]:
            peak = c["peak_gflops"][dtype]
            ax.plot(x, np.minimum(peak, x * c["bandwidth_gbs"]), color="black",
                    ls="-" if t == counts[0] else "--", lw=1,
                    label=f"roofline {t}t: {c['bandwidth_gbs']:.0f} GB/s, {peak:.0f} GFLOP/s "
                          f"{dtype}")
    markers = {t: m for t, m in zip(shown_threads, ("o", "^"), strict=False)}
    seen = set()
    for r in rs:
        if r["threads"] not in markers or r["dtype"] != dtypes[0]:
            continue
        name = " ".join(r["label"].split()[:2]) if r["library"] == "spmm" else r["label"]
        key = (name, r["threads"])
        ax.scatter(r["arithmetic_intensity"], r["gflops"], s=12, alpha=0.6,
                   color=_color(name), marker=markers[r["threads"]],
                   label=f"{name} {r['threads']}t" if key not in seen else None)
        seen.add(key)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (useful flops / minimal bytes)")
    ax.set_ylabel("useful GFLOP/s")
    ax.set_title(f"Roofline ({dtypes[0]}): ceilings measured by this run")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the run has data for, into ``out``; a note in ``results`` if none can be."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results["notes"].append("plots skipped: matplotlib is not installed "
                                "(pip install matplotlib, or the bench extra)")
        return []
    written: list[Path] = []
    for name, draw in (("speedup", speedup_vs_sparsity), ("scaling", thread_scaling),
                       ("waterfall", plots_kernels.waterfall),
                       ("ablation", plots_kernels.kernel_ablation), ("break_even", break_even),
                       ("roofline", roofline)):
        try:
            path = draw(results, plt, out / FILES[name])
        finally:
            plt.close("all")
        if path is not None:
            written.append(path)
    try:
        written[1:1] = peers(results, plt, out)
    finally:
        plt.close("all")
    return written
