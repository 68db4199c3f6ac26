"""Before and after: one series' useful GFLOP/s in two runs of ``bench/run.py``, side by side.

Run: ``python bench/compare_runs.py BEFORE/results.json AFTER/results.json [--series
spmm-best] [--threads 1,2] [--only TEXT]``. Prints a Markdown table: for each workload in both
runs and each thread count, the series' GFLOP/s before and after and their ratio. A series is
a label of results.json (``spmm``, ``spmm openmp prepared``, ``mkl``) or ``spmm-best``, the
fastest spmm backend on a prepared matrix.
"""

from __future__ import annotations

import argparse
import json


def rates(path: str, series: str) -> dict[tuple[str, int], float]:
    """GFLOP/s of ``series`` by (workload id, threads)."""
    with open(path) as f:
        run = json.load(f)
    found: dict[tuple[str, int], float] = {}
    for r in run["measurements"]:
        best = (series == "spmm-best" and r["library"] == "spmm" and r["backend"]
                and r["operand"] == "prepared" and r["kernel"] == "auto"
                and not r["partition"] and not r["simd"])
        if r.get("gflops") and (best or r["label"] == series):
            key = (r["workload"], r["threads"])
            found[key] = max(found.get(key, 0.0), r["gflops"])
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--series", default="spmm-best")
    p.add_argument("--threads", default="1,2", help="thread counts to show")
    p.add_argument("--only", default="", help="comma-separated substrings of workload ids")
    args = p.parse_args()
    before, after = rates(args.before, args.series), rates(args.after, args.series)
    only = [s for s in args.only.split(",") if s]
    threads = [int(t) for t in args.threads.split(",")]
    print("| workload | " + " | ".join(f"{t}t before | {t}t after | {t}t after/before"
                                      for t in threads) + " |")
    print("|" + " --- |" * (1 + 3 * len(threads)))
    for wid in sorted({w for w, _ in after if not only or any(s in w for s in only)}):
        cells = []
        for t in threads:
            b, a = before.get((wid, t)), after.get((wid, t))
            cells += [f"{b:.2f}" if b else "—", f"{a:.2f}" if a else "—",
                      f"{a / b:.2f}x" if a and b else "—"]
        print(f"| {wid} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
