"""The terminal table and the Markdown report of a run."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from . import metrics, sections
from .defaults import DEFAULT_PARTITION
from .text import fmt as _fmt
from .text import table as _table
from .text import workload_name

# The order of the columns: baseline, dense, spmm's backends, then the peers.
SERIES_ORDER = ("scipy", "dense", "torch-dense", "spmm serial", "spmm openmp",
                "spmm threads", "torch", "mkl", "graphblas")


def _ok(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results["measurements"] if r["status"] == "ok"]


def _main_series(r: dict[str, Any], kernels: list[str]) -> bool:
    """The measurements the summary tables compare: each library's best form; for spmm the
    prepared operand, the default partition and the kernels asked for."""
    if r["library"] != "spmm":
        return r.get("variant") == "call"
    return (r["variant"] == "prepared" and r["partition"] == DEFAULT_PARTITION
            and r["kernel"] in kernels and r.get("simd") is None)


def _series_rank(name: str) -> tuple[int, str]:
    base = " ".join(name.split()[:2]) if name.startswith("spmm") else name
    return (SERIES_ORDER.index(base) if base in SERIES_ORDER else len(SERIES_ORDER), name)


def summary_rows(results: dict[str, Any], threads: int) -> tuple[list[str], list[list[str]]]:
    """GFLOP/s per workload (rows) and library (columns) at ``threads`` (scipy: 1 thread)."""
    kernels = results["options"]["kernels"]
    cells: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    order: list[str] = []
    for r in _ok(results):
        if not _main_series(r, kernels):
            continue
        if r["library"] == "scipy":
            pass  # serial: the same baseline in every table
        elif r.get("backend") == "serial":
            if threads != 1:
                continue
        elif r["threads"] != threads:
            continue
        wid = r["workload_id"]
        if wid not in cells:
            order.append(wid)
        cells[wid][r["label"]] = r
    series = sorted({name for row in cells.values() for name in row}, key=_series_rank)
    headers = ["workload", *series, "best spmm vs scipy", "best spmm vs best peer"]
    rows = []
    for wid in sorted(order, key=lambda w: list(results["workloads"]).index(w)):
        row = cells[wid]
        any_r = next(iter(row.values()))
        spmm = [r for name, r in row.items() if name.startswith("spmm")]
        peers = [r for name, r in row.items()
                 if not name.startswith("spmm") and name != "scipy"
                 and r["library"] not in metrics.DENSE_LIBRARIES]
        best = max(spmm, key=lambda r: r["gflops"]) if spmm else None
        peer = max(peers, key=lambda r: r["gflops"]) if peers else None
        line = [workload_name(any_r["workload"])]
        for name in series:
            r = row.get(name)
            mark = "*" if r is not None and r.get("disturbed") else ""
            line.append(_fmt(r["gflops"]) + mark if r else "—")
        line.append(_fmt(best["speedup_vs_scipy"]) + "x" if best and best["speedup_vs_scipy"]
                    else "—")
        line.append(f"{best['gflops'] / peer['gflops']:.2f}x ({peer['label']})"
                    if best and peer else "—")
        rows.append(line)
    return headers, rows


def _thread_counts(results: dict[str, Any]) -> list[int]:
    return sorted(set(results["options"]["threads"]))


def terminal(results: dict[str, Any]) -> str:
    """The table printed at the end of a run: useful GFLOP/s at 1 and at the most threads."""
    parts = []
    for t in _thread_counts(results)[:1] + _thread_counts(results)[-1:]:
        headers, rows = summary_rows(results, t)
        if not rows:
            continue
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        parts.append(f"\nuseful GFLOP/s (2 nnz n / s), {t} thread{'s' * (t > 1)} "
                     "(scipy: 1 thread; * = disturbed)")
        parts.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        parts += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        if t == _thread_counts(results)[-1]:
            break
    statuses = Counter(r["status"] for r in results["measurements"])
    disturbed = sum(1 for r in results["measurements"] if r.get("disturbed"))
    parts.append(f"\n{statuses['ok']} measured, {statuses['failed']} failed, "
                 f"{statuses['skipped']} skipped, {disturbed} disturbed; "
                 f"{results['duration_seconds']:.0f} s")
    for r in results["measurements"]:
        if r["status"] == "failed":
            parts.append(f"FAILED {r['label'] if 'label' in r else r['library']} "
                         f"t={r['threads']} {workload_name(r['workload'])}: {r['reason']}")
    return "\n".join(parts)


def _machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    cpu = m.get("cpu", {})
    caches = ", ".join(f"L{c['level']}{'d' if c.get('type') == 'Data' else ''}"
                       f"{'i' if c.get('type') == 'Instruction' else ''} {c['size']}"
                       f" (CPUs {c['shared_cpu_list']})"
                       for c in m.get("caches", []) if "level" in c)
    rows = [
        ["CPU", f"{cpu.get('model', '?')} (family {cpu.get('family', '?')}), "
                f"{cpu.get('mhz', '?')} MHz nominal"
                + (", virtualized" if cpu.get("virtualized") else "")],
        ["instruction sets", ", ".join(cpu.get("flags", []))],
        ["CPUs", f"{m['logical_cpus']} logical ({cpu.get('cores_per_socket', '?')} cores per "
                 f"socket); this run may use {m['cpus_used']} (affinity {m['affinity']})"],
        ["caches", caches or "unknown"],
        ["memory", f"{m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else "?"],
        ["platform", f"{m['platform']}, Python {m['python']}"],
    ]
    blas = _blas_kernel(results)
    if blas:
        rows.append(["BLAS (threadpoolctl)", blas])
    lines = ["## Machine", "", _table(["", ""], rows), ""]
    measured = m.get("measured", {})
    if measured:
        dtypes = results["options"]["dtypes"]
        first = next(iter(measured.values()))
        kernels = list(first["stream_gbs"])
        lines += ["Measured by this run (the roofline's ceilings): memory bandwidth of streaming "
                  f"kernels on float64 arrays of {first['stream_elements'] * 8 / 2**20:.0f} MiB "
                  "(STREAM's byte counts; the roofline uses the best) and numpy's dense GEMM.",
                  ""]
        headers = ["threads", *[f"{k} GB/s" for k in kernels],
                   *[f"GEMM {d} GFLOP/s" for d in dtypes], "disturbed"]
        rows = [[t, *[_fmt(c["stream_gbs"][k], 1) for k in kernels],
                 *[_fmt(c["peak_gflops"].get(d), 1) for d in dtypes],
                 "; ".join(c.get("disturbed_reasons") or []) or "no"]
                for t, c in measured.items()]
        lines += [_table(headers, rows), ""]
    return lines


def _blas_kernel(results: dict[str, Any]) -> str | None:
    for w in results["workers"]:
        for pool in w.get("threadpool_info") or []:
            if pool.get("user_api") == "blas":
                return (f"{pool.get('internal_api')} {pool.get('version')}, kernel "
                        f"{pool.get('architecture')}, {pool.get('threading_layer')} "
                        f"(worker {w['group']} t={w['threads']}: {pool.get('num_threads')} "
                        "threads)")
    return None


def _libraries_section(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, info in results["libraries"].items():
        versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
        forms = info.get("forms", {})
        rows.append([name, info["status"] + (f": {info['reason']}" if info.get("reason") else ""),
                     versions or "—", forms.get("xw", "—"), forms.get("ab", "—")])
    lines = ["## Libraries and the form each is called in", "",
             _table(["library", "status", "versions", "X @ W", "A @ B"], rows), ""]
    variants = results["libraries"].get("spmm", {}).get("variants", {})
    for name, text in variants.items():
        lines.append(f"- spmm *{name}*: {text}.")
    forms = Counter(r["form_used"] for r in _ok(results)
                    if r["library"] == "scipy" and r.get("form_used"))
    if forms:
        lines.append("- scipy's faster form for X @ W, tried on each workload: "
                     + ", ".join(f"{form} on {n}" for form, n in sorted(forms.items())) + ".")
    return [*lines, ""]


def _limits_section(results: dict[str, Any]) -> list[str]:
    ok = _ok(results)
    checked = [r for r in ok if r.get("thread_limit_ok") is not None]
    broken = [r for r in checked if not r["thread_limit_ok"]]
    lines = ["## Thread limits", "",
             f"CPU time / wall time stayed within the thread limit for "
             f"{len(checked) - len(broken)} of {len(checked)} measurements "
             "(the ratio of each is in results.json as `cpu_wall_ratio`)."]
    if broken:
        lines += ["", "Not within the limit (the library used more cores than allowed):", "",
                  _table(["library", "threads", "workload", "cpu/wall"],
                         [[r["label"], r["threads"], workload_name(r["workload"]),
                           _fmt(r["cpu_wall_ratio"])] for r in broken[:40]])]
        if len(broken) > 40:
            lines.append(f"... and {len(broken) - 40} more")
    return [*lines, ""]


def _partition_section(results: dict[str, Any]) -> list[str]:
    cells: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in _ok(results):
        if (r["library"] == "spmm" and r["variant"] == "prepared"
                and "partition" in r["workload"]["tags"] and r["backend"] != "serial"
                and r["kernel"] == "auto"):
            cells[(r["workload_id"], r["backend"], r["threads"])][r["partition"]] = r
    rows = []
    for (_, backend, threads), parts in cells.items():
        if len(parts) < 2:
            continue
        wl = next(iter(parts.values()))["workload"]
        rows.append([workload_name(wl), backend, threads,
                     *[_fmt(parts[p]["gflops"]) if p in parts else "—"
                       for p in ("rows", "nnz", "dynamic", DEFAULT_PARTITION)]])
    if not rows:
        return []
    return ["## Work partition (useful GFLOP/s)", "",
            "`rows`: equal row counts; `nnz`: equal stored entries; `dynamic`: many "
            "nnz-balanced chunks handed out on demand; `auto`: the default, `dynamic` for one "
            "dense column and `nnz` otherwise (`spmm._api.choose_partition`), measured "
            "separately.", "",
            _table(["workload", "backend", "threads", "rows", "nnz", "dynamic", "auto"], rows),
            ""]


def _scaling_section(results: dict[str, Any]) -> list[str]:
    cells: dict[tuple, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in _ok(results):
        if (r["library"] == "spmm" and r["variant"] == "prepared" and r["kernel"] == "auto"
                and r["partition"] == DEFAULT_PARTITION and "scaling" in r["workload"]["tags"]
                and r["backend"] != "serial"):
            cells[(r["workload_id"], r["backend"])][r["threads"]] = r
    counts = sorted({t for c in cells.values() for t in c})
    if len(counts) < 2:
        return []
    rows = [[workload_name(next(iter(c.values()))["workload"]), backend,
             *[_fmt(c[t]["gflops"]) + ("*" if c[t].get("disturbed") else "") if t in c else "—"
               for t in counts]]
            for (_, backend), c in cells.items()]
    cpus = results["machine"]["cpus_used"]
    return [f"## Thread scaling (useful GFLOP/s; this machine has {cpus} CPUs, more threads "
            "oversubscribe)", "",
            _table(["workload", "backend", *[f"{t} thr" for t in counts]], rows), ""]


def _break_even_section(results: dict[str, Any]) -> list[str]:
    shown = ("spmm serial", "spmm openmp", "spmm threads")
    entries = [e for e in results["break_even"] if e["family"] == "dnn"
               and (not e["library"].startswith("spmm") or e["library"] in shown)]
    if not entries:
        return []
    cells: dict[tuple, dict[str, str]] = defaultdict(dict)
    for e in entries:
        key = (tuple(e["shape"]), e["pattern"], e["batch"], e["threads"], e["dtype"])
        cells[key][e["library"]] = metrics.describe_break_even(e)
    series = sorted({e["library"] for e in entries}, key=_series_rank)
    rows = [[f"{s[0]}x{s[1]}", pattern, batch, threads, dtype,
             *[c.get(name, "—") for name in series]]
            for (s, pattern, batch, threads, dtype), c in sorted(cells.items())]
    return ["## Break-even sparsity against the dense product (DNN layers)", "",
            "The lowest measured sparsity from which each library is faster than numpy's "
            "dense product at the same thread count, and stays faster at every sparser "
            "point.", "",
            _table(["W (in x out)", "pattern", "batch", "threads", "dtype", *series], rows), ""]


def _problems_section(results: dict[str, Any]) -> list[str]:
    lines = []
    failed = [r for r in results["measurements"] if r["status"] == "failed"]
    if failed:
        lines += ["## Failures (wrong or crashed results: never timed)", "",
                  _table(["library", "threads", "workload", "reason"],
                         [[r["label"], r["threads"], workload_name(r["workload"]),
                           r["reason"].replace("|", "/")] for r in failed]), ""]
    skipped = Counter((r["label"], r["reason"]) for r in results["measurements"]
                      if r["status"] == "skipped")
    if skipped:
        lines += ["## Skipped", "",
                  _table(["library", "reason", "measurements"],
                         [[name, reason, n] for (name, reason), n in sorted(skipped.items())]),
                  ""]
    disturbed = [r for r in results["measurements"] if r.get("disturbed")]
    remeasured = sum(1 for r in results["measurements"] if r.get("remeasured"))
    lines += ["## Disturbed points", "",
              f"{remeasured} points were re-measured in a fresh process; {len(disturbed)} "
              "were still disturbed and are marked `*` in the tables."]
    if disturbed:
        lines += ["", _table(["library", "threads", "workload", "reasons"],
                             [[r["label"], r["threads"], workload_name(r["workload"]),
                               "; ".join(r["disturbed_reasons"])] for r in disturbed]), ""]
    return [*lines, ""]


def markdown(results: dict[str, Any], plot_files: list[str]) -> str:
    """The Markdown report (``report.md``), embedding the plots written beside it."""
    opts = results["options"]
    lines = [
        "# spmm benchmark report", "",
        f"`{' '.join(results['command'] or ['(in-process run)'])}` — started "
        f"{results['started']}, {results['duration_seconds'] / 60:.1f} min. Suite "
        f"`{opts['suite'] or 'matrix'}`, threads {opts['threads']}, dtypes {opts['dtypes']}, "
        f"up to {opts['repeat']} repeats (median; min and max in results.json). Useful GFLOP/s "
        "= 2 nnz n / s. Methodology: docs/benchmarks.md.", "",
    ]
    lines += _machine_section(results)
    lines += _libraries_section(results)
    if plot_files:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plot_files] + [""]
    for t in _thread_counts(results):
        headers, rows = summary_rows(results, t)
        if rows:
            lines += [f"## Useful GFLOP/s at {t} thread{'s' * (t > 1)} "
                      "(scipy: 1 thread; * = disturbed)", "", _table(headers, rows), ""]
    lines += sections.targets(results)
    lines += sections.structured(results)
    lines += sections.waterfall(results)
    lines += sections.auto_check(results)
    lines += sections.native(results)
    lines += _partition_section(results)
    lines += _scaling_section(results)
    lines += sections.prepare_payoff(results)
    lines += _break_even_section(results)
    lines += _limits_section(results)
    lines += _problems_section(results)
    if results["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    return "\n".join(lines)
