"""The precision suite: reduced-precision prepared matrices against the float32 one.

For each group of :data:`suites.PRECISION` (the suite as data) and each product kind (X @ W,
A @ B), one process prepares the group's matrix once per format (``spmm.prepare(w,
values=...)``, float32 included: the reference), checks every format's result against the
float32 one, then times them interleaved (one sample of each format per round, so a
disturbance of the shared machine hits them alike) at each thread count, with ``out=``.

Recorded per point: the median and fastest time, the bytes of the stored form the product
reads (float32: that form's arrays; a reduced format: everything the matrix holds after
products in one orientation, which is that one form), bytes per second, the speedup over
float32 (its time over the format's) and the ratio of bytes per second. The goals
(``goals.json``, key ``precision``) are evaluated on these.

The opt-in activations (``prepare(..., activations=...)``) are measured only where the build
has them: a build that refuses the option, or whose products with it equal the widened ones
(the option stored but not computed with), has each such point recorded as skipped with the
reason, never as measured.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

import spmm

from . import matrices
from .suites import MatrixSpec, PrecisionGroup

KINDS = ("xw", "ab")
#: The bfloat16 form of the beyond-LLC matrix is this many times the last-level cache.
LLC_FACTOR = 1.25
#: At most this many stored entries (a float32 copy and its transpose take 8 bytes each).
MAX_NNZ = 2 * 10**8
#: A square side is a multiple of this.
SIDE_STEP = 4096
#: A format's result may differ from float32's by this fraction of max(|x| @ |W|) (the check
#: that the product is right, not the accuracy test: tests/test_precision.py is that).
CHECK_TOLERANCE = 0.05


def beyond_llc_shape(llc_bytes: int, sparsity: float) -> tuple[tuple[int, int], str]:
    """A square shape whose bfloat16 form (4 bytes per stored weight) is :data:`LLC_FACTOR`
    times the last-level cache, within :data:`MAX_NNZ` entries; and how it was chosen."""
    nnz = LLC_FACTOR * max(llc_bytes, 1) / 4
    side = int(np.ceil(np.sqrt(nnz / (1 - sparsity)) / SIDE_STEP)) * SIDE_STEP
    note = (f"{side}x{side}: its bfloat16 form at least {LLC_FACTOR}x the last-level cache "
            f"of {llc_bytes / 2**20:.0f} MiB")
    largest = int(np.sqrt(MAX_NNZ / (1 - sparsity)) // SIDE_STEP * SIDE_STEP)
    if side > largest:
        side = largest
        note = (f"{side}x{side}: capped at {MAX_NNZ:.0e} stored entries (memory); its "
                f"bfloat16 form is smaller than {LLC_FACTOR}x the last-level cache of "
                f"{llc_bytes / 2**20:.0f} MiB")
    return (max(side, SIDE_STEP), max(side, SIDE_STEP)), note


def matrix_spec(group: PrecisionGroup, llc_bytes: int) -> tuple[MatrixSpec, str | None]:
    """The group's matrix: its given shape, or sized beyond the LLC (then ``rows<k>``: one
    entry in each band of columns, as fast to generate at 10^8 entries as it is uniform)."""
    if group.shape is not None:
        pattern = group.pattern
        if pattern == "rows":
            pattern = f"rows{round((1 - group.sparsity) * group.shape[1])}"
        return MatrixSpec("precision", group.shape, pattern, group.sparsity), None
    shape, note = beyond_llc_shape(llc_bytes, group.sparsity)
    pattern = f"rows{round((1 - group.sparsity) * shape[1])}" if group.pattern == "rows" else (
        group.pattern)
    return MatrixSpec("precision", shape, pattern, group.sparsity), note


def activations_support(fmt: str) -> str | None:
    """None when this build computes with ``activations=fmt``, else why not."""
    rng = np.random.default_rng(0)
    w = matrices.uniform(rng, (64, 48), 64 * 48 // 4).astype(np.float32)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    try:
        with_activations = spmm.prepare(w, values=fmt, activations=fmt)
        rounded = x @ with_activations
    except (TypeError, ValueError) as exc:
        return f"this build has no activations={fmt!r}: {exc}"
    if np.array_equal(rounded, x @ spmm.prepare(w, values=fmt)):
        return (f"prepare accepts activations={fmt!r}, but its products equal the widened "
                "ones: this build has no activations kernel")
    return None


def form_bytes(p: spmm.PreparedMatrix, kind: str) -> int:
    """The bytes of the stored form the product reads (after one product of ``kind``)."""
    if p.reduced:
        return p.nbytes  # one orientation used: the one form it holds
    form = p.form("csr_rows" if p.layout == "csr" else "structured", kind == "xw",
                  np.dtype(np.float32))
    arrays = [form.indptr, form.indices, form.data] if p.layout == "csr" else form.arrays()
    return int(sum(a.nbytes for a in arrays))


def _operand(kind: str, shape: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    rows, cols = shape
    return rng.standard_normal((n, rows) if kind == "xw" else (cols, n)).astype(np.float32)


def _product(kind: str, p: Any, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return spmm.multiply(x, p, out=out) if kind == "xw" else spmm.multiply(p, x, out=out)


def measure_group(group: PrecisionGroup, kind: str, w: Any, threads: tuple[int, ...],
                  repeat: int, skipped: dict[str, str]) -> list[dict[str, Any]]:
    """The points of one group and kind: each width, thread count and format."""
    formats = [f for f in group.formats if not group.activations or f in ("bfloat16", "int8")]
    measured = [f for f in formats if f not in skipped]
    prepared = {"float32": spmm.prepare(w, values="float32")}
    for f in measured:
        prepared[f] = spmm.prepare(w, values=f, activations=f if group.activations else None)
    rng = np.random.default_rng(1)
    records = []
    for n in group.widths:
        x = _operand(kind, w.shape, n, rng)
        magnitude = np.abs(x) @ abs(w) if kind == "xw" else abs(w) @ np.abs(x)
        scale = float(np.max(magnitude)) or 1.0
        outputs = {f: _product(kind, p, x) for f, p in prepared.items()}
        errors = {f: float(np.max(np.abs(y - outputs["float32"]))) / scale
                  for f, y in outputs.items()}
        times = _interleaved(kind, prepared, x, outputs, threads, repeat)
        nbytes = {f: form_bytes(p, kind) for f, p in prepared.items()}
        for t in threads:
            base = times[t]["float32"]
            for f in ["float32", *formats]:
                record = {"group": group.name, "kind": kind, "n": n, "threads": t,
                          "format": f, "activations": group.activations and f != "float32",
                          "status": "ok", "reason": None}
                if f in skipped:
                    records.append({**record, "status": "skipped", "reason": skipped[f]})
                    continue
                if errors[f] > CHECK_TOLERANCE:
                    records.append({**record, "status": "failed", "reason": (
                        f"differs from float32's result by {errors[f]:.3g} of max(|x||W|)")})
                    continue
                median, fastest = statistics.median(times[t][f]), min(times[t][f])
                f32_rate = nbytes["float32"] / statistics.median(base)
                records.append({**record, "median": median, "min": fastest,
                                "samples": len(times[t][f]), "bytes": nbytes[f],
                                "bytes_per_second": nbytes[f] / median,
                                "speedup": statistics.median(base) / median,
                                "bytes_ratio": (nbytes[f] / median) / f32_rate,
                                "error": errors[f]})
    return records


def _interleaved(kind: str, prepared: dict[str, Any], x: np.ndarray,
                 outputs: dict[str, np.ndarray], threads: tuple[int, ...],
                 repeat: int) -> dict[int, dict[str, list[float]]]:
    """Seconds per product, ``repeat`` samples of each format at each thread count, one
    sample of every format per round."""
    times: dict[int, dict[str, list[float]]] = {}
    for t in threads:
        times[t] = {f: [] for f in prepared}
        with spmm.config_context(num_threads=t):
            for f, p in prepared.items():  # warm: the forms and partitions built
                _product(kind, p, x, outputs[f])
            for _ in range(repeat):
                for f, p in prepared.items():
                    start = time.perf_counter()
                    _product(kind, p, x, outputs[f])
                    times[t][f].append(time.perf_counter() - start)
    return times


def run(groups: list[PrecisionGroup], llc_bytes: int, threads: tuple[int, ...], repeat: int,
        progress: bool = True) -> dict[str, Any]:
    """Every group of the suite, both kinds; returns the measurements and the matrices."""
    skipped = {f: why for f in ("bfloat16", "int8")
               if (why := activations_support(f)) is not None}
    results: dict[str, Any] = {"llc_bytes": llc_bytes, "threads": list(threads),
                               "repeat": repeat, "matrices": {}, "measurements": [],
                               "activations_skipped": skipped}
    for group in groups:
        spec, note = matrix_spec(group, llc_bytes)
        if progress:
            print(f"precision: {group.name}: generating {spec.id}", flush=True)
        w = matrices.generate(spec).astype(np.float32)
        results["matrices"][group.name] = {"id": spec.id, "shape": list(spec.shape),
                                           "nnz": int(w.nnz), "note": note}
        for kind in KINDS:
            if progress:
                print(f"precision: {group.name}: {kind}, widths {group.widths}", flush=True)
            results["measurements"] += measure_group(
                group, kind, w, threads, repeat, skipped if group.activations else {})
        del w
    return results


def evaluate(results: dict[str, Any], goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per goal: its worst point (every point must meet it), or why it is not
    measured. A goal names ``groups``, ``formats``, the ``metric`` (``speedup`` or
    ``bytes_ratio``) and ``at_least``."""
    rows = []
    for goal in goals:
        points = [r for r in results["measurements"]
                  if r["group"] in goal["groups"] and r["format"] in goal["formats"]]
        measured = [r for r in points if r["status"] == "ok"]
        row = {"name": goal["name"], "description": goal["description"],
               "at_least": goal["at_least"], "metric": goal["metric"]}
        if not measured:
            reasons = sorted({r["reason"] for r in points if r["reason"]})
            rows.append({**row, "status": "not measured",
                         "reason": "; ".join(reasons) or "no point of the run matches"})
            continue
        worst = min(measured, key=lambda r: r[goal["metric"]])
        met = sum(r[goal["metric"]] >= goal["at_least"] for r in measured)
        rows.append({**row, "status": "met" if met == len(measured) else "missed",
                     "measured": worst[goal["metric"]], "passing": f"{met}/{len(measured)}",
                     "worst": _name(worst)})
    return rows


def _name(r: dict[str, Any]) -> str:
    product = "X @ W batch" if r["kind"] == "xw" else "A @ B n"
    extra = " activations" if r["activations"] else ""
    return f"{r['group']} {product} {r['n']}, {r['format']}{extra}, {r['threads']} thread(s)"


def markdown(results: dict[str, Any]) -> str:
    """The goals, the matrices and every point, as Markdown tables."""
    lines = ["## Precision suite", "", f"Machine: {results.get('cpu_model', '?')}, last-level "
             f"cache {results['llc_bytes'] / 2**20:.0f} MiB. Timings on a shared machine are "
             "noisy.", "", "| goal | at least | measured (worst) | status | points met | "
             "worst point or reason |", "| --- | --- | --- | --- | --- | --- |"]
    for g in results.get("goals", []):
        value = f"{g['measured']:.2f}" if "measured" in g else "-"
        lines.append(f"| {g['name']}: {g['description']} | {g['at_least']} ({g['metric']}) | "
                     f"{value} | {g['status']} | {g.get('passing', '-')} | "
                     f"{g.get('worst') or g.get('reason')} |")
    lines += ["", "| group | matrix | stored entries | note |", "| --- | --- | --- | --- |"]
    for name, m in results["matrices"].items():
        lines.append(f"| {name} | {m['id']} | {m['nnz']} | {m['note'] or ''} |")
    lines += ["", "| group | product | n | threads | format | median ms | bytes/weight | "
              "GB/s | speedup | bytes/s ratio |", "| --- | --- | --- | --- | --- | --- | --- | "
              "--- | --- | --- |"]
    nnz = {name: m["nnz"] for name, m in results["matrices"].items()}
    for r in results["measurements"]:
        product = "X @ W" if r["kind"] == "xw" else "A @ B"
        fmt = r["format"] + (" act." if r["activations"] else "")
        if r["status"] != "ok":
            lines.append(f"| {r['group']} | {product} | {r['n']} | {r['threads']} | {fmt} | "
                         f"{r['status']}: {r['reason']} | | | | |")
            continue
        lines.append(f"| {r['group']} | {product} | {r['n']} | {r['threads']} | {fmt} | "
                     f"{r['median'] * 1e3:.3f} | {r['bytes'] / nnz[r['group']]:.2f} | "
                     f"{r['bytes_per_second'] / 1e9:.2f} | {r['speedup']:.2f} | "
                     f"{r['bytes_ratio']:.2f} |")
    return "\n".join(lines) + "\n"
