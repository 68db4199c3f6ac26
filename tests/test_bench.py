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
    ablation,
    autocheck,
    checking,
    cli,
    disturbance,
    libraries,
    matrices,
    metrics,
    plan,
    runner,
    suites,
    targets,
)
from spmm_bench.defaults import DEFAULT_PARTITION  # noqa: E402
from spmm_bench.progress import Progress  # noqa: E402

RECORD_KEYS = {
    "library", "backend", "kernel", "partition", "variant", "threads", "dtype", "workload",
    "workload_id", "status", "reason", "median", "min", "max", "samples", "gflops",
    "speedup_vs_scipy", "speedup_vs_dense", "roofline_fraction", "arithmetic_intensity",
    "cpu_wall_ratio", "thread_limit_ok", "disturbed", "disturbed_reasons", "remeasured",
    "simd", "simd_used", "layout_used", "block_used",
}
TOP_KEYS = {"machine", "spmm", "libraries", "workers", "workloads", "measurements",
            "break_even", "notes", "options", "started", "duration_seconds", "ablation",
            "auto_check", "prepare_payoff", "targets"}
STEP_KEYS = {"name", "status", "gflops", "median", "ratio_to_previous", "ratio_to_first"}
AUTO_CHECK_KEYS = {"workload_id", "suite", "kind", "shape", "pattern", "nnz", "density", "n",
                   "dtype", "times", "not_measured", "chose", "fastest", "auto_over_fastest",
                   "auto_over_fastest_min", "flagged"}
PAYOFF_KEYS = {"workload_id", "backend", "threads", "prepare_seconds", "unprepared_seconds",
               "prepared_seconds", "calls_to_pay_off", "pays_off", "prepared_nbytes",
               "csr_nbytes", "dense_nbytes"}
TARGET_KEYS = {"issue", "item", "target", "threads", "op", "goal", "unit", "measured", "worst",
               "passing", "workloads", "pass", "status", "reason", "note", "details"}
REPORT_SECTIONS = ("## Targets", "## Kernel ablation waterfall",
                   "## `auto` against the fastest kernel", "## spmm.prepare: cost, payoff and "
                   "footprint", "## Structured weights")


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
    check_kernel_sections(results, (tmp_path / "report.md").read_text())
    assert (tmp_path / "auto_check.csv").read_text().startswith("workload_id,")
    check_layout_records(results)


def check_layout_records(results: dict[str, Any]) -> None:
    """On the tile-wise workload, ``auto`` records the layout ``spmm.prepare`` chose (the tile
    layout where spmm has structured layouts) and ``kernel="tiled"`` ran the CSR form, at every
    thread count; elsewhere every call ran the CSR form."""
    from spmm_bench.store import generate

    import spmm

    (wid,) = [w for w, wl in results["workloads"].items() if "layout" in wl["tags"]]
    spec = suites.MatrixSpec("tiny", tuple(results["workloads"][wid]["shape"]), "tilewise128",
                             0.5)
    p = spmm.prepare(generate(spec))
    layout, block = getattr(p, "layout", "csr"), getattr(p, "block", None)
    if layout != "csr":  # the generator's tiles are exactly what prepare detects
        assert (layout, tuple(block)) == ("tile", (1, 128))
    for r in by_library(results, "spmm"):
        structured = (r["workload_id"] == wid and r["kernel"] == "auto"
                      and r["variant"] in ("prepared", "prepare"))
        assert r["layout_used"] == (layout if structured else "csr"), r["key"]
        assert r["block_used"] == (list(block) if structured and block else None), r["key"]
        if structured and r["variant"] == "prepared" and layout != "csr":
            assert r["kernel_used"] == layout
    def ran(kernel: str) -> set[tuple[str, int]]:
        return {(r["backend"], r["threads"]) for r in by_library(results, "spmm")
                if r["workload_id"] == wid and r["kernel"] == kernel and r["simd"] is None
                and r["variant"] == "prepared" and r["partition"] == DEFAULT_PARTITION}

    assert ran(plan.LAYOUT_TWIN) == ran("auto") and len(ran("auto")) >= 2


def check_kernel_sections(results: dict[str, Any], report: str) -> None:
    """The issue 5 sections are in the JSON with their keys and in the report (no timing
    assertions: only that every piece is there and consistent)."""
    for section in REPORT_SECTIONS:
        assert section in report, section
    levels = results["spmm"]["build"]["simd_levels"]
    waterfall = results["ablation"]
    assert [s["name"] for s in waterfall["steps"]] == [s.name for s in ablation.steps(levels)]
    assert waterfall["steps"][0]["simd"] == "scalar" and waterfall["steps"][-1]["variant"] == (
        "prepared")
    ablation_ids = {wid for wid, wl in results["workloads"].items() if "ablation" in wl["tags"]}
    assert {r["workload_id"] for r in waterfall["workloads"]} == ablation_ids
    assert set(waterfall["shown"]) == {"xw", "ab"}
    for row in waterfall["workloads"]:
        assert [s["name"] for s in row["steps"]] == [s["name"] for s in waterfall["steps"]]
        for step in row["steps"]:
            assert STEP_KEYS <= set(step) and step["status"] == "ok", step
    # Each forced instruction set reached spmm: it reported the level the worker set.
    forced = [r for r in by_library(results, "spmm") if r["simd"] and r["status"] == "ok"]
    assert forced and all(r["simd_used"] == r["simd"] for r in forced)
    check = results["auto_check"]
    assert check["simd"] == levels[-1] and check["tolerance"] == autocheck.TOLERANCE
    assert {r["workload_id"] for r in check["rows"]} == set(results["workloads"])
    for row in check["rows"]:
        assert AUTO_CHECK_KEYS <= set(row)
        assert set(row["times"]) | set(row["not_measured"]) == set(autocheck.CHECKED)
        assert row["auto_over_fastest"] > 0 and row["fastest"] in autocheck.KERNELS
    payoff = results["prepare_payoff"]["rows"]
    assert {r["workload_id"] for r in payoff} == set(results["workloads"])
    for row in payoff:
        assert PAYOFF_KEYS <= set(row)
        assert row["csr_nbytes"] > 0 and row["prepared_nbytes"] > 0 and row["dense_nbytes"] > 0
    rows = results["targets"]["rows"]
    assert {(r["issue"], r["item"]) for r in rows} == {(5, "5"), (5, "6"), (5, "8"), (6, "3")}
    for row in rows:
        assert TARGET_KEYS <= set(row)
        assert (row["pass"] is None) == (row["status"] == "not measured")
        if row["status"] == "not measured":
            assert row["reason"]


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
    assert [f.name for f in files] == ["results.json", "report.md", "auto_check.csv"]
    assert any("matplotlib is not installed" in n for n in results["notes"])
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()


def test_plots_are_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    """matplotlib is in the ``test`` extra, so this runs wherever the suite does."""
    results = run_quietly(tiny_options(threads=[1, 2], scaling_threads=[1, 2],
                                       peers=["dense"]))
    files = cli.write_outputs(results, tmp_path)
    names = {f.name for f in files}
    assert {"roofline.png", "kernel_ablation.png", "kernel_waterfall.png",
            "thread_scaling.png", "peers_tiny.png"} <= names
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
            "kernel": "auto", "partition": "auto", "variant": "prepared", "threads": threads,
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
    assert {c["partition"] for c in spmm if c["threads"] == 2} == {"auto", "rows", "nnz", "dynamic"}
    assert {c["threads"] for c in spmm if c["backend"] == "threads"} == {1, 2, 3}
    assert all(c["threads"] == 1 for c in spmm if c["backend"] == "serial")
    scipy = [c for c in cases if c["library"] == "scipy"]
    assert [c["threads"] for c in scipy] == [1]
    groups = plan.groups(cases)
    assert groups[0][0] == "scipy"  # it saves the reference results the others check against


def test_plan_runs_the_waterfall_steps_and_the_auto_check_at_their_levels() -> None:
    (wl,) = [w for w in suites.workloads("tiny", ["float32"]) if "partition" in w.tags]
    levels = ["scalar", "avx2", "avx512"]
    cases = plan.cases_for(wl, tiny_options(), ["serial", "openmp", "threads"], levels,
                           "avx512")
    keys = [c["key"] for c in cases]
    assert len(keys) == len(set(keys))
    single = [c for c in cases if c["library"] == "spmm" and c["backend"] == "serial"]
    steps = {(c["kernel"], c["simd"], c["variant"]) for c in single}
    # The default level is None (SPMM_SIMD left alone), so the last steps are the run's own
    # serial measurements at the best level rather than copies of them.
    assert {("naive", "scalar", "unprepared"), ("reordered", "scalar", "unprepared"),
            ("tiled", "scalar", "unprepared"), ("reordered", None, "unprepared"),
            ("tiled", "avx2", "unprepared"), ("tiled", None, "unprepared"),
            ("tiled", None, "prepared")} <= steps
    assert {k for k, simd, v in steps if simd is None and v == "prepared"} == {
        "auto", "naive", "reordered", "tiled"}
    # Below the best level, SPMM_SIMD is set for the check too.
    cases = plan.cases_for(wl, tiny_options(), ["serial"], levels, "avx2")
    check = [c for c in cases if c.get("auto_check")]
    assert {c["simd"] for c in check} == {"avx512"} and len(check) == 4


def test_flagged_auto_check_points_are_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every workload is flagged (auto's structured layout may beat every CSR kernel 2x).
    monkeypatch.setattr(autocheck, "TOLERANCE", 0.0)
    results = run_quietly(tiny_options(backends=["serial"]))
    rows = results["auto_check"]["rows"]
    assert rows and all(r["rechecked"] and r["flagged"] for r in rows)
    again = [r for r in results["measurements"] if r.get("auto_check_first")]
    assert {r["kernel"] for r in again} >= {"auto"} and all(r["attempt"] == 3 for r in again)


def test_waterfall_steps_follow_the_machine_levels() -> None:
    names = [s.name for s in ablation.steps(["scalar", "avx2", "avx512"])]
    assert names == ["naive", "reordered", "tiled", "SIMD (avx512)", "register blocking (avx2)",
                     "register blocking (avx512)", "prepared"]
    assert [s.name for s in ablation.steps(["scalar", "avx2"])] == [
        "naive", "reordered", "tiled", "SIMD (avx2)", "register blocking (avx2)", "prepared"]
    assert [s.name for s in ablation.steps(["scalar"])] == [
        "naive", "reordered", "tiled", "prepared"]


def test_auto_check_skips_only_long_wide_naive_products() -> None:
    big = suites.Workload("dnn", "xw", suites.MatrixSpec("dnn", (4096, 1024), "uniform", 0.5),
                          256, "float32")
    narrow = suites.Workload("dnn", "xw", big.matrix, 1, "float32")
    case = {"library": "spmm", "kernel": "naive", "auto_check": True}
    assert "not measured" in autocheck.skip_reason(case, big)
    assert autocheck.skip_reason(case, narrow) is None
    assert autocheck.skip_reason({**case, "kernel": "tiled"}, big) is None
    assert autocheck.skip_reason({**case, "auto_check": False}, big) is None  # --kernels naive


def test_break_even_target_brackets_and_interpolates_the_crossing() -> None:
    found = targets.break_even({0.5: 1.5, 0.6: 0.8, 0.7: 0.5, 0.9: 0.2})
    assert found["sparsity"] == 0.6 and found["bracket"] == [0.5, 0.6]
    assert 0.5 < found["estimate"] < 0.6
    assert targets.break_even({0.5: 0.9, 0.6: 0.5})["display"] == "<= 50 %"
    never = targets.break_even({0.5: 3.0, 0.99: 1.2})
    assert never["sparsity"] is None and never["display"] == "> 99 %"
    # A win below a loss does not count: it must win at every sparser point.
    assert targets.break_even({0.5: 0.9, 0.6: 1.1, 0.7: 0.5})["sparsity"] == 0.7


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


def _measured(wid: str, wl: dict[str, Any], library: str, threads: int, gflops: float,
              **kw: Any) -> dict[str, Any]:
    flops = 2 * wl["nnz"] * wl["n"]
    return {"workload_id": wid, "workload": wl, "library": library, "threads": threads,
            "status": "ok", "variant": "call", "gflops": gflops, "median": flops / gflops / 1e9,
            "flops": flops, "label": library, "dtype": wl["dtype"], **kw}


def _spmm_measured(wid: str, wl: dict[str, Any], backend: str, threads: int, gflops: float,
                   **kw: Any) -> dict[str, Any]:
    return _measured(wid, wl, "spmm", threads, gflops, backend=backend, kernel="auto",
                     partition="auto", variant="prepared", simd=None,
                     label=f"spmm {backend}", **kw)


def test_targets_from_synthetic_science_measurements() -> None:
    records = []
    for dtype in ("float32", "float64"):
        for pattern, slowdown in (("uniform", 1.0), ("powerlaw", 0.8)):
            for n in (1, 8):
                wid = f"science/{pattern}/n{n}/{dtype}"
                wl = {"id": wid, "family": "science", "kind": "ab", "shape": [1000, 1000],
                      "pattern": pattern, "sparsity": 0.99, "n": n, "nnz": 10_000,
                      "dtype": dtype}
                records.append(_measured(wid, wl, "mkl", 1, 4.0))
                records.append(_spmm_measured(wid, wl, "serial", 1, 8.0,
                                              arithmetic_intensity=0.25))
                for backend in ("openmp", "threads"):
                    records.append(_spmm_measured(wid, wl, backend, 2, 12.0 * slowdown,
                                                  arithmetic_intensity=0.25))
    ceilings = {1: {"peak_gflops": {"float32": 100.0, "float64": 50.0}, "bandwidth_gbs": 20.0}}
    info = {"mkl": {"status": "available"}, "torch": {"status": "skipped",
                                                      "reason": "not installed"}}
    rows = targets.evaluate(records, ceilings, cpus=2, threads=[1, 2],
                            library_info=info)["rows"]

    def row(text: str, threads: int) -> dict[str, Any]:
        return next(r for r in rows if text in r["target"] and r["threads"] == threads)

    mkl = row("science n=8 float64", 1)
    assert mkl["measured"] == pytest.approx(2.0) and mkl["pass"] and mkl["passing"] == 2
    # n = 1: 8 GFLOP/s at 0.25 flop/byte is 32 GB/s, above the 20 GB/s streamed.
    assert row("science n=1 float32: achieved", 1)["measured"] == pytest.approx(1.6)
    balance = row("power-law / uniform GFLOP/s, science: openmp", 2)
    assert balance["measured"] == pytest.approx(0.8) and balance["pass"] is False
    # No dnn workloads: not measured, with a reason, never a pass or a miss.
    dnn = row("dnn 90 %, batch 64: spmm / fastest peer", 1)
    assert dnn["status"] == "not measured" and dnn["pass"] is None and dnn["reason"]
    # MKL skipped: the science rows say so instead of comparing with nothing.
    info["mkl"] = {"status": "skipped", "reason": "cannot load libmkl_rt"}
    rows = targets.evaluate([r for r in records if r["library"] != "mkl"], ceilings, cpus=2,
                            threads=[1, 2], library_info=info)["rows"]
    skipped = row("science n=8 float32", 2)
    assert skipped["pass"] is None and "libmkl_rt" in skipped["reason"]


def test_native_comparison_is_reported_with_its_target() -> None:
    from spmm_bench import native, sections

    summary = {"rows": [{"name": "dnn b64", "portable_seconds": 1e-3, "native_seconds": 0.9e-3,
                         "ratio": 0.9, "noise": 1.013}], "goal": native.GOAL,
               "extra_args": "-march=native", "method": "one process",
               "rounds": 3, "threads": 1, "backend": "serial",
               "builds": {"portable": {"compile_args": "-O3", "simd": "avx512"},
                          "native": {"compile_args": "-O3 -march=native", "simd": "avx512"}}}
    assert "BELOW TARGET" in native.format_table(summary)
    text = "\n".join(sections.native({"native_build": summary}))
    assert "-march=native" in text and "**miss**" in text and "1.013" in text
    assert "1.013" in native.format_table(summary)
    failed = "\n".join(sections.native({"native_build": {"error": "no compiler"}}))
    assert "Not measured: no compiler" in failed


def test_native_build_script_help(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "native_build.py"), "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--rounds" in done.stdout


def test_plan_measures_the_csr_form_beside_structured_layouts() -> None:
    workloads = suites.workloads("structured", ["float32"])
    # 3 sparsities x (uniform, block32, tilewise128) + nm4 at 50 and 75 %, batch 64 and 256.
    assert len(workloads) == (3 * 3 + 2) * 2
    assert {wl.matrix.sparsity for wl in workloads} == {0.5, 0.75, 0.9}
    assert {wl.matrix.sparsity for wl in workloads if wl.matrix.pattern == "nm4"} == {0.5, 0.75}
    options = tiny_options(threads=[1, 2], peers=["dense", "torch", "torch-dense"])
    for wl in workloads:
        cases = plan.cases_for(wl, options, ["serial", "openmp", "threads"])
        assert len({c["key"] for c in cases}) == len(cases)
        twins = {(c["backend"], c["threads"]) for c in cases if c["library"] == "spmm"
                 and c["kernel"] == plan.LAYOUT_TWIN and c["variant"] == "prepared"
                 and c["simd"] is None}
        if wl.matrix.pattern == "uniform":
            assert "layout" not in wl.tags and ("openmp", 2) not in twins
        else:
            assert "layout" in wl.tags
            assert twins == {("serial", 1), ("openmp", 1), ("openmp", 2), ("threads", 1),
                             ("threads", 2)}
        peers = {(c["library"], c["threads"]) for c in cases if c["library"] != "spmm"}
        assert {("torch", 1), ("torch", 2), ("torch-dense", 1), ("torch-dense", 2)} <= peers


def _structured(pattern: str, sparsity: float, batch: int) -> tuple[str, dict[str, Any]]:
    wid = f"structured/4096x4096/{pattern}/s{sparsity * 100:g}/batch{batch}/float32"
    return wid, {"id": wid, "family": "structured", "kind": "xw", "shape": [4096, 4096],
                 "pattern": pattern, "sparsity": sparsity, "n": batch,
                 "nnz": round(4096 * 4096 * (1 - sparsity)), "dtype": "float32", "tags": []}


def test_structured_targets_from_synthetic_measurements() -> None:
    # GFLOP/s: dense 10 everywhere; spmm's structured layouts 25 (tile) and 20 (block), its
    # CSR kernel 15, spmm on uniform 12. On one block workload spmm ran the CSR form.
    auto = {"tilewise128": (25.0, "tile", [1, 128]), "block32": (20.0, "block", [32, 32]),
            "uniform": (12.0, "csr", None)}
    records = []
    for sparsity in (0.5, 0.75, 0.9):
        for batch in (64, 256):
            for pattern, (gflops, layout, block) in auto.items():
                wid, wl = _structured(pattern, sparsity, batch)
                if (pattern, sparsity, batch) == ("block32", 0.9, 256):
                    layout, block = "csr", None
                records += [
                    _measured(wid, wl, "dense", 1, 10.0),
                    _spmm_measured(wid, wl, "serial", 1, gflops, layout_used=layout,
                                   block_used=block),
                    _measured(wid, wl, "spmm", 1, 15.0, backend="serial", kernel="tiled",
                              partition="auto", variant="prepared", simd=None,
                              label="spmm serial tiled", layout_used="csr")]
    rows = targets.evaluate(records, {}, cpus=2, threads=[1], library_info={})["rows"]
    structured = [r for r in rows if r["issue"] == 6]
    # Against dense: 2 batches x 3 (pattern, sparsity) targets; then per structured pattern
    # (block32, tilewise128, nm4): against its CSR form and against uniform.
    assert len(structured) == 2 * 3 + 3 * 2 and all(r["item"] == "3" for r in structured)

    def row(text: str) -> dict[str, Any]:
        (found,) = [r for r in structured if text in r["target"]]
        return found

    tile = row("tilewise128 75 %, batch 64: spmm / dense")
    assert tile["measured"] == pytest.approx(2.5) and tile["pass"] and tile["goal"] == 1.9
    assert tile["details"][0]["layout_used"] == "tile"
    block = row("block32 75 %, batch 256: spmm / dense")
    assert block["measured"] == pytest.approx(2.0) and block["pass"] is False
    assert row("tilewise128 50 %, batch 64")["goal"] == 1.0
    vs_csr = row("tilewise128, every sparsity, batch 64 and 256: spmm / spmm CSR")
    assert vs_csr["measured"] == pytest.approx(25 / 15) and vs_csr["passing"] == 6
    assert vs_csr["pass"]
    # Faster than the CSR kernel by its ratio, but it ran the CSR form: a miss, said so.
    block_csr = row("block32, every sparsity, batch 64 and 256: spmm / spmm CSR")
    assert block_csr["pass"] is False and block_csr["passing"] == 5
    assert "CSR form" in block_csr["note"]
    vs_uniform = row("tilewise128, every sparsity, batch 64 and 256: spmm GFLOP/s / spmm on "
                     "uniform")
    assert vs_uniform["measured"] == pytest.approx(25 / 12) and vs_uniform["pass"]
    # Without the dense product or the CSR twin: not measured, with the reason.
    rows = targets.evaluate([r for r in records if r["library"] != "dense"
                             and r.get("kernel") != "tiled"], {}, cpus=2, threads=[1],
                            library_info={})["rows"]
    for r in rows:
        if r["issue"] == 6 and "uniform" not in r["target"]:
            assert r["status"] == "not measured" and r["pass"] is None and r["reason"]


def test_torch_dense_peer_missing_is_skipped_never_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTorch(libraries.TorchDenseLibrary):
        module = "spmm_bench_no_such_module"

    monkeypatch.setitem(libraries.PEERS, "torch-dense", NoTorch())
    results = run_quietly(tiny_options(peers=["torch-dense"]))
    rows = by_library(results, "torch-dense")
    assert rows and all(r["status"] == "skipped" and r["gflops"] is None for r in rows)
    assert all("not installed" in r["reason"] for r in rows)
    assert results["libraries"]["torch-dense"]["status"] == "skipped"


def test_torch_peers_sparse_mm_and_dense_linear() -> None:
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    try:
        results = run_quietly(tiny_options(peers=["torch", "torch-dense"], backends=["serial"]))
    finally:
        torch.set_num_threads(saved)
    sparse = by_library(results, "torch")
    assert sparse and all(r["status"] == "ok" for r in sparse)
    dense = by_library(results, "torch-dense")
    layers = [r for r in dense if r["workload"]["kind"] == "xw"]
    assert layers and all(r["status"] == "ok" and r["gflops"] > 0 for r in layers)
    others = [r for r in dense if r["workload"]["kind"] != "xw"]
    assert others and all(r["status"] == "skipped" and "nn.Linear" in r["reason"]
                          for r in others)
    # A dense baseline: no roofline of its own, never the "best peer" of the summary table.
    assert all(r["arithmetic_intensity"] is None for r in layers)
    assert "torch.sparse.mm" in results["libraries"]["torch"]["forms"]["xw"]
    assert "nn.Linear" in results["libraries"]["torch-dense"]["forms"]["xw"]
