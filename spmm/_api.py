"""``spmm.multiply``: the product of one sparse and one dense operand, like ``a @ b``."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from . import _config, _spmm_ext, _torch_bridge
from ._operands import (
    Csr,
    as_dense,
    check_out,
    check_sparse,
    kernel_dense,
    result_dtype,
    stored_arrays,
    to_csr,
)
from ._prepared import PreparedMatrix

if TYPE_CHECKING:
    import torch

PARTITIONS = _config.PARTITIONS
DEFAULT_PARTITION = "auto"

_KERNEL_CODES = _config.codes("kernel")
_BACKEND_CODES = _config.codes("backend")
_PARTITION_CODES = _config.codes("partition")
_SIMD_CODES = _config.codes("simd")


# With one dense column, rows shorter than this (on average) are summed faster by the plain
# loop than by the gather kernel, whose fixed per-row cost (a masked gather and a horizontal
# sum) then dominates: see choose_kernel.
ROWDOT_MIN_ENTRIES_PER_ROW = 12


def choose_kernel(kernel: str, n: int, entries_per_row: float = float("inf")) -> str:
    """The kernel ``auto`` stands for, given the dense width ``n`` of the product and the
    average number of stored entries per row of the CSR the kernels walk (``Wᵀ``'s for
    ``X @ W``).

    ``tiled`` in every case but one: it adapts inside C++, where the width picks the register
    block (1 to 8 vectors per pass, with independent accumulator chains when the block is
    narrow), the dtype and instruction set pick the vector (``SPMM_SIMD``, the best the CPU has
    by default), the alignment of B picks the shift, and one column picks the gather row-dot
    path instead of axpys. The exception: one column and rows of fewer than
    ROWDOT_MIN_ENTRIES_PER_ROW entries on average, where ``naive`` (one running sum per row)
    wins. Measured by ``python bench/run.py --suite all`` (the "auto against the fastest
    kernel" table, serial, 2-vCPU KVM VM, 2026-11-23): on 193 dnn, science and structured
    workloads ``tiled`` was the fastest kernel or within the noise of it everywhere except the
    four batch-1 products of 99 %-pruned layers with 1024 inputs (about 10 entries per row of
    ``Wᵀ``), where ``naive`` was 1.13x to 1.51x faster; at 41 entries per row (99 %, 4096
    inputs) and 16 (the science matrices) ``tiled`` was as fast or faster.
    """
    if kernel != "auto":
        return kernel
    if n == 1 and entries_per_row < ROWDOT_MIN_ENTRIES_PER_ROW:
        return "naive"
    return "tiled"


def choose_partition(partition: str, n: int, structured: bool = False) -> str:
    """The partition ``auto`` stands for, given the dense width ``n`` of the product and
    whether W is in a structured layout (``spmm._layouts``) rather than CSR.

    ``dynamic`` for a CSR product with one dense column, ``nnz`` otherwise. With one column a
    row costs a fixed part (the gather set-up, the horizontal sum, the loop exit) beside its
    entries, so equal stored entries are not equal work when row lengths are skewed: on the
    power-law science matrix at n = 1, 2 threads, ``dynamic`` was faster than ``nnz`` in all
    six measurements of three full runs (the last, docs/benchmarks.md: openmp 3.10 against
    2.79 GFLOP/s, threads 3.96 against 2.83), and on the uniform matrix as fast within the
    noise. Weighting each row as a fixed number of entries in the ``nnz`` balance instead was
    slower (0.66 to 0.83 of the uniform matrix's speed against 0.93 for ``nnz``, one
    in-process A/B). From 8 columns on the entries dominate and ``nnz`` cuts once per thread,
    with no hand-out cost; ``dynamic`` won there by amounts within the noise, both ways. A
    structured layout always gets ``nnz``: its dynamic partition would pack X once per slice.
    """
    if partition != "auto":
        return partition
    return "dynamic" if n == 1 and not structured else "nnz"


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
        a CPU ``torch.Tensor``, read in place (see Notes).
    out : numpy.ndarray or torch.Tensor, optional
        Where to write the result: C-contiguous, writable, of the result's shape and dtype,
        not sharing memory with an input. Written in place and returned. A CPU tensor is
        written through the numpy array that shares its memory.
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
        ``a @ b``: 2-D, or 1-D when the dense operand is 1-D (as in scipy). float32 when both
        operands are float16/float32, float64 otherwise. ``out`` when it is given; otherwise
        a ``torch.Tensor`` (sharing the result's memory) when the dense operand is a tensor.

    Raises
    ------
    TypeError
        If both or neither operand is sparse, the sparse operand is not 2-D, a dtype is not
        bool, integer or real floating, ``out`` is not an ndarray or tensor, or a tensor is
        not a strided CPU tensor that numpy can view (e.g. bfloat16).
    ValueError
        If the shapes do not match, the sparse structure is corrupt, ``out`` is unusable, a
        tensor requires grad while autograd is recording (``out``: at all), or a
        configuration value (keyword or ``SPMM_*`` environment variable) is invalid.

    Notes
    -----
    Values agree with scipy's product of the same matrix converted to CSR up to
    floating-point rounding (the summation order may differ). Unsorted and duplicate indices
    are summed as scipy does. The GIL is released during the computation.

    torch is optional and never imported by spmm. A CPU tensor is read through
    ``Tensor.numpy()``, which shares its memory, with numpy's dtype rules. spmm computes no
    gradients: a tensor that requires grad is an error unless autograd is off
    (``torch.no_grad()``, ``torch.inference_mode()``), where it is read as if detached.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, spmm
    >>> a = sp.random_array((300, 200), density=0.05, format="csr", rng=0)
    >>> b = np.ones((200, 16))
    >>> np.allclose(spmm.multiply(a, b), a @ b)
    True
    """
    # _multiply's fast case, inlined: one Python call less on every small product.
    config = _config.resolve_values(backend, num_threads, kernel)
    result = _fast_multiply(a, b, out, config, DEFAULT_PARTITION)
    if result is not None:
        return result
    return _multiply(a, b, out, backend, num_threads, kernel, DEFAULT_PARTITION, config)


def multiply_with_partition(
    a: Any,
    b: Any,
    *,
    out: np.ndarray | None = None,
    backend: str | None = None,
    num_threads: int | None = None,
    kernel: str | None = None,
    partition: str = DEFAULT_PARTITION,
) -> np.ndarray | torch.Tensor:
    """:func:`multiply` with a choice of how rows are split among threads.

    Not part of the stable API: for the tests and benchmarks that compare strategies.
    ``partition`` is ``"auto"`` (the default: :func:`choose_partition`), ``"rows"`` (equal
    row counts), ``"nnz"`` (equal stored entries) or ``"dynamic"`` (many nnz-balanced chunks
    handed out on demand).
    """
    if partition not in PARTITIONS:
        raise ValueError(
            f"partition must be one of {PARTITIONS}; got {partition!r}"
        )
    return _multiply(a, b, out, backend, num_threads, kernel, partition)


def _multiply(a: Any, b: Any, out: Any, backend: Any, num_threads: Any, kernel: Any,
              partition: str, config: tuple | None = None) -> np.ndarray | torch.Tensor:
    """The product, by the fast path when it applies (unless ``config`` is given: then it
    was just tried), else by the general path."""
    if config is None:
        config = _config.resolve_values(backend, num_threads, kernel)
        result = _fast_multiply(a, b, out, config, partition)
        if result is not None:
            return result
    if _torch_bridge.has_tensor(a, b, out):  # CPU torch tensors: numpy views, a tensor back
        return _torch_bridge.multiply(multiply_with_partition, a, b, out, backend=backend,
                                      num_threads=num_threads, kernel=kernel,
                                      partition=partition)
    a_sparse = _is_sparse(a)
    b_sparse = _is_sparse(b)
    if a_sparse and b_sparse:
        raise TypeError(
            "multiply: exactly one operand must be sparse, got two sparse operands "
            f"({type(a).__name__}, {type(b).__name__}); for sparse @ sparse use scipy"
        )
    if not a_sparse and not b_sparse:
        raise TypeError(
            "multiply: exactly one operand must be a scipy.sparse matrix/array or a "
            f"PreparedMatrix, got two dense operands ({type(a).__name__}, "
            f"{type(b).__name__}); for dense @ dense use numpy"
        )
    if a_sparse:
        return _sparse_times_dense(a, b, out, config, partition)
    return _dense_times_sparse(a, b, out, config, partition)


_CSR_TYPES = (sp.csr_array, sp.csr_matrix)
_CSC_TYPES = (sp.csc_array, sp.csc_matrix)
_COMPRESSED_TYPES = _CSR_TYPES + _CSC_TYPES

# result_dtype for the (sparse, dense) dtype pairs the fast path takes: native bool, integer
# and float dtypes up to 64 bits. Other pairs (complex, object, byte-swapped...) go down the
# general path, which converts them or reports the error.
_COMMON_DTYPES = [np.dtype(t) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64,
                                        np.uint8, np.uint16, np.uint32, np.uint64,
                                        np.float16, np.float32, np.float64)]
_RESULT_DTYPES = {(s, d): result_dtype(s, d) for s in _COMMON_DTYPES for d in _COMMON_DTYPES}
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)

# The work below which products run on the calling thread: -1 for the C++ default
# (kParallelMinWork); the tests set 0 so that small products exercise the parallel code.
_parallel_min_work: int = -1


def _fast_multiply(a: Any, b: Any, out: Any, config: tuple, partition: str) -> np.ndarray | None:
    """The common products, in one call into the extension: ``a @ b``, or None for the
    general path.

    Handles a scipy CSR or CSC matrix (or a PreparedMatrix) times an ndarray, and an ndarray
    times one, with bool, integer or float dtypes of up to 64 bits, and ``out`` None or a
    C-contiguous ndarray of the result's shape and dtype. Only an operand whose dtype is not
    the result's is converted (a copy); a CSR or CSC matrix in the other orientation than
    the kernels need is transposed by the extension. The extension checks the rest (index
    dtypes, layouts, aliasing, the structure of a scipy matrix) and declines what it cannot
    use as it is; None then sends the call down the general path, which converts the operands
    or reports what is wrong with them. Nothing else is checked per call in Python: a small
    product takes a few microseconds (bench/overhead.py), as much as a few dozen Python
    operations.
    """
    transposed = type(b) is not np.ndarray  # X @ W, computed as C^T = W^T X^T
    given, sparse = (a, b) if transposed else (b, a)
    if type(given) is not np.ndarray:
        return None
    ndim = given.ndim
    if ndim == 2:
        width = given.shape[0] if transposed else given.shape[1]
    elif ndim == 1:
        width = 1
    else:
        return None
    kind = type(sparse)
    if kind is PreparedMatrix:
        sparse_dtype = sparse.dtype
    elif kind in _COMPRESSED_TYPES:
        sparse_dtype = sparse.data.dtype
    else:
        return None
    given_dtype = given.dtype
    if given_dtype == sparse_dtype and (given_dtype == _F64 or given_dtype == _F32):
        dtype, dense, copied = given_dtype, given, False  # the common case, without a lookup
    else:
        dtype = _RESULT_DTYPES.get((sparse_dtype, given_dtype))
        if dtype is None:
            return None
        dense = given if given_dtype == dtype else given.astype(dtype)
        copied = dense is not given  # whether the extension sees a copy of an operand
    check = True  # a scipy matrix's structure may have been corrupted since the last call
    backend, num_threads, kernel, simd = config
    # X @ P with P in a structured layout: its own kernel, and no CSR form of Wᵀ is built.
    structured = (transposed and kind is PreparedMatrix and kernel == "auto"
                  and sparse._structured is not None)
    if structured:
        check = False
    elif kind is PreparedMatrix:
        csr = sparse.csr_transposed(dtype) if transposed else sparse.csr(dtype)
        indptr, indices, data = csr.indptr, csr.indices, csr.data
        check = False
    else:
        indptr, indices, data = sparse.indptr, sparse.indices, sparse.data
        if data.dtype != dtype:
            data = data.astype(dtype)
            copied = True
        if (kind in _CSC_TYPES) != transposed:
            # The arrays are CSR arrays of W (for X @ W) or of A^T (for A @ B): the
            # extension checks them and transposes them.
            inner = sparse.shape[0] if transposed else sparse.shape[1]
            if given.shape[-1 if transposed else 0] != inner:
                return None  # a shape error comes before any structure check
            held = sparse.shape if transposed else sparse.shape[::-1]  # what the arrays hold
            arrays = _spmm_ext.csr_transpose(indptr, indices, data, held[0], held[1], True)
            if arrays is None:
                return None
            indptr, indices, data = arrays
            check = False
            copied = True
    rows, cols = sparse.shape
    if transposed:
        rows, cols = cols, rows
        shape = (width, rows) if ndim == 2 else (rows,)
    else:
        shape = (rows, width) if ndim == 2 else (rows,)
    if out is None:
        out = np.empty(shape, dtype)
    elif (type(out) is not np.ndarray or out.shape != shape or out.dtype != dtype
          or not out.flags.c_contiguous):
        return None
    elif (copied or kind is PreparedMatrix) and _spmm_ext.shares_memory(
            out, (given, *stored_arrays(sparse))):
        # The extension checks out against the arrays it reads; this covers those it does
        # not see (the operands copies were made from, a PreparedMatrix's other form).
        return None
    if structured:
        if dense.shape[-1] != sparse.shape[0]:
            return None  # the general path reports the shape error
        _structured_product(sparse.structured(dtype), dense, out, config, partition)
        return out
    b2, c2 = (dense.T, out.T) if transposed and ndim == 2 else (dense, out)
    if kernel != "auto":
        kernel_code = _KERNEL_CODES[kernel]
    elif width == 1:  # the rule looks at the rows' lengths (choose_kernel)
        if indptr.ndim != 1 or len(indptr) != rows + 1:
            return None  # a corrupt structure: the general path reports it
        kernel_code = _KERNEL_CODES[choose_kernel(kernel, 1, int(indptr[-1]) / max(1, rows))]
    else:
        kernel_code = _KERNEL_CODES[choose_kernel(kernel, width)]
    partition_code = _PARTITION_CODES[choose_partition(partition, width)]
    bounds = None
    if backend != "serial" and num_threads > 1:
        if (backend == "openmp" and not _warned_openmp_after_fork
                and not _spmm_ext.openmp_usable()):
            _warn_if_openmp_unusable()
        if kind is PreparedMatrix:
            bounds = csr.slice_bounds(num_threads, partition_code)
    done = _spmm_ext.csr_times_dense(
        indptr, indices, data, cols, b2, c2, kernel_code, _BACKEND_CODES[backend],
        num_threads, partition_code, _SIMD_CODES[simd], bounds, check, _parallel_min_work,
    )
    return out if done else None


def _is_sparse(x: object) -> bool:
    return sp.issparse(x) or isinstance(x, PreparedMatrix)


def _sparse_dtype(a: Any) -> np.dtype:
    if isinstance(a, PreparedMatrix):
        return a.dtype
    check_sparse(a)
    return np.dtype(a.dtype)


def _sparse_operand(a: Any, dtype: np.dtype, transpose: bool) -> Csr:
    """CSR arrays of ``a`` (or ``a.T``) with values of ``dtype``."""
    if isinstance(a, PreparedMatrix):
        return a.csr_transposed(dtype) if transpose else a.csr(dtype)
    return to_csr(a, dtype, transpose=transpose)


def _shape_error(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"multiply: shape mismatch: a has shape {a_shape} and b has shape {b_shape}; "
        f"for a @ b the last dimension of a ({a_shape[-1]}) must equal the first "
        f"dimension of b ({b_shape[0]})"
    )


def _sparse_times_dense(a: Any, b: Any, out: Any, config: tuple, partition: str) -> np.ndarray:
    """C = A @ B with A sparse (m x k), B dense (k x n or k)."""
    a_dtype = _sparse_dtype(a)
    dense = as_dense(b)
    m, k = a.shape
    if dense.shape[0] != k:
        raise _shape_error(a.shape, dense.shape)
    dtype = result_dtype(a_dtype, dense.dtype)
    vector = dense.ndim == 1
    n = 1 if vector else dense.shape[1]
    shape = (m,) if vector else (m, n)
    out = _output(out, shape, dtype, dense, a)
    csr = _sparse_operand(a, dtype, transpose=False)
    b2 = kernel_dense(dense.reshape(k, 1) if vector else dense, dtype)
    _run(csr, b2, out.reshape(m, n), config, partition)
    return out


def _dense_times_sparse(x: Any, w: Any, out: Any, config: tuple, partition: str) -> np.ndarray:
    """C = X @ W with X dense (m x k or k), W sparse (k x n).

    Computed as C^T = W^T X^T: with W^T in CSR (the CSC arrays of W), the kernels' innermost
    loop runs along X^T's rows, i.e. along the batch, which is contiguous in X^T and in the
    accumulator, so the same vectorized i-p-j kernels serve both products. The alternative,
    scattering each row of W into a row of C, has an indexed store in its inner loop and does
    not vectorize. X^T needs contiguous rows: free when X is Fortran-ordered (or 1-D),
    otherwise one transposing copy of X, O(m k), small next to the 2 nnz m flops of the product
    (made by the extension, outside the GIL).
    C^T is written through a transposed view of C: each of its rows is accumulated in a
    contiguous scratch buffer and stored once as a column of C.
    """
    w_dtype = _sparse_dtype(w)
    dense = as_dense(x)
    k, n = w.shape
    if dense.shape[-1] != k:
        raise _shape_error(dense.shape, w.shape)
    dtype = result_dtype(w_dtype, dense.dtype)
    vector = dense.ndim == 1
    m = 1 if vector else dense.shape[0]
    shape = (n,) if vector else (m, n)
    out = _output(out, shape, dtype, dense, w)
    if isinstance(w, PreparedMatrix) and config[2] == "auto" and w._structured is not None:
        _structured_product(w.structured(dtype), np.asarray(dense, dtype=dtype), out, config,
                            partition)
        return out
    csr_t = _sparse_operand(w, dtype, transpose=True)
    xt = kernel_dense(dense.reshape(k, 1) if vector else dense.T, dtype)
    _run(csr_t, xt, out.reshape(n, 1) if vector else out.T, config, partition)
    return out


def _output(out: Any, shape: tuple[int, ...], dtype: np.dtype, dense: np.ndarray,
            sparse: Any) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    return check_out(out, shape, dtype, (dense, *stored_arrays(sparse)))


_warned_openmp_after_fork = False


def _warn_if_openmp_unusable() -> None:
    """Warn once per process when OpenMP work must run single-threaded (forked child)."""
    global _warned_openmp_after_fork
    if _warned_openmp_after_fork or _spmm_ext.openmp_usable():
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


def _structured_product(form: Any, x: np.ndarray, out: np.ndarray, config: tuple,
                        partition: str) -> None:
    """Write ``x @ W`` into ``out`` for W in a structured layout (``spmm._layouts``).

    ``x``: (batch, k) or (k,) of the form's dtype, any strides (the kernels read X with its
    strides); ``out``: (batch, n) or (n,), C-contiguous (check_out and the fast path's checks).
    """
    backend, num_threads, _, simd = config
    if backend == "openmp" and num_threads > 1:
        _warn_if_openmp_unusable()
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    if x2.strides[0] % x2.itemsize or x2.strides[1] % x2.itemsize:
        x2 = np.ascontiguousarray(x2)
    chosen = choose_partition(partition, x2.shape[0], structured=True)
    codes = (_BACKEND_CODES[backend], num_threads, _PARTITION_CODES[chosen], _SIMD_CODES[simd])
    form.multiply_into(x2, out.reshape(1, -1) if out.ndim == 1 else out, codes,
                       _parallel_min_work)


def _run(csr: Csr, b: np.ndarray, c: np.ndarray, config: tuple, partition: str) -> None:
    """Write ``csr @ b`` into ``c`` (a possibly strided 2-D view) with the configuration."""
    if c.size == 0:
        return
    if b.shape[0] == 0:  # inner dimension 0: the product is all zeros
        c[...] = 0
        return
    backend, num_threads, kernel, simd = config
    if backend == "openmp" and num_threads > 1:
        _warn_if_openmp_unusable()
    partition_code = _PARTITION_CODES[choose_partition(partition, b.shape[1])]
    parallel = backend != "serial" and num_threads > 1
    done = _spmm_ext.csr_times_dense(
        csr.indptr, csr.indices, csr.data, csr.shape[1], b, c,
        _KERNEL_CODES[choose_kernel(kernel, b.shape[1], csr.nnz / max(1, csr.shape[0]))],
        _BACKEND_CODES[backend], num_threads, partition_code, _SIMD_CODES[simd],
        csr.slice_bounds(num_threads, partition_code) if parallel else None,
        False, _parallel_min_work,
    )
    if not done:  # the operands were converted for the extension: it must take them
        raise RuntimeError("spmm: the extension refused converted operands (a bug)")
