"""``spmm.multiply`` and ``spmm.explain``: one pipeline for every product.

A call flows down once: resolve the configuration (``spmm._config``), normalize the operands
(``spmm._operands``), plan the kernel, partition and threads (``spmm._policy``), then hand the
stored arrays to the kernel family's entry point in the extension. Every sparse operand (each
scipy format, a prepared matrix, the dense side a numpy array or a torch tensor) takes this one
path; ``explain`` stops before the last step.
"""

from __future__ import annotations

import warnings
from sys import modules as _modules
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _config, _dask_bridge, _formats, _policy, _precision, _spmm_ext, _torch_bridge
from ._operands import (
    Product,
    aligned_result,
    bsr_arrays,
    check_structure,
    compressed_arrays,
    coo_arrays,
    dia_arrays,
    kernel_dense,
    normalize,
)

if TYPE_CHECKING:
    import torch

DEFAULT_PARTITION = "auto"


def multiply(
    a: Any,
    b: Any,
    *,
    out: np.ndarray | None = None,
    backend: str | None = None,
    num_threads: int | None = None,
    kernel: str | None = None,
) -> np.ndarray | torch.Tensor:
    """Multiply a sparse and a dense matrix: the same result as ``a @ b``.

    Parameters
    ----------
    a, b : scipy.sparse matrix/array, :class:`PreparedMatrix`, array-like or torch.Tensor
        Exactly one of them is sparse (any scipy.sparse format, 2-D, or a
        :class:`PreparedMatrix`); the other is dense: a numpy array or anything
        ``numpy.asarray`` accepts, 1-D or 2-D, in any memory order and with any strides, or
        a CPU ``torch.Tensor``, read in place (see Notes). Either may be a dask array: the
        product is then lazy (see Notes).
    out : numpy.ndarray or torch.Tensor, optional
        Where to write the result: C-contiguous, aligned, writable, of the result's shape and
        dtype, not sharing memory with an input. Written in place and returned. A CPU tensor
        is written through the numpy array that shares its memory. After an error its
        contents are unspecified.
    backend : {"openmp", "threads", "serial"}, optional
        Threading backend for this call. Default: see :func:`get_config`.
    num_threads : int, optional
        Number of threads for this call: from 1 to 64 per CPU of the machine, and never more
        than 4096 (see :func:`set_config`). Default: see :func:`get_config`.
    kernel : {"auto", "naive", "reordered", "tiled"}, optional
        Kernel variant for this call. Default: see :func:`get_config`.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``a @ b``: 2-D, or 1-D when the dense operand is 1-D (as in scipy). Its dtype is
        ``numpy.result_type`` of the operands when that is float32 or float64 (float32 with
        bool, 8- or 16-bit integers or float16 stays float32), float32 for float16, float64
        for integers and bools. ``out`` when it is given; otherwise a ``torch.Tensor``
        (sharing the result's memory) when the dense operand is a tensor; a lazy
        ``dask.array.Array`` when an operand is a dask array.

    Raises
    ------
    TypeError
        If both or neither operand is sparse, the sparse operand is not 2-D, a dtype is not
        bool, integer or real floating of up to 64 bits (complex and longdouble are not),
        ``out`` is not an ndarray or tensor, or a tensor is not a strided CPU tensor that
        numpy can view.
    ValueError
        If the shapes do not match, the sparse structure is corrupt (its pointers or indices
        out of range: checked while it is read, at the cost of a compare per entry), ``out``
        is unusable, a tensor requires grad while autograd is recording, or a configuration
        value (keyword or ``SPMM_*`` environment variable) is invalid.

    See Also
    --------
    explain : which kernel, partition and threads this call would use, and why.

    Notes
    -----
    Every scipy format is read as it is stored, in both orientations, without a per-call
    conversion: CSR and CSC, COO, BSR and DIA each have their own kernels; LIL and DOK are
    converted to CSR first, as scipy's own product does. Values agree with scipy's product of
    the same matrix converted to CSR up to floating-point rounding (the summation order may
    differ). Unsorted and duplicate indices are summed as scipy does. The GIL is released
    during the computation.

    torch is optional and never imported by spmm. A CPU tensor is read through
    ``Tensor.numpy()``, which shares its memory, with numpy's dtype rules. spmm computes no
    gradients: a tensor that requires grad is an error unless autograd is off
    (``torch.no_grad()``, ``torch.inference_mode()``), where it is read as if detached.

    dask is optional and never imported by spmm. With a dask array as an operand (a dense
    one, or one whose chunks are scipy sparse matrices), the result is a dask array with one
    task per block, each a ``multiply`` of in-memory blocks; an in-memory sparse operand is
    one key of the graph. ``out`` is then a TypeError. See ``docs/dask.md``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, spmm
    >>> a = sp.random_array((300, 200), density=0.05, format="csr", rng=0)
    >>> b = np.ones((200, 16))
    >>> np.allclose(spmm.multiply(a, b), a @ b)
    True
    >>> np.allclose(spmm.multiply(b.T, a.tocsc()), b.T @ a)
    True
    """
    config = _config.resolve_values(backend, num_threads, kernel)
    if "torch" in _modules and _torch_bridge.has_tensor(a, b, out):
        return _torch_bridge.multiply(_product, a, b, out, config=config,
                                      partition=DEFAULT_PARTITION)
    if "dask" in _modules and _dask_bridge.has_dask_array(a, b, out):
        return _dask_bridge.multiply(a, b, out, {"backend": backend,
                                                 "num_threads": num_threads, "kernel": kernel})
    return _product(a, b, out=out, config=config, partition=DEFAULT_PARTITION)


def explain(
    a: Any,
    b: Any,
    *,
    out: np.ndarray | None = None,
    backend: str | None = None,
    num_threads: int | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """What ``multiply(a, b, **keywords)`` would run, without computing it.

    Parameters
    ----------
    a, b, out, backend, num_threads, kernel
        As for :func:`multiply`; the operands are checked the same way (the same errors).

    Returns
    -------
    dict
        ``"kernel"``: the kernel that runs, ``family.variant`` (for example
        ``"csc_columns.tiled"``: the family reads the stored format one way, the variant is
        the loop: ``naive``, ``reordered`` or ``tiled``); ``"family"``; ``"layout"``: how the
        sparse operand is stored (a scipy format, or a prepared matrix's layout);
        ``"partition"``: how work is cut among threads; ``"num_threads"``: the threads it
        uses (1 for a product too small to share); ``"backend"``; ``"simd"``: the instruction
        set of the kernel that runs; ``"reason"``: one line saying why.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, spmm
    >>> w = sp.random_array((64, 32), density=0.1, format="csr", rng=0)
    >>> spmm.explain(np.ones((8, 64)), w, num_threads=1)["kernel"]
    'csc_columns.tiled'
    """
    config = _config.resolve_values(backend, num_threads, kernel)
    if _torch_bridge.has_tensor(a, b, out):
        a, b, out = _torch_bridge.as_numpy(a, b, out)
    if _dask_bridge.has_dask_array(a, b, out):
        raise TypeError(_dask_bridge.EXPLAIN_LAZY)
    product = normalize(a, b, out, "explain")
    plan = _plan(product, config, DEFAULT_PARTITION)
    body, level = plan.body()
    m = product.sparse
    if product.kind == "prepared" and m.activations is not None:
        body, level = _spmm_ext.activations_body(_precision.FORMAT_CODES[m.values],
                                                 _policy.SIMD_CODES[plan.simd])
    out_rows = m.shape[1] if product.transposed else m.shape[0]
    contiguous = not product.transposed or product.n == 1
    return {
        "kernel": f"{plan.family}.{body.split()[0]}",
        "family": plan.family,
        "layout": m.layout if product.kind == "prepared" else product.kind,
        "partition": plan.partition,
        "num_threads": plan.num_threads,
        "backend": plan.backend,
        "simd": level,
        "reason": _policy.reason(plan, product.kind, product.transposed, product.n, out_rows,
                                 product.dtype.itemsize, config[1], contiguous),
    }


def multiply_with_partition(a: Any, b: Any, *, out: np.ndarray | None = None,
                            backend: str | None = None, num_threads: int | None = None,
                            kernel: str | None = None,
                            partition: str = DEFAULT_PARTITION) -> np.ndarray | torch.Tensor:
    """:func:`multiply` with a choice of how work is split among threads.

    Not part of the stable API: for the tests and benchmarks that compare strategies.
    ``partition`` is ``"auto"`` (the default: ``spmm._policy.choose_partition``), ``"rows"``
    (equal row counts), ``"nnz"`` (equal stored entries) or ``"dynamic"`` (many
    nnz-balanced chunks handed out on demand).
    """
    if partition not in _config.PARTITIONS:
        raise ValueError(f"partition must be one of {_config.PARTITIONS}; got {partition!r}")
    config = _config.resolve_values(backend, num_threads, kernel)
    if _torch_bridge.has_tensor(a, b, out):
        return _torch_bridge.multiply(_product, a, b, out, config=config, partition=partition)
    return _product(a, b, out=out, config=config, partition=partition)


def _plan(product: Product, config: tuple[str, int, str, str],
          partition: str) -> _policy.Plan:
    """The product's plan (``spmm._policy.plan``) from its normalized operands."""
    m, kind = product.sparse, product.kind
    if kind == "csr" or kind == "csc":
        indptr = m.indptr
        entries = int(indptr[-1]) if indptr.size else 0
    elif kind == "prepared":
        entries = m.nnz
    elif kind == "coo":
        entries = len(m.data)
    elif kind == "bsr":
        entries = m.data.size
    elif kind == "dia":
        entries = m.data.shape[0] * min(m.shape) if m.data.ndim == 2 else 0
    else:  # lil, dok: converted to CSR
        entries = m.nnz
    form = "csr" if kind == "lil" or kind == "dok" else kind
    layout = m.layout if kind == "prepared" else kind
    # Reduced values keep one form per orientation (their stated bytes per weight): the
    # one-column layout, a second copy of the entries, is for float values only.
    sliced = kind != "prepared" or (m.activations is None and not m.reduced)
    return _policy.plan(form, layout, product.transposed, m.shape, product.n, entries, config,
                        partition, sliced)


def _result(shape: tuple[int, ...], dtype: np.dtype, m: Any, kind: str) -> np.ndarray:
    """The result array; a user's matrix whose result does not fit in memory is checked first,
    so that a corrupt one (its shape may be what is wrong) is the ValueError it would be at
    the kernels' checks, not a MemoryError."""
    try:
        return aligned_result(shape, dtype)
    except MemoryError:
        if kind != "prepared":
            check_structure(m)
        raise


def _product(a: Any, b: Any, *, out: Any, config: tuple[str, int, str, str],
             partition: str) -> np.ndarray:
    """``a @ b`` for numpy and scipy operands: normalize, plan, run."""
    product = normalize(a, b, out)
    plan = _plan(product, config, partition)
    if plan.backend == "openmp" and plan.num_threads > 1 and not _spmm_ext.openmp_usable():
        _warn_openmp_unusable()
    dtype, transposed, m, kind = product.dtype, product.transposed, product.sparse, product.kind
    out = product.out if product.out is not None else _result(product.shape, dtype, m, kind)
    if kind == "prepared" and m.reduced:  # computed in float32 (spmm._precision)
        return m.reduced_product(product.dense, out, transposed, plan)
    dense = kernel_dense(product.dense, dtype)
    codes = plan.codes
    rows, cols = m.shape
    if kind == "prepared":
        form = m.form(plan.family, transposed, dtype)
        if plan.family == "sliced":
            form.multiply_into(dense, out, 0, codes)
        elif plan.family == "csr_rows":
            bounds = (form.slice_bounds(plan.num_threads, codes[3]) if plan.num_threads > 1
                      else None)
            rows, cols = form.shape
            _spmm_ext.csr_product(form.indptr, form.indices, form.data, rows, cols, False,
                                  False, dense, out, transposed, codes, bounds)
        else:
            form.multiply_into(dense.reshape(1, -1) if dense.ndim == 1 else dense,
                               out.reshape(1, -1) if out.ndim == 1 else out, codes)
        return out
    arrays = None
    if kind == "lil" or kind == "dok":  # converted as scipy's own product converts them
        arrays = _formats.lil_csr_arrays(m, dtype) if kind == "lil" else None
        if arrays is None:
            m = _formats.as_csr(m, dtype)
        kind = "csr"
    if kind == "csr" or kind == "csc":
        indptr, indices, data = arrays if arrays is not None else compressed_arrays(m, dtype,
                                                                                     kind)
        if transposed:
            rows, cols = cols, rows
        by_columns = plan.family == "csc_columns" or plan.transpose
        _spmm_ext.csr_product(indptr, indices, data, rows, cols, by_columns, True, dense, out,
                              transposed, codes, None, plan.transpose)
    elif kind == "coo":
        row, col, data = coo_arrays(m, dtype)
        if transposed:
            row, col, rows, cols = col, row, cols, rows
        _spmm_ext.coo_product(row, col, data, rows, cols, dense, out, transposed, codes)
    elif kind == "bsr":
        indptr, indices, data = bsr_arrays(m, dtype)
        _spmm_ext.bsr_product(indptr, indices, data, rows, cols, transposed, dense, out,
                              transposed, codes)
    else:
        offsets, data = dia_arrays(m, dtype)
        _spmm_ext.dia_product(offsets, data, rows, cols, transposed, dense, out, transposed,
                              codes)
    return out


_warned_openmp_after_fork = False


def _warn_openmp_unusable() -> None:
    """Warn once per process when OpenMP work must run single-threaded (forked child)."""
    global _warned_openmp_after_fork
    if _warned_openmp_after_fork:
        return
    _warned_openmp_after_fork = True
    warnings.warn(
        "spmm: this process was forked after its parent used OpenMP, and GCC's OpenMP runtime "
        "cannot start threads in such a child; the 'openmp' backend runs on one thread here. "
        "Use backend='threads' (fork-safe), or start processes with the 'spawn' or "
        "'forkserver' method.",
        RuntimeWarning,
        stacklevel=_stacklevel_outside_package(),
    )


def _stacklevel_outside_package() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside spmm."""
    import os
    import sys

    package_dir = os.path.dirname(__file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == package_dir:
        frame, level = frame.f_back, level + 1
    return level
