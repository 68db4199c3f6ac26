"""The report's sections on the kernel work (issue 5): the kernel ablation waterfall, the
``auto`` check, the cost and footprint of ``prepare``, the targets (issues 5 and 6), the
structured layouts (issue 6: the layout spmm used, against its CSR form, dense and PyTorch),
and the portable build against a native one. Each reads the summary :mod:`runner` stored in
``results`` and returns Markdown lines (none when the run has nothing for it)."""

from __future__ import annotations

from typing import Any

from .defaults import DEFAULT_PARTITION
from .text import fmt, ms, table, workload_name


def _nbytes(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "—"


def waterfall(results: dict[str, Any]) -> list[str]:
    """The ablation steps: one table per drawn workload, one line per ablation workload."""
    summary = results.get("ablation") or {}
    rows = summary.get("workloads") or []
    if not rows:
        return []
    steps = summary["steps"]
    lines = [f"## Kernel ablation waterfall ({summary['backend']} backend, 1 thread, useful "
             "GFLOP/s)", "",
             "Each step changes one thing; steps before *prepared* multiply the scipy CSR "
             "matrix itself, so for X @ W they pay the conversion to Wᵀ's CSR on every call. "
             "The instruction set is forced with `SPMM_SIMD` around each measurement.", ""]
    lines += [f"- **{s['name']}**: kernel `{s['kernel']}`, `SPMM_SIMD={s['simd']}`, "
              f"{s['variant']} — {s['meaning']}." for s in steps]
    lines.append("")
    for wid in summary.get("shown", {}).values():
        row = next(r for r in rows if r["workload_id"] == wid)
        table_rows = []
        for step, got in zip(steps, row["steps"], strict=True):
            if got["status"] != "ok":
                table_rows.append([step["name"], step["kernel"], step["simd"], step["variant"],
                                   f"{got['status']}: {got.get('reason')}", "—", "—", "—"])
                continue
            table_rows.append([step["name"], step["kernel"], step["simd"], step["variant"],
                               fmt(got["gflops"]) + ("*" if got.get("disturbed") else ""),
                               ms(got["median"]), _ratio(got["ratio_to_previous"]),
                               _ratio(got["ratio_to_first"])])
        lines += [f"### {workload_name(row['workload'])}", "",
                  table(["step", "kernel", "SPMM_SIMD", "operand", "GFLOP/s", "ms",
                         "x previous step", "x naive"], table_rows), ""]
    lines += ["All ablation workloads (GFLOP/s, and in brackets the factor over the previous "
              "step):", ""]
    compact = []
    for row in rows:
        cells = []
        for got in row["steps"]:
            if got["status"] != "ok":
                cells.append(got["status"])
            elif got["ratio_to_previous"] is None:
                cells.append(fmt(got["gflops"]))
            else:
                cells.append(f"{fmt(got['gflops'])} ({got['ratio_to_previous']:.2f}x)")
        compact.append([workload_name(row["workload"]), *cells])
    lines += [table(["workload", *[s["name"] for s in steps]], compact), ""]
    return lines


def auto_check(results: dict[str, Any]) -> list[str]:
    """``auto`` against each explicit kernel, per workload, with the flagged ones."""
    summary = results.get("auto_check") or {}
    rows = summary.get("rows") or []
    if not rows:
        return []
    limit = (summary["tolerance"] - 1) * 100
    flagged = summary["flagged"]
    worst = next((r for r in rows if r["workload_id"] == summary["worst"]), None)
    skipped = sum(1 for r in rows if "naive" in r["not_measured"])
    lines = [f"## `auto` against the fastest kernel ({summary['backend']} backend, 1 thread, "
             f"prepared, `SPMM_SIMD={summary['simd']}`)", "",
             f"`auto` / fastest = `auto`'s median time over the fastest explicit kernel's; "
             f"flagged (**!**) above {summary['tolerance']:.2f} (more than {limit:.0f} % "
             "slower). The *min* column compares the fastest samples instead: when it is near 1 "
             "while the median ratio is not, the difference is noise, not the choice. "
             "`auto_check.csv` beside this report has the same rows for fitting a rule.", ""]
    if worst is not None:
        lines.append(f"Worst case: {workload_name(_wl(results, worst))}, `auto` "
                     f"{worst['auto_over_fastest']:.2f}x the fastest ({worst['fastest']}); "
                     f"{len(flagged)} of {len(rows)} workloads flagged.")
    rechecked = sum(1 for r in rows if r.get("rechecked"))
    if rechecked:
        were = "workloads flagged on the first pass were" if rechecked != 1 else (
            "workload flagged on the first pass was")
        lines.append(f"{rechecked} {were} re-checked: `auto` and the fastest kernel measured "
                     "again, back to back in a fresh process; the table shows the second "
                     "figures (the first are in results.json as `auto_check_first`).")
    if skipped:
        lines.append(f"`naive` was skipped, not measured, on {skipped} workload"
                     f"{'s' * (skipped != 1)} (wide and "
                     "long products where it is several times slower than tiled; the reason "
                     "is in results.json).")
    lines.append("")
    table_rows = []
    for r in rows:
        def cell(name: str, r: dict[str, Any] = r) -> str:
            if name in r["times"]:
                return ms(r["times"][name])
            return "skipped" if "skipped" in r["not_measured"].get(name, "") else "—"
        table_rows.append([
            workload_name(_wl(results, r)), f"{r['shape'][0]}x{r['shape'][1]}",
            f"{r['density'] * 100:.3g} %", r["n"], r["dtype"],
            f"{cell('auto')} ({r['chose'] or '?'})", cell("naive"), cell("reordered"),
            cell("tiled"), r["fastest"] or "—",
            (_ratio(r["auto_over_fastest"]) + (" **!**" if r["flagged"] else "")),
            _ratio(r["auto_over_fastest_min"])])
    lines += [table(["workload", "shape", "density", "n", "dtype", "auto ms (chose)",
                     "naive ms", "reordered ms", "tiled ms", "fastest", "auto / fastest",
                     "min"], table_rows), ""]
    return lines


def _wl(results: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    return results["workloads"].get(row["workload_id"]) or {**row, "family": row["suite"],
                                                            "sparsity": 1 - row["density"]}


def prepare_payoff(results: dict[str, Any]) -> list[str]:
    """prepare's cost, the per-call saving, the calls to pay off and the bytes held."""
    rows = (results.get("prepare_payoff") or {}).get("rows") or []
    if not rows:
        return []
    table_rows = []
    for r in rows:
        if r["pays_off"] is None:
            calls = "—"
        else:
            calls = f"{r['calls_to_pay_off']:.1f}" if r["pays_off"] else "never"
        table_rows.append([workload_name(r["workload"]), f"{r['backend']} {r['threads']}t",
                           ms(r["prepare_seconds"]), ms(r["unprepared_seconds"]),
                           ms(r["prepared_seconds"]), calls, _nbytes(r["prepared_nbytes"]),
                           _nbytes(r["csr_nbytes"]), _nbytes(r["dense_nbytes"])])
    return ["## spmm.prepare: cost, payoff and footprint (milliseconds)", "",
            "Calls to pay off = prepare / (unprepared call - prepared call), on the same "
            "backend and thread count; *never* when the prepared call was not faster. "
            "Bytes: `PreparedMatrix.nbytes` (every form it holds; for X @ W also Wᵀ's CSR) "
            "against the scipy CSR matrix and the dense matrix.", "",
            table(["workload", "backend", "prepare", "unprepared call", "prepared call",
                   "calls to pay off", "prepared bytes", "scipy CSR bytes", "dense bytes"],
                  table_rows), ""]


def _measured(row: dict[str, Any]) -> str:
    if row["status"] != "measured":
        return "not measured"
    if row.get("display"):
        return row["display"]
    value = row["measured"]
    if row["unit"] == "x":
        return f"{value:.2f}x"
    return f"{value * 100:.1f} %"


def _goal(row: dict[str, Any]) -> str:
    op = "≥" if row["op"] == ">=" else "≤"
    return f"{op} {row['goal']:g}x" if row["unit"] == "x" else f"{op} {row['goal'] * 100:g} %"


def targets(results: dict[str, Any]) -> list[str]:
    """Every target as measured / target, pass or miss, from this run."""
    summary = results.get("targets") or {}
    rows = summary.get("rows") or []
    if not rows:
        return []
    defs = summary["definitions"]
    table_rows = []
    for r in rows:
        verdict = {True: "pass", False: "**miss**", None: "—"}[r["pass"]]
        count = f"{r['passing']}/{r['workloads']}" if r["passing"] is not None else "—"
        notes = "; ".join(t for t in (r.get("reason") if r["status"] != "measured" else "",
                                      r.get("note")) if t)
        table_rows.append([f"{r.get('issue', 5)}.{r['item']}", r["target"], r["threads"],
                           _measured(r), _goal(r), verdict, count, r["worst"] or "—",
                           notes.replace("|", "/")])
    counts = {v: sum(1 for r in rows if r["pass"] is v) for v in (True, False, None)}
    csr = f"; spmm CSR = {defs['spmm_csr']}" if "spmm_csr" in defs else ""
    return ["## Targets (measured / target, from this run)", "",
            "Item *5.8* is issue 5's item 8, *6.3* issue 6's item 3, and so on. "
            f"spmm = {defs['spmm']}{csr}; peer = {defs['peer']}; dense = {defs['dense']}. Each "
            "row's *measured* is its worst workload; *passing* counts the workloads that meet "
            "the target. A target whose peer was skipped is *not measured*, never passed.", "",
            f"{counts[True]} pass, {counts[False]} miss, {counts[None]} not measured.", "",
            table(["item", "target", "threads", "measured", "target", "", "passing",
                   "worst workload", "notes"], table_rows), ""]


def _structured_workload(wl: dict[str, Any]) -> bool:
    return wl["family"] == "structured" or "layout" in wl["tags"]


def structured(results: dict[str, Any]) -> list[str]:
    """The structured weights: the layout spmm used, its GFLOP/s against its CSR form, and
    the dense and PyTorch products, per workload and thread count."""
    threads = sorted(set(results["options"]["threads"]))
    cells: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for r in results["measurements"]:
        if r["status"] != "ok" or not r.get("gflops") or not _structured_workload(r["workload"]):
            continue
        if r["library"] == "spmm":
            if (r["variant"] != "prepared" or r["partition"] != DEFAULT_PARTITION or r.get("simd")
                    or r["kernel"] not in ("auto", "tiled")):
                continue
            name = "spmm" if r["kernel"] == "auto" else "spmm CSR"
            counts = [1] if r["backend"] == "serial" else [r["threads"]]
        elif r.get("variant") == "call":
            name = r["library"]
            counts = threads if name == "scipy" else [r["threads"]]
        else:
            continue
        for t in counts:
            cell = cells.setdefault((t, r["workload_id"]), {})
            if name not in cell or r["gflops"] > cell[name]["gflops"]:
                cell[name] = r  # spmm: its fastest backend at the thread count
    order = list(results["workloads"])
    shown = ("spmm CSR", "dense", "torch", "torch-dense")
    table_rows = []
    for (t, _), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
        spmm = cell.get("spmm")
        if spmm is None:
            continue
        block = spmm.get("block_used")
        layout = (spmm.get("layout_used") or "csr") + (f" {block[0]}x{block[1]}" if block
                                                        else "")
        csr, dense = cell.get("spmm CSR"), cell.get("dense")
        table_rows.append([
            workload_name(spmm["workload"]), t, layout,
            f"{fmt(spmm['gflops'])} ({spmm['backend']})",
            *[fmt(cell[name]["gflops"]) if name in cell else "—" for name in shown],
            _ratio(spmm["gflops"] / csr["gflops"]) if csr else "—",
            _ratio(spmm["gflops"] / dense["gflops"]) if dense else "—"])
    if not table_rows:
        return []
    return ["## Structured weights: spmm's layout against its CSR form, dense and PyTorch "
            "(useful GFLOP/s)", "",
            "*layout*: the form `spmm.prepare` (layout auto) chose and the `auto` call ran, "
            "with its unit (rows x columns); *spmm*: that call on its fastest backend at the "
            "thread count; *spmm CSR*: the same matrix with `kernel=\"tiled\"` (the CSR "
            "form); *torch*: `torch.sparse.mm`'s kernel on Wᵀ; *torch-dense*: "
            "`nn.Linear` (`F.linear`) on the dense weights; *dense*: numpy's BLAS.", "",
            table(["workload", "threads", "layout", "spmm", "spmm CSR", "dense", "torch",
                   "torch-dense", "spmm / CSR", "spmm / dense"], table_rows), ""]


def native(results: dict[str, Any]) -> list[str]:
    """The portable build against one compiled with ``-march=native``."""
    summary = results.get("native_build")
    if not summary:
        return []
    if summary.get("error"):
        return ["## Portable build vs -march=native", "",
                f"Not measured: {summary['error']}", ""]
    table_rows = [[r["name"], ms(r["portable_seconds"]), ms(r["native_seconds"]),
                   f"{r['ratio']:.3f}", f"{r['noise']:.3f}" if "noise" in r else "-",
                   "pass" if r["ratio"] >= summary["goal"] else "**miss**"]
                  for r in summary["rows"]]
    method = summary.get("method", "each timed in its own process")
    return ["## Portable build vs -march=native", "",
            f"Both built from this source tree ({summary['extra_args']!r} added to the native "
            f"one), {method}, {summary['rounds']} interleaved rounds, medians; "
            f"{summary['threads']} thread(s), backend {summary['backend']}. Ratio = native time"
            f" / portable time (the portable build's share of native speed; target ≥ "
            f"{summary['goal']}). A/A = a second copy of the portable build timed the same way"
            " against the first: the measurement's own noise.", "",
            table(["workload", "portable ms", "native ms", "portable / native speed", "A/A",
                   ""], table_rows), ""]
