"""``spmm.multiply`` with dask arrays: a lazy product, one task per block of the result.

Imported by ``spmm._dask_bridge`` when a dask array is passed (never by ``import spmm``).

The graph
---------
Each operand is a grid of blocks: a dask array's chunks, or an in-memory operand (a scipy
matrix, a :class:`~spmm.PreparedMatrix` or a numpy array) as one block. Block ``(i, j)`` of the
result is ``sum over k of multiply(a[i, k], b[k, j])``, computed by one task.

* An in-memory operand is **one key** of the graph that every task refers to, never a copy
  inside each task: a ``distributed`` worker receives it once per graph. Its key is the one
  ``client.scatter`` gives it (type name and token), so a copy scattered beforehand with
  ``client.scatter(w, broadcast=True)`` (its future kept) is used in place of the graph's,
  and never travels again.
* The contracted axis (X's columns in ``X @ W``, B's rows in ``A @ B``): a dense dask
  operand against an in-memory sparse operand is **rechunked** to one chunk along it, so that
  the matrix stays one key and is never cut. A dask array of sparse blocks keeps its blocks:
  each is multiplied by the matching rows (or columns) of the dense operand (a dense dask
  operand is rechunked to the same boundaries; an in-memory one is sliced inside the task) and
  the task computing a block of the result **sums these partial products**.

The configuration a product runs with is the one in effect when the graph is built: the
call's keywords and the calling thread's ``set_config`` / ``config_context`` values travel with
the tasks; the environment (``SPMM_*``) and the defaults are read where the task runs, so that
the thread count inside a task is its share of the worker's cores (``spmm._dask_bridge``).
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask._task_spec import DataNode, Task, TaskRef  # the graph nodes dask.array builds
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _config
from ._operands import as_dense, is_sparse, normalize
from ._pipeline import multiply as _multiply

_OUT_LAZY = (
    "multiply: out= cannot be used when an operand is a dask array: the result is a lazy "
    "dask.array.Array, computed later block by block; write it into an array with "
    "dask.array.store(result, out), or take result.compute()"
)


class _Operand:
    """One operand seen as a grid of blocks: a dask array's chunks, or an in-memory operand as
    one block (``key`` is then its key in the graph, ``chunks`` its whole extent)."""

    def __init__(self, value: Any) -> None:
        self.lazy = isinstance(value, da.Array)
        if self.lazy:
            self.sparse = _has_sparse_chunks(value)
            _check_chunks_known(value)
            self.value = value
            self.stand_in = _stand_in(value, self.sparse)
        else:
            self.sparse = is_sparse(value)
            self.value = value if self.sparse else as_dense(value)
            self.stand_in = self.value
        self.shape, self.ndim = self.value.shape, len(self.value.shape)
        self.key: str | None = None

    def chunks(self) -> tuple[tuple[int, ...], ...]:
        if self.lazy:
            return self.value.chunks
        return tuple((n,) for n in self.shape)

    def rechunk(self, axis: int, chunks: tuple[int, ...]) -> None:
        """Make the dask operand's chunks along ``axis`` be ``chunks``."""
        if self.value.chunks[axis] != chunks:
            self.value = self.value.rechunk({axis: chunks})

    def block(self, index: tuple[int, ...]) -> Any:
        """A reference to block ``index`` (for an in-memory operand: the whole operand)."""
        return TaskRef((self.value.name, *index)) if self.lazy else TaskRef(self.key)


def _has_sparse_chunks(x: da.Array) -> bool:
    """Whether the dask array's chunks are scipy sparse matrices (else numpy arrays; other
    chunk types are a TypeError)."""
    meta = x._meta
    if sp.issparse(meta):
        if x.ndim != 2:
            raise TypeError(f"multiply: sparse operands must be 2-D; got a {x.ndim}-D dask "
                            f"array of shape {x.shape} with {type(meta).__name__} chunks")
        return True
    if type(meta) is np.ndarray:  # not a subclass: a masked array's mask would be dropped
        return False
    raise TypeError(
        f"multiply: a dask operand's chunks must be numpy arrays or scipy.sparse "
        f"matrices/arrays; got {type(meta).__module__}.{type(meta).__name__} chunks")


def _check_chunks_known(x: da.Array) -> None:
    for axis, sizes in enumerate(x.chunks):
        if any(math.isnan(n) for n in sizes):
            raise ValueError(
                f"multiply: the dask operand of shape {x.shape} has unknown chunk sizes (NaN) "
                f"along axis {axis}; the product's blocks need them: call "
                "x.compute_chunk_sizes() (or build it with known chunks) first")


def _stand_in(x: da.Array, sparse: bool) -> Any:
    """An operand of ``x``'s shape and dtype that holds nothing, for the checks of
    ``spmm._operands.normalize`` (kinds, shapes, dtypes: the messages of an in-memory
    product, with the real shapes)."""
    if sparse:
        return sp.coo_array(x.shape, dtype=x.dtype)
    return np.broadcast_to(np.zeros((), dtype=x.dtype), x.shape)


def _options(keywords: dict[str, Any]) -> dict[str, Any]:
    """The configuration the tasks run with: the calling thread's ``set_config`` /
    ``config_context`` values, overridden by the call's keywords (already validated)."""
    options = {k: v for k, v in _config._local().items() if v is not None}
    options.update((k, v) for k, v in keywords.items() if v is not None)
    return options


def multiply(a: Any, b: Any, out: Any, keywords: dict[str, Any]) -> da.Array:
    """``a @ b`` as a lazy dask array: one operand (at least) a dask array, exactly one sparse
    (a scipy matrix, a PreparedMatrix, or a dask array of scipy sparse blocks), the other
    dense (numpy or a dask array of numpy blocks). See the module's docstring."""
    if out is not None:
        raise TypeError(_OUT_LAZY)
    left, right = _Operand(a), _Operand(b)
    dtype = normalize(left.stand_in, right.stand_in, None).dtype  # kinds, shapes, dtypes
    sparse, dense = (left, right) if left.sparse else (right, left)
    _check_in_memory_sparse(sparse, left is sparse)
    contracted = _contracted_chunks(left, right, sparse, dense)
    options = _options(keywords)
    tokens = []
    layer: dict[Any, Any] = {}
    for operand in (left, right):
        if operand.lazy:
            tokens.append(operand.value.name)
        else:
            token = tokenize(operand.value)
            operand.key = f"{type(operand.value).__name__}-{token}"  # as client.scatter
            layer[operand.key] = DataNode(operand.key, operand.value)
            tokens.append(token)
    name = "spmm-multiply-" + tokenize(*tokens, options)
    rows = left.chunks()[0] if left.ndim == 2 else None
    cols = right.chunks()[1] if right.ndim == 2 else None
    bounds = np.cumsum((0, *contracted)).tolist()
    cut = len(contracted) > 1  # an in-memory dense operand is sliced to the sparse blocks
    for i in range(len(rows)) if rows is not None else (None,):
        for j in range(len(cols)) if cols is not None else (None,):
            terms: list[Any] = []  # flat, so that dask sees the references as arguments
            for k in range(len(contracted)):
                window = (bounds[k], bounds[k + 1]) if cut else None
                a_index = (k,) if i is None else (i if left.lazy else 0, k)
                b_index = (k,) if j is None else (k, j if right.lazy else 0)
                terms += (left.block(a_index), None if left.lazy else window,
                          right.block(b_index), None if right.lazy else window)
            index = tuple(n for n in (i, j) if n is not None)
            key = (name, *index)
            layer[key] = Task(key, _block_product, dtype, options, *terms)
    chunks = tuple(c for c in (rows, cols) if c is not None)
    lazy = [x.value for x in (left, right) if x.lazy]
    graph = HighLevelGraph.from_collections(name, layer, dependencies=lazy)
    meta = np.empty((0,) * len(chunks), dtype=dtype)
    return da.Array(graph, name, chunks=chunks, dtype=dtype, meta=meta)


def _check_in_memory_sparse(sparse: _Operand, on_left: bool) -> None:
    """Check an in-memory scipy operand's structure now, as a product does, rather than in
    every task: a product with no output element reads it all (a PreparedMatrix was checked
    when it was made)."""
    if sparse.lazy or not sp.issparse(sparse.value):
        return
    rows, cols = sparse.shape
    if on_left:
        _multiply(sparse.value, np.zeros((cols, 0), dtype=sparse.value.dtype))
    else:
        _multiply(np.zeros((0, rows), dtype=sparse.value.dtype), sparse.value)


def _contracted_chunks(left: _Operand, right: _Operand, sparse: _Operand,
                       dense: _Operand) -> tuple[int, ...]:
    """The blocks of the contracted axis, the dask operands rechunked to them: the sparse
    operand's (one block when it is in memory); a dense dask operand is rechunked to them."""
    sparse_axis = 1 if sparse is left else 0
    dense_axis = dense.ndim - 1 if dense is left else 0
    contracted = sparse.chunks()[sparse_axis]
    if dense.lazy:
        dense.rechunk(dense_axis, contracted)
    return contracted


def _block_product(dtype: np.dtype, options: dict[str, Any], *terms: Any) -> np.ndarray:
    """One block of the result: the sum of ``multiply(a, b, **options)`` over ``terms``, four
    by four ``a, a's columns or None, b, b's rows or None`` (the part of an in-memory dense
    operand that meets a block of sparse ones)."""
    result = None
    for a, a_window, b, b_window in zip(*[iter(terms)] * 4, strict=True):
        if a_window is not None:
            a = a[..., a_window[0]:a_window[1]]
        if b_window is not None:
            b = b[b_window[0]:b_window[1]]
        partial = _multiply(a, b, **options)
        if result is None:
            result = partial
        else:
            np.add(result, partial, out=result)
    return result if result.dtype == dtype else result.astype(dtype)
