"""The memory ceilings that bound a product reading B's rows in random order.

Run: ``python bench/micro/memory.py [--quick]``. Builds and runs ``memory.cpp``: the latency of
one dependent load through 32 KiB to 256 MiB (a pointer chase in random line order), the rows per
second that independent loads of random rows reach (8, 16 and 64 float32 columns, as B's rows
in the science products) with and without software prefetch at several distances, and the
streaming read bandwidth at 1 and 2 threads. Prints the JSON the program writes. Without a
PMU, latency x rows per second gives the misses the core keeps in flight.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from build import compile_cpp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds; a check)")
    o = parser.parse_args()
    exe = compile_cpp(Path(__file__).with_name("memory.cpp"))
    out = subprocess.run([str(exe), *(["quick"] if o.quick else [])], check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out)
    print(json.dumps(result, indent=1))
    latency = result["chase_ns"]
    for r in result["random_rows"]:
        b = r["b_bytes"]
        near = min(latency, key=lambda s: abs(int(s) - b))
        lines = (r["row_bytes"] + 63) // 64
        r["in_flight"] = r["rows_per_s"] * lines * latency[near] * 1e-9
    print("lines in flight (rows/s x lines per row x latency of a chase the size of B):")
    for r in result["random_rows"]:
        print(f"  {r['row_bytes']:4d}-byte rows, prefetch {r['prefetch']:2d} ({r['hint']:4s}):"
              f" {r['rows_per_s'] / 1e6:7.1f} M rows/s, {r['in_flight']:5.1f} lines in flight")


if __name__ == "__main__":
    main()
