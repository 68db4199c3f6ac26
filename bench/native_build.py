"""Is the portable build as fast as a ``-march=native`` one?

Run: ``python bench/native_build.py [--rounds 10] [--threads 1] [--json FILE]`` from a checkout
with a compiler, Cython and numpy. It copies the source tree twice into a temporary directory
and builds the extension in each (``setup.py build_ext --inplace``): as the default build
does, and with ``SPMM_EXTRA_COMPILE_ARGS=-march=native``. Then it times X @ W (W 1024 x 4096 at
90 %, batch 64 and 256) and A @ B (the uniform science matrix, n = 8 and 64), float32, prepared,
with both builds in one process: each built package is imported under its own name, every
build multiplies the same operands into the same output, in blocks of calls that alternate
between the builds. Timing each build in its own process measured differences of up to 35 %
between processes of one and the same build (where the arrays landed in memory), more than the
5 % to resolve. A second copy of the portable build, timed the same way, gives the
measurement's own noise (the A/A column). Exit code 1 when portable / native is below 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from spmm_bench.matrices import generate
from spmm_bench.suites import SCIENCE_ROWS, SCIENCE_SPARSITY, MatrixSpec

GOAL = 0.95
SOURCE = Path(__file__).resolve().parent.parent
LAYER = MatrixSpec("dnn", (1024, 4096), "uniform", 0.9)
SCIENCE = MatrixSpec("science", (SCIENCE_ROWS, SCIENCE_ROWS), "uniform", SCIENCE_SPARSITY)
WORKLOADS = (("dnn 1024x4096 90% b64", LAYER, "xw", 64),
             ("dnn 1024x4096 90% b256", LAYER, "xw", 256),
             ("science 2^17 n=8", SCIENCE, "ab", 8), ("science 2^17 n=64", SCIENCE, "ab", 64))
# The packages, imported side by side: an extension's init function is named after the last
# part of its module name, so a renamed copy of a built package loads as it is. GCC binds the
# function-local statics of inline functions (the thread pool, the cached CPU level) once per
# process, so every copy uses the first copy's: harmless for serial and OpenMP products.
PACKAGES = {"portable": "spmm_portable", "native": "spmm_native", "again": "spmm_again"}

CHILD = r"""
import importlib, json, os, statistics, sys, time
import numpy as np, scipy.sparse as sp
root, threads, rounds, calls = sys.argv[1], *map(int, sys.argv[2:5])
labels = json.loads(sys.argv[5])
sys.path.insert(0, os.path.join(root, "packages"))
mods = {k: importlib.import_module(v) for k, v in labels.items()}
assert all(m.__file__.startswith(os.path.join(root, "packages")) for m in mods.values())
backend = "serial" if threads == 1 else "openmp"
times = {}
for w in json.load(open(os.path.join(root, "workloads.json"))):
    with np.load(os.path.join(root, w["matrix"])) as m:
        a = sp.csr_array((m["data"], m["indices"], m["indptr"]), shape=tuple(m["shape"]))
    dense = np.load(os.path.join(root, w["dense"]))
    if w["kind"] == "xw":
        dense, shape = np.asfortranarray(dense), (dense.shape[0], a.shape[1])
    else:
        shape = (a.shape[0], dense.shape[1])
    out = np.empty(shape, dtype=dense.dtype)
    run = {}
    for k, mod in mods.items():
        p = mod.prepare(a)
        ops = (dense, p) if w["kind"] == "xw" else (p, dense)
        run[k] = lambda mod=mod, ops=ops: mod.multiply(*ops, out=out, backend=backend,
                                                       num_threads=threads)
    samples, order = {k: [] for k in mods}, list(mods)
    for r in range(rounds):
        for k in order[r % 3:] + order[:r % 3]:
            run[k]()
            for _ in range(calls):
                start = time.perf_counter(); run[k]()
                samples[k].append(time.perf_counter() - start)
    times[w["name"]] = {k: statistics.median(s) for k, s in samples.items()}
builds = {k: {"compile_args": m.show_config(mode="dicts")["build"]["compile_args"],
              "simd": m.get_config()["simd"]} for k, m in mods.items() if k != "again"}
print(json.dumps({"times": times, "builds": builds}))
"""


def build(dest: Path, extra_args: str) -> Path:
    """Copy spmm's sources to ``dest`` and build the extension there with ``extra_args``."""
    ignore = shutil.ignore_patterns("*.so", "_spmm_ext.cpp", "__pycache__", "build", "*.egg-info")
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "include", "spmm"):
        src = SOURCE / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, dirs_exist_ok=True)
        elif src.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "--build-temp",
                           str(dest / "build")], cwd=dest, capture_output=True, text=True,
                          env={**os.environ, "SPMM_EXTRA_COMPILE_ARGS": extra_args})
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"building spmm in {dest} with {extra_args!r} failed:\n{tail}")
    return dest


def compare(rounds: int = 10, threads: int = 1, calls: int = 10, workdir: Path | None = None,
            log: Any = lambda text: print(text, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Build both, time them interleaved in one process; the medians and their ratios."""
    root = (workdir or Path(tempfile.mkdtemp(prefix="spmm-native-"))).resolve()
    try:
        builds = {}
        for label, extra in (("portable", ""), ("native", "-march=native")):
            log(f"building the {label} copy in {root}")
            builds[label] = build(root / label, extra)
        for label, package in PACKAGES.items():
            shutil.copytree(builds["portable" if label == "again" else label] / "spmm",
                            root / "packages" / package, dirs_exist_ok=True)
        described, rng = [], np.random.default_rng(0)
        for i, (name, spec, kind, n) in enumerate(WORKLOADS):
            a = generate(spec)
            np.savez(root / f"m{i}.npz", data=a.data.astype(np.float32), indices=a.indices,
                     indptr=a.indptr, shape=np.array(a.shape))
            shape = (n, spec.shape[0]) if kind == "xw" else (spec.shape[1], n)
            np.save(root / f"d{i}.npy", rng.standard_normal(shape).astype(np.float32))
            described.append({"name": name, "kind": kind, "matrix": f"m{i}.npz",
                              "dense": f"d{i}.npy"})
        (root / "workloads.json").write_text(json.dumps(described))
        log(f"timing the builds in one process, {rounds} interleaved rounds")
        env = {k: v for k, v in os.environ.items() if k not in ("SPMM_SIMD", "SPMM_KERNEL")}
        done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(threads),
                               str(rounds), str(calls), json.dumps(PACKAGES)], cwd=root,
                              env={**env, "OMP_NUM_THREADS": str(threads)}, timeout=1800,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"timing the builds failed: {done.stderr.strip()[-800:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        rows = [{"name": name, **{f"{k}_seconds": t[k] for k in ("portable", "native")},
                 "ratio": t["native"] / t["portable"], "noise": t["again"] / t["portable"]}
                for name, t in got["times"].items()]
        return {"rows": rows, "goal": GOAL, "rounds": rounds, "calls": calls,
                "threads": threads, "builds": got["builds"]}
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def format_table(summary: dict[str, Any]) -> str:
    """The comparison as text: portable / native = native time / portable time."""
    lines = [f"{'workload':28s} {'portable ms':>12s} {'native ms':>10s} {'portable/native':>16s}"
             f" {'A/A noise':>10s}"]
    lines += [f"{r['name']:28s} {r['portable_seconds'] * 1e3:12.3f} "
              f"{r['native_seconds'] * 1e3:10.3f} {r['ratio']:16.3f} {r['noise']:10.3f}  "
              + ("ok" if r["ratio"] >= summary["goal"] else "BELOW GOAL") for r in summary["rows"]]
    lines += [f"{k}: compile args {b['compile_args']!r}, SIMD {b['simd']}"
              for k, b in summary["builds"].items()]
    lines.append(f"goal: portable/native >= {summary['goal']}; {summary['rounds']} interleaved "
                 f"rounds, {summary['threads']} thread(s); A/A: a second portable copy")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/native_build.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    p.add_argument("--threads", type=int, default=1,
                   help="1: the serial backend; more: openmp (default 1)")
    p.add_argument("--calls", type=int, default=10, help="timed calls per block (default 10)")
    p.add_argument("--workdir", type=Path, help="build here and keep it (default: a temporary "
                                                "directory, removed)")
    p.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args(argv)
    summary = compare(args.rounds, args.threads, args.calls, args.workdir)
    print(format_table(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return int(any(r["ratio"] < GOAL for r in summary["rows"]))


if __name__ == "__main__":
    sys.exit(main())
