"""Batch 1 at the memory limit: the one-column kernel (the body `auto` runs on this CPU) on a W
far beyond the last-level cache, in bytes of its stored format per second, against a
read-only streaming sum over at least 4x the last-level cache at the same thread count (the
bandwidth ceiling the benchmark records, ``spmm_bench.machine.read_bandwidth``).

Run: ``python bench/batch1_memory.py [--bytes N] [--rounds 7] [--json out.json]``.

W (90 % pruned, float32 values, 65,536 inputs: the 16-bit indices a prepared matrix stores)
is made directly in the prepared form's arrays (Wᵀ's CSR: a scipy matrix of this size and
its conversions would need several times the memory), then in the sliced layout
(``spmm._sliced``), whose arrays are all the kernel reads; the CSR arrays are dropped before
timing. Its size is ``--bytes`` of stored format (default 4x the last-level cache, less if
the memory available cannot hold it twice over). The kernel's calls and the streaming sum
alternate, round after round, at 1 and 2 threads, each backend; the figures are medians and
bests of the rounds (a shared machine: compare the medians of one run only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from spmm_bench import machine

import spmm
from spmm import _config, _policy, _sliced, _spmm_ext
from spmm._operands import Csr

INPUTS = 2**16
DENSITY = 0.1


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo (0 when unknown)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def make_layout(outputs: int, seed: int = 0) -> _sliced.Sliced:
    """The sliced layout of Wᵀ (outputs x INPUTS), each output keeping one input in each band
    of 10: sorted and distinct, made a block of rows at a time."""
    per_row = round(INPUTS * DENSITY)
    band = INPUTS // per_row
    rng = np.random.default_rng(seed)
    nnz = outputs * per_row
    indices = np.empty(nnz, np.uint16)
    data = np.empty(nnz, np.float32)
    block = 4096
    for r0 in range(0, outputs, block):
        r1 = min(outputs, r0 + block)
        cols = np.arange(per_row) * band + rng.integers(0, band, size=(r1 - r0, per_row))
        indices[r0 * per_row:r1 * per_row] = cols.ravel()
        data[r0 * per_row:r1 * per_row] = rng.standard_normal((r1 - r0) * per_row,
                                                              dtype=np.float32)
    indptr = np.arange(0, nnz + 1, per_row, dtype=np.int64)
    return _sliced.Sliced.from_csr(Csr(indptr, indices, data, (outputs, INPUTS)))


def form_body(kernel: str, simd: int) -> tuple[str, str]:
    """The sliced family's body for ``kernel`` at the SIMD level ``simd``, and its level."""
    return _spmm_ext.kernel_body(_policy.FAMILY_CODES["sliced"], _config.codes("kernel")[kernel],
                                 simd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=0,
                        help="stored bytes of W (default: 4x the last-level cache)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", default="", help="also write the figures to this file")
    o = parser.parse_args()
    llc = machine.llc_bytes()
    want = o.bytes or 4 * llc
    # The layout, the CSR it is made from, the streaming sum's array: about 3x the bytes.
    fits = int(available_bytes() / 3.5)
    target = min(want, fits) if fits else want
    per_row_bytes = round(INPUTS * DENSITY) * 6 + 8
    outputs = max(16, target // per_row_bytes)
    start = time.perf_counter()
    form = make_layout(outputs)
    built = time.perf_counter() - start
    stored = sum(a.nbytes for a in form.arrays())
    x = np.random.default_rng(1).standard_normal((1, INPUTS), dtype=np.float32)
    y = np.empty((1, outputs), np.float32)
    moved = stored + x.nbytes + y.nbytes
    stream_bytes = max(4 * llc, machine.STREAM_MIN_BYTES)
    simd = _config.codes("simd")[_config.available_simd()[-1]]
    # The body `auto` runs (the gather body, or scalar loads where gathers are slow), as the
    # prepared matrix's batch-1 product would.
    auto_kernel = _policy.choose_kernel("auto", "sliced", 1, 0.0)
    body, level = form_body(auto_kernel, simd)
    model = next((ln for ln in machine.lscpu().splitlines() if "Model name" in ln), "?")
    print(model)
    print(f"last-level cache {llc / 2**20:.0f} MiB; W {INPUTS}x{outputs} at 90 %: "
          f"{stored / 2**20:.0f} MiB stored ({stored / max(1, llc):.1f}x the LLC; wanted "
          f"{want / 2**20:.0f} MiB), built in {built:.1f} s; streaming sum over "
          f"{stream_bytes / 2**20:.0f} MiB; kernel body {body} ({level})")
    results = []
    for threads in (1, 2):
        for backend in (("serial",) if threads == 1 else tuple(
                b for b in spmm.available_backends() if b != "serial")):
            codes = (_config.codes("kernel")[auto_kernel], _config.codes("backend")[backend],
                     threads, _config.codes("partition")["nnz"], simd, -1)
            form.multiply_into(x, y, 0, codes)  # warm-up: pages touched
            kernel, stream = [], []
            for _ in range(o.rounds):
                s = machine.read_bandwidth(threads, stream_bytes)
                stream.append(s["gbs"])
                t0 = time.perf_counter()
                form.multiply_into(x, y, 0, codes)
                kernel.append(moved / (time.perf_counter() - t0) / 1e9)
            row = {"threads": threads, "backend": backend, "stored_bytes": stored,
                   "kernel_gbs_median": statistics.median(kernel), "kernel_gbs_best": max(kernel),
                   "stream_gbs_median": statistics.median(stream), "stream_gbs_best": max(stream)}
            row["fraction_median"] = row["kernel_gbs_median"] / row["stream_gbs_median"]
            row["fraction_best"] = row["kernel_gbs_best"] / row["stream_gbs_best"]
            results.append(row)
            print(f"{threads} thread(s) {backend:7s}: kernel {row['kernel_gbs_median']:6.2f} GB/s "
                  f"(best {row['kernel_gbs_best']:6.2f}), stream {row['stream_gbs_median']:6.2f} "
                  f"(best {row['stream_gbs_best']:6.2f}): {row['fraction_median']:.0%} of the "
                  f"stream (bests {row['fraction_best']:.0%})", flush=True)
    if o.json:
        with open(o.json, "w") as f:
            json.dump({"llc_bytes": llc, "stored_bytes": stored, "outputs": outputs,
                       "kernel_body": f"{body} ({level})",
                       "inputs": INPUTS, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
