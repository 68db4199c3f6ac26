"""threadpoolctl sees spmm's thread pool and limits it, for both parallel backends."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import PARALLEL_BACKENDS, assert_product_matches_scipy, make_csr, make_dense
from threadpoolctl import threadpool_info, threadpool_limits

import spmm

CPUS = len(os.sched_getaffinity(0))
LIMIT_FORMS = {
    "threadpool_limits(1)": lambda: threadpool_limits(1),
    "threadpool_limits(limits=1, user_api='spmm')":
        lambda: threadpool_limits(limits=1, user_api="spmm"),
}


def spmm_pools():
    return [pool for pool in threadpool_info() if pool["user_api"] == "spmm"]


def test_threadpool_info_lists_one_spmm_pool_with_the_configured_thread_count():
    pools = spmm_pools()
    assert len(pools) == 1
    assert pools[0]["num_threads"] == spmm.get_config()["num_threads"] == CPUS
    assert pools[0]["version"] == spmm.__version__
    with spmm.config_context(num_threads=CPUS + 3):
        assert spmm_pools()[0]["num_threads"] == CPUS + 3


@pytest.mark.parametrize("limit", LIMIT_FORMS)
def test_threadpool_limits_sets_num_threads_in_its_scope_and_restores_it(limit):
    assert spmm.get_config()["num_threads"] == CPUS
    with LIMIT_FORMS[limit]():
        assert spmm.get_config()["num_threads"] == 1
        assert spmm_pools()[0]["num_threads"] == 1
    assert spmm.get_config()["num_threads"] == CPUS
    assert spmm_pools()[0]["num_threads"] == CPUS


def test_threadpool_limits_restores_a_value_given_with_set_config():
    spmm.set_config(num_threads=CPUS + 2)
    with threadpool_limits(limits=2, user_api="spmm"):
        assert spmm.get_config()["num_threads"] == 2
    assert spmm.get_config()["num_threads"] == CPUS + 2


@pytest.mark.parametrize("limit", LIMIT_FORMS)
def test_after_threadpool_limits_the_thread_count_follows_the_environment_again(
    limit, monkeypatch
):
    """The scope ends as if it had never been entered: threadpool_limits acts like
    set_config(num_threads=n) *for its scope*, so it must not leave a set_config behind."""
    with LIMIT_FORMS[limit]():
        pass
    monkeypatch.setenv("SPMM_NUM_THREADS", str(CPUS + 5))
    assert spmm.get_config()["num_threads"] == CPUS + 5


@pytest.mark.parametrize("limit", LIMIT_FORMS)
@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
def test_products_under_a_limit_use_one_thread_and_are_still_correct(
    backend, limit, kernel_calls, rng
):
    a = make_csr((60, 40), 0.2, np.float64, np.int32, rng)
    b = make_dense((40, 5), np.float64, rng)
    x = make_dense((5, 60), np.float64, rng)
    with LIMIT_FORMS[limit]():
        assert_product_matches_scipy(spmm.multiply(a, b, backend=backend), a, b)
        assert_product_matches_scipy(spmm.multiply(x, a, backend=backend), x, a)
    assert [(c["backend"], c["num_threads"]) for c in kernel_calls] == [(backend, 1)] * 2
    assert_product_matches_scipy(spmm.multiply(a, b, backend=backend), a, b)
    assert kernel_calls[-1]["num_threads"] == CPUS


def test_a_limit_on_another_library_leaves_spmm_alone():
    with threadpool_limits(limits=1, user_api="blas"):
        assert spmm.get_config()["num_threads"] == CPUS
