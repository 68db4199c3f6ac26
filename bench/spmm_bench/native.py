"""The portable build against a native one (issue 5, item 2).

spmm's default build has no ``-march`` flag: its AVX2/AVX-512 kernels are compiled with target
pragmas and chosen at run time. This module checks what that costs. It copies the source tree
twice into a temporary directory and builds the extension in each copy (``setup.py build_ext
--inplace``): once as the default build does, once with ``SPMM_EXTRA_COMPILE_ARGS=-march=native``
(setup.py), so both come from the same sources and compiler and differ only by that flag. Then
it times a few products with both builds in one process (each built package copied under its
own name; the process checks it imported those copies), interleaving blocks of calls on the
same operands and output, and reports the medians and the portable build's share of the native
build's speed: native time / portable time, target >= :data:`GOAL`. A second copy of the
portable build, timed the same way, gives the measurement's own noise (A/A ratio).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .store import generate
from .suites import SCIENCE_PER_ROW, SCIENCE_ROWS, MatrixSpec

GOAL = 0.95
EXTRA_ARGS = "-march=native"
BENCH_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIR = BENCH_DIR.parent

_SCIENCE = MatrixSpec("science", (SCIENCE_ROWS, SCIENCE_ROWS), "uniform",
                      1 - SCIENCE_PER_ROW / SCIENCE_ROWS)
_LAYER = MatrixSpec("dnn", (1024, 4096), "uniform", 0.9)
# (name, sparse operand, kind, dense width): the suites' matrices, fp32.
WORKLOADS = (("dnn 1024x4096 uniform 90% b64", _LAYER, "xw", 64),
             ("dnn 1024x4096 uniform 90% b256", _LAYER, "xw", 256),
             ("science 131072x131072 uniform n=8", _SCIENCE, "ab", 8),
             ("science 131072x131072 uniform n=64", _SCIENCE, "ab", 64))

# Copied into each build directory: what setup.py and pyproject.toml need.
_SOURCES = ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "include", "spmm")
_IGNORE = shutil.ignore_patterns("*.so", "_spmm_ext.cpp", "__pycache__", "build", "*.egg-info")

# The builds' packages, imported side by side in one process under these names: the package
# imports itself relatively, and an extension module's init function is named after the last
# part of its name only (PyInit__spmm_ext), so a renamed copy of a built package loads as it
# is. "again" is a second copy of the portable build: its ratio to the portable one is the
# measurement's own noise (an A/A comparison), shown beside the A/B one. The copies are not
# wholly separate: GCC emits function-local statics of inline functions (the thread pool's
# registry, the cached CPU levels) as STB_GNU_UNIQUE symbols, which the loader binds once per
# process, so every copy uses the first copy's. Harmless here: the comparison runs the serial
# (or openmp) backend, and the cached values are the same for every copy; a comparison of the
# threads backend would run every copy's products on one pool.
PACKAGES = {"portable": "spmm_portable", "native": "spmm_native", "again": "spmm_portable_again"}

# Runs in the timing process: argv = packages dir, operands dir, threads, rounds, calls.
# Every build multiplies the same dense operand into the same output array (each prepares its
# own copy of the sparse one, which the A/A copy's ratio covers), in blocks of `calls`
# timed calls that alternate between the builds, `rounds` times, the order rotating. Timing
# each build in its own process instead measured differences of up to 35 % between processes
# of the same build (where the kernel's output and CSR arrays landed in memory, against the
# caches and the TLB), more than the 5 % the comparison has to resolve.
_CHILD = r"""
import importlib, json, os, statistics, sys, time
packages_dir, ops = sys.argv[1], sys.argv[2]
threads, rounds, calls = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
labels = json.loads(sys.argv[6])
sys.path.insert(0, packages_dir)
import numpy as np, scipy.sparse as sp
mods = {label: importlib.import_module(name) for label, name in labels.items()}
for name, mod in zip(labels.values(), mods.values()):
    assert os.path.dirname(mod.__file__) == os.path.join(packages_dir, name), mod.__file__
backend = "serial" if threads == 1 else "openmp"
times = {}
with open(os.path.join(ops, "workloads.json")) as f:
    workloads = json.load(f)
for w in workloads:
    with np.load(os.path.join(ops, w["matrix"])) as m:
        a = sp.csr_array((m["data"], m["indices"], m["indptr"]), shape=tuple(m["shape"]))
    dense = np.load(os.path.join(ops, w["dense"]))
    if w["kind"] == "xw":
        left = np.asfortranarray(dense)
        out = np.empty((dense.shape[0], a.shape[1]), dtype=dense.dtype)
    else:
        left = dense
        out = np.empty((a.shape[0], dense.shape[1]), dtype=dense.dtype)
    calls_of = {}
    for label, mod in mods.items():
        p = mod.prepare(a)
        operands = (left, p) if w["kind"] == "xw" else (p, left)
        calls_of[label] = (lambda mod=mod, operands=operands: mod.multiply(
            *operands, out=out, backend=backend, num_threads=threads))
    samples = {label: [] for label in mods}
    order = list(mods)
    for r in range(rounds):
        for label in order[r % len(order):] + order[:r % len(order)]:
            call = calls_of[label]
            call()
            for _ in range(calls):
                start = time.perf_counter(); call()
                samples[label].append(time.perf_counter() - start)
    times[w["name"]] = {label: statistics.median(s) for label, s in samples.items()}
facts = {label: {"compile_args": mod.show_config(mode="dicts")["build"]["compile_args"],
                 "simd": mod.show_config(mode="dicts")["runtime"]["config"]["simd"]}
         for label, mod in mods.items()}
print(json.dumps({"times": times, "builds": facts}))
"""


def build(dest: Path, extra_args: str, source: Path = SOURCE_DIR) -> Path:
    """Copy spmm's sources to ``dest`` and build the extension there with ``extra_args``.

    Raises
    ------
    RuntimeError
        If the build fails (with the end of its output).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in _SOURCES:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_IGNORE, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / name)
    env = {**os.environ, "SPMM_EXTRA_COMPILE_ARGS": extra_args}
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace",
                           "--build-temp", str(dest / "build")],
                          cwd=dest, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"building spmm in {dest} with {extra_args!r} failed:\n{tail}")
    return dest


def save_operands(dest: Path) -> None:
    """The workloads' operands as files the timing process loads (float32)."""
    dest.mkdir(parents=True, exist_ok=True)
    described, matrices = [], {}
    rng = np.random.default_rng(0)
    for name, spec, kind, n in WORKLOADS:
        if spec.id not in matrices:
            a = generate(spec)
            matrices[spec.id] = f"matrix{len(matrices)}.npz"
            np.savez(dest / matrices[spec.id], data=a.data.astype(np.float32),
                     indices=a.indices, indptr=a.indptr, shape=np.array(a.shape))
        rows, cols = spec.shape
        shape = (n, rows) if kind == "xw" else (cols, n)
        dense = f"dense{len(described)}.npy"
        np.save(dest / dense, rng.standard_normal(shape).astype(np.float32))
        described.append({"name": name, "kind": kind, "matrix": matrices[spec.id],
                          "dense": dense})
    (dest / "workloads.json").write_text(json.dumps(described))


def install_packages(builds: dict[str, Path], dest: Path) -> Path:
    """Copy each built ``spmm`` package to ``dest`` under its name in :data:`PACKAGES`."""
    dest.mkdir(parents=True, exist_ok=True)
    for label, name in PACKAGES.items():
        source = builds["portable" if label == "again" else label] / "spmm"
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _time(packages: Path, operands: Path, threads: int, rounds: int,
          calls: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPMM_SIMD", "SPMM_KERNEL")}
    env.update(OMP_NUM_THREADS=str(threads), SPMM_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(packages), str(operands),
                           str(threads), str(rounds), str(calls), json.dumps(PACKAGES)],
                          cwd=operands, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"timing the builds failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(rounds: int = 10, threads: int = 1, calls: int = 10,
            workdir: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Build both copies, time them interleaved in one process, and summarize.

    Parameters
    ----------
    rounds : int
        Rounds of interleaving: in each, every build runs ``calls`` timed calls in turn.
    threads : int
        Threads per product (1: the serial backend; more: openmp).
    calls : int
        Timed calls per build, workload and round (the median of all is taken).
    workdir : Path, optional
        Where to build (kept); default a temporary directory, removed afterwards.
    log : callable
        Where progress lines go.

    Returns
    -------
    dict
        ``rows`` (per workload: ``name``, ``portable_seconds``, ``native_seconds``,
        ``ratio`` = native / portable time, ``noise`` = the second portable copy's time /
        the portable one's), ``goal``, ``extra_args``, ``rounds``, ``calls``, ``threads``,
        ``backend``, ``method`` and ``builds`` (``compile_args`` and ``simd`` of each).
    """
    root = (workdir or Path(tempfile.mkdtemp(prefix="spmm-native-"))).resolve()
    try:
        builds = {}
        for label, extra in (("portable", ""), ("native", EXTRA_ARGS)):
            log(f"building the {label} copy{' with ' + extra if extra else ''} in {root}")
            builds[label] = build(root / label, extra)
        save_operands(root / "operands")
        packages = install_packages(builds, root / "packages")
        log(f"timing both builds in one process, {rounds} interleaved rounds")
        got = _time(packages, root / "operands", threads, rounds, calls)
        rows = []
        for name, *_ in WORKLOADS:
            t = got["times"][name]
            rows.append({"name": name, "portable_seconds": t["portable"],
                         "native_seconds": t["native"], "ratio": t["native"] / t["portable"],
                         "noise": t["again"] / t["portable"]})
        return {"rows": rows, "goal": GOAL, "extra_args": EXTRA_ARGS, "rounds": rounds,
                "calls": calls, "threads": threads,
                "backend": "serial" if threads == 1 else "openmp",
                "method": "one process, builds interleaved on shared operands",
                "builds": {k: v for k, v in got["builds"].items() if k != "again"}}
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def format_table(summary: dict[str, Any]) -> str:
    """The comparison as plain text."""
    lines = [f"{'workload':40s} {'portable ms':>12s} {'native ms':>10s} {'portable/native':>16s}"
             f" {'A/A noise':>10s}"]
    for r in summary["rows"]:
        verdict = "ok" if r["ratio"] >= summary["goal"] else "BELOW TARGET"
        noise = f"{r['noise']:10.3f}" if "noise" in r else f"{'-':>10s}"
        lines.append(f"{r['name']:40s} {r['portable_seconds'] * 1e3:12.3f} "
                     f"{r['native_seconds'] * 1e3:10.3f} {r['ratio']:16.3f} {noise}  {verdict}")
    for label, f in summary["builds"].items():
        lines.append(f"{label}: compile args {f['compile_args']!r}, SIMD level {f['simd']}")
    lines.append(f"portable/native = native time / portable time (target >= {summary['goal']});"
                 f" {summary['rounds']} interleaved rounds, {summary['threads']} thread(s); "
                 "A/A noise = a second copy of the portable build against the first")
    return "\n".join(lines)
