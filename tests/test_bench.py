"""Tests of the benchmark harness itself (bench/), not of spmm's speed: no timing is asserted.

The harness is imported from bench/ (never from the repository root, whose spmm/ is the
uncompiled source tree). Only the ``test`` extra is needed; the tiny suite takes seconds.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import spmm as spmm_package

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run as cli  # noqa: E402 - importable only once bench/ is on the path
from spmm_bench import goals, matrices, peers, report, runner, suites, worker  # noqa: E402

RECORD_KEYS = {"key", "workload", "library", "label", "backend", "kernel", "partition",
               "operand", "simd", "threads", "status", "reason", "median", "min", "max",
               "samples", "gflops", "speedup_vs_scipy", "roofline_fraction", "cpu_wall_ratio",
               "disturbed", "disturbed_reasons"}


def tiny(**kw: Any) -> runner.Options:
    """The tiny suite in this process, one pass, short timing."""
    defaults = dict(suite="tiny", threads=[1], scaling_threads=[1], repeat=2, rounds=1,
                    budget_seconds=0.02, peers=[], isolate=False)
    return runner.Options(**{**defaults, **kw})


def quietly(options: runner.Options) -> dict[str, Any]:
    return runner.run(options, progress=False, log=lambda text: None)


def of(results: dict[str, Any], library: str) -> list[dict[str, Any]]:
    return [r for r in results["measurements"] if r["library"] == library]


@pytest.fixture(scope="module")
def two_threads() -> dict[str, Any]:
    """One in-process run of the tiny suite at 1 and 2 threads with the dense peer."""
    return quietly(tiny(threads=[1, 2], scaling_threads=[1, 2], peers=["dense"]))


# -- end to end ----------------------------------------------------------------------------


def test_tiny_suite_runs_end_to_end_in_limited_worker_processes(tmp_path: Path) -> None:
    goal = {"name": "tiny-vs-scipy", "description": "spmm's default call against scipy",
            "numerator": "spmm", "denominator": "scipy", "at_least": 1e-9,
            "workloads": {"suite": "tiny"}}
    (tmp_path / "goals.json").write_text(json.dumps({"goals": [goal]}))
    code = cli.main(["--suite", "tiny", "--threads", "1", "--peers", "dense", "--repeat", "2",
                     "--rounds", "1", "--budget", "0.02", "--out", str(tmp_path / "out"),
                     "--goals", str(tmp_path / "goals.json"), "--no-progress"])
    tmp_path = tmp_path / "out"
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"machine", "spmm", "libraries", "workers", "workloads", "measurements", "views",
            "goals", "options", "command", "duration_seconds"} <= set(results)
    assert all(RECORD_KEYS <= set(r) for r in results["measurements"])
    assert all(r["status"] == "ok" for r in results["measurements"]), [
        (r["label"], r["reason"]) for r in results["measurements"] if r["status"] != "ok"]
    # Each (library, threads) ran in its own process, its limits set in its environment.
    workers = [w for w in results["workers"] if w["group"] != "machine"]
    assert workers and all(w["isolated"] and w["exit_code"] == 0 for w in workers)
    assert all(w["environment"]["OMP_NUM_THREADS"] == "1" for w in workers)
    assert len({w["pid"] for w in workers}) == len(workers)
    # Every run records the machine and spmm's configuration.
    assert "Model name" in results["machine"]["lscpu"] or "lscpu" in results["machine"]["lscpu"]
    assert results["spmm"]["version"] and results["spmm"]["build"]["simd_levels"]
    assert results["machine"]["ceilings"]["1"]["peak_gflops"]["float32"] > 0
    (row,) = results["goals"]["rows"]
    assert row["name"] == "tiny-vs-scipy" and row["workloads"] > 0
    text = (tmp_path / "report.md").read_text()
    for section in ("## Machine", "## Goals", "## Kernel ablation waterfall",
                    "## `auto` against every kernel", "## `spmm.prepare`",
                    "## Formats: spmm's default call"):
        assert section in text, section
    assert {"roofline.png", "formats.png", "auto_check.csv"} <= {
        p.name for p in tmp_path.iterdir()}


def test_every_spmm_series_of_the_grid_is_measured(two_threads: dict[str, Any]) -> None:
    spmm = of(two_threads, "spmm")
    assert all((r["status"] == "ok" and r["gflops"]) or r["operand"] == "prepare" for r in spmm)
    labels = {r["label"] for r in spmm}
    expected = {"spmm", "spmm prepared", "spmm prepare", "spmm prepared-csr",
                "spmm serial prepared", "spmm threads prepared", "spmm serial naive prepared",
                "spmm serial naive scalar"}
    if "openmp" in spmm_package.available_backends():
        expected |= {"spmm openmp prepared", "spmm openmp dynamic-partition prepared"}
    assert expected <= labels
    # A build without OpenMP measures no OpenMP series rather than failing them.
    assert any("openmp" in label for label in labels) == (
        "openmp" in spmm_package.available_backends())
    views_ = two_threads["views"]
    steps = [s["name"] for s in views_["ablation"]["steps"]]
    assert all(len(row["steps"]) == len(steps) and all(s["gflops"] for s in row["steps"])
               for row in views_["ablation"]["workloads"])
    assert views_["auto_check"] and all(r["ratio"] > 0 for r in views_["auto_check"])
    assert views_["prepare_payoff"] and all(r["prepared"] > 0 and r["scipy_csr"] > 0
                                            for r in views_["prepare_payoff"])
    formats = views_["formats"]
    assert {r["format"] for r in formats} == {"csc", "bsr"}
    assert {r["threads"] for r in formats} == {1, 2}
    assert all(r["spmm_seconds"] and r["prepared_seconds"] and r["scipy_seconds"] for r in formats)


def test_each_spmm_point_records_what_spmm_explain_said(two_threads: dict[str, Any]) -> None:
    import spmm

    timed = [r for r in of(two_threads, "spmm") if r["operand"] != "prepare"]
    if not hasattr(spmm, "explain"):
        assert all(r["explain"] is None for r in timed)
        return
    keys = {"kernel", "layout", "partition", "num_threads", "backend", "simd", "reason"}
    assert all(keys <= set(r["explain"]) and r["kernel_used"] == r["explain"]["kernel"]
               for r in timed)
    assert all(r["kernel"] for r in two_threads["views"]["formats"])


def test_forced_instruction_sets_reach_spmm(two_threads: dict[str, Any]) -> None:
    forced = [r for r in of(two_threads, "spmm") if r["simd"]]
    assert forced and all(r["simd_used"] == r["simd"] for r in forced)


def test_structured_layout_recorded_beside_its_csr_form(two_threads: dict[str, Any]) -> None:
    import spmm

    (wid,) = [w for w, wl in two_threads["workloads"].items() if "layout" in wl["series"]]
    layout = spmm.prepare(matrices.generate(suites.MatrixSpec(
        "tiny", (192, 256), "tilewise128", 0.5))).layout
    ran = {r["label"]: r for r in of(two_threads, "spmm") if r["workload"] == wid
           and r["threads"] == 1}
    assert ran["spmm serial prepared"]["layout_used"] == layout
    assert ran["spmm serial tiled prepared"]["layout_used"] == "csr"


def test_explain_is_recorded_when_spmm_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import spmm

    said = {"kernel": "csr_rows.tiled", "family": "csr_rows", "layout": "csr",
            "partition": "nnz", "num_threads": 1,
            "backend": "serial", "simd": "avx2", "reason": "the test's explanation"}
    monkeypatch.setattr(spmm, "explain", lambda a, b, **kw: {**said, "keywords": sorted(kw)},
                        raising=False)
    results = quietly(tiny(only=["block4"]))
    default = [r for r in of(results, "spmm") if r["label"] == "spmm"]
    assert default and all(r["explain"]["reason"] == said["reason"] for r in default)
    assert all(r["explain"]["keywords"] == [] for r in default)  # the default call's keywords
    assert all(r["kernel"] == "csr_rows.tiled" for r in results["views"]["formats"])
    assert "the test's explanation" in report.markdown(results, [])


def test_missing_and_unloadable_peers_are_skipped_with_their_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Ghost(peers.Peer):
        name, module, install = "ghost", "spmm_bench_no_such_module", "pip install ghost"

    class Unloadable(peers.Peer):
        name, module = "unloadable", "numpy"

        def load(self, threads: int) -> None:
            raise ImportError("libghost.so: cannot open shared object file")

    for peer in (Ghost(), Unloadable()):
        monkeypatch.setitem(peers.PEERS, peer.name, peer)
    monkeypatch.setitem(suites.DEFINITIONS, "tiny", [
        suites.Grid("tiny", "xw", ((96, 160),), ("uniform",), (0.9,), (1,), ("peers",),
                    peers=("ghost", "unloadable"))])
    results = quietly(tiny(peers=["ghost", "unloadable"]))
    for name, reason in (("ghost", "spmm_bench_no_such_module"), ("unloadable", "libghost.so")):
        rows = of(results, name)
        assert rows and all(r["status"] == "skipped" and reason in r["reason"]
                            and r["median"] is None for r in rows)
    assert results["libraries"]["ghost"]["status"] == "skipped"


def test_a_wrong_result_fails_and_is_never_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Wrong(peers.Peer):
        name, module = "wrong", "numpy"

        def bind(self, ops: peers.Operands, case: dict[str, Any]) -> peers.Bound:
            def call() -> np.ndarray:
                calls.append(1)
                out = ops.dense @ ops.csr if ops.workload.kind == "xw" else ops.csr @ ops.dense
                out.flat[out.size // 2] += 1.0  # one entry off by one
                return out
            return peers.Bound(call, np.asarray)

    monkeypatch.setitem(peers.PEERS, "wrong", Wrong())
    monkeypatch.setitem(suites.DEFINITIONS, "tiny", [
        suites.Grid("tiny", "ab", ((600, 600),), ("powerlaw",), (0.99,), (4,), ("peers",),
                    peers=("wrong",))])
    results = quietly(tiny(peers=["wrong"]))
    (wrong,) = of(results, "wrong")
    assert wrong["status"] == "failed" and "wrong result" in wrong["reason"]
    assert wrong["median"] is None and wrong["gflops"] is None
    assert len(calls) == 1  # the checking call only
    assert of(results, "scipy")[0]["status"] == "ok"


def test_every_library_gets_dense_operands_and_outputs_on_a_cache_line() -> None:
    """Where an array starts changes some libraries' kernels (MKL's sparse product is 1.8x
    slower on unaligned dense arrays): every dense operand and output starts on 64 bytes."""
    spec = suites.MatrixSpec("dnn", (40, 24), "uniform", 0.5)
    csr = matrices.uniform(np.random.default_rng(0), spec.shape, 480).astype(np.float32)
    for kind in ("xw", "ab"):
        workload = suites.Workload("tiny", kind, spec, 5, "float32")
        shape = workload.dense_shape
        dense = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)[:, ::-1]
        ops = peers.Operands(workload, csr, dense)
        for array in (ops.dense, ops.dense_t, ops.empty_out(), ops.empty_out(transposed=True)):
            assert array.ctypes.data % peers.ALIGNMENT == 0
            assert array.flags.c_contiguous
        np.testing.assert_array_equal(ops.dense, dense)
        np.testing.assert_array_equal(ops.dense_t, dense.T)


def test_check_accepts_rounding_and_rejects_real_errors() -> None:
    expected = np.random.default_rng(1).standard_normal((50, 20)).astype(np.float32)
    assert worker.compare(expected * (1 + 1e-6), expected, "float32")[0]
    wrong = expected.copy()
    wrong[3, 4] += 0.5
    ok, details = worker.compare(wrong, expected, "float32")
    assert not ok and "(3, 4)" in details["reason"]
    assert "shape" in worker.compare(expected[:, :5], expected, "float32")[1]["reason"]
    nan = expected.copy()
    nan[0, 0] = np.nan
    assert not worker.compare(nan, expected, "float32")[0]


def test_runs_without_tqdm_and_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    results = runner.run(tiny(only=["powerlaw"], backends=["serial"]), log=lambda t: None)
    assert "[" in capsys.readouterr().err  # plain progress lines instead of a bar
    files = report.write(results, tmp_path)
    assert [f.name for f in files] == ["results.json", "report.md", "auto_check.csv"]
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()


# -- the goals -------------------------------------------------------------------------------


def _synthetic() -> dict[str, Any]:
    """Two science workloads (uniform, powerlaw) and a structured one, with made-up medians."""
    def wl(pattern: str, family: str = "science") -> dict[str, Any]:
        return {"id": f"{family}/{pattern}", "family": family, "kind": "ab", "shape": [8, 8],
                "pattern": pattern, "sparsity": 0.9, "n": 8, "dtype": "float32",
                "format": None, "suite": family}
    workloads = {w["id"]: w for w in (wl("uniform"), wl("powerlaw"), wl("tile", "structured"))}
    seconds = {  # (workload, label, threads): median
        ("science/uniform", "spmm serial prepared", 1): 2.0,
        ("science/uniform", "spmm openmp prepared", 1): 1.9,
        ("science/uniform", "spmm openmp prepared", 2): 1.0,
        ("science/uniform", "scipy", 1): 4.0, ("science/uniform", "mkl", 1): 3.0,
        ("science/uniform", "mkl", 2): 1.5,
        ("science/powerlaw", "spmm openmp prepared", 1): 2.4,
        ("science/powerlaw", "spmm openmp prepared", 2): 1.25,
        ("science/powerlaw", "scipy", 1): 4.0,
        ("structured/tile", "spmm openmp prepared", 1): 1.0,
        ("structured/tile", "scipy", 1): 8.0}
    records = [{"workload": w, "label": lab, "threads": t, "status": "ok", "median": s,
                "gbs": 8.0 / s, "arithmetic_intensity": 1.0, "layout_used": "csr"}
               for (w, lab, t), s in seconds.items()]
    records.append({"workload": "science/powerlaw", "label": "mkl", "threads": 1,
                    "status": "skipped", "reason": "not installed", "median": None})
    return {"workloads": workloads, "measurements": records, "options": {"threads": [1, 2]},
            "machine": {"cpus_used": 2, "ceilings": {
                "1": {"peak_gflops": {"float32": 10.0}, "bandwidth_gbs": 5.0},
                "2": {"peak_gflops": {"float32": 20.0}, "bandwidth_gbs": 8.0}}}}


def goal(**kw: Any) -> dict[str, Any]:
    return {"name": "g", "description": "a goal", "numerator": "spmm-best",
            "denominator": "mkl", "at_least": 1.5, **kw}


def evaluate(*specs: dict[str, Any]) -> list[dict[str, Any]]:
    spec = {"series": {"spmm-best": {"fastest": ["spmm serial prepared",
                                                 "spmm openmp prepared"]}},
            "goals": list(specs)}
    return goals.evaluate(_synthetic(), spec)


def test_a_goal_is_the_speed_ratio_of_two_series_at_each_thread_count() -> None:
    one, two = evaluate(goal(workloads={"pattern": "uniform"}))
    # The fastest spmm at one thread is openmp's 1.9 s against MKL's 3.0 s.
    assert one["measured"] == pytest.approx(3.0 / 1.9) and one["status"] == "met"
    assert two["measured"] == pytest.approx(1.5) and two["status"] == "met"
    (missed,) = evaluate(goal(workloads={"pattern": "uniform"}, at_least=2.0, threads=[2]))
    assert missed["status"] == "missed" and missed["worst"] == "science/uniform"


def test_a_peer_is_credited_with_its_best_time_at_up_to_the_compared_thread_count() -> None:
    results = _synthetic()
    for r in results["measurements"]:  # MKL slower at two threads than at one
        if r["label"] == "mkl" and r["threads"] == 2:
            r["median"] = 6.0
    spec = {"series": {}, "goals": [goal(numerator="spmm openmp prepared", at_least=1.0,
                                         workloads={"pattern": "uniform"}, threads=[2])]}
    (row,) = goals.evaluate(results, spec)
    assert row["measured"] == pytest.approx(3.0 / 1.0)  # MKL's 3.0 s at one thread, not 6.0


def test_a_goal_whose_peer_was_skipped_is_not_measured_never_passed() -> None:
    (row,) = evaluate(goal(workloads={"pattern": "powerlaw"}, threads=[1]))
    assert row["status"] == "not measured" and "not installed" in row["reason"]
    (shaped,) = evaluate(goal(workloads={"shape": [8, 8], "pattern": "uniform"}, threads=[1]))
    assert shaped["workloads"] == 1  # a list-valued field is compared whole
    (none,) = evaluate(goal(workloads={"family": "dnn"}, threads=[1]))
    assert none["status"] == "not measured" and none["reason"] == goals.ABSENT


def test_goal_sides_can_pin_threads_name_a_twin_or_use_the_bandwidth() -> None:
    series = "spmm openmp prepared"
    (scaling,) = evaluate(goal(numerator={"series": series, "threads": 2},
                               denominator={"series": series, "threads": 1}, threads=[2],
                               workloads={"pattern": "uniform"}))
    assert scaling["measured"] == pytest.approx(1.9)
    (twin,) = evaluate(goal(numerator=series, denominator={
        "series": series, "workload": {"pattern": "uniform"}}, threads=[2], at_least=0.9,
        workloads={"pattern": "powerlaw"}))
    assert twin["measured"] == pytest.approx(0.8) and twin["status"] == "missed"
    (bandwidth,) = evaluate(goal(denominator="bandwidth", threads=[2], at_least=0.8,
                                 workloads={"pattern": "uniform"}))
    assert bandwidth["measured"] == pytest.approx(8.0 / 1.0 / 8.0)  # 8 GB/s of 8 measured


def test_a_per_flop_goal_compares_useful_gflops_of_twins_of_different_sizes() -> None:
    results = _synthetic()
    results["workloads"]["science/uniform"]["shape"] = [16, 16]  # 4 times the entries
    twin = {"series": "spmm openmp prepared",
            "workload": {"pattern": "powerlaw", "shape": [8, 8]}}
    spec = {"series": {}, "goals": [goal(numerator="spmm openmp prepared", denominator=twin,
                                         per_flop=True, at_least=0.9, threads=[1],
                                         workloads={"pattern": "uniform"})]}
    (row,) = goals.evaluate(results, spec)
    # 4 times the flops in 1.9 s against 2.4 s: 4 x 2.4 / 1.9 the rate.
    assert row["measured"] == pytest.approx(4 * 2.4 / 1.9) and row["status"] == "met"


def test_goal_ranges_medians_groups_and_required_layouts() -> None:
    (within,) = evaluate(goal(numerator="spmm openmp prepared", denominator="scipy",
                              at_least=1.8, at_most=2.5, threads=[1],
                              workloads={"family": "science"}))
    assert within["status"] == "missed" and within["measured"] == pytest.approx(4.0 / 2.4)
    assert within["passing"] == 1 and within["worst"] == "science/powerlaw"
    rows = evaluate(goal(denominator="scipy", threads=[1], each=["family"], at_least=3.0,
                         aggregate="median"))
    assert {r["group"]["family"]: r["status"] for r in rows} == {"science": "missed",
                                                                 "structured": "met"}
    (layout,) = evaluate(goal(denominator="scipy", threads=[1], at_least=1.0,
                              structured_layout=True, workloads={"family": "structured"}))
    assert layout["status"] == "missed" and "CSR form" in layout["reason"]


def test_the_goals_file_is_valid_and_names_only_known_fields() -> None:
    spec = json.loads((BENCH / "goals.json").read_text())
    fields = set(suites.Workload("s", "xw", suites.MatrixSpec("f", (1, 1), "p", 0.5), 1,
                                 "float32").describe())
    keys = {"name", "description", "numerator", "denominator", "workloads", "each", "threads",
            "at_least", "at_most", "aggregate", "min_seconds", "compute_bound",
            "structured_layout", "per_flop"}
    for g in spec["goals"]:
        assert set(g) <= keys and {"name", "description", "numerator", "denominator"} <= set(g)
        assert set(g.get("workloads", {})) | set(g.get("each", [])) <= fields, g["name"]
        assert "at_least" in g or "at_most" in g


# -- pieces ----------------------------------------------------------------------------------


def test_suites_are_data_expanded_with_merged_series() -> None:
    quick = {wl.id: wl for wl in suites.workloads("quick", ["float32"])}
    b64 = quick["dnn/1024x4096/uniform/s90/batch64/float32"]
    assert {"peers", "backends", "default", "kernels", "ablation", "scaling"} == set(b64.series)
    formats = suites.workloads("formats", ["float32"])
    assert {wl.format for wl in formats} == {"csr", "csc", "coo", "bsr"}
    assert {wl.dtype for wl in formats} == {"float32", "float64"}
    assert all(wl.matrix.pattern == "block4" for wl in formats if wl.format == "bsr")
    layers = [wl for wl in formats if wl.matrix.family == "transformer"]
    assert len(layers) == 3 * 2 * 3 and all(wl.peers == ("dense", "mkl") for wl in layers)
    batch1 = suites.workloads("batch1", ["float32"])
    assert sorted(wl.matrix.shape for wl in batch1) == [(384, 1536), (1024, 4096), (4096, 4096)]
    assert all(wl.n == 1 and "peers" in wl.series and "scaling" in wl.series for wl in batch1)
    everything = suites.workloads("all", ["float32"])
    assert len({wl.id for wl in everything}) == len(everything)
    with pytest.raises(ValueError, match="unknown suite"):
        suites.workloads("nope", ["float32"])


def test_plan_measures_each_series_once_at_its_thread_counts() -> None:
    (wl,) = [w for w in suites.workloads("tiny", ["float32"]) if "partition" in w.series]
    cases = runner.plan(wl, tiny(threads=[1, 2], scaling_threads=[1, 2, 3], peers=["dense"]),
                        list(runner.BACKENDS), ["scalar", "avx2", "avx512"], {"avx512"})
    assert len({c["key"] for c in cases}) == len(cases)
    assert [c["threads"] for c in cases if c["library"] == "scipy"] == [1]
    assert all(c["threads"] == 1 for c in cases if c["backend"] == "serial")
    assert {c["threads"] for c in cases if c["backend"] == "threads"} == {1, 2, 3}
    assert [c["label"] for c in cases].count("spmm prepare") == 1
    # The default level is left alone (None): the best-level steps are the run's own points.
    steps = {(c["kernel"], c["simd"], c["operand"]) for c in cases if c["backend"] == "serial"}
    assert {("naive", "scalar", "given"), ("tiled", "avx2", "given"),
            ("tiled", None, "given"), ("tiled", None, "prepared")} <= steps


def test_waterfall_steps_follow_the_machine_levels() -> None:
    names = [s["name"] for s in suites.ablation_steps(["scalar", "avx2", "avx512"])]
    assert names == ["naive", "reordered", "tiled", "SIMD (avx512)", "register blocking (avx2)",
                     "register blocking (avx512)", "prepared"]
    assert [s["name"] for s in suites.ablation_steps(["scalar"])] == [
        "naive", "reordered", "tiled", "prepared"]


def test_naive_is_skipped_only_on_long_wide_prepared_products() -> None:
    big = suites.Workload("dnn", "xw", suites.MatrixSpec("dnn", (4096, 1024), "uniform", 0.5),
                          256, "float32")
    case = {"library": "spmm", "kernel": "naive", "operand": "prepared"}
    missing = {"spmm": None}
    assert "not measured" in runner.skip_reason(case, big, missing)
    narrow = suites.Workload("dnn", "xw", big.matrix, 1, "float32")
    assert runner.skip_reason(case, narrow, missing) is None
    assert runner.skip_reason({**case, "operand": "given"}, big, missing) is None


def _point(threads: int, median: float, **kw: Any) -> dict[str, Any]:
    return {"key": f"k{threads}", "workload": "w", "label": "spmm openmp prepared",
            "operand": "prepared", "threads": threads, "status": "ok", "median": median,
            "min": median, "samples": [median] * 3, "cpu_wall_ratio": float(threads),
            "thread_limit_ok": True, **kw}


def test_disturbance_rules() -> None:
    slow = runner.disturbed([_point(1, 1e-3), _point(2, 5e-3)], cpus=2)
    assert list(slow) == ["k2"] and "slower with 2 threads" in slow["k2"][0]
    assert runner.disturbed([_point(1, 1e-3), _point(4, 5e-3)], cpus=2) == {}  # oversubscribed
    assert runner.disturbed([_point(1, 1e-5), _point(2, 5e-5)], cpus=2) == {}  # microseconds
    starved = runner.disturbed([_point(1, 1e-3, cpu_wall_ratio=0.4)], cpus=2)
    assert "another process" in starved["k1"][0]
    spread = runner.disturbed([_point(1, 1e-3, min=0.5e-3)], cpus=2)
    assert "most samples slowed" in spread["k1"][0]


def test_worker_environment_limits_threads_and_drops_openblas_overrides(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env = runner.worker_env(3)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert all(env[v] == "3" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                       "OPENBLAS_NUM_THREADS", "SPMM_NUM_THREADS"))


def test_the_bandwidth_array_covers_four_times_the_last_level_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = []
    monkeypatch.setattr("spmm_bench.machine.gemm", lambda *a: {"gflops": 1.0, "n": 1,
                                                               "disturbed": False})
    monkeypatch.setattr("spmm_bench.machine.read_bandwidth",
                        lambda t, nbytes: sizes.append(nbytes) or {"gbs": 1.0, "bytes": nbytes})
    from spmm_bench import machine

    for llc, want in ((32 * 2**20, 256 * 2**20), (504 * 2**20, 2016 * 2**20),
                      (4 * 2**30, 2 * 2**30)):
        monkeypatch.setattr(machine, "llc_bytes", lambda llc=llc: llc)
        got = machine.ceilings(1, ["float32"])
        assert sizes[-1] == want and got["stream_capped"] == (llc == 4 * 2**30)
    assert machine._size("504 MiB (1 instance)") == machine._size("516096K") == 504 * 2**20


def test_generators_are_seeded_and_hit_their_pattern() -> None:
    spec = suites.MatrixSpec("tiny", (64, 256), "pruned", 0.75)
    a, b = matrices.generate(spec), matrices.generate(spec)
    assert (a != b).nnz == 0 and a.nnz == 64 * 256 // 4
    block = matrices.generate(suites.MatrixSpec("tiny", (128, 128), "block32", 0.75)).toarray()
    tiles = (block.reshape(4, 32, 4, 32) != 0).sum(axis=(1, 3))
    assert set(np.unique(tiles)) == {0, 32 * 32} and (tiles > 0).sum() == 4
    tile = matrices.tile_wise(np.random.default_rng(0), (64, 256), 64 * 256 // 10, 128)
    assert set(np.unique((tile.toarray().reshape(64, 2, 128) != 0).sum(axis=2))) <= {0, 128}
    lengths = matrices.power_law_lengths(1000, 8000, 1000)
    assert lengths.sum() == 8000 and np.all(np.diff(lengths) <= 0)
    power = matrices.with_row_lengths(np.random.default_rng(0), lengths, 1000)
    assert np.array_equal(np.diff(power.indptr), lengths) and power.has_canonical_format
    counts = matrices.allocate(np.array([100.0, 1, 1, 1]), 30, cap=12)
    assert counts.sum() == 30 and counts.max() <= 12


def test_cli_defaults_and_help(tmp_path: Path) -> None:
    options = cli.options_from_args(cli.build_parser(4).parse_args([]), 4)
    assert options.suite == "quick" and options.threads == [1, 4]
    assert options.scaling_threads == [1, 2, 4, 5, 8] and options.rounds == 3
    options = cli.options_from_args(cli.build_parser(4).parse_args(
        ["--threads", "2,1", "--peers", "none", "--dtype", "float32,float64"]), 4)
    assert options.threads == options.scaling_threads == [1, 2]
    assert options.peers == [] and options.dtypes == ["float32", "float64"]
    with pytest.raises(SystemExit):
        cli.build_parser(4).parse_args(["--peers", "nope"])
    for script in ("run.py", "native_build.py"):
        done = subprocess.run([sys.executable, str(BENCH / script), "--help"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--" in done.stdout, done.stderr


# -- the precision suite ---------------------------------------------------------------------


def test_precision_suite_measures_every_format_against_float32(tmp_path: Path) -> None:
    from spmm_bench import precision

    code = cli.main(["--suite", "precision-tiny", "--repeat", "1", "--threads", "1,2",
                     "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    results = json.loads((tmp_path / "precision.json").read_text())
    assert (tmp_path / "precision.md").read_text().startswith("## Precision suite")
    points = {(r["group"], r["kind"], r["n"], r["threads"], r["format"]): r
              for r in results["measurements"]}
    for group in suites.PRECISION["precision-tiny"]:
        formats = ("bfloat16", "int8") if group.activations else group.formats
        for kind, n, t, fmt in itertools.product(("xw", "ab"), group.widths, (1, 2),
                                                 ("float32", *formats)):
            r = points[(group.name, kind, n, t, fmt)]
            if r["status"] == "skipped":  # only an activations point, and with its reason
                assert group.activations and fmt in results["activations_skipped"]
                assert r["reason"] == results["activations_skipped"][fmt]
                continue
            assert r["status"] == "ok" and r["error"] <= precision.CHECK_TOLERANCE
            assert r["bytes_per_second"] == pytest.approx(r["bytes"] / r["median"])
            if fmt != "float32" and not group.activations:
                # (The activations' grouped rows sit beside the stored form: more bytes.)
                assert r["bytes"] < points[(group.name, kind, n, t, "float32")]["bytes"]
    spec = json.loads((BENCH / "goals.json").read_text())["precision"]
    assert [g["name"] for g in results["goals"]] == [g["name"] for g in spec]
    by_name = {g["name"]: g for g in results["goals"]}
    assert by_name["precision-cache-resident"]["reason"] == "no point of the run matches"
    for g in results["goals"]:
        assert g["status"] in ("met", "missed", "not measured")
    if results["activations_skipped"]:
        assert by_name["precision-activations-int8"]["status"] == "not measured"


def test_precision_goals_take_the_worst_point_and_never_pass_a_skipped_one() -> None:
    from spmm_bench import precision

    point = {"group": "g", "kind": "xw", "n": 1, "threads": 1, "activations": False,
             "status": "ok", "reason": None}
    results = {"measurements": [
        {**point, "format": "int8", "speedup": 2.0, "bytes_ratio": 1.1},
        {**point, "format": "int8", "speedup": 1.7, "bytes_ratio": 1.0, "threads": 2},
        {**point, "format": "bfloat16", "status": "skipped", "reason": "no kernel"}]}
    goal = {"name": "x", "description": "d", "groups": ["g"], "metric": "speedup",
            "at_least": 1.8}
    missed, skipped = precision.evaluate(results, [{**goal, "formats": ["int8"]},
                                                   {**goal, "formats": ["bfloat16"]}])
    assert (missed["status"], missed["measured"], missed["passing"]) == ("missed", 1.7, "1/2")
    assert "2 thread(s)" in missed["worst"]
    assert (skipped["status"], skipped["reason"]) == ("not measured", "no kernel")


def test_the_beyond_llc_matrix_is_sized_from_the_cache_within_the_memory_cap() -> None:
    from spmm_bench import precision

    (side, _), note = precision.beyond_llc_shape(504 * 2**20, 0.9)
    assert 4 * 0.1 * side**2 >= precision.LLC_FACTOR * 504 * 2**20 and side % 4096 == 0
    assert "504 MiB" in note
    (small, _), _ = precision.beyond_llc_shape(2**20, 0.9)
    assert small == precision.SIDE_STEP
    (capped, _), note = precision.beyond_llc_shape(2**40, 0.9)
    assert 0.1 * capped**2 <= precision.MAX_NNZ and "capped" in note


def test_a_library_that_does_not_keep_to_the_thread_limit_is_noted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Greedy(peers.Peer):
        """Says it uses both cores whatever the limit, as MKL can when only its own call
        limits it."""

        name, module = "greedy", "numpy"

        def bind(self, ops: peers.Operands, case: dict[str, Any]) -> peers.Bound:
            return peers.Bound(lambda: ops.csr @ ops.dense, np.asarray)

        def threads_reported(self) -> int | None:
            return 2

    monkeypatch.setitem(peers.PEERS, "greedy", Greedy())
    monkeypatch.setitem(suites.DEFINITIONS, "tiny", [
        suites.Grid("tiny", "ab", ((600, 600),), ("powerlaw",), (0.99,), (4,), ("peers",),
                    peers=("greedy",))])
    results = quietly(tiny(peers=["greedy"]))
    (worker_facts,) = [w for w in results["workers"] if w["group"] == "greedy"]
    assert worker_facts["library_threads"] == 2
    assert "greedy said it would use 2 threads in a worker limited to 1" in results["notes"]
    honest = quietly(tiny(peers=[]))
    assert not any("said it would use" in note for note in honest["notes"])


def test_the_memory_microbenchmark_reports_latency_random_rows_and_bandwidth() -> None:
    micro = Path(__file__).resolve().parents[1] / "bench" / "micro"
    out = subprocess.run([sys.executable, str(micro / "memory.py"), "--quick"], cwd=micro,
                         check=True, capture_output=True, text=True, timeout=300).stdout
    result = json.loads(out[:out.index("\nlines in flight")])
    assert all(ns > 0 for ns in result["chase_ns"].values())
    assert {r["hint"] for r in result["random_rows"]} == {"none", "t0", "t2"}
    assert all(r["rows_per_s"] > 0 for r in result["random_rows"])
    assert result["stream_read_gbs"]["1"] > 0 and result["stream_read_gbs"]["2"] > 0
