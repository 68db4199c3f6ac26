"""Checking and normalizing the operands of a product.

Everything the kernels assume about their operands is established here, once per call: which
operand is sparse and in which stored format, that the shapes agree, the dtype the product is
computed in, a usable ``out``, and arrays the kernels can read as they are. Conversions are the
cheapest correct ones: arrays already in a supported form are passed on without a copy. The
structure of a user's scipy matrix (its pointers and indices) is checked by the kernels
themselves, where they read it (``include/spmm/formats/views.hpp``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import _formats, _spmm_ext

INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64, _F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
_I32, _I64 = np.dtype(np.int32), np.dtype(np.int64)

# Formats whose stored arrays the kernels read directly; LIL and DOK are converted to CSR, as
# scipy's own product does.
DIRECT_FORMATS = ("csr", "csc", "coo", "bsr", "dia")
CONVERTED_FORMATS = ("lil", "dok")


class SparseOperand:
    """Base class of spmm's own sparse operands (:class:`spmm.PreparedMatrix`): what the
    pipeline recognizes as sparse besides scipy's matrices, without importing them."""

    __slots__ = ()


@dataclass(frozen=True)
class Csr:
    """CSR arrays ready for the kernels: validated, a float value dtype, and indices of one
    dtype (int32 or int64, with row pointers of the same dtype) or, in a prepared matrix of at
    most 65,536 columns, uint16 indices with int64 row pointers.

    ``slices`` caches the partitions of the rows among threads, keyed by (thread count,
    partition code), when the arrays are kept for many products (a prepared matrix); None
    otherwise. A prepared matrix's values may be in a reduced format (``spmm._precision``:
    bfloat16 bits, float16 or int8); int8 ones come with ``scales``, one float32 per row.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]
    slices: dict[tuple[int, int], np.ndarray] | None = field(default=None, compare=False)
    scales: np.ndarray | None = field(default=None, compare=False)

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


def _dtype_error(side: str, dt: np.dtype, where: str) -> TypeError:
    return TypeError(
        f"{where}: unsupported {side} operand dtype {dt}; spmm computes in float32 or float64 "
        "and accepts bool, integer and real floating dtypes of up to 64 bits"
    )


_RESULT_DTYPES: dict[tuple[np.dtype, np.dtype], np.dtype] = {}


def _is_ml_bfloat16(dt: np.dtype) -> bool:
    """Whether ``dt`` is ``ml_dtypes.bfloat16`` (False at once when ml_dtypes, an optional
    package spmm never imports, is not imported: no array can have its dtype then)."""
    ml_dtypes = sys.modules.get("ml_dtypes")
    return ml_dtypes is not None and dt == getattr(ml_dtypes, "bfloat16", None)


def result_dtype(left: np.dtype, right: np.dtype, where: str = "multiply") -> np.dtype:
    """The dtype a product is computed in and returned as.

    ``numpy.result_type`` of the two when that is float32 or float64, as ``a @ b`` gives
    (float32 with bool, 8- or 16-bit integers or float16 stays float32); float32 when it is
    float16; float64 when it is an integer or bool. ``ml_dtypes.bfloat16`` counts as float16
    (converted to float32, or float64 with float64 weights). Byte order never matters.
    Complex, longdouble, object and other kinds are a TypeError.
    """
    key = (left, right)
    found = _RESULT_DTYPES.get(key)
    if found is not None:
        return found
    native = []
    for side, dt in (("sparse", left), ("dense", right)):
        if _is_ml_bfloat16(dt):
            dt = _F16  # promotes as float16 does: float32 with float32 (or smaller)
        if dt.kind not in "biuf" or dt.itemsize > 8:
            raise _dtype_error(side, dt, where)
        native.append(dt.newbyteorder("="))
    common = np.result_type(*native)
    found = (_F32 if common.itemsize <= 4 else _F64) if common.kind == "f" else _F64
    _RESULT_DTYPES[key] = found
    return found


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


def to_csr(a: sp.spmatrix | sp.sparray, dtype: np.dtype) -> Csr:
    """CSR arrays of ``a``, validated, with values of ``dtype``.

    CSR input is used as it is: its arrays are not copied when their dtypes are supported.
    Other formats are converted to CSR, never from an unchecked structure (scipy's conversion
    routines trust it and crash on a corrupt one): CSC by scipy once it is checked, the others
    by ``spmm._formats.as_csr``.
    """
    if a.format == "csc":
        check_structure(a)
    m = a if a.format == "csr" else a.tocsr() if a.format == "csc" else _formats.as_csr(a, dtype)
    indptr, indices, data = _checked_compressed(m, m.shape)
    return Csr(indptr, indices, kernel_ready(data, dtype), m.shape)


def kernel_ready(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` as a contiguous, aligned, native array of ``dtype``: as it is when it already is
    one (the kernels read each element as a C++ ``I`` or ``T``), else a copy."""
    flags = x.flags
    if x.dtype == dtype and flags.c_contiguous and flags.aligned:  # equal dtypes: both native
        return x
    return np.require(x, dtype, ["C_CONTIGUOUS", "ALIGNED"])


_corrupt = _formats.corrupt


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
SIMD_ALIGNMENT = _spmm_ext.cache_line_bytes()


def aligned_empty(count: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialized 1-D array of ``count`` elements starting on a cache line."""
    dtype = np.dtype(dtype)
    buffer = np.empty(count * dtype.itemsize + SIMD_ALIGNMENT, dtype=np.uint8)
    start = -_spmm_ext.data_address(buffer) % SIMD_ALIGNMENT
    return buffer[start:start + count * dtype.itemsize].view(dtype)


def aligned_result(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized C-contiguous array for a result, starting on a cache line: numpy's own
    allocations start 16 bytes past one, so that every other row of a narrow result would
    straddle two lines, and a kernel that writes rows in random order (a column-driven one)
    would pay for two lines on each of them. Results that stay in L1 are numpy's (the
    alignment pays nothing there and costs a little per call)."""
    count = 1
    for extent in shape:
        count *= extent
    if count * dtype.itemsize < 65536:
        return np.empty(shape, dtype)
    return aligned_empty(count, dtype).reshape(shape)


def aligned_copy(b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A copy of ``b`` (1-D or 2-D) as ``dtype`` starting on a cache line, whose rows never
    straddle two cache lines more than they must: a row of up to a line is padded to the next
    power of two (so it sits inside one line), a longer one to a whole number of lines."""
    if b.ndim == 1:
        out = aligned_empty(len(b), dtype)
        np.copyto(out, b, casting="unsafe")
        return out
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
    if b.dtype != dtype or not b.flags.aligned:  # equal dtypes: both native
        return aligned_copy(b, dtype)  # a misaligned element cannot be read as a T
    itemsize = b.itemsize
    for stride in b.strides:
        if stride % itemsize:
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
    if not out.flags.aligned or not out.dtype.isnative:
        raise ValueError(f"{where}: out must be aligned and in native byte order")
    # Bounds-only check (numpy.may_share_memory's, at C speed): exact overlap solving can be
    # exponentially slow, and an out that merely interleaves with an input is not a use worth
    # supporting.
    if _spmm_ext.shares_memory(out, inputs):
        raise ValueError(f"{where}: out must not share memory with an input operand")
    return out


# --------------------------------------------------------------------------------------------
# One product's operands, normalized.

_CSR = (sp.csr_array, sp.csr_matrix)
_NDARRAY = np.ndarray


class Product:
    """A product's operands, checked: the sparse operand and its stored ``kind`` (a scipy
    format, or ``"prepared"``), the dense operand as a numpy array, the orientation
    (``transposed``: X @ W, computed as Yᵀ = Wᵀ Xᵀ), the dtype it is computed in, the result's
    shape, ``out`` (checked) or None, and ``n``, the dense operand's columns in the computed
    product (B's columns, or X's rows; 1 for a 1-D operand)."""

    __slots__ = ("dense", "dtype", "kind", "n", "out", "shape", "sparse", "transposed")

    def __init__(self, sparse: Any, kind: str, dense: np.ndarray, transposed: bool,
                 dtype: np.dtype, shape: tuple[int, ...], out: np.ndarray | None,
                 n: int) -> None:
        self.sparse, self.kind, self.dense, self.transposed = sparse, kind, dense, transposed
        self.dtype, self.shape, self.out, self.n = dtype, shape, out, n


def _two(kind: str, a: Any, b: Any) -> TypeError:
    if kind == "sparse":
        return TypeError(
            "multiply: exactly one operand must be sparse, got two sparse operands "
            f"({type(a).__name__}, {type(b).__name__}); for sparse @ sparse use scipy")
    return TypeError(
        "multiply: exactly one operand must be a scipy.sparse matrix/array or a "
        f"PreparedMatrix, got two dense operands ({type(a).__name__}, {type(b).__name__}); "
        "for dense @ dense use numpy")


# What the pipeline takes as the sparse operand: spmm's own and scipy's (sp.issparse's types).
_SPARSE_TYPES = (SparseOperand, sp.sparray, sp.spmatrix)


def is_sparse(x: object) -> bool:
    """Whether ``x`` is a sparse operand: a scipy.sparse matrix/array or a PreparedMatrix."""
    return isinstance(x, _SPARSE_TYPES)


def sparse_kind(m: Any, where: str = "multiply") -> tuple[str, np.dtype]:
    """The stored kind of the sparse operand ``m`` and the dtype of its values; a TypeError
    for a sparse array that is not 2-D or a format spmm does not know, a ValueError for a
    shape that is not two integers >= 0 (an overwritten ``_shape``)."""
    if isinstance(m, SparseOperand):
        return "prepared", m.dtype
    if m.ndim != 2:
        raise TypeError(f"{where}: sparse operands must be 2-D; got a {m.ndim}-D "
                        f"{type(m).__name__} of shape {m.shape}")
    _formats.checked_shape(m)
    kind = m.format
    if kind not in DIRECT_FORMATS and kind not in CONVERTED_FORMATS:
        raise TypeError(f"{where}: unsupported sparse format {kind!r}")
    return kind, m.dtype


def normalize(a: Any, b: Any, out: Any, where: str = "multiply") -> Product:
    """Check the operands of ``a @ b`` and describe the product (nothing is converted yet)."""
    a_sparse = isinstance(a, _SPARSE_TYPES)
    if a_sparse == isinstance(b, _SPARSE_TYPES):
        raise _two("sparse" if a_sparse else "dense", a, b)
    sparse, given, transposed = (a, b, False) if a_sparse else (b, a, True)
    kind, sparse_dtype = sparse_kind(sparse, where)
    dense = given if type(given) is _NDARRAY and 1 <= given.ndim <= 2 else as_dense(given, where)
    two_d = dense.ndim == 2
    dense_shape = dense.shape
    sparse_shape = sparse.shape
    rows, cols = sparse_shape
    if transposed:
        if dense_shape[-1] != rows:
            raise _shape_error(dense_shape, sparse_shape)
        n = dense_shape[0] if two_d else 1
        shape = (n, cols) if two_d else (cols,)
    else:
        if dense_shape[0] != cols:
            raise _shape_error(sparse_shape, dense_shape)
        n = dense_shape[1] if two_d else 1
        shape = (rows, n) if two_d else (rows,)
    dtype = result_dtype(sparse_dtype, dense.dtype, where)
    if out is not None:
        out = check_out(out, shape, dtype, (dense, *stored_arrays(sparse)), where)
    return Product(sparse, kind, dense, transposed, dtype, shape, out, n)


def _shape_error(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"multiply: shape mismatch: a has shape {a_shape} and b has shape {b_shape}; "
        f"for a @ b the last dimension of a ({a_shape[-1]}) must equal the first "
        f"dimension of b ({b_shape[0]})"
    )


def index_arrays(*arrays: np.ndarray, name: str = "indices") -> tuple[np.ndarray, ...]:
    """Index arrays the kernels read as they are: 1-D, contiguous, aligned, native, all int32
    or all int64. Arrays already so are returned as they are; others are converted to int64
    (a copy; any out-of-range value is then caught where the kernels read it)."""
    first = arrays[0].dtype
    if first == _I32 or first == _I64:
        for x in arrays:
            flags = x.flags
            if x.dtype != first or not flags.c_contiguous or not flags.aligned or x.ndim != 1:
                break
        else:
            return arrays
    for x in arrays:
        if x.dtype.kind not in "iu" or x.ndim != 1:
            raise _corrupt(f"{name} must be 1-D integer arrays, got {x.ndim}-D {x.dtype}")
    return tuple(np.require(x, _I64, ["C_CONTIGUOUS", "ALIGNED"]) for x in arrays)


def compressed_arrays(m: Any, dtype: np.dtype, kind: str) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """(indptr, indices, data) of a CSR or CSC matrix (``kind``), ready for the kernels."""
    indptr, indices = index_arrays(m.indptr, m.indices)
    major = m.shape[0 if kind == "csr" else 1]
    if len(indptr) != major + 1:
        raise _corrupt(f"indptr has {len(indptr)} entries, expected {major + 1} for {major} "
                       f"{'rows' if kind == 'csr' else 'columns'}")
    data = m.data
    if data.ndim != 1:
        raise _corrupt("data must be 1-D")
    return indptr, indices, kernel_ready(data, dtype)


def coo_arrays(m: Any, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, data) of a COO matrix, ready for the kernels."""
    coords = m.coords
    data = m.data
    if len(coords) != 2 or data.ndim != 1 or any(len(c) != len(data) for c in coords):
        raise _corrupt(f"COO coordinates must be two 1-D integer arrays as long as data "
                       f"({len(data)})")
    row, col = index_arrays(*coords, name="COO coordinates")
    return row, col, kernel_ready(data, dtype)


def bsr_arrays(m: Any, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, data) of a BSR matrix, ready for the kernels (data: blocks x r x c,
    C-contiguous)."""
    data = m.data
    if data.ndim != 3:
        raise _corrupt("BSR data must be 3-D (blocks x block rows x block columns)")
    r, c = data.shape[1:]
    rows, cols = m.shape
    if r == 0 or c == 0 or rows % r or cols % c:
        raise _corrupt(f"BSR blocks of {r} x {c} do not tile the shape {m.shape}")
    indptr, indices = index_arrays(m.indptr, m.indices)
    if len(indptr) != rows // r + 1:
        raise _corrupt(f"BSR indptr must have {rows // r + 1} entries, one per block row + 1")
    return indptr, indices, kernel_ready(data, dtype)


def dia_arrays(m: Any, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(offsets as int64, data: diagonals x width, C-contiguous) of a DIA matrix."""
    offsets, data = m.offsets, m.data
    if data.ndim != 2 or offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise _corrupt("DIA data must be 2-D and offsets a 1-D integer array")
    if len(offsets) != data.shape[0]:
        raise _corrupt(f"DIA has {len(offsets)} offsets for {data.shape[0]} diagonals")
    if offsets.dtype.kind == "u":  # an offset beyond int64 lies outside any matrix
        offsets = np.minimum(offsets, np.uint64(2**62)).astype(_I64)
    return (np.require(offsets, _I64, ["C_CONTIGUOUS", "ALIGNED"]),
            kernel_ready(data, dtype))
