"""Configuration: keyword > set_config/config_context > SPMM_* environment > defaults;
thread-local; invalid values are errors naming the valid ones, also from the environment."""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    ALL_SIMD_NAMES,
    BEST_SIMD,
    KERNELS,
    SIMD_LEVELS,
    assert_product_matches_scipy,
    make_csr,
    run_python_json,
)
from threadpoolctl import threadpool_limits

import spmm
from spmm import _config

A = sp.csr_array(np.eye(4))
B = np.ones((4, 3))
CPUS = len(os.sched_getaffinity(0))
DEFAULT_BACKEND = "openmp" if "openmp" in spmm.available_backends() else "threads"

# For each setting: its environment variable, then three values, each different from the
# default and from its neighbour, for the environment, set_config and the keyword.
LEVELS = {
    "backend": ("SPMM_BACKEND", "serial", "threads", "serial"),
    "num_threads": ("SPMM_NUM_THREADS", CPUS + 1, CPUS + 2, CPUS + 3),
    "kernel": ("SPMM_KERNEL", "naive", "reordered", "tiled"),
}


def test_get_config_holds_exactly_backend_num_threads_kernel_and_simd_never_none():
    config = spmm.get_config()
    assert set(config) == {"backend", "num_threads", "kernel", "simd"}
    assert all(value is not None for value in config.values())


def test_the_defaults_are_openmp_or_threads_all_cpus_of_the_affinity_mask_auto_and_scalar(
    kernel_calls,
):
    assert spmm.get_config() == {"backend": DEFAULT_BACKEND, "num_threads": CPUS,
                                 "kernel": "auto", "simd": BEST_SIMD}
    spmm.multiply(A, B)
    assert kernel_calls[-1]["backend"] == DEFAULT_BACKEND
    assert kernel_calls[-1]["num_threads"] == CPUS


def test_get_config_returns_a_copy():
    config = spmm.get_config()
    config["backend"] = "nonsense"
    config["num_threads"] = -5
    assert spmm.get_config()["backend"] == DEFAULT_BACKEND
    assert spmm.get_config()["num_threads"] == CPUS


@pytest.mark.parametrize("setting", LEVELS)
def test_the_environment_overrides_the_default_and_is_read_at_call_time(
    setting, monkeypatch, kernel_calls
):
    variable, env_value, _, _ = LEVELS[setting]
    monkeypatch.setenv(variable, str(env_value))
    assert spmm.get_config()[setting] == env_value
    spmm.multiply(A, B)
    assert kernel_calls[-1][setting] == env_value
    monkeypatch.delenv(variable)
    assert spmm.get_config()[setting] != env_value


@pytest.mark.parametrize("setting", LEVELS)
def test_set_config_overrides_the_environment(setting, monkeypatch, kernel_calls):
    variable, env_value, set_value, _ = LEVELS[setting]
    monkeypatch.setenv(variable, str(env_value))
    spmm.set_config(**{setting: set_value})
    assert spmm.get_config()[setting] == set_value
    spmm.multiply(A, B)
    assert kernel_calls[-1][setting] == set_value


@pytest.mark.parametrize("setting", LEVELS)
def test_config_context_overrides_set_config_and_restores_it_on_exit(
    setting, monkeypatch, kernel_calls
):
    variable, env_value, set_value, context_value = LEVELS[setting]
    monkeypatch.setenv(variable, str(env_value))
    spmm.set_config(**{setting: set_value})
    with spmm.config_context(**{setting: context_value}):
        assert spmm.get_config()[setting] == context_value
        spmm.multiply(A, B)
        assert kernel_calls[-1][setting] == context_value
    assert spmm.get_config()[setting] == set_value


@pytest.mark.parametrize("setting", LEVELS)
def test_the_keyword_overrides_config_context_set_config_and_environment(
    setting, monkeypatch, kernel_calls
):
    variable, env_value, set_value, keyword_value = LEVELS[setting]
    monkeypatch.setenv(variable, str(env_value))
    with spmm.config_context(**{setting: set_value}):
        spmm.multiply(A, B, **{setting: keyword_value})
        assert kernel_calls[-1][setting] == keyword_value
        assert spmm.get_config()[setting] == set_value, "a keyword is for its call only"


def test_config_context_restores_the_configuration_when_the_block_raises():
    spmm.set_config(kernel="naive")
    before = spmm.get_config()
    with pytest.raises(KeyError), spmm.config_context(backend="serial", num_threads=5,
                                                      kernel="tiled"):
        assert spmm.get_config()["num_threads"] == 5
        raise KeyError("boom")
    assert spmm.get_config() == before


def test_a_config_context_without_values_and_set_config_of_none_change_nothing():
    spmm.set_config(backend="serial", kernel="tiled")
    before = spmm.get_config()
    spmm.set_config()
    spmm.set_config(backend=None, num_threads=None, kernel=None)
    with spmm.config_context():
        assert spmm.get_config() == before
    assert spmm.get_config() == before


def test_an_invalid_set_config_changes_nothing():
    spmm.set_config(kernel="naive")
    with pytest.raises(ValueError):
        spmm.set_config(kernel="reordered", num_threads=0)
    assert spmm.get_config()["kernel"] == "naive"


# --------------------------------------------------------------------------------------------
# The bound on num_threads.

MAX_THREADS = _config.MAX_THREADS
TOO_MANY = {"one above the bound": MAX_THREADS + 1, "2**31 - 1": 2**31 - 1, "10**30": 10**30}


def multiply_with_thread_count(source: str, value: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask for ``value`` threads through ``source`` and multiply with that setting."""
    if source == "keyword":
        spmm.multiply(A, B, num_threads=value)
    elif source == "SPMM_NUM_THREADS":
        monkeypatch.setenv("SPMM_NUM_THREADS", str(value))
        spmm.multiply(A, B)
    elif source == "set_config":
        spmm.set_config(num_threads=value)
        spmm.multiply(A, B)
    elif source == "config_context":
        with spmm.config_context(num_threads=value):
            spmm.multiply(A, B)
    else:
        # user_api="spmm": the plain form would first raise OpenBLAS's and OpenMP's limits.
        with threadpool_limits(limits=value, user_api="spmm"):
            spmm.multiply(A, B)


THREAD_COUNT_SOURCES = ["keyword", "set_config", "config_context", "threadpool_limits",
                        "SPMM_NUM_THREADS"]


def test_the_thread_count_bound_is_64_per_cpu_of_the_machine_and_at_most_4096():
    assert MAX_THREADS == min(4096, 64 * os.cpu_count())
    spmm.set_config(num_threads=MAX_THREADS)
    assert spmm.get_config()["num_threads"] == MAX_THREADS
    with pytest.raises(ValueError):
        spmm.set_config(num_threads=MAX_THREADS + 1)


def test_the_bound_does_not_follow_the_affinity_mask():
    """In a process allowed one CPU, the bound is still 64 per CPU of the machine."""
    report = run_python_json(
        "import json, os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from spmm import _config\n"
        "print(json.dumps([_config.MAX_THREADS, os.cpu_count(), len(os.sched_getaffinity(0))]))")
    max_threads, cpu_count, allowed = report
    assert allowed == 1
    assert max_threads == min(4096, 64 * cpu_count)


@pytest.mark.parametrize("value", TOO_MANY.values(), ids=TOO_MANY.keys())
@pytest.mark.parametrize("source", THREAD_COUNT_SOURCES)
def test_a_thread_count_above_the_bound_is_a_value_error_naming_the_bound(
    source, value, monkeypatch, kernel_calls
):
    with pytest.raises(ValueError, match=rf"must be at most {MAX_THREADS} .*; got {value}$"):
        multiply_with_thread_count(source, value, monkeypatch)
    assert kernel_calls == [], "no product ran"
    monkeypatch.delenv("SPMM_NUM_THREADS", raising=False)
    assert spmm.get_config()["num_threads"] == CPUS, "the rejected value is not kept"


@pytest.mark.parametrize("source", THREAD_COUNT_SOURCES)
def test_a_thread_count_at_the_bound_is_accepted(source, monkeypatch, kernel_calls):
    multiply_with_thread_count(source, MAX_THREADS, monkeypatch)
    assert kernel_calls[-1]["num_threads"] == MAX_THREADS


def in_other_thread(fn):
    """``fn()`` run in a new threading.Thread; returns its result."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # reported in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_set_config_in_another_thread_does_not_change_this_threads_configuration():
    before = spmm.get_config()

    def other():
        spmm.set_config(backend="serial", num_threads=CPUS + 4, kernel="naive")
        with spmm.config_context(kernel="tiled"):
            pass
        return spmm.get_config()

    other_config = in_other_thread(other)
    assert other_config["backend"] == "serial" and other_config["num_threads"] == CPUS + 4
    assert spmm.get_config() == before


def test_set_config_in_this_thread_is_not_seen_by_another_thread():
    spmm.set_config(backend="serial", num_threads=CPUS + 4, kernel="naive")
    with spmm.config_context(kernel="reordered"):
        other_config = in_other_thread(spmm.get_config)
    assert other_config == {"backend": DEFAULT_BACKEND, "num_threads": CPUS,
                            "kernel": "auto", "simd": BEST_SIMD}


def test_another_thread_still_follows_the_environment(monkeypatch):
    monkeypatch.setenv("SPMM_KERNEL", "naive")
    spmm.set_config(kernel="tiled")
    assert in_other_thread(spmm.get_config)["kernel"] == "naive"


# --------------------------------------------------------------------------------------------
# Invalid values in the environment, in process (the variables are read at call time).


@pytest.mark.parametrize(("variable", "value"), [
    ("SPMM_BACKEND", "cuda"), ("SPMM_NUM_THREADS", "0"), ("SPMM_KERNEL", "fast"),
    ("SPMM_SIMD", "sse9"),
])
def test_an_invalid_environment_variable_set_after_import_is_an_error_at_the_next_call(
    variable, value, monkeypatch
):
    monkeypatch.setenv(variable, value)
    for call in (spmm.get_config,
                 lambda: spmm.multiply(A, B, backend="serial", num_threads=1, kernel="naive"),
                 lambda: spmm.show_config(mode="dicts")):
        with pytest.raises(ValueError, match=rf"{variable}.*{value}"):
            call()


# --------------------------------------------------------------------------------------------
# The environment in a fresh process: import, then the first calls.

ENV_CHILD = """
import json
report = {}
try:
    import numpy as np, scipy.sparse as sp
    import spmm
    report["import"] = "ok"
except Exception as exc:
    report["import"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report))
    raise SystemExit(0)

def outcome(fn):
    try:
        fn()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["returned", ""]

a, b = sp.csr_array(np.eye(3)), np.ones((3, 2))
# The first call overrides every setting with a keyword: the environment is still checked.
report["multiply with keywords"] = outcome(
    lambda: spmm.multiply(a, b, backend="serial", num_threads=1, kernel="naive"))
report["get_config"] = outcome(spmm.get_config)
report["show_config"] = outcome(spmm.show_config)
report["multiply"] = outcome(lambda: spmm.multiply(a, b))
print(json.dumps(report))
"""

INVALID_ENVIRONMENT = [
    # variable, value, what the message must also name (the valid values)
    ("SPMM_BACKEND", "cuda", [repr(b) for b in spmm.available_backends()]),
    ("SPMM_BACKEND", "OpenMP", [repr(b) for b in spmm.available_backends()]),
    ("SPMM_NUM_THREADS", "zero", ["positive integer"]),
    ("SPMM_NUM_THREADS", "0", ["positive integer"]),
    ("SPMM_NUM_THREADS", "-2", ["positive integer"]),
    ("SPMM_NUM_THREADS", "1.5", ["positive integer"]),
    ("SPMM_KERNEL", "fast", [repr(k) for k in KERNELS]),
    ("SPMM_SIMD", "sse9", ["'scalar'"]),
]


@pytest.mark.parametrize(("variable", "value", "valid"), INVALID_ENVIRONMENT,
                         ids=[f"{v}={x}" for v, x, _ in INVALID_ENVIRONMENT])
def test_an_invalid_environment_variable_never_breaks_import_but_fails_every_first_call(
    variable, value, valid
):
    report = run_python_json(ENV_CHILD, {variable: value})
    assert report.pop("import") == "ok"
    for call, (exc_type, message) in report.items():
        assert exc_type == "ValueError", f"{call}: {exc_type} {message}"
        for part in [variable, *valid]:
            assert part in message, f"{call}: {part!r} not in {message!r}"
        # the value itself, as a token of its own (quoted or not)
        assert re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w.])", message), message


UNSUPPORTED_SIMD = next(level for level in ALL_SIMD_NAMES if level not in SIMD_LEVELS)


def test_spmm_simd_above_what_is_supported_is_an_error_saying_what_is_supported():
    """On x86-64 'neon' is never supported (and 'avx512' is not on older CPUs)."""
    report = run_python_json(ENV_CHILD, {"SPMM_SIMD": UNSUPPORTED_SIMD})
    assert report.pop("import") == "ok"
    supported = "{" + ", ".join(repr(level) for level in SIMD_LEVELS) + "}"
    for call, (exc_type, message) in report.items():
        assert exc_type == "ValueError", f"{call}: {exc_type} {message}"
        assert "SPMM_SIMD" in message and repr(UNSUPPORTED_SIMD) in message
        assert f"supported: {supported}" in message, message


@pytest.mark.parametrize("level", SIMD_LEVELS)
def test_spmm_simd_selects_each_supported_level_for_the_call(level, monkeypatch, kernel_calls):
    monkeypatch.setenv("SPMM_SIMD", level)
    assert spmm.get_config()["simd"] == level
    spmm.multiply(A, B, kernel="tiled")
    assert [call["simd"] for call in kernel_calls] == [level]


def test_valid_environment_variables_take_effect_in_a_fresh_process():
    code = """
    import json
    import numpy as np, scipy.sparse as sp
    import spmm
    from spmm import _policy
    used = []
    original = _policy.plan
    def recorder(*args, **kwargs):
        plan = original(*args, **kwargs)
        used.append([plan.kernel, plan.backend, plan.num_threads, plan.partition, plan.simd])
        return plan
    _policy.plan = recorder
    a = sp.random_array((30, 20), density=0.3, format="csr", rng=0)
    b = np.arange(40.0).reshape(20, 2)
    ok = bool(np.allclose(spmm.multiply(a, b), a @ b, rtol=1e-12, atol=1e-12))
    print(json.dumps({"config": spmm.get_config(), "used": used, "ok": ok,
                      "shown": spmm.show_config(mode="dicts")["runtime"]["config"]}))
    """
    env = {"SPMM_BACKEND": "serial", "SPMM_NUM_THREADS": "3", "SPMM_KERNEL": "naive",
           "SPMM_SIMD": "scalar"}
    report = run_python_json(code, env)
    expected = {"backend": "serial", "num_threads": 3, "kernel": "naive", "simd": "scalar"}
    assert report["config"] == expected
    assert report["shown"] == expected
    assert report["ok"]
    # the plan: naive on the serial backend (so one thread), nnz partition, scalar SIMD
    assert report["used"] == [["naive", "serial", 1, "nnz", "scalar"]]


def test_an_empty_environment_variable_counts_as_unset():
    report = run_python_json(
        "import json, spmm; print(json.dumps(spmm.get_config()))",
        {"SPMM_BACKEND": "", "SPMM_NUM_THREADS": "", "SPMM_KERNEL": "", "SPMM_SIMD": ""})
    assert report == {"backend": DEFAULT_BACKEND, "num_threads": CPUS, "kernel": "auto",
                      "simd": BEST_SIMD}


def test_the_child_process_helper_passes_only_the_given_spmm_variables(monkeypatch):
    """Guards the helper the environment tests rely on."""
    monkeypatch.setenv("SPMM_BACKEND", "serial")
    report = run_python_json("import json, os; print(json.dumps(dict(os.environ)))",
                             {"SPMM_KERNEL": "naive"})
    assert report["SPMM_KERNEL"] == "naive"
    assert "SPMM_BACKEND" not in report


@pytest.mark.parametrize(("family", "n", "entries_per_row", "expected"),
                         [("csr_rows", 1, 10.0, "naive"), ("csr_rows", 1, 16.0, "tiled"),
                          ("csr_rows", 1, 41.0, "tiled"), ("csr_rows", 2, 1.0, "tiled"),
                          ("csr_rows", 64, 10.0, "tiled"), ("csc_columns", 1, 10.0, "tiled"),
                          ("coo", 1, 1.0, "tiled"), ("dia", 1, 1.0, "tiled")])
def test_auto_is_tiled_except_one_column_of_short_csr_rows(family, n, entries_per_row,
                                                            expected):
    from spmm._policy import choose_kernel

    assert choose_kernel("auto", family, n, entries_per_row) == expected
    assert choose_kernel("reordered", family, n, entries_per_row) == "reordered"


def test_auto_takes_naive_for_a_vector_times_a_99_percent_pruned_layer(kernel_calls, rng):
    w = make_csr((1024, 256), 0.01, np.float32, np.int32, rng).tocsc()  # read by rows of Wᵀ
    x = rng.standard_normal(1024).astype(np.float32)
    assert_product_matches_scipy(spmm.multiply(x, w, kernel="auto"), x, w)
    assert kernel_calls[-1]["kernel"] == "naive"
    xs = rng.standard_normal((3, 1024)).astype(np.float32)
    assert_product_matches_scipy(spmm.multiply(xs, w, kernel="auto"), xs, w)
    assert kernel_calls[-1]["kernel"] == "tiled"


@pytest.mark.parametrize(("family", "n", "expected"),
                         [("csr_rows", 1, "dynamic"), ("csr_rows", 2, "nnz"),
                          ("csr_rows", 64, "nnz"), ("csc_columns", 1, "nnz"),
                          ("panels", 1, "nnz"), ("n_m", 8, "nnz"), ("dia", 1, "rows")])
def test_the_default_partition_is_dynamic_for_one_csr_column_and_balanced_otherwise(
        family, n, expected):
    from spmm._policy import choose_partition

    assert choose_partition("auto", family, n) == expected
    for named in ("rows", "nnz", "dynamic"):
        assert choose_partition(named, family, n) == named


@pytest.mark.parametrize("prepared", [False, True], ids=["unprepared", "prepared"])
def test_multiply_hands_the_chosen_partition_to_the_kernels(prepared, kernel_calls, rng):
    a = make_csr((400, 300), 0.05, np.float32, np.int32, rng)
    operand = spmm.prepare(a) if prepared else a
    for b, expected in ((rng.standard_normal(300).astype(np.float32), "dynamic"),
                        (rng.standard_normal((300, 5)).astype(np.float32), "nnz")):
        result = spmm.multiply(operand, b, backend="threads", num_threads=2)
        assert_product_matches_scipy(result, a, b)
        assert kernel_calls[-1]["partition"] == expected
