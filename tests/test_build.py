"""The build: OpenMP present or not, as CI expects (SPMM_EXPECT_OPENMP), with a clean fallback.

CI builds spmm twice: with OpenMP (SPMM_EXPECT_OPENMP=1) and with SPMM_DISABLE_OPENMP=1
(SPMM_EXPECT_OPENMP=0), running the whole suite on each.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

import spmm
from spmm import _spmm_ext

EXPECT_OPENMP = os.environ.get("SPMM_EXPECT_OPENMP")


def test_openmp_is_available_exactly_when_the_build_expects_it():
    has_openmp = "openmp" in spmm.available_backends()
    if EXPECT_OPENMP is not None:
        assert has_openmp == (EXPECT_OPENMP == "1")
    # whatever the expectation, every report of the build agrees
    assert has_openmp == _spmm_ext.has_openmp()
    assert has_openmp == spmm.show_config(mode="dicts")["build"]["openmp"]
    assert (_spmm_ext.openmp_version() > 0) == has_openmp
    assert {"serial", "threads"} <= set(spmm.available_backends())


def test_the_default_backend_is_openmp_when_built_with_it_else_threads():
    expected = "openmp" if "openmp" in spmm.available_backends() else "threads"
    assert spmm.get_config()["backend"] == expected
    if EXPECT_OPENMP == "0":
        assert expected == "threads"


def test_backend_openmp_without_openmp_is_a_value_error_mentioning_openmp(monkeypatch):
    """Checked for real in a build without OpenMP, and in any build by making the Python layer
    see one (has_openmp() returning False)."""
    a, b = sp.csr_array(np.eye(3)), np.ones((3, 2))
    if "openmp" in spmm.available_backends():
        monkeypatch.setattr(_spmm_ext, "has_openmp", lambda: False)
    assert spmm.available_backends() == ["serial", "threads"]
    assert spmm.get_config()["backend"] == "threads"
    for call in (lambda: spmm.multiply(a, b, backend="openmp"),
                 lambda: spmm.set_config(backend="openmp"),
                 lambda: spmm.config_context(backend="openmp").__enter__()):
        with pytest.raises(ValueError, match=r"not available: spmm was built without OpenMP"):
            call()
    monkeypatch.setenv("SPMM_BACKEND", "openmp")
    with pytest.raises(ValueError, match=r"SPMM_BACKEND.*OpenMP"):
        spmm.get_config()


def test_the_compiler_and_its_arguments_are_reported():
    build = spmm.show_config(mode="dicts")["build"]
    assert build["compiler"] and build["compiler"] != "unknown"
    assert "-O3" in build["compile_args"] or "/O2" in build["compile_args"]
    if "openmp" in spmm.available_backends():
        assert "openmp" in build["compile_args"]
