"""Shared fixtures and helpers of spmm's test suite.

Every numeric result is checked against scipy: :func:`scipy_product` computes the reference
``a @ b`` with scipy, :func:`assert_matches_scipy` compares a result with it (values, dtype,
shape, type). :func:`make_csr` builds CSR matrices with explicit index arrays of a chosen
dtype. :func:`run_in_forked_child` and :func:`run_python` isolate what could crash, hang or
depend on the process's state (fork safety, environment variables, corrupt matrices).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from fuzz.isolation import forked
from hypothesis import HealthCheck, settings

import spmm
from spmm import _config, _policy

# --------------------------------------------------------------------------------------------
# Hypothesis: one derandomized profile, so that a failure reproduces on every run and machine.

settings.register_profile(
    "spmm",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("spmm")

# --------------------------------------------------------------------------------------------
# The axes of the product grid. Backends come from the build (no OpenMP in a no-OpenMP build).

BACKENDS: tuple[str, ...] = tuple(spmm.available_backends())
PARALLEL_BACKENDS: tuple[str, ...] = tuple(b for b in BACKENDS if b != "serial")
KERNELS: tuple[str, ...] = _config.KERNELS
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
THREAD_COUNTS = (1, 2, 3)
PARTITIONS: tuple[str, ...] = _config.PARTITIONS
FORMATS = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
#: The instruction-set levels this CPU and build support (scalar first, the default last).
SIMD_LEVELS: tuple[str, ...] = tuple(_config.available_simd())
ALL_SIMD_NAMES: tuple[str, ...] = _config.SIMD_LEVELS
#: The levels whose float kernels differ: a level that only adds the dot-product instructions
#: of ``prepare(activations=...)`` (avx512_vnni...) runs the bodies of the level below it.
KERNEL_SIMD_LEVELS: tuple[str, ...] = tuple(dict.fromkeys(_config.float_kernel_levels().values()))
BEST_SIMD = SIMD_LEVELS[-1]

#: The environment variables spmm reads its configuration from.
CONFIG_ENV_VARS = ("SPMM_BACKEND", "SPMM_NUM_THREADS", "SPMM_KERNEL", "SPMM_SIMD")

#: Relative tolerance by result dtype; the absolute one is scaled by the operands' magnitudes.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def ids(values: Sequence[Any]) -> list[str]:
    """Readable test ids for dtypes and other values."""
    return [np.dtype(v).name if isinstance(v, (type, np.dtype)) else str(v) for v in values]


# --------------------------------------------------------------------------------------------
# Isolation: every test starts from the defaults, whatever the caller's environment holds.


def reset_spmm_config() -> None:
    """Forget this thread's set_config values (back to environment and defaults)."""
    local = _config._local()
    local.clear()
    local.update(dict.fromkeys(_config.ENV_VARS))


@pytest.fixture(autouse=True)
def _clean_config(monkeypatch: pytest.MonkeyPatch):
    for name in CONFIG_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    reset_spmm_config()
    yield
    reset_spmm_config()


@pytest.fixture(autouse=True)
def _small_products_in_parallel(monkeypatch: pytest.MonkeyPatch):
    """Every product uses its backend's threads, however small.

    spmm runs products below a work threshold (``kParallelMinWork``, far above the size of
    the test matrices) on the calling thread; the tests exercise the parallel code instead,
    as it runs on larger products. The threshold's own tests use
    :func:`default_parallel_threshold`. Subprocesses run with the built-in threshold.
    """
    monkeypatch.setattr(_policy, "min_work", 0)


@pytest.fixture
def default_parallel_threshold(monkeypatch: pytest.MonkeyPatch):
    """Products below the built-in threshold run on the calling thread, as outside tests."""
    monkeypatch.setattr(_policy, "min_work", -1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test sees the same numbers on every run."""
    return np.random.default_rng(20261123)


# --------------------------------------------------------------------------------------------
# Operands.


def random_values(n: int | tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Random values of ``dtype``: in [-1, 1) for floats, small integers, or booleans."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(n) < 0.6
    if dtype.kind == "u":
        return rng.integers(0, 7, n).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-6, 7, n).astype(dtype)
    return rng.uniform(-1.0, 1.0, n).astype(dtype)


def make_csr(
    shape: tuple[int, int],
    density: float,
    dtype: Any,
    index_dtype: Any,
    rng: np.random.Generator,
    *,
    empty_rows: Sequence[int] = (),
    empty_cols: Sequence[int] = (),
    cls: type = sp.csr_array,
) -> sp.csr_array | sp.csr_matrix:
    """A random CSR matrix built from explicit ``indices``/``indptr`` of ``index_dtype``.

    Each entry is stored with probability ``density``, except in ``empty_rows`` and
    ``empty_cols``. Indices are sorted, without duplicates. Asserts that scipy kept the index
    dtype (resetting the arrays if scipy narrowed them), so a test parametrized over it really
    exercises it.
    """
    index_dtype = np.dtype(index_dtype)
    m = shape[0]
    mask = rng.random(shape) < density
    mask[list(empty_rows), :] = False
    mask[:, list(empty_cols)] = False
    rows, cols = np.nonzero(mask)
    indptr = np.zeros(m + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    indices = cols.astype(index_dtype)
    data = random_values(len(cols), dtype, rng)
    a = cls((data, indices, indptr), shape=shape)
    if a.indices.dtype != index_dtype:  # scipy may choose int32 itself for a small matrix
        a.indices, a.indptr = indices, indptr
    assert a.indices.dtype == index_dtype and a.indptr.dtype == index_dtype
    assert a.dtype == np.dtype(dtype)
    return a


def make_dense(shape: int | tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """A random C-ordered dense array."""
    return np.asarray(random_values(shape, dtype, rng))


def sparse_arrays(a: Any) -> dict[str, np.ndarray]:
    """Copies of the arrays a sparse matrix stores (to check that nothing modifies them)."""
    return {name: np.array(getattr(a, name), copy=True)
            for name in ("data", "indices", "indptr", "row", "col", "offsets")
            if isinstance(getattr(a, name, None), np.ndarray)}


def assert_sparse_unchanged(a: Any, before: dict[str, np.ndarray]) -> None:
    after = sparse_arrays(a)
    assert after.keys() == before.keys()
    for name, array in before.items():
        assert after[name].dtype == array.dtype, f"{name} changed dtype"
        np.testing.assert_array_equal(after[name], array, err_msg=f"{name} was modified")


# --------------------------------------------------------------------------------------------
# The reference and the comparison.


def result_dtype(sparse_dtype: Any, dense_dtype: Any) -> np.dtype:
    """The dtype the contract promises: numpy's result type of the two (byte order aside)
    when it is float32 or float64, float32 when it is float16, float64 for integers and
    bools alone."""
    common = np.result_type(np.dtype(sparse_dtype).newbyteorder("="),
                            np.dtype(dense_dtype).newbyteorder("="))
    if common.kind == "f":
        return np.dtype(np.float32 if common.itemsize <= 4 else np.float64)
    return np.dtype(np.float64)


def _finite_abs_sparse(a: Any) -> sp.csr_array:
    m = sp.csr_array(a.astype(np.float64))
    m.data = np.nan_to_num(np.abs(m.data), nan=0.0, posinf=0.0, neginf=0.0)
    return m


def _finite_abs_dense(b: Any) -> np.ndarray:
    return np.nan_to_num(np.abs(np.asarray(b, dtype=np.float64)), nan=0.0, posinf=0.0,
                         neginf=0.0)


def scipy_product(a: Any, b: Any) -> tuple[np.ndarray, np.dtype, float]:
    """scipy's ``a @ b`` (exactly one operand sparse), the promised dtype, and a magnitude.

    As the contract says, the reference is scipy's product of the sparse operand converted to
    CSR (this matters for DIA, whose storage may hold zeros that its CSR form drops: a stored
    0 times NaN is NaN), with both operands first converted to the promised result dtype, as
    spmm does (scipy would compute a bool product as a logical one, and a float16 one in
    float16). The magnitude is the largest entry of ``|a| @ |b|`` over finite values: the
    scale of the rounding error.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as it should be
        if sp.issparse(a):
            dtype = result_dtype(a.dtype, np.asarray(b).dtype)
            expected = a.tocsr().astype(dtype) @ np.asarray(b, dtype=dtype)
            magnitude = _finite_abs_sparse(a) @ _finite_abs_dense(b)
        else:
            dtype = result_dtype(b.dtype, np.asarray(a).dtype)
            expected = np.asarray(a, dtype=dtype) @ b.tocsr().astype(dtype)
            magnitude = _finite_abs_dense(a) @ _finite_abs_sparse(b)
    magnitude = np.asarray(magnitude)
    scale = float(magnitude.max()) if magnitude.size else 0.0
    return np.asarray(expected), dtype, scale


def assert_matches_scipy(result: Any, expected: np.ndarray, *, dtype: Any,
                         magnitude: float = 1.0, err_msg: str = "") -> None:
    """``result`` is a plain ndarray of ``dtype`` equal to scipy's ``expected``.

    Equal within ``RTOL[dtype]`` relative and ``RTOL[dtype] * max(1, magnitude)`` absolute
    tolerance; NaN where scipy has NaN, the same infinities.
    """
    assert type(result) is np.ndarray, f"result is a {type(result).__name__}, not an ndarray"
    assert result.dtype == np.dtype(dtype), f"result dtype {result.dtype}, expected {dtype}"
    assert result.shape == expected.shape, f"result shape {result.shape}, expected {expected.shape}"
    rtol = RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol * max(1.0, magnitude),
                               equal_nan=True, err_msg=err_msg)


def assert_product_matches_scipy(result: Any, a: Any, b: Any, err_msg: str = "") -> None:
    """``result`` is the product ``a @ b`` as scipy computes it, with the promised dtype."""
    expected, dtype, magnitude = scipy_product(a, b)
    assert_matches_scipy(result, expected, dtype=dtype, magnitude=magnitude, err_msg=err_msg)


# --------------------------------------------------------------------------------------------
# Recording what multiply hands to the C++ layer.

#: The extension's product entry points, one per kernel family.
PRODUCT_ENTRY_POINTS = ("csr_product", "coo_product", "bsr_product", "dia_product",
                        "panels_times_dense", "nm_times_dense")


@pytest.fixture
def extension_arrays(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The arrays every call into the extension's products received (the call still runs)."""
    from spmm import _spmm_ext

    seen: list[np.ndarray] = []

    def recording(original: Any) -> Any:
        def recorder(*args: Any) -> Any:
            seen.extend(x for x in args if isinstance(x, np.ndarray))
            return original(*args)
        return recorder

    for name in PRODUCT_ENTRY_POINTS:
        monkeypatch.setattr(_spmm_ext, name, recording(getattr(_spmm_ext, name)))
    return seen


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The (kernel, family, backend, num_threads, partition, simd) of every product planned
    (``spmm._policy.plan``, the one place multiply and explain decide; the product still
    runs)."""
    calls: list[dict[str, Any]] = []
    original = _policy.plan

    def recorder(*args: Any, **kwargs: Any) -> Any:
        plan = original(*args, **kwargs)
        calls.append(plan._asdict())
        return plan

    monkeypatch.setattr(_policy, "plan", recorder)
    return calls


# --------------------------------------------------------------------------------------------
# Process isolation.


class ChildFailed(AssertionError):
    """The forked child crashed, hung, or raised."""


def run_in_forked_child(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run ``fn()`` in a child made with ``os.fork()`` and return what it returned.

    The parent waits at most ``timeout`` seconds; a child that hangs is killed, and a hang, a
    crash (death by a signal) or an exception escaping ``fn`` fails the calling test (wrap
    the call in :func:`outcome` to report an expected exception instead). ``fn``'s return
    value must be picklable.
    """
    def work() -> bytes:
        try:
            return pickle.dumps(("ok", fn()))
        except BaseException as exc:
            return pickle.dumps(("error", f"{type(exc).__name__}: {exc}\n"
                                          f"{traceback.format_exc()}"))

    status, result = forked(work, timeout)
    if status == "hang":
        raise ChildFailed(f"the forked child hung: {result}")
    if status == "crash":
        raise ChildFailed(f"the forked child crashed: {result}")
    kind, value = pickle.loads(result)
    if kind == "error":
        raise ChildFailed(f"the forked child raised {value}")
    return value


def outcome(fn: Callable[[], Any]) -> tuple[str, str, str]:
    """``("returned", "", repr)`` or ``("raised", exception type name, message)`` of ``fn()``."""
    try:
        value = fn()
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("returned", "", repr(value)[:200])


def run_python(code: str, env: dict[str, str] | None = None,
               timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``code`` with this interpreter in a fresh process (``python -c code``).

    The child's environment is this one without the ``SPMM_*`` configuration variables,
    plus ``env``.
    """
    return run_interpreter(["-c", textwrap.dedent(code)], env, timeout)


def run_interpreter(args: list[str], env: dict[str, str] | None = None,
                    timeout: float = 120.0) -> subprocess.CompletedProcess:
    """``python *args`` in a fresh process, with the environment of :func:`run_python`.

    The child runs in the directory of this interpreter (never the repository root, where
    ``python -c``/``-m`` would import the uncompiled source tree instead of the installed
    package).
    """
    child_env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENV_VARS}
    child_env.update(env or {})
    return subprocess.run([sys.executable, *args], env=child_env, capture_output=True,
                          text=True, timeout=timeout, check=False,
                          cwd=os.path.dirname(sys.executable))


def run_python_json(code: str, env: dict[str, str] | None = None,
                    timeout: float = 120.0) -> Any:
    """Run ``code`` in a fresh process; it must exit 0 and print one JSON document last."""
    proc = run_python(code, env, timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
