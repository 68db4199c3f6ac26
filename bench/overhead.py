"""Per-call cost of each backend on tiny products: where running in parallel starts to pay.

Run: ``python bench/overhead.py`` (after ``pip install .``). For products of growing work
(stored entries x dense columns), prints the median time of one call on the serial backend and
on the openmp and threads backends at all CPUs, and scipy's, interleaved in one process so that
the ratios are comparable. The smallest work at which the parallel backends beat serial is the
threshold below which spmm runs on the calling thread (``kParallelMinWork`` in
``include/spmm/product.hpp``).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from spmm_bench.timing import median_call_seconds

import spmm

REPEAT = 301  # calls per median: tiny calls, so many are cheap


def main() -> None:
    rng = np.random.default_rng(0)
    threads = spmm.get_config()["num_threads"]
    backends = [b for b in spmm.available_backends() if b != "serial"]
    print(f"median seconds per call (us), {threads} threads for the parallel backends")
    print(f"{'work (nnz*n)':>12s} {'scipy':>8s} {'serial':>8s} "
          + " ".join(f"{b:>8s}" for b in backends))
    for rows in (8, 32, 128, 512, 2048, 8192):
        a = sp.random_array((rows, 256), density=16 / 256, format="csr", dtype=np.float32,
                            rng=rng)
        b = rng.standard_normal((256, 16), dtype=np.float32)
        out = np.empty((rows, 16), dtype=np.float32)
        cols = [median_call_seconds(lambda a=a, b=b: a @ b, REPEAT)]
        cols.append(median_call_seconds(
            lambda a=a, b=b, out=out: spmm.multiply(a, b, out=out, backend="serial"), REPEAT))
        for backend in backends:
            time.sleep(0.05)  # let the previous backend's spinning workers go to sleep
            cols.append(median_call_seconds(
                lambda a=a, b=b, out=out, k=backend: spmm.multiply(
                    a, b, out=out, backend=k, num_threads=threads), REPEAT))
        print(f"{a.nnz * 16:12d} " + " ".join(f"{c * 1e6:8.1f}" for c in cols))


if __name__ == "__main__":
    main()
