"""Is the portable build as fast as a -march=native one? (issue 5, item 2)

Run: ``python bench/native_build.py [--rounds 10] [--threads 1] [--json FILE]`` from a checkout
with a compiler, Cython and numpy (the build requirements). It builds two copies of spmm's
extension from this source tree in a temporary directory, the default one and one with
``SPMM_EXTRA_COMPILE_ARGS=-march=native``, then times X @ W (W 1024 x 4096 at 90 %, batch 64
and 256) and A @ B (the science matrix, n = 8 and 64), float32, with both builds in one
process, interleaved on the same operands, and prints the portable build's share of the native
build's speed (target >= 0.95) beside the noise of the measurement (a second portable copy).
``python bench/run.py --native`` runs the same and puts it in the report.
How it works: :mod:`spmm_bench.native`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spmm_bench import native


def main(argv: list[str] | None = None) -> int:
    """Build, time, print; the exit code is 1 when a workload is below the target."""
    p = argparse.ArgumentParser(prog="python bench/native_build.py", description=__doc__)
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per product: 1 = serial backend, more = openmp (default 1)")
    p.add_argument("--calls", type=int, default=10,
                   help="timed calls per build, workload and round (default 10)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="build here and keep it (default: a temporary directory, removed)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = p.parse_args(argv)
    summary = native.compare(rounds=args.rounds, threads=args.threads, calls=args.calls,
                             workdir=args.workdir.resolve() if args.workdir else None,
                             log=lambda text: print(text, file=sys.stderr, flush=True))
    print(native.format_table(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0 if all(r["ratio"] >= summary["goal"] for r in summary["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
