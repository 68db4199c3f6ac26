"""The command line: ``python bench/run.py [options]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import autocheck, libraries, machine, plan, plots, report, suites

DTYPES = ("float32", "float64")


def default_scaling_threads(cpus: int) -> list[int]:
    """1, the powers of two up to the CPUs, the CPUs, then CPUs + 1 and 2 x CPUs: the last
    two oversubscribe, to show what that costs each backend."""
    counts = {1, cpus, cpus + 1, 2 * cpus}
    t = 2
    while t < cpus:
        counts.add(t)
        t *= 2
    return sorted(counts)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be positive integers: {text!r}")
    return sorted(set(values))


def _choice_list(valid: tuple[str, ...], everything: tuple[str, ...] | None = None,
                 allow_none: bool = False) -> Callable[[str], list[str]]:
    """An argparse type: a comma list of ``valid`` names (or ``all`` / ``none``)."""

    def parse(text: str) -> list[str]:
        if allow_none and text == "none":
            return []
        if text == "all" and everything is not None:
            return list(everything)
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in valid]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"invalid value(s) {bad or text!r}; choose from {', '.join(valid)}"
                + (" or 'all'" if everything else "") + (" or 'none'" if allow_none else ""))
        return list(dict.fromkeys(values))
    return parse


def build_parser(cpus: int) -> argparse.ArgumentParser:
    """The argument parser; ``cpus`` sets the defaults shown in ``--help``."""
    peers = tuple(libraries.PEERS)
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Compare spmm's backends, kernels and thread counts with scipy, the dense "
                    "product and the installed peers (PyTorch, sparse_dot_mkl, "
                    "python-graphblas). Writes results.json, report.md and PNG plots to --out. "
                    "Methodology: docs/benchmarks.md.",
        epilog="Examples: python bench/run.py --suite quick | "
               "python bench/run.py --suite all --out docs/benchmark-results | "
               "python bench/run.py --matrix A.mtx --threads 1,4 --peers mkl")
    p.add_argument("--suite", choices=suites.SUITES + suites.HIDDEN_SUITES, default=None,
                   metavar="{" + ",".join(suites.SUITES) + "}",
                   help="workloads to run (default: quick, or only the --matrix file's "
                        "workloads when --matrix is given)")
    p.add_argument("--threads", type=_int_list, default=None, metavar="N[,N...]",
                   help=f"thread counts for every library (default: 1 and all CPUs: "
                        f"{sorted({1, cpus})})")
    p.add_argument("--scaling-threads", type=_int_list, default=None, metavar="N[,N...]",
                   help="extra thread counts for spmm's parallel backends on the scaling "
                        "workloads (default: --threads when given, else "
                        f"{default_scaling_threads(cpus)}, oversubscription included)")
    p.add_argument("--dtype", type=_choice_list(DTYPES, DTYPES), default=["float32"],
                   metavar="float32|float64[,...]", help="value types (default: float32)")
    p.add_argument("--repeat", type=int, default=7,
                   help="timed repeats per measurement, after warm-up (default: 7; at least 3 "
                        "are taken, and no more once --budget seconds are spent)")
    p.add_argument("--budget", type=float, default=1.0, metavar="SECONDS",
                   help="timing budget per measurement (default: 1.0)")
    p.add_argument("--backends", type=_choice_list(plan.BACKENDS, plan.BACKENDS),
                   default=list(plan.BACKENDS), metavar="serial,openmp,threads",
                   help="spmm backends (default: all that this build has)")
    p.add_argument("--kernels", type=_choice_list(plan.KERNELS, plan.KERNELS),
                   default=["auto"], metavar="auto,naive,reordered,tiled|all",
                   help="spmm kernels measured on every workload (default: auto; the kernel "
                        "ablation subset always gets naive, reordered and tiled)")
    p.add_argument("--peers", type=_choice_list(peers, peers, allow_none=True),
                   default=list(peers), metavar=",".join(peers) + "|none",
                   help="libraries compared besides scipy (always run: it is the reference "
                        "and the baseline) and spmm; a peer that is not installed is "
                        "reported as skipped (default: all)")
    p.add_argument("--matrix", metavar="PATH",
                   help="a Matrix Market file: A in A @ B with B of 1, 8 and 64 columns")
    p.add_argument("--only", default=None, metavar="TEXT[,TEXT...]",
                   help="keep only the workloads whose id contains one of these strings, e.g. "
                        "'1024x4096/uniform' or 'batch256' (ids are listed in results.json)")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="directory for results.json, report.md and the plots "
                        "(default: bench-results/)")
    p.add_argument("--native", action="store_true",
                   help="also build spmm with -march=native from this source tree and compare "
                        "it with the portable build (needs a compiler; a few minutes; the same "
                        "as python bench/native_build.py)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--in-process", action="store_true",
                   help="run every library in this process (debugging only: thread limits "
                        "then rely on threadpoolctl, which MKL does not obey)")
    return p


def options_from_args(args: argparse.Namespace, cpus: int) -> plan.Options:
    """The run's :class:`plan.Options` from parsed arguments, defaults resolved for ``cpus``."""
    suite = args.suite if args.suite is not None else (None if args.matrix else "quick")
    threads = args.threads or sorted({1, cpus})
    if args.scaling_threads is not None:
        scaling = args.scaling_threads
    else:
        scaling = threads if args.threads else default_scaling_threads(cpus)
    return plan.Options(suite=suite, threads=threads, scaling_threads=scaling,
                        dtypes=args.dtype, repeat=max(1, args.repeat),
                        budget_seconds=args.budget, backends=args.backends,
                        kernels=args.kernels, peers=args.peers, matrix=args.matrix,
                        only=[t for t in (args.only or "").split(",") if t],
                        isolate=not args.in_process)


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits (timing noise is far above that), recursively."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def dump_json(results: dict[str, Any]) -> str:
    """``results`` as JSON, floats to 6 significant digits, indented except that each
    measurement and each break-even entry takes one line (a full run has thousands)."""
    results = _rounded(results)
    flat = ("measurements", "break_even")
    head = json.dumps({k: v for k, v in results.items() if k not in flat}, indent=1,
                      default=str)
    parts = [head[:-2]]  # without the closing "\n}"
    for key in flat:
        items = ",\n  ".join(json.dumps(item, default=str) for item in results.get(key, []))
        parts.append(f',\n "{key}": [\n  {items}\n ]' if items else f',\n "{key}": []')
    return "".join(parts) + "\n}\n"


def write_outputs(results: dict[str, Any], out: Path) -> list[Path]:
    """results.json, report.md and the plots in ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = plots.write_all(results, out)
    path = out / "results.json"
    path.write_text(dump_json(results))
    report_path = out / "report.md"
    report_path.write_text(report.markdown(results, [p.name for p in written]))
    files = [path, report_path]
    if (results.get("auto_check") or {}).get("rows"):
        csv_path = out / "auto_check.csv"
        csv_path.write_text(autocheck.to_csv(results["auto_check"]))
        files.append(csv_path)
    return [*files, *written]


def _native(threads: int) -> dict[str, Any]:
    """The portable build against -march=native, or the reason it could not be measured."""
    from . import native

    try:
        return native.compare(threads=threads,
                              log=lambda text: print(text, file=sys.stderr, flush=True))
    except Exception as exc:  # no compiler, a failed build: reported, the run still counts
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    """Run the suite and write its outputs.

    The exit code is 1 when an spmm measurement failed (a wrong result from spmm is a bug);
    a failing peer is reported, not fatal.
    """
    from . import runner

    cpus = machine.cpu_count()
    args = build_parser(cpus).parse_args(argv)
    options = options_from_args(args, cpus)
    command = ["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]
    results = runner.run(options, progress=not args.no_progress, command=command)
    if args.native:
        results["native_build"] = _native(min(options.threads))
    files = write_outputs(results, Path(args.out))
    print(report.terminal(results))
    print(f"\nwrote {', '.join(str(f) for f in files)}")
    for note in results["notes"]:
        print(f"note: {note}")
    failed = [r for r in results["measurements"]
              if r["status"] == "failed" and r["library"] == "spmm"]
    return 1 if failed else 0
