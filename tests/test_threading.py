"""Threads: the `threads` backend's pool is persistent, concurrent calls from Python threads are
safe, and a process forked after spmm ran (on either parallel backend) still computes."""

from __future__ import annotations

import multiprocessing
import os
import re
import resource
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    PARALLEL_BACKENDS,
    assert_product_matches_scipy,
    make_csr,
    make_dense,
    outcome,
    run_in_forked_child,
)

import spmm
from spmm import _config, _spmm_ext

CPUS = len(os.sched_getaffinity(0))


def os_threads() -> int:
    """Threads of this process, as the kernel counts them."""
    return len(os.listdir("/proc/self/task"))


# Beyond the default thread count: far more threads than this machine has CPUs.
MANY_THREADS = min(72, _config.MAX_THREADS)


def eventually(condition, timeout=30.0):
    """Whether ``condition()`` became true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def product_operands(seed: int):
    rng = np.random.default_rng(seed)
    a = make_csr((150, 120), 0.1, np.float64, np.int32, rng, empty_rows=(0, 149))
    return a, make_dense((120, 9), np.float64, rng), make_dense((9, 150), np.float64, rng)


def test_the_threads_pool_starts_num_threads_minus_one_workers_once_and_reuses_them():
    """In a fresh pool (a forked child drops the parent's), a first call with T threads starts
    T - 1 workers; later calls with as many or fewer threads, in quick succession, start none
    (workers beyond the default count only exit after about a second unused)."""
    a, b, x = product_operands(0)

    def child():
        seen = [("fresh", _spmm_ext.pool_workers(), os_threads())]
        for num_threads in (2, 2, 1, 3, 3, 2, 1, 3):
            spmm.multiply(a, b, backend="threads", num_threads=num_threads)
            spmm.multiply(x, a, backend="threads", num_threads=num_threads)
            seen.append((num_threads, _spmm_ext.pool_workers(), os_threads()))
        return seen

    seen = run_in_forked_child(child)
    assert seen == [("fresh", 0, 1),
                    (2, 1, 2), (2, 1, 2), (1, 1, 2),
                    (3, 2, 3), (3, 2, 3), (2, 2, 3), (1, 2, 3), (3, 2, 3)]


def only_resident_pool_workers() -> None:
    """Wait until the pool has only the workers it keeps: the extra ones that earlier tests
    started exit on their own after a second unused, which would change this process's
    thread count in the middle of a test that counts its threads."""
    assert eventually(lambda: _spmm_ext.pool_workers() <= max(0, CPUS - 1))


def test_the_threads_backend_creates_no_os_thread_per_call_whatever_the_thread_count():
    a, b, x = product_operands(1)
    only_resident_pool_workers()
    spmm.multiply(a, b, backend="threads", num_threads=3)  # warm-up: the most threads
    before = os_threads(), _spmm_ext.pool_workers()
    for _ in range(100):
        for num_threads in (1, 2, 3):
            spmm.multiply(a, b, backend="threads", num_threads=num_threads)
            spmm.multiply(x, a, backend="threads", num_threads=num_threads)
    assert (os_threads(), _spmm_ext.pool_workers()) == before


@pytest.mark.parametrize("num_threads", [2, 3])
@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
def test_repeated_calls_with_one_thread_count_create_no_os_thread(backend, num_threads):
    """(libgomp itself stops and restarts threads when the team size changes, so for the
    OpenMP backend this holds at a constant thread count.)"""
    a, b, x = product_operands(1)
    only_resident_pool_workers()
    spmm.multiply(a, b, backend=backend, num_threads=num_threads)  # warm-up
    before = os_threads()
    for _ in range(100):
        spmm.multiply(a, b, backend=backend, num_threads=num_threads)
        spmm.multiply(x, a, backend=backend, num_threads=num_threads)
    assert os_threads() == before


def test_a_call_hands_work_only_to_the_workers_it_uses():
    """After a call with many threads, calls with 2 threads go to the first worker alone: the
    others take up none of them (they keep sleeping; no call wakes every worker)."""
    a, b, _ = product_operands(2)

    def child():
        spmm.multiply(a, b, backend="threads", num_threads=MANY_THREADS)
        each_took_it = eventually(
            lambda: _spmm_ext.pool_calls_taken() == [1] * (MANY_THREADS - 1))
        for _ in range(50):
            spmm.multiply(a, b, backend="threads", num_threads=2)
        first_took_more = eventually(lambda: _spmm_ext.pool_calls_taken()[0] > 1)
        return each_took_it, first_took_more, _spmm_ext.pool_calls_taken()

    each_took_it, first_took_more, calls = run_in_forked_child(child)
    assert each_took_it, "every worker took up the call that started it"
    assert first_took_more, "the first worker took up calls with 2 threads"
    assert calls[1:] == [1] * (len(calls) - 1), "the other workers took up none of them"


def test_workers_beyond_the_default_thread_count_exit_after_about_a_second_unused():
    """The process goes back to the calling thread and the default count's workers (the CPUs
    of the affinity mask, less one), which stay; a later call starts the others again."""
    a, b, _ = product_operands(3)
    cpus = CPUS

    def child():
        spmm.multiply(a, b, backend="threads", num_threads=MANY_THREADS)
        after_call = (_spmm_ext.pool_workers(), os_threads())
        settled = eventually(lambda: (_spmm_ext.pool_workers(), os_threads()) == (cpus - 1, cpus))
        time.sleep(1.5)  # longer than the retirement delay: the default count's workers stay
        kept = (_spmm_ext.pool_workers(), os_threads())
        again = spmm.multiply(a, b, backend="threads", num_threads=MANY_THREADS)
        return after_call, settled, kept, again, _spmm_ext.pool_workers()

    after_call, settled, kept, again, workers_again = run_in_forked_child(child)
    assert after_call == (MANY_THREADS - 1, MANY_THREADS)
    assert settled, "the extra workers exited"
    assert kept == (cpus - 1, cpus)
    assert workers_again == MANY_THREADS - 1
    assert_product_matches_scipy(again, a, b)


def test_a_thread_the_system_refuses_fails_the_call_cleanly_and_leaves_no_thread_behind():
    """With the address space limited so that thread stacks run out, a call with many threads
    is a RuntimeError saying how many threads could not start; the workers it did start are
    gone, the pool is as before, and once the limit is lifted calls work again."""
    a, b, _ = product_operands(4)

    def child():
        spmm.multiply(a, b, backend="threads", num_threads=2)
        before = (_spmm_ext.pool_workers(), os_threads())
        with open("/proc/self/status") as status:
            vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        # Room for a few thread stacks (8 MiB each by default), far from MAX_THREADS of them.
        resource.setrlimit(resource.RLIMIT_AS, ((vm_kib << 10) + (64 << 20), hard))
        try:
            result = outcome(lambda: spmm.multiply(a, b, backend="threads",
                                                   num_threads=_config.MAX_THREADS))
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        after = (_spmm_ext.pool_workers(), os_threads())
        return before, result, after, spmm.multiply(a, b, backend="threads", num_threads=3)

    before, (kind, error, message), after, product = run_in_forked_child(child)
    assert (kind, error) == ("raised", "RuntimeError"), message
    assert re.search(rf"could not start \d+ of the {_config.MAX_THREADS - 2} threads it needed "
                     rf"to add for a call with {_config.MAX_THREADS} threads", message), message
    assert after == before
    assert_product_matches_scipy(product, a, b)


def concurrent_products(backends, n_callers=8, rounds=15):
    """``n_callers`` Python threads multiply at once, each its own operands, ``rounds`` times.

    Returns, per caller, its operands and the results it got.
    """
    work = [product_operands(100 + i) for i in range(n_callers)]
    start = threading.Barrier(n_callers)

    def caller(i):
        a, b, x = work[i]
        backend = backends[i % len(backends)]
        num_threads = 2 + i % 2
        start.wait(timeout=60)
        return [(spmm.multiply(a, b, backend=backend, num_threads=num_threads),
                 spmm.multiply(x, a, backend=backend, num_threads=num_threads,
                               kernel=("naive", "reordered", "tiled")[i % 3]))
                for _ in range(rounds)]

    with ThreadPoolExecutor(max_workers=n_callers) as pool:
        results = list(pool.map(caller, range(n_callers), timeout=120))
    return work, results


@pytest.mark.parametrize("backends", [(b,) for b in BACKENDS] + [BACKENDS],
                         ids=[*BACKENDS, "all-backends-at-once"])
def test_eight_python_threads_multiplying_at_once_each_get_their_own_correct_result(backends):
    work, results = concurrent_products(backends)
    for (a, b, x), rounds in zip(work, results, strict=True):
        expected_ab, expected_xw = a @ b, x @ a
        for got_ab, got_xw in rounds:
            np.testing.assert_allclose(got_ab, expected_ab, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(got_xw, expected_xw, rtol=1e-12, atol=1e-12)


def use_then_fork(backend, child_backend=None, num_threads=2):
    """Multiply in this process with ``backend`` and 2 threads, then in a forked child.

    Returns the child's results and the warnings it raised (as (category, message) pairs).
    """
    a, b, x = product_operands(7)
    spmm.multiply(a, b, backend=backend, num_threads=num_threads)
    spmm.multiply(x, a, backend=backend, num_threads=num_threads)
    child_backend = child_backend or backend

    def child():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [(spmm.multiply(a, b, backend=child_backend, num_threads=num_threads),
                        spmm.multiply(x, a, backend=child_backend, num_threads=num_threads))
                       for _ in range(3)]
        return results, [(w.category.__name__, str(w.message)) for w in caught], os_threads()

    results, caught, threads = run_in_forked_child(child, timeout=60)
    return (a, b, x), results, caught, threads


def test_a_child_forked_after_the_threads_backend_ran_computes_with_a_new_pool():
    (a, b, x), results, caught, threads = use_then_fork("threads")
    assert caught == []
    assert threads == 2, "the child's own pool: the calling thread and one worker"
    for ab, xw in results:
        assert_product_matches_scipy(ab, a, b)
        assert_product_matches_scipy(xw, x, a)


@pytest.mark.parametrize("parent_backend", PARALLEL_BACKENDS)
def test_a_forked_child_can_use_the_threads_backend_whatever_the_parent_used(parent_backend):
    (a, b, x), results, caught, _ = use_then_fork(parent_backend, child_backend="threads")
    assert caught == []
    for ab, xw in results:
        assert_product_matches_scipy(ab, a, b)
        assert_product_matches_scipy(xw, x, a)


def expected_fork_warnings(backend):
    """OpenMP (libgomp) cannot start threads in a child forked after it ran: one warning."""
    return 1 if backend == "openmp" else 0


@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
def test_a_child_forked_after_a_parallel_backend_ran_completes_correctly(backend):
    (a, b, x), results, caught, threads = use_then_fork(backend)
    assert len(caught) == expected_fork_warnings(backend), caught
    for category, message in caught:
        assert category == "RuntimeWarning"
        assert "forked" in message
    if backend == "openmp":
        assert threads == 1, "the OpenMP work ran on the calling thread"
    for ab, xw in results:
        assert_product_matches_scipy(ab, a, b)
        assert_product_matches_scipy(xw, x, a)


def test_the_openmp_fork_warning_is_a_runtime_warning_pointing_at_the_caller():
    """Checked with pytest.warns in the child: the category, the message, the caller's line."""
    if "openmp" not in BACKENDS:
        # Without OpenMP the backend is refused, in the child as in the parent.
        with pytest.raises(ValueError, match="OpenMP"):
            spmm.multiply(sp.eye_array(3, format="csr"), np.ones(3), backend="openmp")
        return
    a, b, _ = product_operands(8)
    spmm.multiply(a, b, backend="openmp", num_threads=2)

    def child():
        with pytest.warns(RuntimeWarning, match="forked") as record:
            result = spmm.multiply(a, b, backend="openmp", num_threads=2)
        return result, [(w.filename, w.lineno) for w in record]

    result, where = run_in_forked_child(child)
    assert_product_matches_scipy(result, a, b)
    assert len(where) == 1 and where[0][0] == __file__


# multiprocessing's "fork" start method: the workers are forked from this process.


def _worker_product(args):
    seed, backend = args
    a, b, x = product_operands(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ab = spmm.multiply(a, b, backend=backend, num_threads=2)
        xw = spmm.multiply(x, a, backend=backend, num_threads=2)
    return seed, ab, xw, [(w.category.__name__, str(w.message)) for w in caught]


@pytest.mark.parametrize("backend", PARALLEL_BACKENDS)
def test_multiprocessing_with_the_fork_context_after_use_computes_correctly(backend):
    a, b, x = product_operands(0)
    spmm.multiply(a, b, backend=backend, num_threads=2)  # the parent has used the backend
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        outcomes = pool.map_async(_worker_product, [(s, backend) for s in range(6)]).get(120)
    finally:
        pool.terminate()
        pool.join()
    for seed, ab, xw, caught in outcomes:
        a, b, x = product_operands(seed)
        assert_product_matches_scipy(ab, a, b)
        assert_product_matches_scipy(xw, x, a)
        assert len(caught) <= expected_fork_warnings(backend), caught
        assert all(cat == "RuntimeWarning" and "forked" in msg for cat, msg in caught)
