"""The csr_rows kernel on the science matrices, with the dense operand's memory varied.

Run: ``python bench/micro/science.py [--compare offset|pages|pack] [--offset 16]``. For each
science product (uniform and power-law rows, 8 and 64 columns, float32 and float64) it runs the
kernel serially (``science_kernel.cpp``, built here) in two variants, alternating in fresh
processes, and prints the medians of each in thread CPU time (on a shared machine wall time
counts the other processes' turns) and their ratio:

- ``offset``: B on a cache line against B ``--offset`` bytes past one (as numpy's large arrays
  start), both in huge pages;
- ``pages``: B in huge pages against B in 4 KiB pages, both on a line;
- ``pack``: B ``--offset`` bytes past a line read as it is against the aligned copy spmm makes
  of it (``include/spmm/formats/pack.hpp``), the copy timed with each call.

The product reads B's rows in random order, so its time is a count of the cache lines missed
times the time per miss: ``memory.py`` measures the latter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from build import compile_cpp

CASES = [(p, n, d) for p in ("uniform", "powerlaw") for n in (8, 64)
         for d in ("float32", "float64")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", choices=("offset", "pages", "pack"), default="offset")
    parser.add_argument("--offset", type=int, default=16, help="B's bytes past a cache line")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per process")
    o = parser.parse_args()
    exe = compile_cpp(Path(__file__).with_name("science_kernel.cpp"))
    off = str(o.offset)
    # (offset bytes, huge pages, pack) of each variant, and their names
    variants = {"offset": ((("0", "1", "0"), "on a line"), ((off, "1", "0"), f"{off} bytes past")),
                "pages": ((("0", "1", "0"), "huge pages"), (("0", "0", "0"), "4 KiB pages")),
                "pack": (((off, "1", "0"), f"{off} bytes past"), ((off, "1", "1"), "copied"))}
    (base, base_name), (other, other_name) = variants[o.compare]
    print(f"{'case (ms, median)':28s} {base_name:>16s} {other_name:>16s} {'ratio':>6s}")
    for pattern, n, dtype in CASES:
        times: dict[tuple[str, ...], list[float]] = {base: [], other: []}
        for _ in range(o.rounds):
            for variant in (base, other):
                line = subprocess.run([str(exe), pattern, str(n), dtype, *variant,
                                       str(o.repeat)], check=True, capture_output=True,
                                      text=True).stdout
                times[variant].append(json.loads(line)["median_ms"])
        a, b = statistics.median(times[base]), statistics.median(times[other])
        print(f"{pattern + ' n=' + str(n) + ' ' + dtype:28s} {a:16.2f} {b:16.2f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
