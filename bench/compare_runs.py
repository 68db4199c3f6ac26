"""Before and after: spmm's best useful GFLOP/s in two runs of ``bench/run.py``, side by side.

Run: ``python bench/compare_runs.py BEFORE/results.json AFTER/results.json [--threads 1,2]``.
Prints a Markdown table: for each workload measured in both runs (the usual call: prepared
matrix, the default partition, kernel ``auto``, the best instruction set), the fastest
spmm backend's median GFLOP/s at each thread count in each run, the ratio, and the fastest
peer of the second run for scale. Used for the before/after table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

PEERS = ("scipy", "dense", "torch", "mkl", "graphblas")


def best_rates(path: str, families: set[str]) -> tuple[dict, dict, dict]:
    """(spmm, peer, names): the best spmm and best peer GFLOP/s per (workload, threads)."""
    with open(path) as f:
        run = json.load(f)
    spmm: dict[tuple[str, int], float] = {}
    peer: dict[tuple[str, int], tuple[float, str]] = {}
    names: dict[str, str] = {}
    # The default partition's name in that run: "auto" since spmm chooses it per product,
    # "nnz" in runs made before (where "nnz" was the default and "auto" did not exist).
    default = "auto" if any(m.get("partition") == "auto" for m in run["measurements"]) else "nnz"
    for m in run["measurements"]:
        wl = m["workload"]
        if m["status"] != "ok" or not m.get("gflops") or wl["family"] not in families:
            continue
        if m.get("variant") not in (None, "call", "prepared") or m.get("simd"):
            continue  # the one-time prepare, the unprepared call, a forced instruction set
        key = (wl["id"], m["threads"])
        names[wl["id"]] = _name(wl)
        if m["library"] == "spmm":
            if m.get("kernel") == "auto" and m.get("partition") in (None, default):
                spmm[key] = max(spmm.get(key, 0.0), m["gflops"])
        elif m["library"] in PEERS and m["gflops"] > peer.get(key, (0.0, ""))[0]:
            peer[key] = (m["gflops"], m["library"])
    return spmm, peer, names


def _name(wl: dict[str, Any]) -> str:
    rows, cols = wl["shape"]
    if wl["family"] == "dnn":
        return f"dnn {rows}x{cols} {wl['pattern']} {wl['sparsity'] * 100:g}% b{wl['n']}"
    return f"{wl['family']} {rows}x{cols} {wl['pattern']} n={wl['n']} {wl['dtype']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--family", default="dnn,science")
    parser.add_argument("--only", default="", help="comma-separated substrings of workload ids")
    parser.add_argument("--threads", default="1,2", help="thread counts to show")
    args = parser.parse_args()
    families = set(args.family.split(","))
    before, _, _ = best_rates(args.before, families)
    after, peers, names = best_rates(args.after, families)
    only = [s for s in args.only.split(",") if s]
    rows: dict[str, dict[int, tuple]] = defaultdict(dict)
    for (wid, threads), rate in after.items():
        if (wid, threads) in before and (not only or any(s in wid for s in only)):
            best_peer = peers.get((wid, threads), (None, "—"))
            rows[wid][threads] = (before[(wid, threads)], rate, *best_peer)
    wanted = {int(t) for t in args.threads.split(",")}
    threads_seen = sorted({t for r in rows.values() for t in r} & wanted)
    head = ["workload"]
    for t in threads_seen:
        head += [f"{t}t before", f"{t}t after", f"{t}t after/before", f"{t}t best peer (after)"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for wid in sorted(rows, key=lambda w: names[w]):
        cells = [names[wid]]
        for t in threads_seen:
            if t not in rows[wid]:
                cells += ["—"] * 4
                continue
            b, a, p, pname = rows[wid][t]
            cells += [f"{b:.2f}", f"{a:.2f}", f"{a / b:.2f}x",
                      f"{p:.2f} ({pname})" if p else "—"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
