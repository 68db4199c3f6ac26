"""The machine: its description (CPU, caches, affinity, libraries) and its measured roofline.

The roofline's two ceilings are measured by the suite itself, in a worker process limited to
each thread count like every library: memory bandwidth with a streaming kernel on arrays far
larger than the last-level cache, compute peak with numpy's dense GEMM.
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

from . import timing

# Distributions whose versions go into the report.
DISTRIBUTIONS = ("spmm", "numpy", "scipy", "threadpoolctl", "torch", "sparse-dot-mkl", "mkl",
                 "python-graphblas", "suitesparse-graphblas", "tqdm", "matplotlib")

# Environment variables that change how the libraries run (recorded, and set per worker).
RELEVANT_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY",
                "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MKL_RT", "SPMM_BACKEND", "SPMM_NUM_THREADS",
                "SPMM_KERNEL", "SPMM_SIMD")

# Sizes of the machine measurements. "full": arrays of at least 2^25 float64 (256 MiB each, 8x
# a 32 MiB L3) and at least twice the largest cache, and GEMM of 2048 (near peak with OpenBLAS
# on the 2-core VM). "tiny" is for the harness's tests: fast, and its figures mean nothing.
SIZES = {"full": {"stream_elements": 2**25, "gemm_n": 2048, "repeat": 5},
         "tiny": {"stream_elements": 2**18, "gemm_n": 128, "repeat": 2}}


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpuinfo() -> dict[str, Any]:
    text = _read("/proc/cpuinfo") or ""
    info: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and "model" not in info:
            info["model"] = value
        elif key == "cpu family" and "family" not in info:
            info["family"] = value
        elif key == "cpu cores" and "cores_per_socket" not in info:
            info["cores_per_socket"] = int(value)
        elif key == "siblings" and "threads_per_socket" not in info:
            info["threads_per_socket"] = int(value)
        elif key == "cpu MHz" and "mhz" not in info:
            info["mhz"] = float(value)
        elif key == "flags" and "flags" not in info:
            flags = set(value.split())
            info["flags"] = sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq",
                                            "avx512vl", "avx512_vnni", "avx512_bf16", "neon",
                                            "asimd"})
            info["virtualized"] = "hypervisor" in flags
    return info


def _caches() -> list[dict[str, Any]]:
    """Caches of CPU 0 from /sys, or from ``lscpu`` where /sys has none."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    caches = []
    for index in sorted(base.glob("index*")):
        caches.append({
            "level": _read(index / "level"),
            "type": _read(index / "type"),
            "size": _read(index / "size"),
            "shared_cpu_list": _read(index / "shared_cpu_list"),
        })
    if caches:
        return caches
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [{"lscpu": line.strip()} for line in out.splitlines() if "cache" in line.lower()]


def _size_bytes(text: str | None) -> int:
    """``"32768K"`` -> 33554432 (the format of /sys cache sizes)."""
    if not text:
        return 0
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip()
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text) if text.isdigit() else 0


def largest_cache_bytes() -> int:
    """Size of the last-level cache (0 when unknown)."""
    return max((_size_bytes(c.get("size")) for c in _caches()), default=0)


def _memory_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def versions() -> dict[str, str | None]:
    """Installed versions of spmm, its dependencies and the peers (None: not installed)."""
    found: dict[str, str | None] = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def describe() -> dict[str, Any]:
    """What the report says about the machine, without importing any measured library."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "cpu": _cpuinfo(),
        "logical_cpus": os.cpu_count(),
        "affinity": affinity,
        "cpus_used": cpu_count(),
        "caches": _caches(),
        "memory_bytes": _memory_bytes(),
        "frequency_governor": governor,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "versions": versions(),
        "environment": {k: os.environ.get(k) for k in RELEVANT_ENV if k in os.environ},
    }


def _stream(threads: int, elements: int, repeat: int) -> dict[str, float]:
    """Memory bandwidth in GB/s of streaming kernels on float64 arrays of ``elements``.

    STREAM's Copy (c = a) and Add (c = a + b), and an in-place add (c += b). numpy's
    element-wise loops release the GIL, so ``threads`` Python threads on disjoint slices run in
    parallel. Bytes counted as STREAM does (2 arrays for Copy, 3 for the adds; no
    write-allocate traffic). The best of ``repeat`` runs, as in STREAM. numpy's kernels differ
    by up to 2x from each other on the 2-core VM (copy uses non-temporal stores), so the
    roofline takes the best of them: the bandwidth the machine can reach.
    """
    a = np.ones(elements)
    b = np.full(elements, 2.0)
    c = np.ones(elements)  # all three written now: no page faults while timing
    bounds = np.linspace(0, elements, threads + 1).astype(int)
    slices = [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]
    kernels = (("copy", 2, lambda s: np.copyto(c[s], a[s])),
               ("add", 3, lambda s: np.add(a[s], b[s], out=c[s])),
               ("add_inplace", 3, lambda s: np.add(c[s], b[s], out=c[s])))
    results = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for name, arrays, op in kernels:
            best = float("inf")
            for _ in range(repeat + 1):  # the first run is a warm-up
                start = time.perf_counter()
                list(pool.map(op, slices))
                best = min(best, time.perf_counter() - start)
            results[name] = arrays * elements * 8 / best / 1e9
    return results


def _gemm(dtype: str, n: int, repeat: int) -> dict[str, float]:
    """Best GFLOP/s of numpy's ``a @ b`` (BLAS GEMM) on n x n matrices, with CPU/wall."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)  # warm-up: BLAS threads start, pages touched
    best = float("inf")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    timing.quiet()  # OpenBLAS workers spin after the call
    return {"gflops": 2 * n**3 / best / 1e9, "cpu_wall_ratio": ratio, "n": n}


def measure(threads: int, dtypes: list[str], size: str = "full") -> dict[str, Any]:
    """The roofline ceilings for ``threads`` threads (run in a worker limited to them).

    Returns the best streaming bandwidth (``bandwidth_gbs``) and each kernel's
    (``stream_gbs``), the GEMM peak per dtype (``peak_gflops``) and each GEMM's CPU/wall.
    """
    sizes = SIZES[size]
    elements = sizes["stream_elements"]
    if size == "full":
        elements = max(elements, 2 * largest_cache_bytes() // 8)
    stream = _stream(threads, elements, sizes["repeat"])
    gemm = {dtype: _gemm(dtype, sizes["gemm_n"], sizes["repeat"]) for dtype in dtypes}
    return {
        "threads": threads,
        "size": size,
        "stream_elements": elements,
        "bandwidth_gbs": max(stream.values()),
        "stream_gbs": stream,
        "peak_gflops": {dtype: g["gflops"] for dtype, g in gemm.items()},
        "gemm": gemm,
    }


def disturbed_reasons(ceilings: dict[int, dict[str, Any]]) -> dict[int, list[str]]:
    """Thread counts whose ceilings look disturbed: a GEMM that did not keep its threads busy
    (another process had a core), or more threads giving a lower GEMM peak."""
    found: dict[int, list[str]] = {}
    counts = sorted(ceilings)
    for t in counts:
        for dtype, g in ceilings[t]["gemm"].items():
            if g["cpu_wall_ratio"] < 0.75 * t:
                found.setdefault(t, []).append(
                    f"GEMM {dtype} cpu/wall {g['cpu_wall_ratio']:.2f} with {t} threads")
            fewer = [c for c in counts if c < t]
            if fewer and g["gflops"] < ceilings[fewer[-1]]["gemm"][dtype]["gflops"]:
                found.setdefault(t, []).append(
                    f"GEMM {dtype} slower with {t} threads than with {fewer[-1]}")
    return found


def best_of(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The higher of two measurements of each ceiling (ceilings are maxima)."""
    best = dict(second)
    best["bandwidth_gbs"] = max(first["bandwidth_gbs"], second["bandwidth_gbs"])
    best["stream_gbs"] = {k: max(first["stream_gbs"][k], v)
                          for k, v in second["stream_gbs"].items()}
    best["peak_gflops"] = {d: max(first["peak_gflops"][d], second["peak_gflops"][d])
                           for d in second["peak_gflops"]}
    return best
