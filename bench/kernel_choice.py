"""Serial GFLOP/s of each kernel on a few shapes: the measurement behind ``auto``'s rule.

Run: ``python bench/kernel_choice.py`` (after ``pip install .``). Prints one line per shape
with the useful GFLOP/s (2 nnz n per second, median of 7 calls) of the naive, reordered and
tiled kernels on the serial backend. ``python bench/run.py`` checks ``auto`` against every
kernel on every workload (the report's "auto against every kernel" table).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from spmm_bench.worker import median_call_seconds

import spmm


def main() -> None:
    rng = np.random.default_rng(0)
    side = 1 << 17
    a = sp.random_array((side, side), density=16 / side, format="csr", dtype=np.float32, rng=rng)
    w = spmm.prepare(sp.random_array((1024, 4096), density=0.1, format="csr",
                                     dtype=np.float32, rng=rng))
    cases = [(f"science A(2^17 sq, 16/row) @ B(n={n})", a,
              rng.standard_normal((side, n), dtype=np.float32), a.nnz * n) for n in (1, 8, 64)]
    cases += [(f"dnn X(batch={m}) @ W(1024x4096, 90%)",
               rng.standard_normal((m, 1024), dtype=np.float32), w, w.nnz * m)
              for m in (1, 16, 64, 256)]
    for name, left, right, work in cases:
        rates = []
        for kernel in ("naive", "reordered", "tiled"):
            seconds = median_call_seconds(
                lambda k=kernel, a=left, b=right: spmm.multiply(a, b, kernel=k,
                                                                backend="serial"),
                repeat=7)
            rates.append(f"{kernel} {2 * work / seconds / 1e9:6.2f}")
        print(f"{name:42s} " + "  ".join(rates))


if __name__ == "__main__":
    main()
