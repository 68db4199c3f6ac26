"""Run spmm's comparison benchmarks: ``python bench/run.py --help``.

Run it as a script (not ``python -m``): Python then puts ``bench/`` first on ``sys.path``, so
``spmm_bench`` is found here and ``spmm`` is the installed package, never the uncompiled source
tree at the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from spmm_bench import machine, report, runner, suites

DTYPES = ("float32", "float64")


def default_scaling_threads(cpus: int) -> list[int]:
    """1, the powers of two below the CPUs, the CPUs, then CPUs + 1 and 2 x CPUs (these two
    oversubscribe, to show what that costs each backend)."""
    return sorted({1, cpus, cpus + 1, 2 * cpus, *(2**k for k in range(1, cpus.bit_length())
                                                  if 2**k < cpus)})


def _ints(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be positive integers: {text!r}")
    return values


def _names(valid: tuple[str, ...], none: bool = False) -> Callable[[str], list[str]]:
    """An argparse type: a comma list of ``valid`` names, ``all``, or (if allowed) ``none``."""
    def parse(text: str) -> list[str]:
        if text == "all" or (none and text == "none"):
            return list(valid) if text == "all" else []
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in valid]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"invalid value(s) {bad or text!r}; choose from {', '.join(valid)}, 'all'"
                + (" or 'none'" if none else ""))
        return list(dict.fromkeys(values))
    return parse


def build_parser(cpus: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Compare spmm with scipy, the dense product and the installed peers "
                    "(PyTorch, sparse_dot_mkl, python-graphblas) on the same matrices, and "
                    "check the goals of a goals file. Writes results.json, report.md, "
                    "auto_check.csv and PNG plots to --out. Method: docs/benchmarks.md.",
        epilog="Examples: python bench/run.py --suite quick | python bench/run.py --suite "
               "formats --out formats-results | python bench/run.py --matrix A.mtx")
    p.add_argument("--suite", choices=suites.SUITES + suites.HIDDEN_SUITES + tuple(
                       suites.CLUSTERS) + tuple(suites.PRECISION), default=None,
                   metavar="{" + ",".join(suites.SUITES) + ",dask,precision}",
                   help="workloads (default: quick, or only the --matrix file's); 'dask': "
                        "products on dask arrays in one process and on LocalClusters of 1 and "
                        "2 workers (needs dask and distributed: pip install '.[dask]'); "
                        "'precision': bfloat16, float16 and int8 prepared matrices against "
                        "the float32 one (--threads, default 1,2; --repeat samples)")
    p.add_argument("--threads", type=_ints, default=None, metavar="N[,N...]",
                   help=f"thread counts for every library (default: 1 and all CPUs: "
                        f"{sorted({1, cpus})})")
    p.add_argument("--scaling-threads", type=_ints, default=None, metavar="N[,N...]",
                   help="thread counts of the parallel backends on the scaling workloads "
                        f"(default: --threads when given, else {default_scaling_threads(cpus)})")
    p.add_argument("--dtype", type=_names(DTYPES), default=["float32"],
                   metavar="float32|float64[,...]",
                   help="value types where a suite does not fix them (default: float32)")
    p.add_argument("--repeat", type=int, default=9,
                   help="timed samples per point over all rounds (default: 9)")
    p.add_argument("--rounds", type=int, default=3,
                   help="passes over the grid, each in fresh processes, the group order "
                        "rotating; the samples of all passes are pooled (default: 3)")
    p.add_argument("--budget", type=float, default=1.0, metavar="SECONDS",
                   help="timing budget per point, shared by the rounds (default: 1.0)")
    p.add_argument("--backends", type=_names(runner.BACKENDS), default=list(runner.BACKENDS),
                   metavar="serial,openmp,threads", help="spmm backends (default: all built)")
    p.add_argument("--kernels", type=_names(runner.KERNELS), default=["auto"],
                   metavar="auto,naive,reordered,tiled|all",
                   help="spmm kernels of every backend on every workload (default: auto)")
    p.add_argument("--peers", type=_names(suites.PEERS, none=True), default=list(suites.PEERS),
                   metavar=",".join(suites.PEERS) + "|none",
                   help="peers besides scipy (always run: the reference) and spmm; one that "
                        "is not installed is reported as skipped (default: all)")
    p.add_argument("--matrix", metavar="PATH",
                   help="a Matrix Market file: A in A @ B with B of 1, 8 and 64 columns")
    p.add_argument("--only", default="", metavar="TEXT[,TEXT...]",
                   help="keep the workloads whose id contains one of these, e.g. "
                        "'1024x4096/uniform' or 'batch256' (ids are in results.json)")
    p.add_argument("--goals", default=str(runner.BENCH_DIR / "goals.json"), metavar="FILE",
                   help="the goals to evaluate (default: bench/goals.json)")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="where the outputs go (default: bench-results/)")
    p.add_argument("--native", action="store_true",
                   help="also compare the portable build with a -march=native one built from "
                        "this source tree (python bench/native_build.py; a few minutes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--in-process", action="store_true",
                   help="every library in this process (debugging only: thread limits then "
                        "rely on threadpoolctl, which MKL does not obey)")
    return p


def options_from_args(args: argparse.Namespace, cpus: int) -> runner.Options:
    """The run's options, defaults resolved for ``cpus``."""
    threads = args.threads or sorted({1, cpus})
    scaling = args.scaling_threads or (threads if args.threads else default_scaling_threads(cpus))
    return runner.Options(
        suite=args.suite or (None if args.matrix else "quick"), threads=threads,
        scaling_threads=scaling, dtypes=args.dtype, repeat=max(1, args.repeat),
        rounds=max(1, args.rounds), budget_seconds=args.budget, backends=args.backends,
        kernels=args.kernels, peers=args.peers, matrix=args.matrix,
        only=[t for t in args.only.split(",") if t], isolate=not args.in_process,
        goals=args.goals)


def main(argv: list[str] | None = None) -> int:
    """Run, write the outputs, print the summary. Exit code 1 when an spmm point failed (a
    wrong result from spmm is a bug); a failing peer is reported, not fatal."""
    cpus = machine.cpu_count()
    args = build_parser(cpus).parse_args(argv)
    if args.suite in suites.CLUSTERS:
        return run_cluster_suite(args.suite, cpus, Path(args.out), not args.no_progress)
    if args.suite in suites.PRECISION:
        return run_precision_suite(args, Path(args.out))
    command = ["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
    results = runner.run(options_from_args(args, cpus), progress=not args.no_progress,
                         command=command)
    if args.native:
        import native_build

        try:
            results["native_build"] = native_build.compare(threads=min(args.threads or [1]))
        except Exception as exc:  # no compiler, a failed build: reported, the run counts
            results["notes"].append(f"native build not measured: {type(exc).__name__}: {exc}")
    files = report.write(results, Path(args.out))
    print(report.terminal(results))
    print(f"\nwrote {', '.join(str(f) for f in files)}")
    for note in results["notes"]:
        print(f"note: {note}")
    return int(any(r["status"] == "failed" and r["library"] == "spmm"
                   for r in results["measurements"]))


def run_cluster_suite(suite: str, cpus: int, out: Path, progress: bool) -> int:
    """The dask suite (``spmm_bench.cluster``): writes dask.json and dask.md to ``out``."""
    from spmm_bench import cluster

    results = cluster.run(suites.CLUSTERS[suite], cpus, progress)
    results["machine"] = machine.describe()
    write_suite(out, "dask", results, cluster.markdown(results))
    return 0


def write_suite(out: Path, name: str, results: dict, table: str) -> None:
    """``name``.json (the results) and ``name``.md (``table``, also printed) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    (out / f"{name}.md").write_text(table)
    print(table)
    print(f"wrote {out / f'{name}.json'}, {out / f'{name}.md'}")


def run_precision_suite(args: argparse.Namespace, out: Path) -> int:
    """The precision suite (``spmm_bench.precision``): writes precision.json and precision.md
    to ``out``; exit code 1 when a format's result was wrong."""
    from spmm_bench import precision

    described = machine.describe()
    threads = tuple(args.threads or suites.PRECISION_THREADS)
    results = precision.run(suites.PRECISION[args.suite], described["llc_bytes"], threads,
                            max(1, args.repeat), progress=not args.no_progress)
    goals_spec = json.loads(Path(args.goals).read_text())
    results["goals"] = precision.evaluate(results, goals_spec.get("precision", []))
    model = [line.split(":", 1)[1].strip() for line in described["lscpu"].splitlines()
             if line.startswith("Model name:")]
    results.update(machine=described, cpu_model=model[0] if model else None,
                   command=["python", "bench/run.py", *sys.argv[1:]])
    write_suite(out, "precision", results, precision.markdown(results))
    return int(any(r["status"] == "failed" for r in results["measurements"]))


if __name__ == "__main__":
    sys.exit(main())
