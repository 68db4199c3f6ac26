"""The outputs of a run: results.json, report.md, auto_check.csv and the table printed at the
end. Every table is a pivot of the measurements or of a view."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import goals, views

ORDER = ("scipy", "dense", "torch-dense", "spmm", "spmm prepared", "spmm serial prepared",
         "spmm openmp prepared", "spmm threads prepared", "torch", "mkl", "graphblas")


def name(wl: dict[str, Any]) -> str:
    """``dnn 1024x4096 uniform 90% b64``, ``science 131072x131072 powerlaw n=8 f64 csc``."""
    head = (wl["path"].rsplit("/", 1)[-1] if wl["family"] == "file" else
            f"{wl['family']} {wl['shape'][0]}x{wl['shape'][1]} {wl['pattern']}")
    width = f"b{wl['n']}" if wl["kind"] == "xw" else f"n={wl['n']}"
    if wl["family"] not in ("science", "file"):
        width = f"{wl['sparsity'] * 100:g}% {width}"
    return " ".join([head, width] + ["f64"] * (wl["dtype"] == "float64")
                    + [wl["format"]] * bool(wl["format"]))


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.3g}"


def nbytes(n: int | None) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n is not None and n >= size:
            return f"{n / size:.3g} {unit}"
    return "—" if n is None else f"{n} B"


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
                     + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |"
                        for r in rows])


def pivot(records: list[dict[str, Any]], row: Callable[[dict], tuple],
          col: Callable[[dict], Any], cell: Callable[[dict], str]) -> tuple[list, list]:
    """The columns and rows of a pivot: ``row(r)`` names a row (a tuple of cells), ``col(r)``
    a column, ``cell(r)`` what is shown; a missing cell is a dash."""
    cells: dict[tuple, dict[Any, dict]] = defaultdict(dict)
    for r in records:
        cells[row(r)][col(r)] = r
    cols = sorted({c for cs in cells.values() for c in cs}, key=lambda c: (
        (ORDER.index(c) if c in ORDER else len(ORDER), c) if isinstance(c, str) else (0, c)))
    return cols, [[*k, *(cell(cs[c]) if c in cs else "—" for c in cols)]
                  for k, cs in cells.items()]


def _gflops(r: dict[str, Any]) -> str:
    return fmt(r.get("gflops")) + "*" * bool(r.get("disturbed"))


def summary(results: dict[str, Any], threads: int) -> tuple[list[str], list[list[Any]]]:
    """Useful GFLOP/s per workload and main series at ``threads`` (scipy and the serial
    backend at one), with the best spmm series against scipy and the best sparse peer."""
    W = results["workloads"]
    shown = [r for r in results["measurements"] if r.get("gflops") and views.main_series(r)
             and (r["threads"] == threads or r["library"] == "scipy")
             and views.compared(W[r["workload"]])]
    cols, rows = pivot(shown, lambda r: (r["workload"],), lambda r: r["label"], _gflops)
    by = {(r["workload"], r["label"]): r for r in shown}
    for line in rows:
        got = [by[(line[0], c)] for c in cols if (line[0], c) in by]
        best = max((r for r in got if r["library"] == "spmm"), key=lambda r: r["gflops"],
                   default=None)
        peer = max((r for r in got if r["library"] not in ("spmm", "scipy",
                                                           *views.DENSE_LIBRARIES)),
                   key=lambda r: r["gflops"], default=None)
        line[0] = name(W[line[0]])
        line += [ratio(best and best["speedup_vs_scipy"]), f"{best['gflops'] / peer['gflops']:.2f}x"
                 f" ({peer['label']})" if best and peer else "—"]
    return ["workload", *cols, "best spmm / scipy", "best spmm / best peer"], rows


def terminal(results: dict[str, Any]) -> str:
    """The tables printed at the end of a run, and its counts."""
    threads, parts = sorted(set(results["options"]["threads"])), []
    for t in dict.fromkeys([threads[0], threads[-1]]):
        headers, rows = summary(results, t)
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
        parts += [f"\nuseful GFLOP/s (2 nnz n / s), {t} thread(s) (scipy: 1; * disturbed)"] + [
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
            for r in [headers, *rows]] * bool(rows)
    status = Counter(r["status"] for r in results["measurements"])
    met = Counter(r["status"] for r in results["goals"]["rows"]
                  if r["reason"] != goals.ABSENT)
    parts.append(f"\n{status['ok']} measured, {status['failed']} failed, {status['skipped']} "
                 f"skipped, {sum(r['disturbed'] for r in results['measurements'])} disturbed; "
                 f"goals: {met['met']} met, {met['missed']} missed, {met['not measured']} not "
                 f"measured; {len(results['views']['formats'])} formats rows; "
                 f"{results['duration_seconds']:.0f} s")
    return "\n".join(parts + [f"FAILED {r['label']} t={r['threads']} {r['workload']}: "
                              f"{r['reason']}" for r in results["measurements"]
                              if r["status"] == "failed"])


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    dtypes = list(next(iter(m["ceilings"].values()))["peak_gflops"])
    facts = [line.split(":", 1) for line in m["lscpu"].splitlines() if line.startswith((
        "Model name", "CPU(s)", "L1d", "L2", "L3", "Hypervisor")) and ":" in line]
    facts += [["memory", f"{(m['memory_bytes'] or 0) / 2**30:.1f} GiB"],
              ["this run's CPUs", f"{m['cpus_used']} (affinity {m['affinity']})"],
              ["platform", f"{m['platform']}, Python {m['python']}"],
              *(["BLAS", f"{b['internal_api']} {b['version']}, {b['architecture']}"]
                for b in m["blas"])]
    spmm = results.get("spmm")
    if spmm:
        facts.append(["spmm", f"{spmm['version']}, SIMD levels {spmm['build']['simd_levels']}, "
                              f"compile args {spmm['build']['compile_args']!r}; explain "
                              f"{'recorded' if results['spmm_explain'] else 'not available'}"])
    rows = [[t, *(f"{fmt(c['peak_gflops'][d], 1)} (n={c['gemm'][d]['n']})" for d in dtypes),
             fmt(c["bandwidth_gbs"], 1), f"{c['stream_bytes'] / 2**20:.0f} MiB"
             + " (capped)" * c["stream_capped"], "re-measured" * bool(c.get("remeasured"))]
            for t, c in m["ceilings"].items()]
    return ["## Machine", "", table(["", ""], [[k.strip(), v.strip()] for k, v in facts]), "",
            "The roofline's ceilings, measured by this run at each thread count: numpy's GEMM "
            "(best of 5 at size n) and a streaming sum over at least four times the last-level "
            f"cache ({m['llc_bytes'] / 2**20:.0f} MiB). `lscpu` in full is in results.json.",
            "", table(["threads", *(f"GEMM {d} GFLOP/s" for d in dtypes), "read GB/s", "array",
                       ""], rows), ""]


def _goals(results: dict[str, Any]) -> list[str]:
    W, absent = results["workloads"], goals.ABSENT
    rows = [r for r in results["goals"]["rows"] if r["reason"] != absent]
    elsewhere = sorted({r["name"] for r in results["goals"]["rows"] if r["reason"] == absent}
                       - {r["name"] for r in rows})
    if not rows:
        return []
    count = Counter(r["status"] for r in rows)
    body = [[r["name"] + "".join(f", {k} {v}" for k, v in r["group"].items()), r["threads"],
             ratio(r["measured"]) + " (median)" * (r["aggregate"] == "median"),
             " and ".join(f"{op} {v:g}" for op, v in (("≥", r["at_least"]), ("≤", r["at_most"]))
                          if v is not None),
             "**missed**" if r["status"] == "missed" else r["status"],
             f"{r['passing']}/{r['workloads']}" if r["workloads"] else "—",
             name(W[r["worst"]]) if r["worst"] else "—", r["reason"] or ""] for r in rows]
    aliases = "; ".join(f"`{k}` = the fastest of {', '.join(v['fastest'])}"
                        for k, v in results["goals"]["series"].items())
    described = dict.fromkeys(f"**{r['name']}**: {r['description']}" for r in rows)
    return ["## Goals", "", f"From `{results['goals']['file']}`. A goal's value is the "
            "numerator's speed over the denominator's on each workload; *measured* is the worst "
            f"workload's (or the median). {aliases}.", "",
            f"{count['met']} met, {count['missed']} missed, {count['not measured']} not "
            "measured. Without a workload in this run: " + (", ".join(elsewhere) or "none")
            + ".", "", table(["goal", "threads", "measured", "target", "", "passing",
                                    "worst workload", "notes"], body), "",
            *(f"- {d}." for d in described), ""]


def _formats(results: dict[str, Any]) -> list[str]:
    def over(a: float | None, b: float | None) -> str:
        return ratio(a / b) if a and b else "—"

    body = [[name(results["workloads"][r["workload"]]), r["threads"], ms(r["scipy_seconds"]),
             ms(r["spmm_seconds"]), ms(r["prepared_seconds"]),
             over(r["scipy_seconds"], r["spmm_seconds"]),
             over(r["spmm_seconds"], r["prepared_seconds"]),
             f"{r['best_peer']} {ms(r['best_peer_seconds'])}" if r["best_peer"] else "—",
             f"{r['kernel'] or '?'}" + f": {r['reason']}" * bool(r["reason"])
             + " *" * r["disturbed"]] for r in results["views"]["formats"]]
    return ["## Formats: spmm's default call on the scipy object", "",
            "*spmm*: `spmm.multiply(a, b)` on the very object, in its format; *prepared*: the "
            "default call on `spmm.prepare(a, layout=\"csr\")`; *scipy*: `a @ b` on the object "
            "(one thread). Milliseconds; *kernel* is what `spmm.explain` said the call runs (? "
            "where spmm has no `explain`); * a disturbed point.", "",
            table(["workload", "threads", "scipy", "spmm", "prepared", "spmm / scipy speed",
                   "spmm / prepared time", "fastest other", "kernel: reason"], body),
            ""] if body else []


def _kernels(results: dict[str, Any]) -> list[str]:
    W, lines = results["workloads"], []
    ab, check, payoff = (results["views"][k] for k in ("ablation", "auto_check",
                                                       "prepare_payoff"))
    if ab["workloads"]:
        def step(s: dict[str, Any]) -> str:
            if not s["gflops"]:
                return s["status"]
            factor = f" ({s['ratio_to_previous']:.2f}x)" if s["ratio_to_previous"] else ""
            return fmt(s["gflops"]) + factor + "*" * s["disturbed"]

        body = [[name(W[row["workload"]]), *map(step, row["steps"])] for row in ab["workloads"]]
        lines += [f"## Kernel ablation waterfall ({ab['backend']}, 1 thread, useful GFLOP/s "
                  "and the factor over the previous step)", "",
                  *(f"- **{s['name']}**: kernel `{s['kernel']}`, `SPMM_SIMD={s['simd']}`, on "
                    f"the {'scipy object' if s['operand'] == 'given' else 'prepared matrix'}:"
                    f" {s['meaning']}." for s in ab["steps"]), "",
                  table(["workload", *(s["name"] for s in ab["steps"])], body), ""]
    if check:
        body = [[name(W[r["workload"]]), f"{ms(r['times'].get('auto'))} ({r['chose'] or '?'})",
                 *(ms(r["times"][k]) if k in r["times"] else "skipped" if k in r[
                     "not_measured"] else "—" for k in ("naive", "reordered", "tiled")),
                 r["fastest"] or "—", ratio(r["ratio"]) + " **!**" * r["flagged"],
                 ratio(r["ratio_min"])] for r in check]
        lines += ["## `auto` against every kernel (1 thread, prepared, milliseconds)", "",
                  f"**!**: `auto` more than {views.AUTO_TOLERANCE:.2f}x the fastest explicit "
                  "kernel's median (such a pair is measured again in a fresh process); *min* "
                  "compares the fastest samples: near 1 there, the gap is noise. "
                  f"{sum(r['flagged'] for r in check)} of {len(check)} flagged.", "",
                  table(["workload", "auto (chose)", "naive", "reordered", "tiled", "fastest",
                         "auto / fastest", "min"], body), ""]
    if payoff:
        body = [[name(W[r["workload"]]), r["threads"], r["layout"], ms(r["prepare_seconds"]),
                 ms(r["unprepared_seconds"]), ms(r["prepared_seconds"]),
                 fmt(r["calls_to_pay_off"], 1) if r["calls_to_pay_off"] else
                 "never" if r["pays_off"] is False else "—",
                 *(nbytes(r.get(k)) for k in ("prepared", "scipy_csr", "dense"))]
                for r in payoff]
        lines += ["## `spmm.prepare`: cost, payoff, footprint (milliseconds)", "",
                  "Calls to pay off = prepare / (the default call on the scipy object - the "
                  "default call on the prepared matrix), at the same thread count.", "",
                  table(["workload", "threads", "layout", "prepare", "call", "prepared call",
                         "calls to pay off", "prepared", "scipy CSR", "dense"], body), ""]
    return lines


def _pivots(results: dict[str, Any]) -> list[str]:
    W, top = results["workloads"], max(results["options"]["threads"])
    ok = [r for r in results["measurements"] if r.get("gflops")]
    spmm = [r for r in ok if r["backend"] in ("openmp", "threads") and r["kernel"] == "auto"
            and r["operand"] == "prepared" and not r["simd"]]
    layout = [r for r in ok if "layout" in W[r["workload"]]["series"]
              and (views.main_series(r) or "tiled prep" in r["label"])]
    lines = []
    for title, heads, records, row, col in (
            ("Work partition (useful GFLOP/s)", ["workload", "backend", "threads"],
             [r for r in spmm if "partition" in W[r["workload"]]["series"] and r["threads"] == top],
             lambda r: (name(W[r["workload"]]), r["backend"], r["threads"]),
             lambda r: r["partition"] or "auto"),
            ("Thread scaling (useful GFLOP/s; beyond the CPUs: oversubscribed)",
             ["workload", "backend"],
             [r for r in spmm if "scaling" in W[r["workload"]]["series"] and not r["partition"]],
             lambda r: (name(W[r["workload"]]), r["backend"]), lambda r: r["threads"]),
            ("Structured weights: spmm's layout [in brackets] against its CSR form `tiled` "
             "(useful GFLOP/s)", ["workload", "threads"], layout,
             lambda r: (name(W[r["workload"]]), r["threads"]), lambda r: r["label"])):
        cols, body = pivot(records, row, col, lambda r: _gflops(r) + (
            f" [{r['layout_used']}]" if r.get("layout_used") not in (None, "csr") else ""))
        if len(cols) > 1:
            lines += [f"## {title}", "", table([*heads, *map(str, cols)], body), ""]
    entries = [e for e in results["views"]["break_even"] if len(e["sparsities"]) > 1]
    if entries:
        cols, body = pivot(
            entries, lambda e: (f"{e['family']} {e['shape'][0]}x{e['shape'][1]}", e["pattern"],
                                e["batch"], e["threads"], e["dtype"]), lambda e: e["library"],
            lambda e: f"> {e['sparsities'][-1]:.0%}" if e["break_even_sparsity"] is None else
            f"{'<=' if e['at_or_below'] else 'from'} {e['break_even_sparsity']:.0%}")
        lines += ["## Break-even sparsity against the dense product", "",
                  "The lowest measured sparsity from which each library beats numpy's dense "
                  "product at the same thread count, there and at every sparser point.", "",
                  table(["layer", "pattern", "batch", "threads", "dtype", *cols], body), ""]
    return lines


def _problems(results: dict[str, Any]) -> list[str]:
    W, ms_ = results["workloads"], results["measurements"]
    checked = [r for r in ms_ if r.get("thread_limit_ok") is not None]
    lines = ["## Thread limits, failures, skips, disturbed points", "",
             f"CPU time / wall time stayed within the thread limit on "
             f"{sum(r['thread_limit_ok'] for r in checked)} of {len(checked)} points; "
             f"{sum(bool(r.get('first_attempt')) for r in ms_)} points were measured again in a "
             "fresh process."]
    for title, rows in (
            ("Above the thread limit", [[r["label"], r["threads"], name(W[r["workload"]]),
                                         fmt(r["cpu_wall_ratio"])]
                                        for r in checked if not r["thread_limit_ok"]]),
            ("Failed (a wrong or crashed result: never timed)", [
                [r["label"], r["threads"], name(W[r["workload"]]), r["reason"]]
                for r in ms_ if r["status"] == "failed"]),
            ("Skipped", [[label, "", f"{n} points", why] for (label, why), n in sorted(Counter(
                (r["label"], r["reason"]) for r in ms_ if r["status"] == "skipped").items())]),
            ("Still disturbed (* in the tables)", [
                [r["label"], r["threads"], name(W[r["workload"]]),
                 "; ".join(r["disturbed_reasons"])] for r in ms_ if r["disturbed"]])):
        if rows:
            lines += ["", f"{title}:", "", table(["series", "threads", "workload", ""], rows)]
    return [*lines, ""]


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    """``report.md``, embedding the plots written beside it."""
    o = results["options"]
    libs = [[n, i["status"] + f": {i['reason']}" * bool(i["reason"]), i["forms"].get("xw", "—"),
             i["forms"].get("ab", "—")] for n, i in results["libraries"].items()]
    lines = ["# spmm benchmark report", "",
             f"`{' '.join(results['command'] or ['(in-process run)'])}`: started "
             f"{results['started']}, {results['duration_seconds'] / 60:.1f} min. Suite "
             f"`{o['suite'] or 'matrix'}`, threads {o['threads']}, dtypes {o['dtypes']}, "
             f"{o['rounds']} rounds, up to {o['repeat']} samples per point (median). Useful "
             "GFLOP/s = 2 nnz n / s. How to read this: docs/benchmarks.md.", "",
             *_machine(results), "## Libraries and the form each is called in", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in results["machine"][
                 "versions"].items() if v) + ".", "",
             table(["library", "status", "X @ W", "A @ B"], libs), "",
             *(["## Plots", "", *(f"![{p}]({p})" for p in plots), ""] if plots else []),
             *_goals(results)]
    for t in sorted(set(o["threads"])):
        headers, rows = summary(results, t)
        lines += [f"## Useful GFLOP/s at {t} thread(s) (scipy: 1; * disturbed)", "",
                  table(headers, rows), ""] * bool(rows)
    lines += _formats(results) + _kernels(results) + _pivots(results)
    if results.get("native_build"):
        from native_build import format_table

        lines += ["## Portable build against -march=native", "", "```",
                  format_table(results["native_build"]), "```", ""]
    return "\n".join(lines + _problems(results) + ["## Notes", "", *(
        f"- {n}" for n in results["notes"]), ""] * bool(results["notes"]))


def dump_json(results: dict[str, Any]) -> str:
    """``results`` as JSON, floats to 6 significant digits, one line per measurement."""
    def rounded(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.6g}")
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return [rounded(x) for x in v] if isinstance(v, (list, tuple)) else v

    results = rounded(results)
    head = json.dumps({k: v for k, v in results.items() if k != "measurements"}, indent=1,
                      default=str)
    rows = ",\n  ".join(json.dumps(r, default=str) for r in results["measurements"])
    return head[:-2] + f',\n "measurements": [\n  {rows}\n ]\n}}\n'


def auto_check_csv(results: dict[str, Any]) -> str:
    """The ``auto`` check, one row per workload, times in seconds (for fitting the rule)."""
    kernels, buffer = ("auto", "naive", "reordered", "tiled"), io.StringIO()
    out = csv.writer(buffer)
    out.writerow(["workload", "kind", "rows", "cols", "pattern", "nnz", "n", "dtype", "simd",
                  *(f"{k}_s" for k in kernels), "chose", "fastest", "auto_over_fastest"])
    for r in results["views"]["auto_check"]:
        wl = results["workloads"][r["workload"]]
        out.writerow([r["workload"], wl["kind"], *wl["shape"], wl["pattern"], wl["nnz"],
                      wl["n"], wl["dtype"], r["simd"] or "default",
                      *(f"{r['times'][k]:.6g}" if k in r["times"] else "" for k in kernels),
                      r["chose"] or "", r["fastest"] or "", f"{r['ratio'] or 0:.4f}"])
    return buffer.getvalue()


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """Every output into ``out``; returns the files written."""
    from . import plots

    out.mkdir(parents=True, exist_ok=True)
    pngs = plots.write_all(results, out)
    files = {"results.json": dump_json(results),
             "report.md": markdown(results, [p.name for p in pngs])}
    if results["views"]["auto_check"]:
        files["auto_check.csv"] = auto_check_csv(results)
    for file, text in files.items():
        (out / file).write_text(text)
    return [*(out / f for f in files), *pngs]
