"""The one-column sliced kernel alone: what its prefetches gain, and its time per entry.

Run: ``python bench/micro/sliced.py [--rounds 5] [--repeat 7]``. The kernel
(``sliced_kernel.cpp``, built here as the extension is: no ``-march``, each instruction set
by its own target attributes) runs serially on a layer's Wᵀ at 10 % in the sliced layout,
with and without the software prefetches of ``include/spmm/formats/sliced.hpp`` (the
layout's ``prefetch``, which the product sets from the layout's size), in fresh processes,
alternating, in three places: one layout of a 1024x4096 layer (2.4 MiB:
in L2 or L3), 16 of them read in turn (39 MiB: beyond a 32 MiB L3) and one 65536x3412 layer
(128 MiB). Each body runs: ``portable`` (scalar loads; what ``auto`` runs where gathers are
slow) and ``gather`` (the best x86 level's vector gathers). It prints the medians in
nanoseconds per stored entry (thread CPU time), their ratio, and the core's clock, so that a
time per entry reads as cycles: the stored format is 6 bytes an entry (a 16-bit index and a
float32 value), so 6 / ns is its GB/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from build import compile_cpp

# (outputs, inputs, copies, what it is)
PLACES = [(4096, 1024, 1, "1024x4096 layer"), (4096, 1024, 16, "16 such layers"),
          (3412, 65536, 1, "65536x3412 layer")]
PORTABLE_BUILD = ("-march=x86-64", "-mtune=generic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="processes per variant and case")
    parser.add_argument("--repeat", type=int, default=7, help="timed passes per process")
    o = parser.parse_args()
    source = Path(__file__).with_name("sliced_kernel.cpp")
    exe = str(compile_cpp(source, PORTABLE_BUILD))
    clock = json.loads(subprocess.run([exe, "clock"], check=True,
                                      capture_output=True, text=True).stdout)["ghz"]
    print(f"clock {clock:.2f} GHz (dependent adds)")
    print(f"{'W (MiB)':24s} {'body':14s} {'no prefetch':>12s} {'prefetched':>11s} {'ratio':>6s} "
          f"{'cycles':>7s} {'GB/s':>6s}")
    for outputs, inputs, copies, name in PLACES:
        for body in ("portable", "gather"):  # the gather body has no prefetches: a check
            times: dict[str, list[float]] = {"0": [], "1": []}
            level = ""
            for _ in range(o.rounds):
                for variant in times:
                    line = subprocess.run([exe, str(outputs), str(inputs), str(copies), body,
                                           variant, str(o.repeat)], check=True,
                                          capture_output=True, text=True).stdout
                    record = json.loads(line)
                    times[variant].append(record["ns_per_entry"])
                    level, mib = record["level"], record["mib"]
            a, b = statistics.median(times["0"]), statistics.median(times["1"])
            print(f"{f'{name} ({mib:.0f})':24s} {body + ' ' + level:14s} {a:12.3f} {b:11.3f} "
                  f"{a / b:6.2f} {b * clock:7.2f} {6 / b:6.1f}")


if __name__ == "__main__":
    main()
