"""The stored structure of every scipy.sparse format, checked before scipy's own code reads it.

scipy's conversion routines (``tocsr``, ``tocoo``) are C++ and Cython loops that trust the
arrays a matrix holds: a COO coordinate, a BSR pointer, a DIA offset or a LIL column out of
range makes them write or read outside their buffers, and the process crashes. A user
corrupts these arrays by plain assignment (``a.offsets = ...``, ``a.rows[0] = [...]``), so
spmm checks every format it converts, here, before any of that code runs.

Each format has one function that checks it and returns its entries in a form a kernel can
trust (validated arrays, or int64 coordinates); :func:`check` runs the right one and
:func:`as_csr` converts by a route that cannot overflow. CSR and CSC are checked in C++
(``include/spmm/formats/validate.hpp``) by the callers in ``spmm._operands``.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

from . import _spmm_ext
from ._checks import is_int

_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def corrupt(message: str) -> ValueError:
    """The error of a corrupt stored structure."""
    return ValueError(f"corrupt sparse matrix: {message}")


def checked_shape(a: sp.spmatrix | sp.sparray) -> tuple[int, int]:
    """``a.shape`` as two Python ints >= 0, or a ValueError (a reassigned ``_shape``)."""
    shape = a.shape
    if type(shape) is tuple and len(shape) == 2:  # the common case first: it runs per product
        rows, cols = shape
        if type(rows) is int and type(cols) is int and 0 <= rows < 2**63 and 0 <= cols < 2**63:
            return shape
    if (not isinstance(shape, tuple) or len(shape) != 2
            or not all(is_int(n) and 0 <= n < 2**63 for n in shape)):
        raise corrupt(f"shape must be two integers in [0, 2**63); got {shape!r}")
    return int(shape[0]), int(shape[1])


def _integer_vector(x: object, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype.kind not in "iu":
        kind = f"{x.ndim}-D {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise corrupt(f"{what} must be a 1-D integer array; got {kind}")
    return x


def _in_range(x: np.ndarray, size: int, what: str) -> None:
    """Every entry of the integer array ``x`` in [0, size) (compared without overflow); else
    the first that is not, in the kernels' words (``include/spmm/formats/views.hpp``)."""
    if len(x) and (x.min() < 0 or x.max() >= size):
        p = int(np.flatnonzero((x < 0) | (x >= size))[0])
        raise corrupt(f"{what} {x[p]} at position {p} is out of range (valid: 0 to "
                      f"{size - 1})")


def coo_arrays(a: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, data) of a 2-D COO matrix: 1-D integer coordinates as long as data, each in
    range. Duplicates and any order are allowed (they are summed, as scipy does)."""
    shape = checked_shape(a)
    coords, data = a.coords, a.data
    if not isinstance(data, np.ndarray) or data.ndim != 1:
        raise corrupt("COO data must be a 1-D array")
    if not isinstance(coords, tuple) or len(coords) != 2:
        raise corrupt("COO coords must be a tuple of two arrays (rows, columns)")
    for name, c, size in zip(("row", "column"), coords, shape, strict=True):
        c = _integer_vector(c, f"COO {name} coordinates")
        if len(c) != len(data):
            raise corrupt(f"COO {name} coordinates have {len(c)} entries, data {len(data)}")
        _in_range(c, size, f"{name} coordinate")
    return coords[0], coords[1], data


def bsr_arrays(a: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, data) of a BSR matrix, checked: blocks of R x C (R, C >= 1) tile the
    shape, indptr has one entry per block row + 1, and (indptr, indices) is a valid CSR
    structure of the block rows and columns with at least ``indptr[-1]`` blocks of data."""
    rows, cols = checked_shape(a)
    data, indptr, indices = a.data, a.indptr, a.indices
    if not isinstance(data, np.ndarray) or data.ndim != 3:
        raise corrupt("BSR data must be 3-D (blocks x block rows x block columns)")
    r, c = data.shape[1:]
    if r == 0 or c == 0 or rows % r or cols % c:
        raise corrupt(f"BSR blocks of {r} x {c} do not tile the shape {(rows, cols)}")
    block_rows = rows // r
    _integer_vector(indptr, "BSR indptr")
    _integer_vector(indices, "BSR indices")
    if len(indptr) != block_rows + 1:
        raise corrupt(f"BSR indptr has {len(indptr)} entries; expected {block_rows + 1}, one "
                      "per block row + 1")
    check_compressed(indptr, indices, cols // c)
    if len(data) < int(indptr[-1]):
        raise corrupt(f"BSR data has {len(data)} blocks but indptr[-1] is {int(indptr[-1])}")
    return indptr, indices, data


def check_compressed(indptr: np.ndarray, indices: np.ndarray, minor: int) -> None:
    """Validate a compressed structure (C++ ``validate_csr``) whatever its integer dtypes."""
    # Other integer dtypes are checked as int64, where a uint64 beyond it wraps to a negative
    # value: out of range either way.
    dtype = indptr.dtype if (indptr.dtype == indices.dtype
                             and indptr.dtype in _INDEX_DTYPES) else np.dtype(np.int64)
    _spmm_ext.validate_csr(np.ascontiguousarray(indptr, dtype=dtype),
                           np.ascontiguousarray(indices, dtype=dtype), minor)


def dia_entries(a: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, data) of the nonzero entries a DIA matrix holds inside its shape: int64
    coordinates in diagonal order, as scipy's ``tocsr`` finds them.

    Diagonal ``d`` (offset ``k = offsets[d]``) holds ``data[d, j]`` at (j - k, j) for the
    columns j < ``data.shape[1]`` where that position is inside the matrix. An offset at or
    beyond the shape (k >= columns or k <= -rows) holds no entry: it is dropped, as scipy's
    products drop it (scipy's ``tocsr`` casts offsets to int32 first, and an offset beyond
    int32 then lands on the wrong diagonal and writes past its buffers). Explicit zeros are
    dropped, as scipy's ``tocsr`` does. Computed in int64, so no offset can overflow.
    """
    rows, cols = checked_shape(a)
    data, offsets = a.data, a.offsets
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise corrupt("DIA data must be a 2-D array (diagonals x columns)")
    _integer_vector(offsets, "DIA offsets")
    if len(offsets) != data.shape[0]:
        raise corrupt(f"DIA has {len(offsets)} offsets for {data.shape[0]} diagonals")
    if offsets.dtype.kind == "u":  # compared as unsigned: a huge one must not wrap negative
        inside = offsets < cols
    else:
        inside = (offsets > -rows) & (offsets < cols)
    kept = np.flatnonzero(inside)
    width = min(data.shape[1], cols)
    offset = offsets[kept].astype(np.int64)[:, None]  # in (-rows, cols): exact in int64
    col = np.arange(width, dtype=np.int64)[None, :]
    row = col - offset
    values = data[kept, :width]
    stored = (row >= 0) & (row < rows) & (values != 0)
    return (row[stored], np.broadcast_to(col, row.shape)[stored], values[stored])


def lil_rows(a: sp.spmatrix | sp.sparray) -> None:
    """Check a LIL matrix: ``rows`` and ``data`` are 1-D object arrays of one list per row,
    each row's columns ints in range (in any order: scipy sorts them, and sums duplicates, on
    conversion) and as many values as columns."""
    rows, cols = checked_shape(a)
    for name in ("rows", "data"):
        x = getattr(a, name)
        if not isinstance(x, np.ndarray) or x.dtype != object or x.shape != (rows,):
            raise corrupt(f"LIL {name} must be a 1-D object array of {rows} lists (one per "
                          f"row); got {type(x).__name__} {getattr(x, 'shape', '')}")
    row_lists, value_lists = a.rows.tolist(), a.data.tolist()
    if (all(type(x) is list for x in row_lists) and all(type(x) is list for x in value_lists)
            and list(map(len, row_lists)) == list(map(len, value_lists))):
        # The common case at C speed: numpy reads every column at once, and a kind of integer
        # (or bool) in range is all scipy's conversion needs. Anything else goes through the
        # row-by-row loop below, which names the first bad row.
        columns = list(itertools.chain.from_iterable(row_lists))
        try:
            flat = np.array(columns)
        except (ValueError, TypeError, OverflowError):
            flat = np.array([], dtype=object)  # ragged or odd elements: the loop names them
        if (flat.dtype.kind in "iub" and flat.shape == (len(columns),)
                and (flat.size == 0 or (flat.min() >= 0 and flat.max() < cols))):
            return
    for i, (columns, values) in enumerate(zip(row_lists, value_lists, strict=True)):
        if type(columns) is not list or type(values) is not list:
            raise corrupt(f"LIL row {i} must hold a list of columns and a list of values; got "
                          f"{type(columns).__name__} and {type(values).__name__}")
        if len(columns) != len(values):
            raise corrupt(f"LIL row {i} has {len(columns)} columns and {len(values)} values")
        for j in columns:
            if not is_int(j) and not isinstance(j, (bool, np.bool_)):
                raise corrupt(f"LIL row {i} has a column {j!r} that is not an integer")
        if columns and (min(columns) < 0 or max(columns) >= cols):
            raise corrupt(f"LIL row {i} has a column out of range (valid: 0 to {cols - 1}; "
                          f"found {min(columns)} to {max(columns)})")


def dok_entries(a: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, data) of a DOK matrix, int64 coordinates: every key a pair of ints in
    range (scipy's ``tocoo`` would truncate a float key, and drop a third coordinate)."""
    rows, cols = checked_shape(a)
    keys = list(a.keys())
    coords = np.empty((2, len(keys)), dtype=np.int64)
    for p, key in enumerate(keys):
        if (type(key) is not tuple or len(key) != 2 or not all(map(is_int, key))
                or not (0 <= key[0] < rows and 0 <= key[1] < cols)):
            raise corrupt(f"a DOK key must be a pair (row, column) of ints in range (valid: "
                          f"rows 0 to {rows - 1}, columns 0 to {cols - 1}); got {key!r}")
        coords[0, p], coords[1, p] = key
    data = np.fromiter(a.values(), dtype=a.dtype, count=len(keys))
    return coords[0], coords[1], data


def check(a: sp.spmatrix | sp.sparray) -> None:
    """Raise ValueError if the structure of ``a`` (a COO, BSR, DIA, LIL or DOK matrix) is
    corrupt: everything scipy's conversion routines assume. Never modifies ``a``."""
    checker = _CHECKS.get(a.format)
    if checker is not None:
        checker(a)


_CHECKS = {"coo": coo_arrays, "bsr": bsr_arrays, "dia": dia_entries, "lil": lil_rows,
           "dok": dok_entries}


def as_csr(a: sp.spmatrix | sp.sparray, dtype: np.dtype | None = None) -> sp.csr_array:
    """``a`` (COO, BSR, DIA, LIL or DOK) as a scipy CSR array, from its checked arrays, its
    values converted to ``dtype`` (float32 or float64) when given.

    Its entries are those scipy's ``tocsr`` finds (DIA's stored zeros dropped), and repeated
    coordinates add up as in scipy's ``a @ b``: a COO's duplicates are summed in ``dtype``,
    not in their own (scipy's ``tocsr`` sums two True as True, two int8 100s as -56). DIA and
    DOK are converted from their checked int64 coordinates (scipy's own DIA conversion
    overflows, and its DOK one trusts the keys); COO and BSR by scipy from their checked
    arrays; LIL by scipy once it is checked. Values scipy cannot hold, which a user can assign
    to ``data`` (float16, a byte-swapped dtype), are converted first (exactly).
    """
    shape = checked_shape(a)
    if a.format in ("dok", "coo"):
        row, col, data = (dok_entries if a.format == "dok" else coo_arrays)(a)
        return sp.csr_array((_storable(data, dtype), (row, col)), shape=shape)
    if a.format == "dia":  # a repeated offset's entries kept apart, as scipy's tocsr keeps them
        row, col, data = dia_entries(a)
        order = np.lexsort((col, row))
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=shape[0]), out=indptr[1:])
        return sp.csr_array((_storable(data[order], dtype), col[order], indptr), shape=shape)
    if a.format == "bsr":
        indptr, indices, data = bsr_arrays(a)
        blocks = int(indptr[-1])  # (scipy may keep spare capacity beyond it)
        return sp.bsr_array((_storable(data[:blocks], dtype), indices[:blocks], indptr),
                            shape=shape).tocsr()
    arrays = lil_csr_arrays(a, dtype) if a.format == "lil" else None
    if arrays is not None:
        indptr, indices, data = arrays
        return sp.csr_array((data, indices, indptr), shape=shape)
    check(a)
    return a.tocsr()


def lil_csr_arrays(a: sp.spmatrix | sp.sparray, dtype: np.dtype | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(indptr, indices, data) of a float32 or float64 LIL matrix, int64 indices and its values
    as ``dtype`` when given, read at C speed, as scipy's ``tocsr`` would give them; or None
    when the matrix is anything else, or holds anything uncommon (a column that is not a
    Python int, a value that is not a float): :func:`as_csr` then checks and converts it."""
    rows, cols = checked_shape(a)
    if not (a.dtype == np.float32 or a.dtype == np.float64):
        return None
    lists = a.rows, a.data
    if not all(isinstance(x, np.ndarray) and x.dtype == object and x.shape == (rows,)
               for x in lists):
        return None
    arrays = _spmm_ext.lil_arrays(lists[0].tolist(), lists[1].tolist(), cols,
                                  a.dtype == np.float32)
    if arrays is None or dtype is None or arrays[2].dtype == dtype:
        return arrays
    return arrays[0], arrays[1], arrays[2].astype(dtype)


def _storable(data: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    """``data`` as ``dtype`` when given, else in a dtype scipy's sparse classes accept: native
    byte order, and float16 widened to float32 (both exact)."""
    if dtype is not None:
        return data.astype(dtype)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))
