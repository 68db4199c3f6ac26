"""The portable build against a native one (issue 5, item 2).

spmm's default build has no ``-march`` flag: its AVX2/AVX-512 kernels are compiled with target
pragmas and chosen at run time. This module checks what that costs. It copies the source tree
twice into a temporary directory and builds the extension in each copy (``setup.py build_ext
--inplace``): once as the default build does, once with ``SPMM_EXTRA_COMPILE_ARGS=-march=native``
(setup.py), so both come from the same sources and compiler and differ only by that flag. Then
it times a few products with each build, each round in a fresh process per build (the build's
directory first on ``sys.path``; the process checks it imported that copy), alternating which
build goes first, and reports the medians over rounds and the portable build's share of the
native build's speed: native time / portable time, target >= :data:`GOAL`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
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

# Runs in the timing process: argv = build dir, bench dir, operands dir, threads, calls.
_CHILD = r"""
import json, os, statistics, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import numpy as np, scipy.sparse as sp
import spmm
build, ops, threads, calls = sys.argv[1], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
assert os.path.dirname(os.path.dirname(spmm.__file__)) == build, spmm.__file__
backend = "serial" if threads == 1 else "openmp"
times = {}
with open(os.path.join(ops, "workloads.json")) as f:
    workloads = json.load(f)
for w in workloads:
    with np.load(os.path.join(ops, w["matrix"])) as m:
        a = sp.csr_array((m["data"], m["indices"], m["indptr"]), shape=tuple(m["shape"]))
    dense = np.load(os.path.join(ops, w["dense"]))
    p = spmm.prepare(a)
    if w["kind"] == "xw":
        left, right = np.asfortranarray(dense), p
        out = np.empty((dense.shape[0], a.shape[1]), dtype=dense.dtype)
    else:
        left, right = p, dense
        out = np.empty((a.shape[0], dense.shape[1]), dtype=dense.dtype)
    call = lambda: spmm.multiply(left, right, out=out, backend=backend, num_threads=threads)
    call(); call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter(); call(); samples.append(time.perf_counter() - start)
    times[w["name"]] = statistics.median(samples)
config = spmm.show_config(mode="dicts")
print(json.dumps({"times": times, "compile_args": config["build"]["compile_args"],
                  "simd": config["runtime"]["config"]["simd"]}))
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
    """The workloads' operands as files every timing process loads (float32)."""
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


def _time(build_dir: Path, operands: Path, threads: int, calls: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPMM_SIMD", "SPMM_KERNEL")}
    env.update(OMP_NUM_THREADS=str(threads), SPMM_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(build_dir), str(BENCH_DIR),
                           str(operands), str(threads), str(calls)],
                          cwd=operands, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"timing {build_dir.name} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(rounds: int = 5, threads: int = 1, calls: int = 15,
            workdir: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Build both copies, time them interleaved, and summarize.

    Parameters
    ----------
    rounds : int
        Timing rounds; each runs one process per build, the order alternating.
    threads : int
        Threads per product (1: the serial backend; more: openmp).
    calls : int
        Timed calls per workload in each process (the median is taken).
    workdir : Path, optional
        Where to build (kept); default a temporary directory, removed afterwards.
    log : callable
        Where progress lines go.

    Returns
    -------
    dict
        ``rows`` (per workload: ``name``, ``portable_seconds``, ``native_seconds``,
        ``ratio`` = native / portable time), ``goal``, ``extra_args``, ``rounds``,
        ``threads``, ``backend``, ``compile_args`` and ``simd`` of each build.
    """
    root = (workdir or Path(tempfile.mkdtemp(prefix="spmm-native-"))).resolve()
    try:
        builds = {}
        for label, extra in (("portable", ""), ("native", EXTRA_ARGS)):
            log(f"building the {label} copy{' with ' + extra if extra else ''} in {root}")
            builds[label] = build(root / label, extra)
        save_operands(root / "operands")
        samples: dict[str, list[dict[str, float]]] = {"portable": [], "native": []}
        facts: dict[str, dict[str, str]] = {}
        for i in range(rounds):
            order = ("portable", "native") if i % 2 == 0 else ("native", "portable")
            for label in order:
                got = _time(builds[label], root / "operands", threads, calls)
                samples[label].append(got["times"])
                facts[label] = {"compile_args": got["compile_args"], "simd": got["simd"]}
            log(f"round {i + 1}/{rounds} done")
        rows = []
        for name, *_ in WORKLOADS:
            portable = statistics.median(s[name] for s in samples["portable"])
            native = statistics.median(s[name] for s in samples["native"])
            rows.append({"name": name, "portable_seconds": portable, "native_seconds": native,
                         "ratio": native / portable})
        return {"rows": rows, "goal": GOAL, "extra_args": EXTRA_ARGS, "rounds": rounds,
                "threads": threads, "backend": "serial" if threads == 1 else "openmp",
                "builds": facts}
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def format_table(summary: dict[str, Any]) -> str:
    """The comparison as plain text."""
    lines = [f"{'workload':40s} {'portable ms':>12s} {'native ms':>10s} {'portable/native':>16s}"]
    for r in summary["rows"]:
        verdict = "ok" if r["ratio"] >= summary["goal"] else "BELOW TARGET"
        lines.append(f"{r['name']:40s} {r['portable_seconds'] * 1e3:12.3f} "
                     f"{r['native_seconds'] * 1e3:10.3f} {r['ratio']:16.3f}  {verdict}")
    for label, f in summary["builds"].items():
        lines.append(f"{label}: compile args {f['compile_args']!r}, SIMD level {f['simd']}")
    lines.append(f"portable/native = native time / portable time (target >= {summary['goal']});"
                 f" {summary['rounds']} interleaved rounds, {summary['threads']} thread(s)")
    return "\n".join(lines)
