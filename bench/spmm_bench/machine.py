"""The machine: what it says about itself, and its roofline measured in the same run.

Both ceilings are measured in a worker limited to each thread count like every library:
the compute peak with numpy's dense GEMM (SGEMM and DGEMM), on matrices large enough that a
call takes at least :data:`GEMM_SECONDS`, warmed, best of repeats; the read bandwidth with a
streaming sum (``numpy.sum``, one Python thread per core on disjoint slices: numpy releases the
GIL) over an array of at least four times the last-level cache, capped at
:data:`STREAM_CAP_BYTES`. The figures and the sizes used are in the results.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

DISTRIBUTIONS = ("spmm", "numpy", "scipy", "threadpoolctl", "torch", "sparse-dot-mkl", "mkl",
                 "python-graphblas", "suitesparse-graphblas", "tqdm", "matplotlib")
# Variables that change how the libraries run: recorded with the results.
RELEVANT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY",
                "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MKL_RT", "SPMM_BACKEND", "SPMM_NUM_THREADS",
                "SPMM_KERNEL", "SPMM_SIMD")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "SPMM_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE make OpenBLAS pick slower kernels where set (numpy's
# 2-thread SGEMM 1.9x slower: run bench/run.py with and without them and compare the
# ceilings); unset for the benchmark's processes only, never in tests or CI. SPMM_BACKEND and
# SPMM_KERNEL would change what "the default call" means.
UNSET_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SPMM_BACKEND", "SPMM_KERNEL")
GEMM_SECONDS = 0.1
GEMM_MAX_N = 8192
STREAM_MIN_BYTES = 256 * 2**20
STREAM_CAP_BYTES = 2 * 2**30
REPEAT = 5


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _read(path: Path | str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _size(text: str | None) -> int:
    """``"32768K"`` (sysfs) or ``"504 MiB (1 instance)"`` (lscpu) in bytes; 0 when unknown."""
    text = (text or "").split("(")[0].replace("iB", "").replace(" ", "")
    number = text.rstrip("KMG")
    try:
        return int(float(number) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[text[len(number):]])
    except (ValueError, KeyError):
        return 0


def lscpu() -> str:
    """``lscpu``'s output, or why there is none."""
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"lscpu failed: {exc}"


def caches() -> list[dict[str, Any]]:
    """The caches of CPU 0 from sysfs."""
    return [{"level": _read(i / "level"), "type": _read(i / "type"), "size": _read(i / "size"),
             "shared_cpu_list": _read(i / "shared_cpu_list")}
            for i in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"))]


def llc_bytes() -> int:
    """The last-level cache's size: sysfs, else ``lscpu``, else 0."""
    found = max((_size(c["size"]) for c in caches()), default=0)
    if not found:
        for line in lscpu().splitlines():
            if line.startswith(("L3 cache:", "L2 cache:")):
                found = max(found, _size(line.split(":", 1)[1]))
    return found


def describe() -> dict[str, Any]:
    """What the machine says about itself (no library is imported)."""
    versions = {}
    for dist in DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    meminfo = (_read("/proc/meminfo") or "").split()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {"lscpu": lscpu(), "caches": caches(), "llc_bytes": llc_bytes(),
            "logical_cpus": os.cpu_count(), "affinity": affinity, "cpus_used": cpu_count(),
            "memory_bytes": int(meminfo[1]) * 1024 if len(meminfo) > 1 else None,
            "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "versions": versions,
            "environment": {k: os.environ[k] for k in RELEVANT_ENV if k in os.environ}}


def gemm(dtype: str, threads: int, tiny: bool = False) -> dict[str, Any]:
    """Best GFLOP/s of ``numpy.matmul`` on n x n: n doubles from 1024 until a call takes
    :data:`GEMM_SECONDS` (``tiny``: 128, for the harness's tests)."""
    rng = np.random.default_rng(0)
    n = 128 if tiny else 1024
    while True:
        a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
        out = np.empty((n, n), dtype=dtype)
        np.matmul(a, b, out=out)  # warm-up: BLAS threads started, pages touched
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        if tiny or n >= GEMM_MAX_N or time.perf_counter() - start >= GEMM_SECONDS:
            break
        n *= 2
    best, cpu0, wall0 = float("inf"), time.process_time(), time.perf_counter()
    for _ in range(REPEAT):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    time.sleep(0.05)  # OpenBLAS workers spin after a call
    return {"gflops": 2 * n**3 / best / 1e9, "n": n, "cpu_wall_ratio": ratio,
            "disturbed": ratio < 0.75 * threads}


def read_bandwidth(threads: int, nbytes: int) -> dict[str, Any]:
    """Best GB/s of a streaming sum over ``nbytes`` of float64, ``threads`` slices at once."""
    a = np.ones(nbytes // 8)  # written now: no page faults while timing
    bounds = np.linspace(0, len(a), threads + 1).astype(int)
    slices = [a[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    best = float("inf")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(REPEAT + 1):  # the first is a warm-up
            start = time.perf_counter()
            list(pool.map(np.sum, slices))
            best = min(best, time.perf_counter() - start)
    return {"gbs": a.nbytes / best / 1e9, "bytes": int(a.nbytes)}


def ceilings(threads: int, dtypes: list[str], tiny: bool = False) -> dict[str, Any]:
    """The roofline's ceilings at ``threads`` (run in a worker limited to them)."""
    llc = llc_bytes()
    nbytes = 2**21 if tiny else min(max(4 * llc, STREAM_MIN_BYTES), STREAM_CAP_BYTES)
    gemms = {d: gemm(d, threads, tiny) for d in dtypes}
    stream = read_bandwidth(threads, nbytes)
    return {"threads": threads, "peak_gflops": {d: g["gflops"] for d, g in gemms.items()},
            "gemm": gemms, "bandwidth_gbs": stream["gbs"], "stream_bytes": stream["bytes"],
            "llc_bytes": llc, "stream_capped": 4 * llc > STREAM_CAP_BYTES and not tiny,
            "disturbed": any(g["disturbed"] for g in gemms.values())}


def best_of(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The higher of two measurements of each ceiling (ceilings are maxima)."""
    best = dict(second)
    best["bandwidth_gbs"] = max(first["bandwidth_gbs"], second["bandwidth_gbs"])
    best["peak_gflops"] = {d: max(v, first["peak_gflops"][d])
                           for d, v in second["peak_gflops"].items()}
    return best
