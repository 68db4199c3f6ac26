"""Whether MKL runs the thread count the benchmark asks for, and how it scales from 1 to 2.

Run: ``python bench/micro/mkl_threads.py [--rounds 5]``. For a pruned layer (X 64 and 256 x
1024 times W 1024 x 4096 at 90 %, MKL's fast form Wᵀ Xᵀ as the benchmark calls it) it starts
fresh processes with the environment the benchmark's workers get at 1 and 2 threads
(``runner.worker_env``), alternating, and in each reports what MKL says its thread count is
(``mkl_get_max_threads``), the median wall time of a call and the CPU time over wall time of
the timed calls: at most about the thread count when the limit held, below 0.75 when another
process took the CPU (a disturbed point), and the CPU time per call (at one thread, a figure
other processes disturb far less than wall time). It then does the same in one process
limited only by ``mkl_set_num_threads`` (no environment), the way a limit can fail to hold.
Each figure is taken with Xᵀ and the output starting on 64 bytes (as the benchmark hands
them over, ``peers.ALIGNMENT``) and 16 bytes past it (where numpy may put them): MKL's
kernel differs between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from spmm_bench import runner  # noqa: E402

CHILD = r"""
import json, os, sys, time, statistics
import numpy as np
sys.path.insert(0, sys.argv[1])
from spmm_bench import matrices
from spmm_bench.peers import find_mkl_rt, aligned_empty
os.environ.setdefault("MKL_RT", find_mkl_rt() or "")
import sparse_dot_mkl
if sys.argv[2] != "env":
    sparse_dot_mkl.mkl_set_num_threads(int(sys.argv[2]))
rng = np.random.default_rng(0)
w = matrices.uniform(rng, (1024, 4096), round(0.1 * 1024 * 4096)).astype(np.float32)
wt = w.T.tocsr()
def placed(shape, offset):  # float32, starting `offset` bytes past a 64-byte boundary
    raw = aligned_empty((shape[0] * shape[1] + 16,), np.float32)
    return raw[offset // 4:offset // 4 + shape[0] * shape[1]].reshape(shape)
for batch, offset in ((64, 0), (64, 16), (256, 0), (256, 16)):
    xt = placed((1024, batch), offset)
    xt[...] = rng.standard_normal((batch, 1024)).astype(np.float32).T
    out = placed((4096, batch), offset)
    call = lambda: sparse_dot_mkl.dot_product_mkl(wt, xt, out=out, out_scalar=0.0)
    for _ in range(20):
        call()
    walls, cpu0, wall0 = [], time.process_time(), time.perf_counter()
    for _ in range(200):
        t0 = time.perf_counter(); call(); walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    cpu_wall = cpu / (time.perf_counter() - wall0)
    print(json.dumps({"batch": batch, "offset": offset,
                      "mkl_max_threads": sparse_dot_mkl.mkl_get_max_threads(),
                      "median_us": statistics.median(walls) * 1e6, "cpu_wall": cpu_wall,
                      "cpu_us": cpu / len(walls) * 1e6}))
"""


def child(threads: int, limit: str) -> list[dict]:
    env = runner.worker_env(threads) if limit == "env" else {
        k: v for k, v in runner.worker_env(threads).items()
        if k not in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(BENCH), limit], env=env, check=True,
                         capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    o = parser.parse_args()
    for label, limit in (("environment (as the benchmark)", "env"),
                         ("mkl_set_num_threads only", "call")):
        got: dict[tuple[int, int], list[dict]] = {}
        for _ in range(o.rounds):
            for t in (1, 2):
                for r in child(t, limit if limit == "env" else str(t)):
                    got.setdefault((t, r["batch"], r["offset"]), []).append(r)
                time.sleep(0.2)
        print(f"MKL limited by {label}; medians over {o.rounds} processes each:")
        for batch, offset in ((64, 0), (64, 16), (256, 0), (256, 16)):
            one, two = got[(1, batch, offset)], got[(2, batch, offset)]
            m1 = statistics.median(r["median_us"] for r in one)
            m2 = statistics.median(r["median_us"] for r in two)
            c1 = statistics.median(r["cpu_us"] for r in one)
            c2 = statistics.median(r["cpu_us"] for r in two)
            print(f"  batch {batch}, arrays {offset} B past 64: 1 thread {m1:8.1f} us (MKL says "
                  f"{sorted({r['mkl_max_threads'] for r in one})}, cpu/wall "
                  f"{[round(r['cpu_wall'], 2) for r in one]}); 2 threads {m2:8.1f} us (MKL says "
                  f"{sorted({r['mkl_max_threads'] for r in two})}, cpu/wall "
                  f"{[round(r['cpu_wall'], 2) for r in two]}); scaling {m1 / m2:.2f}x; "
                  f"CPU time per call {c1:.1f} us at 1 thread, {c2:.1f} us (both threads) at 2")
    print(f"cpus: {os.cpu_count()}, load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
