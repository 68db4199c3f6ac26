"""Rules that flag a disturbed measurement, and the check that each thread limit held.

CPU time / wall time far from the thread count is a disturbance on either side: below one
busy core the process was starved; above the thread count the library (or something left
spinning) used more cores than allowed. A ratio between one and the thread count is not
flagged: libraries legitimately run small products on fewer threads than they may use.

A disturbed point is re-measured once in a fresh process; if it is still disturbed it is kept
and marked as such (``disturbed: true`` with the reasons), never silently. The thresholds are
wide on purpose: they must catch a core taken by another process or by spinning threads (2x
to 10x on the 2-core VM, MEASURED.md), not ordinary noise.
"""

from __future__ import annotations

from typing import Any

# Below one busy core the process was waiting for the CPU (another process had it).
MIN_CPU_WALL = 0.75
# Most samples slower than the fastest by this factor: the median itself is contaminated.
MAX_MEDIAN_OVER_MIN = 1.3
# More threads (all within the CPUs available) slower than fewer by this factor...
MAX_SLOWDOWN_WITH_MORE_THREADS = 1.5
# ... for calls long enough that a parallel region's fixed cost (microseconds) cannot explain it.
MIN_SECONDS_FOR_SLOWDOWN = 2e-4
# CPU/wall may exceed the thread count by this much (the calling thread's Python work while
# the workers still spin) before the limit counts as not obeyed.
LIMIT_SLACK = 0.15


def config_key(record: dict[str, Any]) -> tuple:
    """Everything that identifies a measurement except its thread count."""
    return (record["workload_id"], record["library"], record.get("backend"),
            record.get("kernel"), record.get("partition"), record.get("variant"),
            record.get("simd"))


def thread_limit_ok(record: dict[str, Any]) -> bool | None:
    """Whether CPU time / wall time stayed within the thread limit (None: not measured)."""
    ratio = record.get("cpu_wall_ratio")
    if ratio is None:
        return None
    return ratio <= record["threads"] * (1 + LIMIT_SLACK) + LIMIT_SLACK


def record_reasons(record: dict[str, Any]) -> list[str]:
    """Reasons found in the measurement alone."""
    reasons = []
    ratio = record.get("cpu_wall_ratio")
    if ratio is not None and ratio < MIN_CPU_WALL:
        reasons.append(f"cpu/wall {ratio:.2f} < {MIN_CPU_WALL}: the process did not get a "
                       "whole core (another process had it)")
    if thread_limit_ok(record) is False:
        reasons.append(f"cpu/wall {ratio:.2f} above the limit of {record['threads']} "
                       f"thread{'s' * (record['threads'] > 1)}: more cores were busy than "
                       "allowed")
    if len(record.get("samples") or ()) >= 3 and record["min"] > 0:
        spread = record["median"] / record["min"]
        if spread > MAX_MEDIAN_OVER_MIN:
            reasons.append(f"median {spread:.2f}x the minimum: most repeats were slowed")
    return reasons


def cross_reasons(records: list[dict[str, Any]], cpus: int) -> dict[str, list[str]]:
    """Reasons found by comparing thread counts: more threads much slower than fewer."""
    by_config: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok" and r.get("median") is not None and r["variant"] != "prepare":
            by_config.setdefault(config_key(r), []).append(r)
    found: dict[str, list[str]] = {}
    for group in by_config.values():
        group = sorted((r for r in group if r["threads"] <= cpus), key=lambda r: r["threads"])
        for i, more in enumerate(group):
            for fewer in group[:i]:
                slowdown = more["median"] / fewer["median"]
                if (more["threads"] > fewer["threads"]
                        and slowdown > MAX_SLOWDOWN_WITH_MORE_THREADS
                        and more["median"] > MIN_SECONDS_FOR_SLOWDOWN):
                    found.setdefault(more["key"], []).append(
                        f"{slowdown:.1f}x slower with {more['threads']} threads than with "
                        f"{fewer['threads']}")
    return found


def find(records: list[dict[str, Any]], cpus: int) -> dict[str, list[str]]:
    """Every disturbed measurement (by key) with its reasons."""
    found = cross_reasons(records, cpus)
    for r in records:
        if r["status"] == "ok":
            reasons = record_reasons(r)
            if reasons:
                found.setdefault(r["key"], [])[:0] = reasons
    return found
