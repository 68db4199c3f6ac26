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
