"""``show_config``: what spmm was built with and what it will use."""

from __future__ import annotations

import platform
import sys
from typing import Any

import numpy as np
import scipy
import threadpoolctl

from . import _config, _spmm_ext


def build_info() -> dict[str, Any]:
    """Facts fixed when the extension was compiled."""
    version = _spmm_ext.openmp_version()
    return {
        "compiler": _spmm_ext.compiler_version(),
        "compile_args": _spmm_ext.compile_args(),
        "openmp": bool(_spmm_ext.has_openmp()),
        "openmp_version": version,
        "simd_levels": _config.available_simd(),
        "float_kernel_levels": _config.float_kernel_levels(),
        "parallel_min_work": _spmm_ext.parallel_min_work(),
    }


def runtime_info() -> dict[str, Any]:
    """Facts about this process: effective configuration, CPUs, libraries, thread pools."""
    config = _config.get_config()
    return {
        "config": config,
        "available_backends": _config.available_backends(),
        "cpus_available": _config.default_num_threads(),
        "l2_cache_bytes": _spmm_ext.l2_cache_bytes(),
        "l2_cache_source": _spmm_ext.l2_cache_source(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "pool_workers_started": _spmm_ext.pool_workers(),
        "threadpool_info": threadpoolctl.threadpool_info(),
    }


def show_config(mode: str = "stdout") -> dict[str, Any] | None:
    """Show spmm's build and runtime configuration.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, default "stdout"
        ``"stdout"`` prints a readable report; ``"dicts"`` returns it as a dict with keys
        ``"version"``, ``"build"`` and ``"runtime"`` (for bug reports and benchmark records).

    Returns
    -------
    dict or None
        The report when ``mode="dicts"``.

    Raises
    ------
    ValueError
        If ``mode`` is unknown, or an ``SPMM_*`` environment variable is invalid.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts'; got {mode!r}")
    from . import __version__

    report = {"version": __version__, "build": build_info(), "runtime": runtime_info()}
    if mode == "dicts":
        return report
    print(format_report(report))
    return None


def format_report(report: dict[str, Any]) -> str:
    """The text ``show_config()`` prints."""
    build, runtime = report["build"], report["runtime"]
    config = runtime["config"]
    omp = (f"yes (_OPENMP {build['openmp_version']})" if build["openmp"]
           else "no (built without OpenMP)")
    lines = [
        f"spmm {report['version']}",
        "build:",
        f"  compiler:           {build['compiler']}",
        f"  compile args:       {build['compile_args']}",
        f"  openmp:             {omp}",
        f"  simd levels:        {', '.join(build['simd_levels'])}",
        f"  parallel min work:  {build['parallel_min_work']} (below it, products run on the "
        "calling thread)",
        "runtime:",
        f"  backend:            {config['backend']}",
        f"  num_threads:        {config['num_threads']}",
        f"  kernel:             {config['kernel']}",
        f"  simd:               {config['simd']}",
        f"  available backends: {', '.join(runtime['available_backends'])}",
        f"  cpus available:     {runtime['cpus_available']}",
        f"  L2 cache:           {runtime['l2_cache_bytes'] // 1024} KiB per core "
        f"({runtime['l2_cache_source']}; sizes the kernels' passes)",
        f"  pool workers:       {runtime['pool_workers_started']} running",
        f"  python:             {runtime['python']} on {runtime['platform']}",
        f"  numpy / scipy:      {runtime['numpy']} / {runtime['scipy']}",
        "thread pools (threadpoolctl):",
    ]
    for pool in runtime["threadpool_info"]:
        lines.append(
            f"  {pool.get('user_api')}/{pool.get('internal_api')}: "
            f"{pool.get('num_threads')} threads, {pool.get('filepath')}"
        )
    return "\n".join(lines)
