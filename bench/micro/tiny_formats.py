"""Per-call cost of spmm against scipy on tiny products, for every sparse format.

Run: ``python bench/micro/tiny_formats.py [--rounds 7] [--calls 2000] [FORMAT ...]``. For a
64 x 64 matrix at 10 % stored as each scipy format, it times ``spmm.multiply(a, b)`` against
``a @ b`` (B 64 x 8) and ``spmm.multiply(x, a)`` against ``x @ a`` (X 8 x 64), float64, the
default configuration: products this small run on the calling thread, so what is measured is
the Python-level work around the kernels (checks, dispatch, conversion), not the arithmetic.
Each figure is the median over ``--rounds`` of the mean of ``--calls`` calls; the two
libraries alternate round by round in one process, so their ratio compares.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

import spmm

FORMATS = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")


def per_call_us(call: Callable[[], object], calls: int) -> float:
    """Mean time of one of ``calls`` back-to-back calls, in microseconds."""
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("formats", nargs="*", metavar="FORMAT",
                        help=f"formats to time, of {', '.join(FORMATS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    rng = np.random.default_rng(0)
    base = sp.random_array((64, 64), density=0.1, format="csr", rng=rng, dtype=np.float64)
    b, x = rng.standard_normal((64, 8)), rng.standard_normal((8, 64))
    print(f"{'format':6} {'product':7} {'spmm us':>9} {'scipy us':>9} {'scipy/spmm':>10}")
    for fmt in args.formats or FORMATS:
        with warnings.catch_warnings():  # scipy warns that this DIA has many diagonals
            warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
            a = base.asformat(fmt)
        for product, left, right in (("A @ B", a, b), ("X @ W", x, a)):
            def ours(left=left, right=right):
                return spmm.multiply(left, right)

            def theirs(left=left, right=right):
                return left @ right

            np.testing.assert_allclose(ours(), theirs(), rtol=1e-12, atol=1e-12)
            times: dict[str, list[float]] = {"spmm": [], "scipy": []}
            for _ in range(args.rounds):
                times["spmm"].append(per_call_us(ours, args.calls))
                times["scipy"].append(per_call_us(theirs, args.calls))
            t_spmm, t_scipy = (statistics.median(times[k]) for k in ("spmm", "scipy"))
            print(f"{fmt:6} {product:7} {t_spmm:9.2f} {t_scipy:9.2f} {t_scipy / t_spmm:10.2f}")


if __name__ == "__main__":
    main()
