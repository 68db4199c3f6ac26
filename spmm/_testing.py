"""Helpers for spmm's own tests and benchmarks; not part of the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import _policy, _spmm_ext


@contextmanager
def parallel_min_work(value: int) -> Iterator[None]:
    """Within the block, products doing less work than ``value`` run on the calling thread.

    ``0`` makes every product, however small, use its backend's threads (the tests exercise
    the parallel code on small matrices); ``-1`` restores the built-in threshold
    (``kParallelMinWork``, see ``spmm._spmm_ext.parallel_min_work()``). Process-wide, not
    thread-local: for tests and benchmarks only.
    """
    saved = _policy.min_work
    _policy.min_work = value
    try:
        yield
    finally:
        _policy.min_work = saved


@contextmanager
def l2_cache_bytes(value: int) -> Iterator[None]:
    """Within the block, the kernels plan their passes for an L2 cache of ``value`` bytes.

    The CSR kernels of ``x @ p`` cut the passes over the dense operand, and the inner
    dimension of a prepared matrix into blocks, so that what a pass reads stays in L2; the
    panels kernel sizes its groups of packed batch rows by it. A small value (a few KiB) makes
    small matrices take the paths that large ones take on a real L2. Process-wide, not
    thread-local: for tests and benchmarks only.
    """
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"value must be a positive number of bytes; got {value!r}")
    _spmm_ext.set_l2_cache_bytes(value)
    try:
        yield
    finally:
        _spmm_ext.set_l2_cache_bytes(0)


@contextmanager
def private_outputs_max_bytes(value: int) -> Iterator[None]:
    """Within the block, a parallel column-driven product (CSC or COO times B, ``x @ w`` with
    ``w`` in CSR, BSR's ``x @ w``) splits the dense columns among its threads as soon as the
    private outputs it would otherwise use take more than ``value`` bytes (0: always), as it
    does for outputs of hundreds of MiB. Process-wide, not thread-local: for tests only.
    """
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"value must be a number of bytes, 0 or more; got {value!r}")
    _spmm_ext.set_private_outputs_max_bytes(value)
    try:
        yield
    finally:
        _spmm_ext.set_private_outputs_max_bytes(-1)


@contextmanager
def slow_gathers(value: bool) -> Iterator[None]:
    """Within the block, ``auto`` plans as if this CPU's vector gathers were (``True``) or were
    not (``False``) slower than scalar loads, whatever it is (``spmm._policy.SLOW_GATHERS``):
    so that every machine runs both bodies of the one-column sliced layout. Process-wide,
    not thread-local: for tests only.
    """
    saved = _policy.SLOW_GATHERS
    _policy.SLOW_GATHERS = bool(value)
    _policy._PLANS.clear()
    try:
        yield
    finally:
        _policy.SLOW_GATHERS = saved
        _policy._PLANS.clear()
