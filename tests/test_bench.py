"""Tests of the benchmark harness itself (bench/spmm_bench), not of spmm's speed.

The harness is imported from bench/ (never from the repository root, whose spmm/ is the
uncompiled source tree). Everything here runs with only the ``test`` extra installed: no tqdm,
matplotlib, torch, MKL or GraphBLAS needed; the tiny suite takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from spmm_bench import (  # noqa: E402 - importable only once bench/ is on the path
    checking,
    cli,
    disturbance,
    libraries,
    matrices,
    metrics,
    plan,
    runner,
    suites,
)
from spmm_bench.progress import Progress  # noqa: E402

RECORD_KEYS = {
    "library", "backend", "kernel", "partition", "variant", "threads", "dtype", "workload",
    "workload_id", "status", "reason", "median", "min", "max", "samples", "gflops",
    "speedup_vs_scipy", "speedup_vs_dense", "roofline_fraction", "arithmetic_intensity",
    "cpu_wall_ratio", "thread_limit_ok", "disturbed", "disturbed_reasons", "remeasured",
}
TOP_KEYS = {"machine", "spmm", "libraries", "workers", "workloads", "measurements",
            "break_even", "notes", "options", "started", "duration_seconds"}


def tiny_options(**kw: Any) -> plan.Options:
    """The tiny suite on one thread, with short timing."""
    defaults = dict(suite="tiny", threads=[1], scaling_threads=[1], repeat=3,
                    budget_seconds=0.05, peers=[], isolate=False)
    return plan.Options(**{**defaults, **kw})


def run_quietly(options: plan.Options) -> dict[str, Any]:
    return runner.run(options, progress=False, log=lambda text: None)


def by_library(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in results["measurements"] if r["library"] == name]


# -- end to end ----------------------------------------------------------------------------


def test_cli_help_runs_from_anywhere(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--suite" in done.stdout and "--matrix" in done.stdout


def test_tiny_suite_end_to_end_in_worker_processes_writes_valid_json(tmp_path: Path) -> None:
    code = cli.main(["--suite", "tiny", "--threads", "1", "--peers", "dense", "--repeat", "3",
                     "--budget", "0.05", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert TOP_KEYS <= set(results)
    assert (tmp_path / "report.md").read_text().startswith("# spmm benchmark report")
    measurements = results["measurements"]
    assert measurements
    for r in measurements:
        assert RECORD_KEYS <= set(r), RECORD_KEYS - set(r)
        assert r["status"] in ("ok", "failed", "skipped")
    ok = [r for r in measurements if r["status"] == "ok"]
    assert {r["library"] for r in ok} == {"scipy", "spmm", "dense"}
    assert all(r["status"] == "ok" for r in measurements), [
        (r["label"], r["reason"]) for r in measurements if r["status"] != "ok"]
    for r in ok:
        assert r["min"] <= r["median"] <= r["max"]
        assert r["cpu_wall_ratio"] > 0
        if r["variant"] != "prepare":
            assert r["gflops"] > 0 and r["speedup_vs_scipy"] > 0
    # Each (library, threads) group ran in its own process, limited through its environment.
    isolated = [w for w in results["workers"] if w.get("isolated")]
    assert isolated and all(w["exit_code"] == 0 for w in isolated)
    assert all(w["environment"]["OMP_NUM_THREADS"] == "1" for w in isolated)
    assert len({w["pid"] for w in isolated}) == len(isolated)
    assert results["machine"]["measured"]["1"]["peak_gflops"]["float32"] > 0
    assert results["spmm"]["version"]
    spmm_rows = by_library(results, "spmm")
    assert {r["variant"] for r in spmm_rows} == {"prepared", "unprepared", "prepare"}
    assert {"naive", "reordered", "tiled"} <= {r["kernel"] for r in spmm_rows}


def test_missing_peer_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ghost(libraries.Library):
        name = "ghost"
        module = "spmm_bench_no_such_module"
        install = "pip install ghost"

    class Unloadable(libraries.Library):
        """Importable, but its native library is missing (like MKL without libmkl_rt)."""

        name = "unloadable"
        module = "numpy"

        def load(self, threads: int) -> None:
            raise ImportError("libghost.so: cannot open shared object file")

    monkeypatch.setitem(libraries.PEERS, "ghost", Ghost())
    monkeypatch.setitem(libraries.PEERS, "unloadable", Unloadable())
    results = run_quietly(tiny_options(peers=["ghost", "unloadable"]))
    ghost = by_library(results, "ghost")
    assert ghost and all(r["status"] == "skipped" for r in ghost)
    assert all("spmm_bench_no_such_module" in r["reason"] for r in ghost)
    assert results["libraries"]["ghost"]["status"] == "skipped"
    unloadable = by_library(results, "unloadable")
    assert unloadable and all(r["status"] == "skipped" for r in unloadable)
    assert all("libghost.so" in r["reason"] for r in unloadable)
    assert results["libraries"]["unloadable"]["status"] == "skipped"
    assert all(r["status"] == "ok" for r in by_library(results, "spmm"))


def test_wrong_result_is_a_failure_and_never_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Wrong(libraries.Library):
        name = "wrong"
        module = "numpy"

        def bind(self, ops: libraries.Operands, case: dict[str, Any]) -> libraries.Bound:
            s, d = ops.sparse, ops.dense
            product = (lambda: d @ s) if ops.workload.kind == "xw" else (lambda: s @ d)

            def call() -> np.ndarray:
                calls.append(1)
                out = np.array(product())
                out.flat[out.size // 2] += 1.0  # one entry off by one
                return out

            return libraries.Bound(call, np.asarray)

    monkeypatch.setitem(libraries.PEERS, "wrong", Wrong())
    results = run_quietly(tiny_options(peers=["wrong"]))
    wrong = by_library(results, "wrong")
    assert wrong and all(r["status"] == "failed" for r in wrong)
    assert all("wrong result" in r["reason"] for r in wrong)
    assert all(r["median"] is None and r["gflops"] is None for r in wrong)
    assert len(calls) == len(wrong)  # called once each, for the check: never timed
    assert all(r["status"] == "ok" for r in by_library(results, "spmm"))


def test_runs_without_tqdm_and_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    results = runner.run(tiny_options(backends=["serial"]), progress=True,
                         log=lambda text: None)
    assert "[" in capsys.readouterr().err  # plain progress lines instead of a bar
    files = cli.write_outputs(results, tmp_path)
    assert [f.name for f in files] == ["results.json", "report.md"]
    assert any("matplotlib is not installed" in n for n in results["notes"])
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()


def test_plots_are_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    """matplotlib is in the ``test`` extra, so this runs wherever the suite does."""
    results = run_quietly(tiny_options(threads=[1, 2], scaling_threads=[1, 2],
                                       peers=["dense"]))
    files = cli.write_outputs(results, tmp_path)
    names = {f.name for f in files}
    assert {"roofline.png", "kernel_ablation.png", "thread_scaling.png",
            "peers_tiny.png"} <= names
    assert all(f.stat().st_size > 0 for f in files)


# -- pieces --------------------------------------------------------------------------------


def test_generators_are_seeded_and_hit_their_pattern() -> None:
    spec = suites.MatrixSpec("tiny", (64, 256), "pruned", 0.75)
    from spmm_bench.store import generate

    a, b = generate(spec), generate(spec)
    assert (a != b).nnz == 0
    assert a.nnz == 64 * 256 // 4
    lengths = np.diff(a.tocsc().indptr)  # kept weights per output unit vary (skewed rates)
    assert lengths.min() < lengths.mean() < lengths.max()

    rng = np.random.default_rng(0)
    block = matrices.block_sparse(rng, (128, 128), 128 * 128 // 4, block=32).toarray()
    tiles = (block.reshape(4, 32, 4, 32) != 0).sum(axis=(1, 3))
    assert set(np.unique(tiles)) == {0, 32 * 32} and (tiles > 0).sum() == 4

    tile = matrices.tile_wise(rng, (64, 256), 64 * 256 // 10, width=128).toarray()
    segments = (tile.reshape(64, 2, 128) != 0).sum(axis=2)
    assert set(np.unique(segments)) <= {0, 128}

    lengths = matrices.power_law_lengths(1000, 8000, 1000)
    assert lengths.sum() == 8000 and np.all(np.diff(lengths) <= 0) and lengths.max() <= 1000
    power = matrices.with_row_lengths(rng, lengths, 1000)
    assert np.array_equal(np.diff(power.indptr), lengths)
    assert power.has_canonical_format


def test_allocate_respects_total_and_cap() -> None:
    counts = matrices.allocate(np.array([100.0, 1, 1, 1]), 30, cap=12)
    assert counts.sum() == 30 and counts.max() <= 12 and counts[0] == 12


def test_compare_accepts_rounding_and_rejects_real_errors() -> None:
    rng = np.random.default_rng(1)
    expected = rng.standard_normal((50, 20)).astype(np.float32)
    ok, _ = checking.compare(expected * (1 + 1e-6), expected, "float32")
    assert ok
    wrong = expected.copy()
    wrong[3, 4] += 0.5
    ok, details = checking.compare(wrong, expected, "float32")
    assert not ok and "(3, 4)" in details["reason"]
    ok, details = checking.compare(expected[:, :5], expected, "float32")
    assert not ok and "shape" in details["reason"]
    nan = expected.copy()
    nan[0, 0] = np.nan
    assert not checking.compare(nan, expected, "float32")[0]


def _record(threads: int, median: float, **kw: Any) -> dict[str, Any]:
    return {"key": f"k{threads}", "workload_id": "w", "library": "spmm", "backend": "openmp",
            "kernel": "auto", "partition": "nnz", "variant": "prepared", "threads": threads,
            "status": "ok", "median": median, "min": median, "samples": [median] * 3,
            "cpu_wall_ratio": float(threads), **kw}


def test_disturbance_rules() -> None:
    slow = disturbance.find([_record(1, 1e-3), _record(2, 5e-3)], cpus=2)
    assert list(slow) == ["k2"] and "slower with 2 threads" in slow["k2"][0]
    # Oversubscribed counts (beyond the CPUs) may be slower: not a disturbance.
    assert disturbance.find([_record(1, 1e-3), _record(4, 5e-3)], cpus=2) == {}
    # Sub-millisecond calls may legitimately lose to a parallel region's fixed cost.
    assert disturbance.find([_record(1, 1e-5), _record(2, 5e-5)], cpus=2) == {}
    starved = disturbance.find([_record(1, 1e-3, cpu_wall_ratio=0.4)], cpus=2)
    assert "cpu/wall" in starved["k1"][0]
    assert disturbance.thread_limit_ok(_record(1, 1e-3, cpu_wall_ratio=1.9)) is False
    assert disturbance.thread_limit_ok(_record(2, 1e-3, cpu_wall_ratio=2.0)) is True


def test_break_even_is_the_lowest_sparsity_beating_dense_from_there_on() -> None:
    records = []
    for sparsity, lib_time in ((0.5, 3.0), (0.7, 0.9), (0.8, 1.2), (0.9, 0.5), (0.99, 0.1)):
        wl = {"id": f"w{sparsity}", "family": "dnn", "kind": "xw", "shape": [8, 8],
              "pattern": "uniform", "n": 4, "dtype": "float32", "sparsity": sparsity}
        for library, seconds, variant in (("dense", 1.0, "call"), ("mkl", lib_time, "call")):
            records.append({"workload_id": wl["id"], "workload": wl, "library": library,
                            "label": library, "threads": 1, "status": "ok", "median": seconds,
                            "variant": variant})
    (entry,) = metrics.break_even(records)
    assert entry["break_even_sparsity"] == 0.9  # it also wins at 70 %, but loses at 80 %
    assert metrics.describe_break_even(entry) == "from 90 %"


def test_plan_covers_ablation_partition_scaling_and_prepare_once() -> None:
    (wl,) = [w for w in suites.workloads("tiny", ["float32"]) if "partition" in w.tags]
    options = tiny_options(threads=[1, 2], scaling_threads=[1, 2, 3], peers=["dense"])
    cases = plan.cases_for(wl, options, ["serial", "openmp", "threads"])
    keys = [c["key"] for c in cases]
    assert len(keys) == len(set(keys))
    spmm = [c for c in cases if c["library"] == "spmm"]
    assert [c["variant"] for c in spmm].count("prepare") == 1
    assert {c["partition"] for c in spmm if c["threads"] == 2} == {"rows", "nnz", "dynamic"}
    assert {c["threads"] for c in spmm if c["backend"] == "threads"} == {1, 2, 3}
    assert all(c["threads"] == 1 for c in spmm if c["backend"] == "serial")
    scipy = [c for c in cases if c["library"] == "scipy"]
    assert [c["threads"] for c in scipy] == [1]
    groups = plan.groups(cases)
    assert groups[0][0] == "scipy"  # it saves the reference results the others check against


def test_worker_environment_limits_threads_and_drops_openblas_overrides(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env = runner.worker_env(3)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "SPMM_NUM_THREADS"):
        assert env[var] == "3"


def test_cli_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser(4).parse_args([])
    options = cli.options_from_args(args, 4)
    assert options.suite == "quick" and options.threads == [1, 4]
    assert options.scaling_threads == [1, 2, 4, 5, 8]
    assert options.dtypes == ["float32"] and options.peers == list(libraries.PEERS)
    args = cli.build_parser(4).parse_args(["--threads", "2,1", "--peers", "none",
                                           "--dtype", "float32,float64"])
    options = cli.options_from_args(args, 4)
    assert options.threads == [1, 2] and options.scaling_threads == [1, 2]
    assert options.peers == [] and options.dtypes == ["float32", "float64"]
    with pytest.raises(SystemExit):
        cli.build_parser(4).parse_args(["--peers", "nope"])


def test_progress_falls_back_to_plain_lines(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    progress = Progress(2, enabled=True, every=0)
    progress.describe("spmm-openmp t=2")
    progress.update()
    progress.close()
    err = capsys.readouterr().err
    assert "spmm-openmp t=2" in err and "[1/2]" in err
