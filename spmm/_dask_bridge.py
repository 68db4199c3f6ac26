"""dask arrays in :func:`spmm.multiply`, and spmm's thread count inside dask tasks.

dask is never imported here (nor by ``import spmm``): a dask array can exist only once its
caller has imported ``dask.array``, and a dask task runs only in a process that imported dask,
so ``sys.modules`` says whether there is anything to look for, and a process without dask pays
one dictionary lookup per product. The graph itself is built by ``spmm._dask``, imported when a
dask array is passed.

The thread budget
-----------------
A task slot is a thread that runs one dask task at a time; the tasks of a process's slots run
at once. spmm's default thread count (neither ``SPMM_NUM_THREADS``, ``set_config`` nor the
keyword set) inside a task is its slot's share of the cores, at least 1, so that slots x spmm
threads never exceed the cores:

* on a ``distributed`` worker: 1. A worker runs up to ``nthreads`` tasks at once, and dask
  gives a worker one thread per core it may use: ``LocalCluster`` and ``dask worker`` divide
  the machine's cores among their workers' threads (and its memory in the same proportion).
  The cores of a worker process's affinity mask cannot be its own share: workers started side
  by side on one machine each see all of its cores, and none knows how many others there are.
  Where a worker does own more cores than threads (one worker per machine with fewer threads
  than cores), ``SPMM_NUM_THREADS`` in the workers' environment says so.
* in dask's threaded scheduler (``compute()`` without a cluster): the process's CPUs divided
  by the size of the pool running the task (one thread per CPU by default: 1).
* anywhere else (the synchronous scheduler, a thread of one's own): the process's CPUs.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

_slots = threading.local()

EXPLAIN_LAZY = (
    "explain: an operand is a dask array; explain describes one in-memory product, and a "
    "product with a dask array runs one per block, inside dask tasks: explain a block, e.g. "
    "spmm.explain(x.blocks[0, 0].compute(), w)")


def has_dask_array(*objects: object) -> bool:
    """Whether any of ``objects`` is a dask array (False at once if dask.array is not
    imported)."""
    array_type = getattr(sys.modules.get("dask.array"), "Array", None)
    if array_type is None:
        return False
    return any(isinstance(x, array_type) for x in objects)


def multiply(a: Any, b: Any, out: Any, keywords: dict[str, Any]) -> Any:
    """``a @ b`` as a lazy dask array (see ``spmm._dask.multiply``)."""
    from . import _dask

    return _dask.multiply(a, b, out, keywords)


def task_threads(cpus: int) -> int:
    """spmm's default thread count in the calling thread of a process that may run on
    ``cpus`` CPUs: the share of the task slot running it when it runs inside a dask task
    (see the module's docstring), else ``cpus``."""
    if _in_worker_task():
        return 1
    slots = _threaded_scheduler_slots()
    return max(1, cpus // slots) if slots else cpus


def _in_worker_task() -> bool:
    """Whether the calling thread runs a task of a ``distributed`` worker."""
    worker = sys.modules.get("distributed.worker")
    if worker is None:
        return False
    # The context variable that distributed.get_worker() reads, set for a task's duration:
    # read directly, since get_worker() raises (microseconds) outside a task.
    current = getattr(worker, "_worker_cvar", None)
    if current is not None:
        return current.get(None) is not None
    try:
        worker.get_worker()
    except ValueError:
        return False
    return True


def _threaded_scheduler_slots() -> int:
    """The size of the dask threaded scheduler's pool that owns the calling thread, or 0.

    A pool's thread is known by its name (the pool's prefix, ``_``, its number), given before
    it starts: a new thread can run its first task before its pool has recorded it in its
    set of threads. A thread's pool never changes, so the answer is kept for the thread; one
    found in no pool is looked up again at its next call (a pool may be made later), except
    the main thread, which no pool owns.
    """
    slots = getattr(_slots, "count", None)
    if slots is not None:
        return slots
    threaded = sys.modules.get("dask.threaded")
    me = threading.current_thread()
    slots = 0
    if threaded is not None:
        pools = [threaded.default_pool]
        for by_size in list(threaded.pools.values()):
            pools += list(by_size.values())
        prefix = me.name.rpartition("_")[0]
        for pool in pools:
            # ThreadPoolExecutor's names and size: how dask.threaded builds its pools.
            if prefix and prefix == getattr(pool, "_thread_name_prefix", None):
                slots = getattr(pool, "_max_workers", 0)
                break
    if slots or me is threading.main_thread():
        _slots.count = slots
    return slots


def fingerprint(state: Mapping[str, Any]) -> str:
    """A hash of ``state`` (numpy arrays and values with a deterministic ``repr``) that is
    equal for equal states: each array's dtype, shape and bytes, each other value's repr."""
    digest = hashlib.blake2b(digest_size=20)
    for name in sorted(state):
        value = state[name]
        if isinstance(value, np.ndarray):
            digest.update(f"{name}:{value.dtype.str}{value.shape};".encode())
            digest.update(np.ascontiguousarray(value).view(np.uint8).data)
        else:
            digest.update(f"{name}={value!r};".encode())
    return digest.hexdigest()
