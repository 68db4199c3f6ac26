"""PNG plots of a run (matplotlib, Agg). Without matplotlib they are skipped with a note.

Each function draws one figure from ``results`` and returns the file it wrote, or None when
the run has nothing for it. docs/benchmarks.md says how to read each one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from . import views
from .report import name

COLORS = {"scipy": "#7f7f7f", "dense": "#000000", "torch-dense": "#ff9896", "spmm": "#17becf",
          "spmm prepared": "#bcbd22", "spmm serial prepared": "#9ecae1",
          "spmm openmp prepared": "#1f77b4", "spmm threads prepared": "#ff7f0e",
          "torch": "#d62728", "mkl": "#2ca02c", "graphblas": "#9467bd"}
STYLES = {"uniform": "-", "pruned": "--", "block32": ":", "tilewise128": "-."}
DPI = 100


def _color(label: str) -> str:
    return COLORS.get(label, "#8c564b")


def _main(results: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The main series at the most threads (scipy and the serial backend at one)."""
    return [r for r in results["measurements"] if views._ok(r) and r.get("gflops")
            and views.main_series(r) and (r["threads"] == top or r["library"] == "scipy"
                                          or r["backend"] == "serial")]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def speedup_vs_sparsity(results: dict[str, Any], plt: Any, out: Path) -> Path | None:
    """DNN layers: speedup over scipy against sparsity, a panel per (shape, batch)."""
    W, top = results["workloads"], max(results["options"]["threads"])
    rs = [r for r in _main(results, top) if r["library"] == "spmm" and r["speedup_vs_scipy"]
          and W[r["workload"]]["family"] == "dnn" and not W[r["workload"]]["format"]]
    if not rs:
        return None
    shapes = sorted({tuple(W[r["workload"]]["shape"]) for r in rs})
    batches = sorted({W[r["workload"]]["n"] for r in rs})
    fig, axes = plt.subplots(len(shapes), len(batches), squeeze=False, sharey=True,
                             figsize=(3.2 * len(batches), 2.6 * len(shapes) + 1))
    lines: dict[tuple, list] = defaultdict(list)
    for r in rs:
        wl = W[r["workload"]]
        lines[(tuple(wl["shape"]), wl["n"], r["label"], wl["pattern"])].append(
            (wl["sparsity"] * 100, r["speedup_vs_scipy"]))
    for (shape, n, label, pattern), points in sorted(lines.items()):
        ax = axes[shapes.index(shape)][batches.index(n)]
        ax.plot(*zip(*sorted(points), strict=True), STYLES.get(pattern, "-"), marker="o",
                markersize=3, color=_color(label), label=f"{label}, {pattern}")
    for (i, shape), (j, n) in ((a, b) for a in enumerate(shapes) for b in enumerate(batches)):
        ax = axes[i][j]
        ax.axhline(1, color="gray", lw=0.8)
        ax.set(yscale="log", title=f"W {shape[0]}x{shape[1]}, batch {n}",
               xlabel="sparsity (%)" if i == len(shapes) - 1 else "",
               ylabel="speedup over scipy" if j == 0 else "")
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(f"X @ W: spmm's speedup over scipy ({top} threads; serial at 1)")
    return _save(fig, out / "speedup_vs_sparsity.png")


def peers(results: dict[str, Any], plt: Any, out: Path) -> list[Path]:
    """One bar per library per workload, useful GFLOP/s, one figure per suite."""
    W, top = results["workloads"], max(results["options"]["threads"])
    rs = [r for r in _main(results, top) if views.compared(W[r["workload"]])]
    written = []
    for suite in dict.fromkeys(W[r["workload"]]["suite"] for r in rs):
        ids = [w for w in dict.fromkeys(r["workload"] for r in rs) if W[w]["suite"] == suite]
        if suite == "dnn":  # one layer at three sparsities; the report has every workload
            ids = [w for w in ids if W[w]["shape"] == [1024, 4096] and W[w]["pattern"] ==
                   "uniform" and W[w]["sparsity"] in (0.7, 0.9, 0.99)]
        cells = {(r["workload"], r["label"]): r for r in rs if r["workload"] in ids}
        labels = sorted({lab for _, lab in cells}, key=lambda s: list(COLORS).index(s)
                        if s in COLORS else 99)
        height = 1 / (len(labels) + 1)
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.15 * len(ids) * (len(labels) + 1)))
        for k, lab in enumerate(labels):
            pts = [(i + k * height, cells[(w, lab)]["gflops"]) for i, w in enumerate(ids)
                   if (w, lab) in cells]
            ax.barh(*zip(*pts, strict=True), height=height, color=_color(lab), label=lab)
        ax.set_yticks([i + height * (len(labels) - 1) / 2 for i in range(len(ids))],
                      [name(W[w]) for w in ids], fontsize=7)
        ax.invert_yaxis()
        ax.set(xscale="log", xlabel="useful GFLOP/s (2 nnz n / s)",
               title=f"{suite}: each library at its best form, {top} threads (serial at 1)")
        ax.grid(alpha=0.3, axis="x", which="both")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        written.append(_save(fig, out / f"peers_{suite}.png"))
    return written


def thread_scaling(results: dict[str, Any], plt: Any, out: Path) -> Path | None:
    """Useful GFLOP/s against threads per parallel backend (red x: disturbed)."""
    W = results["workloads"]
    rs = [r for r in results["measurements"] if views._ok(r) and r["library"] == "spmm"
          and r["backend"] in ("openmp", "threads") and r["operand"] == "prepared"
          and r["kernel"] == "auto" and not r["partition"] and not r["simd"]
          and "scaling" in W[r["workload"]]["series"]]
    ids = list(dict.fromkeys(r["workload"] for r in rs))
    if not ids or len({r["threads"] for r in rs}) < 2:
        return None
    cols = min(3, len(ids))
    fig, axes = plt.subplots(-(-len(ids) // cols), cols, squeeze=False,
                             figsize=(4 * cols, 3 * -(-len(ids) // cols) + 0.5))
    for ax, wid in zip(axes.flat, ids, strict=False):
        for lab in sorted({r["label"] for r in rs}):
            pts = sorted((r["threads"], r["gflops"], r["disturbed"]) for r in rs
                         if r["workload"] == wid and r["label"] == lab)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=_color(lab),
                    label=lab)
            ax.plot([p[0] for p in pts if p[2]], [p[1] for p in pts if p[2]], "x", color="red")
        ax.axvline(results["machine"]["cpus_used"], color="gray", ls="--", lw=0.8)
        ax.set(title=name(W[wid]), xlabel="threads (dashed: the CPUs)", ylim=(0, None),
               ylabel="useful GFLOP/s")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ids):]:
        ax.set_visible(False)
    return _save(fig, out / "thread_scaling.png")


def waterfall(results: dict[str, Any], plt: Any, out: Path) -> Path | None:
    """The kernel waterfall, one panel per ablation workload (at most four)."""
    ab = results["views"]["ablation"]
    rows = [r for r in ab["workloads"] if any(s["gflops"] for s in r["steps"])][:4]
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), squeeze=False, figsize=(4.5 * len(rows), 4.2))
    for ax, row in zip(axes[0], rows, strict=True):
        values = [s["gflops"] or 0 for s in row["steps"]]
        ax.bar(range(len(values)), values, color="#4292c6")
        for i, s in enumerate(row["steps"]):
            text = f"{s['gflops']:.3g}" + (f"\nx{s['ratio_to_previous']:.2f}"
                                           if s["ratio_to_previous"] else "") if s[
                "gflops"] else s["status"]
            ax.text(i, values[i], text, ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(values)), [s["name"] for s in row["steps"]], rotation=35,
                      ha="right", fontsize=7)
        ax.set(ylabel="useful GFLOP/s (1 thread)", ylim=(0, max(values) * 1.25 or 1))
        ax.set_title(name(results["workloads"][row["workload"]]), fontsize=8)
    fig.suptitle("Kernel ablation: each step changes one thing (x: factor over the previous)")
    return _save(fig, out / "kernel_waterfall.png")


def break_even(results: dict[str, Any], plt: Any, out: Path) -> Path | None:
    """The lowest sparsity from which each library beats dense, against the batch: a panel
    per layer shape (columns) and thread count (rows)."""
    entries = [e for e in results["views"]["break_even"] if len(e["sparsities"]) > 1]
    if not entries:
        return None
    shapes = sorted({tuple(e["shape"]) for e in entries})
    threads = sorted({e["threads"] for e in entries})
    batches = sorted({e["batch"] for e in entries})
    fig, axes = plt.subplots(len(threads), len(shapes), squeeze=False, sharey=True,
                             figsize=(4 * len(shapes), 3 * len(threads) + 0.5))
    top = max(max(e["sparsities"]) for e in entries) * 100 + 1.5
    lines: dict[tuple, list] = defaultdict(list)
    for e in entries:
        s = e["break_even_sparsity"]
        lines[(tuple(e["shape"]), e["threads"], e["library"], e["pattern"])].append(
            (e["batch"], top if s is None else s * 100))
    for (shape, t, lib, pattern), pts in sorted(lines.items()):
        ax = axes[threads.index(t)][shapes.index(shape)]
        ax.plot(*zip(*sorted(pts), strict=True), STYLES.get(pattern, "-"), marker="o",
                color=_color(lib), label=f"{lib}, {pattern}")
    for (i, t), (j, shape) in ((a, b) for a in enumerate(threads) for b in enumerate(shapes)):
        ax = axes[i][j]
        ax.set(xscale="log", xlabel="batch", title=f"W {shape[0]}x{shape[1]}, {t} thread(s)")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.axhline(top, color="gray", ls=":", lw=0.6)
    axes[0][0].set_ylabel("break-even sparsity (%); top line: never")
    axes[0][-1].legend(fontsize=6)
    return _save(fig, out / "break_even.png")


def roofline(results: dict[str, Any], plt: Any, out: Path) -> Path | None:
    """Every sparse point of the first dtype under the ceilings measured in the run, and the
    waterfall's steps of the widest ablation workload joined in order."""
    import numpy as np

    dtype, ceilings = results["options"]["dtypes"][0], results["machine"]["ceilings"]
    W = results["workloads"]
    rs = [r for r in results["measurements"] if r.get("arithmetic_intensity")
          and W[r["workload"]]["dtype"] == dtype and not r["simd"]]
    if not rs:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    x = np.logspace(np.log10(min(r["arithmetic_intensity"] for r in rs) / 2), 2.5, 200)
    for t in dict.fromkeys([min(ceilings, key=int), max(ceilings, key=int)]):
        c = ceilings[t]
        peak = c["peak_gflops"][dtype]
        ax.plot(x, np.minimum(peak, x * c["bandwidth_gbs"]), "k", lw=1,
                ls="-" if t == min(ceilings, key=int) else "--",
                label=f"{t} thread(s): {c['bandwidth_gbs']:.0f} GB/s, {peak:.0f} GFLOP/s")
    seen = set()
    for r in rs:
        base = " ".join(r["label"].split()[:2]) if r["backend"] else r["label"]
        ax.scatter(r["arithmetic_intensity"], r["gflops"], s=10, alpha=0.6,
                   color=_color(base if base in COLORS else f"{base} prepared"),
                   label=base if base not in seen else None)
        seen.add(base)
    steps = max((row for row in results["views"]["ablation"]["workloads"]
                 if W[row["workload"]]["dtype"] == dtype), key=lambda row: W[row["workload"]]["n"],
                default=None)
    if steps:
        pts = [(s["arithmetic_intensity"], s["gflops"], s["name"]) for s in steps["steps"]
               if s["gflops"] and s["arithmetic_intensity"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color="#08306b", ms=3,
                label=f"waterfall: {name(W[steps['workload']])}")
        for i, p in enumerate(pts):
            ax.annotate(str(i + 1), p[:2], fontsize=6, xytext=(4, -2),
                        textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (useful flops / minimal "
           "bytes)", ylabel="useful GFLOP/s", title=f"Roofline ({dtype}), ceilings measured "
           "in this run")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, out / "roofline.png")


def formats(results: dict[str, Any], plt: Any, out: Path) -> Path | None:
    """spmm's default call against scipy, and against the prepared CSR, per format."""
    rows = [r for r in results["views"]["formats"] if r["spmm_seconds"]]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    order = ("csr", "csc", "coo", "bsr")
    cats = sorted({(r["kind"], r["format"]) for r in rows}, key=lambda c: (
        c[0], order.index(c[1]) if c[1] in order else len(order)))
    threads = sorted({r["threads"] for r in rows})
    for ax, (num, den, goal, title) in zip(axes, (
            ("scipy_seconds", "spmm_seconds", 1.0, "spmm's speed over scipy's (higher: faster)"),
            ("spmm_seconds", "prepared_seconds", 1.25,
             "default call's time over the prepared CSR's")), strict=True):
        for k, t in enumerate(threads):
            pts = [(cats.index((r["kind"], r["format"])) + 0.15 * k, r[num] / r[den])
                   for r in rows if r["threads"] == t and r[num] and r[den]]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=14, label=f"{t} thread(s)")
        ax.axhline(goal, color="gray", lw=0.8)
        ax.set_xticks(range(len(cats)), [f"{'X @ W' if k == 'xw' else 'A @ B'}\n{f}"
                                         for k, f in cats], fontsize=8)
        ax.set(yscale="log", title=title)
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.legend(fontsize=7)
    fig.suptitle("spmm.multiply on the scipy object a user holds (every n and dtype)")
    return _save(fig, out / "formats.png")


def write_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the run has data for; a note in ``results`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results["notes"].append("plots skipped: matplotlib is not installed")
        return []
    written: list[Path] = []
    for draw in (speedup_vs_sparsity, peers, thread_scaling, waterfall, break_even, roofline,
                 formats):
        try:
            got = draw(results, plt, out)
        finally:
            plt.close("all")
        written += got if isinstance(got, list) else [got] if got else []
    return written
