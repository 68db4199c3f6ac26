"""Helpers for spmm's own tests and benchmarks; not part of the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import _policy


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
