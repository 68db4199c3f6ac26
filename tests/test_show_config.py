"""show_config(), ``python -m spmm`` and the demo."""

from __future__ import annotations

import os

import pytest
from conftest import BACKENDS, SIMD_LEVELS, run_interpreter

import spmm
from spmm._demo import run_demo


def test_python_m_spmm_prints_the_version_backend_and_openmp_status():
    proc = run_interpreter(["-m", "spmm"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"spmm {spmm.__version__}" in out
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in out.splitlines() if ":" in line}
    assert lines["openmp"].startswith("yes" if "openmp" in BACKENDS else "no")
    assert lines["available backends"] == ", ".join(BACKENDS)
    assert lines["backend"] == spmm.get_config()["backend"]
    assert lines["simd"] == SIMD_LEVELS[-1]


def test_python_m_spmm_with_an_invalid_environment_fails_with_the_message():
    proc = run_interpreter(["-m", "spmm"], {"SPMM_BACKEND": "cuda"})
    assert proc.returncode != 0
    assert "SPMM_BACKEND" in proc.stderr and "'cuda'" in proc.stderr


def test_show_config_prints_the_same_report(capsys):
    assert spmm.show_config() is None
    out = capsys.readouterr().out
    assert out.startswith(f"spmm {spmm.__version__}")
    config = spmm.get_config()
    for key in ("backend", "num_threads", "kernel", "simd"):
        assert f"{key}:" in out and str(config[key]) in out
    assert "openmp:" in out


def test_show_config_dicts_returns_version_build_and_runtime():
    report = spmm.show_config(mode="dicts")
    assert set(report) == {"version", "build", "runtime"}
    assert report["version"] == spmm.__version__
    assert report["build"]["openmp"] == ("openmp" in BACKENDS)
    assert report["build"]["simd_levels"] == list(SIMD_LEVELS)
    assert report["build"]["simd_levels"][0] == "scalar"
    assert report["runtime"]["config"] == spmm.get_config()
    assert report["runtime"]["available_backends"] == list(BACKENDS)
    assert report["runtime"]["cpus_available"] == len(os.sched_getaffinity(0))
    assert any(p["user_api"] == "spmm" for p in report["runtime"]["threadpool_info"])


def test_show_config_reports_the_calling_threads_configuration():
    with spmm.config_context(backend="serial", num_threads=7):
        config = spmm.show_config(mode="dicts")["runtime"]["config"]
    assert config["backend"] == "serial" and config["num_threads"] == 7


def test_show_config_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts'"):
        spmm.show_config(mode="json")


def test_the_demo_times_scipy_and_every_backend_with_positive_seconds_and_speedups():
    rows = run_demo(batch=4, n_in=64, n_out=128, repeat=2)
    names = [row["name"] for row in rows]
    assert names[0].startswith("scipy")
    for backend in BACKENDS:
        assert sum(f"spmm {backend}," in name for name in names) == 2  # CSR input, prepared
    for row in rows:
        assert row["seconds"] > 0 and row["speedup"] > 0 and row["gflops"] > 0
    assert rows[0]["speedup"] == pytest.approx(1.0)


def test_python_m_spmm_help_offers_config_and_demo():
    proc = run_interpreter(["-m", "spmm", "--help"])
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "config" in proc.stdout
