"""Checking and converting the operands of a product.

Everything the C++ kernels assume is established here: which operand is sparse, that the
shapes agree, a common float dtype, CSR arrays of one index dtype with a valid structure, a
dense operand of that dtype, and a usable ``out``. Conversions are the cheapest
correct ones: arrays already in a supported form are passed on without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import _formats, _spmm_ext

INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SINGLE = (np.dtype(np.float16), np.dtype(np.float32))


@dataclass(frozen=True)
class Csr:
    """CSR arrays ready for the kernels: validated, a float value dtype, and indices of one
    dtype (int32 or int64, with row pointers of the same dtype) or, in a prepared matrix of at
    most 65,536 columns, uint16 indices with int64 row pointers.

    ``slices`` caches the partitions of the rows among threads, keyed by (thread count,
    partition code), when the arrays are kept for many products (a prepared matrix); None
    otherwise.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]
    slices: dict[tuple[int, int], np.ndarray] | None = field(default=None, compare=False)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def astype(self, dtype: np.dtype) -> Csr:
        """The same structure with values of ``dtype`` (no copy when already so)."""
        if self.data.dtype == dtype:
            return self
        return Csr(self.indptr, self.indices, self.data.astype(dtype), self.shape, self.slices)

    def slice_bounds(self, nthreads: int, partition: int) -> np.ndarray | None:
        """The cached row boundaries of the slices for ``nthreads`` and ``partition``
        (computed on first use), or None when this matrix keeps no cache."""
        if self.slices is None:
            return None
        key = (nthreads, partition)
        bounds = self.slices.get(key)
        if bounds is None:
            bounds = read_only(np.array(
                _spmm_ext.partition_bounds(self.indptr, nthreads, partition), dtype=np.int64))
            self.slices[key] = bounds
        return bounds


def result_dtype(left: np.dtype, right: np.dtype, where: str = "multiply") -> np.dtype:
    """The computation dtype: float32 when both are float16/float32, else float64.

    Integers and bools are converted; complex, object and other kinds are a TypeError.
    """
    for side, dt in (("sparse", left), ("dense", right)):
        if dt.kind not in "biuf":
            raise TypeError(
                f"{where}: unsupported {side} operand dtype {dt}; spmm computes in float32 or "
                "float64 and accepts bool, integer and real floating dtypes"
            )
    if left in _SINGLE and right in _SINGLE:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_sparse(a: object, where: str = "multiply") -> None:
    """Raise TypeError unless ``a`` is a 2-D scipy.sparse matrix or array (ValueError if its
    shape is not two integers >= 0)."""
    if not sp.issparse(a):
        raise TypeError(f"{where}: expected a scipy.sparse matrix or array, got {type(a).__name__}")
    if a.ndim != 2:
        raise TypeError(
            f"{where}: sparse operands must be 2-D; got a {a.ndim}-D {type(a).__name__} of "
            f"shape {a.shape}"
        )
    _formats.checked_shape(a)


def to_csr(a: sp.spmatrix | sp.sparray, dtype: np.dtype, transpose: bool = False) -> Csr:
    """CSR arrays of ``a`` (or of ``a.T``), validated, with values of ``dtype``.

    CSR input (CSC input when ``transpose``) is used as it is: its arrays are not copied when
    their dtypes are supported. The kernels sum whatever is stored, so unsorted or duplicate
    indices need no conversion either. CSR and CSC arrays are validated, then transposed when
    needed by the extension (a counting sort, as scipy's ``tocsc`` does). Other formats are
    converted to CSR by ``spmm._formats.as_csr``, never from an unchecked structure (scipy's
    conversion routines trust it and crash on a corrupt one).
    """
    m = a if a.format in ("csr", "csc") else _formats.as_csr(a)
    # The compressed arrays of m: the CSR arrays of A, or of A^T for CSC (its CSC arrays).
    holds = (m.shape[1], m.shape[0]) if m.format == "csc" else m.shape
    indptr, indices, data = _checked_compressed(m, holds)
    data = kernel_ready(data, dtype)
    if (m.format == "csc") == transpose:
        return Csr(indptr, indices, data, holds)
    arrays = _spmm_ext.csr_transpose(indptr, indices, data, holds[0], holds[1], False)
    if arrays is None:  # row numbers beyond int32: transposed with int64 indices
        wide = np.dtype(np.int64)
        arrays = _spmm_ext.csr_transpose(indptr.astype(wide), indices.astype(wide), data,
                                         holds[0], holds[1], False)
    return Csr(*arrays, (holds[1], holds[0]))


def kernel_ready(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` as a contiguous, aligned, native array of ``dtype``: as it is when it already is
    one (the kernels read each element as a C++ ``I`` or ``T``), else a copy."""
    return np.require(x, dtype, ["C_CONTIGUOUS", "ALIGNED"])


def check_structure(a: sp.spmatrix | sp.sparray) -> None:
    """Raise ValueError if the stored structure of ``a`` is corrupt.

    Checks what the kernels and scipy's conversion routines assume, for every format whose
    arrays a user can corrupt by assignment: CSR and CSC here (as the kernels' own input),
    COO, BSR, DIA, LIL and DOK in ``spmm._formats``. Never modifies ``a``.
    """
    if a.format == "csr":
        _checked_compressed(a, a.shape)
    elif a.format == "csc":
        _checked_compressed(a, (a.shape[1], a.shape[0]))
    else:
        _formats.check(a)


def stored_arrays(a: object) -> list[np.ndarray]:
    """The numpy arrays a sparse operand stores (for the ``out`` aliasing check)."""
    if hasattr(a, "stored_arrays"):  # PreparedMatrix
        return a.stored_arrays()
    arrays = [getattr(a, name, None) for name in ("data", "indices", "indptr", "offsets")]
    arrays += list(getattr(a, "coords", ()) or ())
    return [x for x in arrays if isinstance(x, np.ndarray)]


def _checked_compressed(m: sp.spmatrix | sp.sparray,
                        shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (indptr, indices, data) of a CSR/CSC matrix, validated for ``shape``.

    ``shape`` is (major, minor): (rows, columns) for CSR, (columns, rows) for CSC. Index
    arrays come back with one supported dtype; indices and data are cut to ``indptr[-1]``
    (scipy may keep spare capacity beyond it).
    """
    _formats.checked_shape(m)
    indptr, indices, data = m.indptr, m.indices, m.data
    if not all(isinstance(x, np.ndarray) and x.ndim == 1 for x in (indptr, indices, data)):
        raise ValueError("corrupt sparse matrix: indptr, indices and data must be 1-D arrays")
    if len(indptr) != shape[0] + 1:
        axis = "rows" if m.format == "csr" else "columns"
        raise ValueError(
            f"corrupt sparse matrix: indptr has {len(indptr)} entries, expected "
            f"{shape[0] + 1} for {shape[0]} {axis}"
        )
    index_dtype = _common_index_dtype(indptr, indices)
    indptr = kernel_ready(indptr, index_dtype)
    indices = kernel_ready(indices, index_dtype)
    _spmm_ext.validate_csr(indptr, indices, shape[1])
    nnz = int(indptr[-1])
    if len(data) < nnz:
        raise ValueError(
            f"corrupt sparse matrix: data has {len(data)} entries but indptr[-1] is {nnz}"
        )
    return indptr, indices[:nnz], data[:nnz]


def _common_index_dtype(indptr: np.ndarray, indices: np.ndarray) -> np.dtype:
    for arr, name in ((indptr, "indptr"), (indices, "indices")):
        if arr.dtype.kind not in "iu":
            raise ValueError(f"corrupt sparse matrix: {name} has non-integer dtype {arr.dtype}")
    if indptr.dtype == indices.dtype and indptr.dtype in INDEX_DTYPES:
        return indptr.dtype
    # Mixed or unusual index dtypes: int64 is always wide enough.
    return np.dtype(np.int64)


def as_dense(b: object, where: str = "multiply") -> np.ndarray:
    """``b`` as a 1-D or 2-D numpy array (np.matrix and array-likes included)."""
    if sp.issparse(b):
        raise TypeError(f"{where}: expected a dense operand, got {type(b).__name__}")
    try:
        arr = np.asarray(b)
    except ValueError as exc:  # e.g. a ragged nested list: a shape problem
        raise ValueError(f"{where}: the dense operand is not a regular array: {exc}") from exc
    except Exception as exc:  # any other conversion failure: a wrong kind of object
        raise TypeError(f"{where}: cannot convert {type(b).__name__} to a numpy array") from exc
    if arr.dtype == object:
        raise TypeError(
            f"{where}: the dense operand has dtype object (got {type(b).__name__}); "
            "expected a numeric array"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{where}: the dense operand must be 1-D or 2-D; got {arr.ndim}-D with shape "
            f"{arr.shape}"
        )
    return arr


def read_only(x: np.ndarray) -> np.ndarray:
    """A view of ``x`` through which nothing can be written, ever: ``x`` and every array it
    is a view of are marked read-only first, so no view of them can be made writeable again
    (numpy refuses ``flags.writeable = True`` below a read-only base).

    For the arrays a prepared matrix owns: the kernels trust them, so neither the arrays it
    hands out nor a view of them may change them. ``x`` must not be shared with anyone else.
    """
    base = x
    while isinstance(base, np.ndarray):
        base.flags.writeable = False
        base = base.base
    return x.view()


# Copies the kernels read start on a cache line and pad each row to a whole number of cache
# lines, so every row starts aligned and the SIMD kernels' loads never straddle two lines.
SIMD_ALIGNMENT = 64


def aligned_empty(count: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialized 1-D array of ``count`` elements starting on a cache line."""
    dtype = np.dtype(dtype)
    buffer = np.empty(count * dtype.itemsize + SIMD_ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % SIMD_ALIGNMENT
    return buffer[start:start + count * dtype.itemsize].view(dtype)


def aligned_copy(b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A 2-D copy of ``b`` as ``dtype`` starting on a cache line, whose rows never straddle
    two cache lines more than they must: a row of up to 64 bytes is padded to the next power
    of two (so it sits inside one line), a longer one to a whole number of lines."""
    rows, cols = b.shape
    itemsize = np.dtype(dtype).itemsize
    row_bytes = cols * itemsize
    if row_bytes <= SIMD_ALIGNMENT:
        ld_bytes = 1 << max(0, (row_bytes - 1).bit_length())
    else:
        ld_bytes = -(-row_bytes // SIMD_ALIGNMENT) * SIMD_ALIGNMENT
    ld = max(cols, ld_bytes // itemsize)
    out = aligned_empty(rows * ld, dtype).reshape(rows, ld)[:, :cols]
    np.copyto(out, b, casting="unsafe")
    return out


def kernel_dense(b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``b`` itself when the extension can read it as a dense ``dtype`` operand, else an
    aligned copy (:func:`aligned_copy`).

    Any strides that are whole elements are accepted: padding, zero from broadcasting,
    negative. Rows that are not contiguous (as in ``X.T`` of a C-ordered ``X``) are packed by
    the extension itself, outside the GIL (``include/spmm/formats/pack.hpp``). A copy is made here
    when the dtype differs, or when elements are misaligned, byte-swapped or not a whole
    number of elements apart.
    """
    if b.dtype != dtype or not b.dtype.isnative or not b.flags.aligned:
        return aligned_copy(b, dtype)  # a misaligned element cannot be read as a T
    itemsize = b.itemsize
    if any(stride % itemsize for stride in b.strides):
        return aligned_copy(b, dtype)
    return b


def check_out(out: object, shape: tuple[int, ...], dtype: np.dtype,
              inputs: tuple[np.ndarray, ...], where: str = "multiply") -> np.ndarray:
    """Return ``out`` if it can receive the result, else raise.

    It must be a writable, C-contiguous numpy array of exactly the result's shape and dtype,
    and must not share memory with an input (the product reads inputs while writing it).
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{where}: out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{where}: out has shape {out.shape}, the result has shape {shape}")
    if out.dtype != dtype:
        raise ValueError(f"{where}: out has dtype {out.dtype}, the result has dtype {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{where}: out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{where}: out is read-only")
    for arr in inputs:
        # Bounds-only check: exact overlap solving can be exponentially slow, and an out that
        # merely interleaves with an input is not a use worth supporting.
        if np.may_share_memory(out, arr):
            raise ValueError(f"{where}: out must not share memory with an input operand")
    return out
