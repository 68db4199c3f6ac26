"""``prepare``: a sparse matrix converted once for many products."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import (
    _activations,
    _config,
    _dask_bridge,
    _formats,
    _layouts,
    _policy,
    _precision,
    _sliced,
    _spmm_ext,
)
from ._checks import is_int, is_positive_int
from ._operands import (
    Csr,
    SparseOperand,
    aligned_result,
    check_sparse,
    kernel_dense,
    read_only,
    result_dtype,
    to_csr,
)
from ._pipeline import multiply

_F32 = np.dtype(np.float32)

# The largest N:M group: offsets inside a group are one byte (include/spmm/formats/structured.hpp).
MAX_GROUP = _spmm_ext.max_group()

# Column indices fit in 16 bits up to this many columns: half the index bytes of int32, which
# the narrow (bandwidth-bound) products stream with every stored entry.
MAX_COLUMNS_16BIT = 2**16


def compressed(csr: Csr) -> Csr:
    """``csr`` (canonical, validated, its data a copy of our own) in the prepared layout,
    owning its arrays, read-only (``spmm._operands.read_only``).

    Column indices as uint16 (row pointers int64) when there are at most 65,536 columns, else
    int32 (row pointers int32) when every index and offset fits, else int64. The slice cache
    starts empty: filled per thread count and partition on first use.
    """
    rows, cols = csr.shape
    if cols <= MAX_COLUMNS_16BIT:
        index_dtype, offset_dtype = np.dtype(np.uint16), np.dtype(np.int64)
    elif max(rows, cols, csr.nnz) < 2**31:
        index_dtype = offset_dtype = np.dtype(np.int32)
    else:
        index_dtype = offset_dtype = np.dtype(np.int64)
    scales = None if csr.scales is None else read_only(csr.scales)
    return Csr(read_only(csr.indptr.astype(offset_dtype)),
               read_only(csr.indices.astype(index_dtype)), read_only(csr.data), csr.shape, {},
               scales)


def transposed(csr: Csr) -> Csr:
    """The CSR arrays of the transpose of ``csr`` (canonical in, canonical out), its values
    moved as they are, whatever their dtype (a reduced format's too: nothing is rounded), with
    int32 or int64 indices; no scales."""
    rows, cols = csr.shape
    index_dtype = np.int32 if max(rows, cols, csr.nnz) < 2**31 else np.int64
    # scipy transposes the structure (a counting sort, rows sorted); the values follow the
    # permutation it applied to their positions.
    order = sp.csr_array((np.arange(csr.nnz, dtype=np.int64), csr.indices.astype(index_dtype),
                          csr.indptr.astype(index_dtype)), shape=csr.shape).T.tocsr()
    order.sort_indices()
    return Csr(order.indptr, order.indices, np.ascontiguousarray(csr.data[order.data]),
               (cols, rows))


class PreparedMatrix(SparseOperand):
    """A sparse matrix converted once, for many products with dense operands.

    Created by :func:`spmm.prepare`. It owns its arrays: later changes to the matrix it was
    made from are not seen. It supports ``p @ x``, ``x @ p`` and ``spmm.multiply(p, x)`` /
    ``spmm.multiply(x, p)`` with the same results as scipy.

    The CSR form (for ``p @ x``) is built by ``prepare``; the CSR form of the transpose (for
    ``x @ p``) is built on first use and kept. With a structured :attr:`layout` (``"tile"``,
    ``"block"`` or ``"n_m"``), ``x @ p`` uses the structured form built by ``prepare`` instead
    (unless a CSR kernel is named: ``kernel="naive"|"reordered"|"tiled"``).

    With reduced values (``prepare(a, values="bfloat16" | "float16" | "int8")``) the values
    are kept once, with no float32 copy: in the form ``x @ p`` reads (the CSR form of the
    transpose, or the structured form). The CSR form ``p @ x`` reads is built from it on first
    use, the same stored values moved (int8: the same scales, one per column of ``a``); with
    the CSR layout it replaces the transpose's form until an ``x @ p`` needs that again, so a
    matrix used in one orientation holds one form.

    Attributes
    ----------
    shape : tuple of int
        ``(rows, columns)``.
    dtype : numpy.dtype
        float32 or float64: the dtype the products compute in (float32 for reduced values),
        which decides the result's dtype as for a scipy matrix of that dtype.
    values : str
        How the values are stored: ``"float32"``, ``"float64"``, ``"bfloat16"``,
        ``"float16"`` or ``"int8"`` (see :func:`spmm.prepare`).
    activations : str or None
        ``"bfloat16"`` or ``"int8"``: the dense operand is rounded to it at every product and
        the dot-product instructions multiply (see :func:`spmm.prepare`); None: it is not.
    nnz : int
        Number of stored entries (duplicates summed).
    nbytes : int
        Memory held by the arrays of every form built so far, in bytes: values, indices, row
        pointers, structured arrays and int8 scales.
    layout : str
        ``"csr"``, ``"tile"`` (tile-wise sparsity), ``"block"`` (block sparsity) or ``"n_m"``
        (N:M sparsity): the form ``x @ p`` uses. See :func:`spmm.prepare`.
    block : tuple of int or None
        The structured layout's unit, (rows, columns): ``(1, width)`` for ``"tile"``, the block
        shape for ``"block"``; None for the others.
    n_m : tuple of int or None
        ``(n, m)`` for the ``"n_m"`` layout, else None.
    """

    # Make numpy defer ``ndarray @ PreparedMatrix`` to ``__rmatmul__``.
    __array_ufunc__ = None

    def __init__(self, csr: Csr | None,
                 structured: _layouts.Panels | _layouts.NmWeights | None = None, *,
                 csr_t: Csr | None = None, nnz: int | None = None,
                 activations: str | None = None) -> None:
        # The CSR form (p @ x) and that of the transpose (x @ p), each built on first use when
        # not given. A matrix of float values always has the first; one of reduced values has
        # the second or its structured form, from which the others are made.
        self._csr = csr
        self._csr_t = csr_t
        self._structured = structured
        # The CSR forms with values of the other float dtype, keyed (transposed, dtype):
        # converted once, on first use, and kept (a float32 matrix times float64 operands).
        self._converted: dict[tuple[bool, np.dtype], Csr] = {}
        # Reduced values: whether x @ p has used the transposed CSR form (until it has, the
        # CSR form p @ x builds replaces it rather than joining it), and the int8 scales of
        # W's columns while only the CSR form is held (``_left_form``).
        self._transposed_used = False
        self._column_scales: np.ndarray | None = None
        # The one-column layout of x @ p (spmm._sliced), per value dtype: built on the first
        # batch-1 product from the CSR form of the transpose, kept, never pickled.
        self._sliced: dict[np.dtype, _sliced.Sliced] = {}
        self._lock = threading.Lock()
        self._token: str | None = None  # __dask_tokenize__, computed on first use
        self._activations = activations
        # The grouped rows the dot-product kernels read, keyed by transposed (x @ p): that of
        # x @ p built by prepare, that of p @ x on first use.
        self._grouped: dict[bool, _activations.Grouped] = {}
        # stored_arrays() and what it was made from: the forms only ever grow, so it is made
        # again only when one has been added (it is read by every product given ``out``).
        self._stored: tuple[tuple, tuple, tuple[np.ndarray, ...]] | None = None
        if csr is not None:
            self._shape, self._nnz, stored = csr.shape, csr.nnz, csr.data
        elif csr_t is not None:
            self._shape, self._nnz, stored = csr_t.shape[::-1], csr_t.nnz, csr_t.data
        else:
            self._shape, self._nnz, stored = structured.shape, int(nnz), structured.values
        self._format = _precision.format_of(stored)

    @property
    def layout(self) -> str:
        return "csr" if self._structured is None else self._structured.layout

    @property
    def block(self) -> tuple[int, int] | None:
        return None if self._structured is None else self._structured.block

    @property
    def n_m(self) -> tuple[int, int] | None:
        form = self._structured
        return (form.n, form.m) if isinstance(form, _layouts.NmWeights) else None

    def structured(self, dtype: np.dtype) -> _layouts.Panels | _layouts.NmWeights | None:
        """The structured form with values of ``dtype`` (for ``x @ p``; a form of reduced
        values as it is), or None."""
        return None if self._structured is None else self._structured.astype(dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def reduced(self) -> bool:
        """Whether the values are stored in a reduced format (bfloat16, float16, int8)."""
        return self._format != "float32"

    @property
    def values(self) -> str:
        return self._format if self.reduced else self._csr.data.dtype.name

    @property
    def activations(self) -> str | None:
        return self._activations

    @property
    def dtype(self) -> np.dtype:
        return _F32 if self.reduced else self._csr.data.dtype

    @property
    def nnz(self) -> int:
        return self._nnz

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        # Forms share arrays (a converted form its structure): count each array once.
        unique = {id(x): x for x in self.stored_arrays()}
        return sum(x.nbytes for x in unique.values())

    def __getstate__(self) -> dict:
        """The canonical data only: the CSR arrays (as numpy arrays, so that pickle protocol
        5 can move them out of band), the shape and the layout's parameters.

        Reduced values are kept as stored (rounding them again would lose more), with their
        format, scales and activations: the arrays are then those of the transpose, the form
        whose values ``prepare`` rounded (its rows are the outputs of ``x @ p``, one int8 scale
        each).

        Every derived form (the transpose, the slices, the structured form, the converted
        values) is rebuilt on unpickling from these, once they are checked: nothing a pickle
        carries is trusted.
        """
        parameters = {"layout": self.layout, "block": self.block, "n_m": self.n_m}
        if self.reduced:
            t = self._source_t()
            return {"shape": self.shape, "indptr": t.indptr, "indices": t.indices,
                    "data": t.data, "values": self._format, "scales": t.scales,
                    "activations": self._activations, **parameters}
        c = self._csr
        return {"shape": c.shape, "indptr": c.indptr, "indices": c.indices, "data": c.data,
                **parameters}

    def __setstate__(self, state: object) -> None:
        restored = from_state(state)
        self.__init__(restored._csr, restored._structured, csr_t=restored._csr_t,
                      nnz=restored.nnz, activations=restored.activations)

    def __dask_tokenize__(self) -> str:
        """A token naming this matrix in dask graphs: a hash of its canonical state (the
        arrays, shape and layout that pickle carries), equal for equal matrices (an unpickled
        copy included). Computed on first use and kept: the matrix never changes."""
        if self._token is None:
            self._token = _dask_bridge.fingerprint(self.__getstate__())
        return self._token

    def __sizeof__(self) -> int:
        """Bytes held, as ``sys.getsizeof`` reports them: the object and the arrays of every
        form built so far (:attr:`nbytes`), as numpy counts an array's own data. dask's
        ``sizeof`` charges a worker holding the matrix this much (for any object it has no
        rule for, it asks ``sys.getsizeof``)."""
        return object.__sizeof__(self) + self.nbytes

    def stored_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays of every form built so far (``out=`` must not overlap them); read-only
        views."""
        structured = self._structured
        held = (self._csr, self._csr_t, self._column_scales)
        # Forms by identity (the cache holds them, so no id is reused while it stands), the
        # dictionaries of forms by size.
        built = (*map(id, held), len(self._converted), len(self._sliced), len(self._grouped),
                 0 if structured is None else len(structured._by_dtype))
        stored = self._stored
        if stored is not None and stored[0] == built:
            return stored[2]
        arrays = tuple(self._arrays_of_forms())
        self._stored = (built, held, arrays)
        return arrays

    def _arrays_of_forms(self) -> list[np.ndarray]:
        forms = [f for f in (self._csr, self._csr_t) if f is not None]
        forms += tuple(self._converted.values())  # another thread may add one
        arrays = [x for f in forms for x in (f.indptr, f.indices, f.data)]
        arrays += [f.scales for f in forms if f.scales is not None]
        if self._column_scales is not None:
            arrays.append(self._column_scales)
        arrays += [x for f in tuple(self._sliced.values()) for x in f.arrays()]
        if self._structured is not None:
            converted = tuple(self._structured._by_dtype.values())  # another thread may add
            arrays += [x for p in (self._structured, *converted) for x in p.arrays()]
        arrays += [x for g in tuple(self._grouped.values()) for x in g.arrays()]
        return arrays

    def csr(self, dtype: np.dtype) -> Csr:
        """CSR arrays of the matrix with values of ``dtype`` (for ``p @ x``; reduced values as
        they are)."""
        if self.reduced:
            if self._csr is None:
                with self._lock:
                    if self._csr is None:
                        source = self._source_t()
                        self._column_scales = source.scales
                        self._csr = compressed(_left_form(source))
                        if self._structured is None and not self._transposed_used:
                            # Only p @ x so far: one form held. x @ p rebuilds the transpose
                            # from this one, losslessly (the same stored values, moved).
                            self._csr_t = None
            return self._csr
        if self._csr.data.dtype == dtype:
            return self._csr
        return self._with_values_of(False, dtype)

    def csr_transposed(self, dtype: np.dtype) -> Csr:
        """CSR arrays of the transpose with values of ``dtype`` (for ``x @ p``; reduced values
        as they are)."""
        self._transposed_used = True
        form = self._csr_t  # one read: csr() may drop it meanwhile (it is then rebuilt)
        if form is None:
            with self._lock:
                if self._csr_t is None:
                    self._csr_t = compressed(
                        self._source_t() if self.reduced else transposed(self._csr))
                form = self._csr_t
        if form.data.dtype == dtype or self.reduced:
            return form
        return self._with_values_of(True, dtype)

    def _source_t(self) -> Csr:
        """The CSR arrays of the transpose of a matrix of reduced values: the form whose
        values ``prepare`` rounded (made from the structured form when none is kept)."""
        t = self._csr_t
        if t is not None:
            return t
        if self._structured is not None:
            return _layouts.transposed_csr(self._structured)
        # Compressed as prepare compressed it: the same state pickles whichever form is held.
        return compressed(_right_form(self._csr, self._column_scales))

    def grouped(self, transposed: bool) -> _activations.Grouped:
        """The grouped rows of the form for ``x @ p`` (``transposed``) or ``p @ x``, for a
        matrix with activations: made once, under the lock, and kept."""
        form = self._grouped.get(transposed)
        if form is None:
            source = self._source_t() if transposed else self.csr(_F32)
            with self._lock:
                form = self._grouped.get(transposed)
                if form is None:
                    form = _activations.grouped(source, self._activations)
                    self._grouped[transposed] = form
        return form

    def _with_values_of(self, transposed: bool, dtype: np.dtype) -> Csr:
        """The CSR form (of the transpose when ``transposed``) with values converted to
        ``dtype``: made once, under the lock, and kept (counted in :attr:`nbytes`)."""
        key = (transposed, np.dtype(dtype))
        form = self._converted.get(key)
        if form is None:
            with self._lock:
                form = self._converted.get(key)
                if form is None:
                    base = self._csr_t if transposed else self._csr
                    form = Csr(base.indptr, base.indices, read_only(base.data.astype(dtype)),
                               base.shape, base.slices)
                    self._converted[key] = form
        return form

    def sliced(self, dtype: np.dtype) -> _sliced.Sliced:
        """The one-column layout of ``x @ p`` with values of ``dtype`` (reduced values as they
        are): built from the CSR form of the transpose on first use, under the lock, and kept
        (counted in :attr:`nbytes`)."""
        base = self.csr_transposed(dtype)
        key = base.data.dtype
        form = self._sliced.get(key)
        if form is None:
            with self._lock:
                form = self._sliced.get(key)
                if form is None:
                    form = _sliced.Sliced.from_csr(base)
                    self._sliced[key] = form
        return form

    def form(self, family: str, transposed: bool, dtype: np.dtype) -> Any:
        """The stored form a kernel family reads, with values of ``dtype``: the CSR form (for
        ``p @ x``), that of the transpose (``x @ p``), the one-column layout (``sliced``) or
        the structured layout."""
        if family == "sliced":
            return self.sliced(dtype)
        if family == "csr_rows":
            return self.csr_transposed(dtype) if transposed else self.csr(dtype)
        return self.structured(dtype)

    def reduced_product(self, dense: np.ndarray, out: np.ndarray, transposed: bool,
                        plan: _policy.Plan) -> np.ndarray:
        """Write the product with a dense operand into ``out`` for reduced values: computed in
        float32 (the dense operand converted, when it is float64, and the float32 result then
        written into a float64 ``out``), every sum accumulated in float32."""
        x = kernel_dense(dense, _F32)
        target = out if out.dtype == _F32 else aligned_result(out.shape, _F32)
        codes = plan.codes
        # Both forms are made first: making A's CSR form gives int8 its column scales.
        g = self.grouped(transposed) if self._activations is not None else None
        form = self.form(plan.family, transposed, _F32) if g is None else None
        if self._format == "int8" and not transposed:
            # A's int8 values are scaled per column (_left_form): scale x's rows instead.
            scales = self._column_scales
            x = x * (scales if x.ndim == 1 else scales[:, None])
        if g is not None:
            _spmm_ext.activations_product(g.ptr, g.block, g.words, g.scales, g.correction,
                                          _precision.FORMAT_CODES[self._format], *g.shape,
                                          x, target, transposed, codes)
            if target is not out:
                np.copyto(out, target)
            return out
        if plan.family == "csr_rows":
            bounds = (form.slice_bounds(plan.num_threads, codes[3]) if plan.num_threads > 1
                      else None)
            rows, cols = form.shape
            _spmm_ext.reduced_csr_product(form.indptr, form.indices, form.data,
                                          _precision.FORMAT_CODES[self._format], form.scales,
                                          rows, cols, x, target, transposed, codes, bounds)
        else:
            form.multiply_into(x.reshape(1, -1) if x.ndim == 1 else x,
                               target.reshape(1, -1) if target.ndim == 1 else target, codes)
        if target is not out:
            np.copyto(out, target)
        return out

    def to_scipy(self) -> sp.csr_array:
        """The matrix as a scipy ``csr_array``, in canonical form.

        It shares this matrix's values, and its indices when it has more than 65,536 columns
        (16-bit indices are widened to int32 copies, as scipy needs), as read-only arrays:
        scipy's methods that would change them in place (``m.data *= 2``,
        ``m[i, j] = v``...) raise ``ValueError`` instead. ``to_scipy().copy()`` is a matrix
        of one's own.

        With reduced values it holds the values the products use, as float32: the rounded
        values (int8: each one times its scale), in arrays of its own.
        """
        if self.reduced:
            t = self._source_t()
            wide = _precision.widen(t.data, t.scales, t.indptr)
            c = transposed(Csr(t.indptr, t.indices, wide, t.shape))
            m = sp.csr_array((c.data, c.indices, c.indptr), shape=self.shape)
            m.has_canonical_format = True
            return m
        c = self._csr
        indptr, indices = c.indptr, c.indices
        if indices.dtype == np.uint16:
            index_dtype = np.int32 if c.nnz < 2**31 else np.int64
            indptr, indices = indptr.astype(index_dtype), indices.astype(index_dtype)
        m = sp.csr_array((c.data.view(), indices, indptr), shape=c.shape)
        m.has_canonical_format = True  # sorted and summed: scipy never needs to fix it
        return m

    def footprint(self) -> dict[str, float]:
        """Bytes of this matrix next to the forms it replaces.

        Returns
        -------
        dict
            ``"prepared"``: :attr:`nbytes` (every form built so far); ``"per_stored_weight"``:
            that divided by :attr:`nnz` (values, indices and everything else counted);
            ``"scipy_csr"``: the same matrix as a scipy CSR matrix of :attr:`dtype` (int32
            indices when they fit, as scipy stores them); ``"dense"``: as a dense array of
            :attr:`dtype`.
        """
        rows, cols = self.shape
        index_bytes = 4 if max(rows, cols, self.nnz) < 2**31 else 8
        itemsize = self.dtype.itemsize
        nbytes = self.nbytes
        return {
            "prepared": nbytes,
            "per_stored_weight": nbytes / max(1, self.nnz),
            "scipy_csr": (rows + 1) * index_bytes + self.nnz * (index_bytes + itemsize),
            "dense": rows * cols * itemsize,
        }

    def __matmul__(self, other: object) -> np.ndarray:
        if sp.issparse(other) or isinstance(other, PreparedMatrix):
            # Returning NotImplemented would let scipy try, with a confusing message.
            raise TypeError(
                "PreparedMatrix @ sparse is not supported: spmm multiplies one sparse and one "
                f"dense operand (got {type(other).__name__}); for sparse @ sparse use scipy"
            )
        return multiply(self, other)

    def __rmatmul__(self, other: object) -> np.ndarray:
        if sp.issparse(other) or isinstance(other, PreparedMatrix):
            return NotImplemented
        return multiply(other, self)

    def __repr__(self) -> str:
        shape = self.n_m if self.layout == "n_m" else self.block
        layout = "" if self._structured is None else f", layout {self.layout} {shape}"
        activations = "" if self._activations is None else f", {self._activations} activations"
        return (
            f"<PreparedMatrix {self.shape[0]}x{self.shape[1]}, {self.nnz} stored "
            f"{self.values} entries{layout}{activations}, {self.nbytes} bytes>"
        )


def _left_form(source_t: Csr) -> Csr:
    """The CSR form of a matrix of reduced values for ``p @ x`` (rows: A's rows), from the
    form of its transpose: the stored values moved as they are, never rounded again.

    int8 values keep the scales of A's columns (W's outputs, ``source_t.scales``): the product
    ``A @ x = Q @ (diag(s) x)`` scales the dense operand's rows instead (``reduced_product``),
    so the form's own scales, one per row, are ones.
    """
    left = transposed(source_t)
    if source_t.scales is None:
        return left
    ones = read_only(np.ones(left.shape[0], dtype=_F32))
    return replace(left, scales=ones)


def _right_form(left: Csr, column_scales: np.ndarray | None) -> Csr:
    """The inverse of :func:`_left_form`: the CSR arrays of the transpose, with the scales of
    its rows (int8) back in place."""
    t = transposed(left)
    return t if column_scales is None else replace(t, scales=column_scales)


def prepare(a: sp.spmatrix | sp.sparray, layout: str = "auto", *, tile: int | None = None,
            block: tuple[int, int] | None = None, n_m: tuple[int, int] | None = None,
            values: str | None = None, activations: str | None = None) -> PreparedMatrix:
    """Convert a sparse matrix once for many products.

    Parameters
    ----------
    a : scipy.sparse matrix or array, 2-D, any format
        The matrix, typically pruned weights used at every inference step. Its values are
        stored as float32 when float32 holds them exactly (float16, float32, bool, integers of
        up to 16 bits: numpy's result type with float32 is float32), else as float64.
    layout : {"auto", "csr", "tile", "block", "n_m"}, default "auto"
        The form ``x @ p`` (``a`` as the weights W of ``X @ W``, shape (inputs, outputs)) is
        computed with. ``"tile"``: tile-wise sparsity (Guo et al., SC 2020): in each tile of
        ``tile`` columns, whole rows kept or pruned; each tile is then a small dense product
        over the kept rows. ``"block"``: block sparsity, ``block`` = (rows, columns) blocks
        stored densely (like scipy's BSR). ``"n_m"``: N:M sparsity along the inputs (at most
        n kept in every m consecutive inputs of each output, e.g. 2:4; Mishra et al. 2021),
        stored as the kept values and one-byte offsets in their group. ``"csr"``: the general
        kernels. ``"auto"``: ``"block"``, ``"tile"`` or ``"n_m"`` when ``a`` has that
        structure exactly (every kept row segment or block fully stored, the widest tile of
        256, 128, 64, 32, 16 columns and the tallest block of 64, 32, ... 2 rows that fit; or
        every output keeping the same n < m of every m inputs, m = 4, 8 or 16), else
        ``"csr"``: a structured form chosen by ``"auto"`` never stores a zero ``a`` does not.
        ``p @ x`` always uses the CSR form.
    tile : int, optional
        The tile width for ``layout="tile"``; default: the widest that fits, else 128.
    block : (int, int), optional
        The block shape for ``layout="block"``; default: the largest that fits, else (32, 32).
    n_m : (int, int), optional
        ``(n, m)`` for ``layout="n_m"`` (m at most 255, offsets being one byte; the SIMD
        kernels hold a group in a register: m up to 16 floats / 8 doubles with AVX-512, 8 / 4
        with AVX2, others run a portable loop); default: the one that fits (an error if none
        does).
    values : {None, "float32", "bfloat16", "float16", "int8"}, default None
        How the values are stored. None: as described for ``a`` above (float32, or float64
        when float32 cannot hold them). ``"float32"``: float32 (float64 values rounded to
        nearest). ``"bfloat16"`` (2 bytes, float32's range, 8 significant bits) and
        ``"float16"`` (2 bytes, 11 significant bits, at most 65504 in magnitude): rounded to
        nearest, ties to even. ``"int8"`` (1 byte): symmetric, one float32 scale per column
        of ``a`` (per output of ``x @ p``): ``s = max|w| / 127``, ``q = round(w / s)``;
        ``p @ x`` uses the same values, scaling the dense operand's rows by ``s`` instead.
        Reduced values are widened to float32 in registers and every sum is accumulated in
        float32: :attr:`dtype` is float32, float64 operands give a float64 result computed
        in float32. The matrix keeps no float32 copy of them. See docs/usage.md
        ("Reduced-precision values") for the error bounds.
    activations : {None, "bfloat16", "int8"}, default None
        Also round the dense operand, at every product, to this format (it must equal
        ``values``), so that the CPU's dot-product instructions multiply: ``vdpbf16ps``
        (AVX512_BF16) and ``vpdpbusd`` (AVX512_VNNI, AVX-VNNI), on each output's stored
        weights grouped in aligned runs of the instruction's width along the inputs (2 for
        bfloat16, 4 for int8; zeros where a run stores none), built here once. A level
        without the instruction (and aarch64, for now) runs a portable loop computing the same
        float32 results. int8 activations are quantized per dense vector (a row of ``x`` for
        ``x @ p``, a column of ``x`` for ``p @ x``) with their own scale
        ``s_x = max|x| / 127``; the integer sums are exact (an output may store at most
        133,143 weights), then the two scales are applied; a NaN or infinite dense value is a
        ValueError. For one output ``y = sum_k ŵ_k x_k`` of the weights as stored, the error is
        at most ``sum_k |ŵ_k| (s_x (1/2 + 2^-15) + 2^-21 (|x_k| + s_x))`` for int8, and
        ``2^-8 (1 + 2^-15) S + g(P + 8) (1 + 2^-7) S + (2P + 16 + sum_k |ŵ_k|) 2^-126`` for
        bfloat16 (``S = sum_k |ŵ_k x_k|``, ``P`` the output's grouped entries,
        ``g(m) = m 2^-24 / (1 - m 2^-24)``); docs/usage.md ("Reduced-precision activations")
        derives them. A property of the matrix, not of a call, because ``x @ p`` takes no
        options and the grouped form it needs is built once. Not with the ``"n_m"`` layout
        (``"auto"`` then uses CSR); with ``"tile"`` or ``"block"`` the products use the
        grouped rows, not the structured form.

    Returns
    -------
    PreparedMatrix
        A copy of ``a`` in canonical CSR form (sorted indices, duplicates summed, 16-bit column
        indices when ``a`` has at most 65,536 columns, else int32 when the shape and nnz allow,
        whatever ``a`` used), with its structure validated once, the nnz-balanced and dynamic
        partitions of its rows for the configured number of threads computed, and its
        structured form if any.

    Raises
    ------
    TypeError
        If ``a`` is not a 2-D scipy.sparse matrix/array, or has a complex or object dtype.
    ValueError
        If its structure is corrupt, or ``layout``, ``tile``, ``block``, ``n_m``, ``values``
        or ``activations`` is not valid, or the matrix keeps more than n of m weights
        somewhere for ``layout="n_m"``, or its weights do not fit ``values``: a finite weight
        beyond float16's range (or one that rounds beyond bfloat16's), a NaN or infinite one
        for int8.

    Notes
    -----
    A declared structured layout that does not fit ``a`` stores zeros inside the kept
    segments or blocks where ``a`` stores nothing. Products are then scipy's whenever ``x`` is
    finite; an inf or NaN of ``x`` meeting such a zero gives NaN, as in a dense product.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, spmm
    >>> w = sp.random_array((1024, 256), density=0.1, format="csr", dtype=np.float32, rng=0)
    >>> p = spmm.prepare(w)
    >>> x = np.ones((8, 1024), dtype=np.float32)
    >>> np.allclose(x @ p, x @ w, rtol=1e-5)
    True
    >>> w = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    >>> p = spmm.prepare(spmm.prune(w, 0.75, "tile_wise", tile=64))
    >>> p.layout, p.block
    ('tile', (1, 64))
    >>> p = spmm.prepare(w, values="bfloat16")
    >>> p.values, p.dtype, round(p.footprint()["per_stored_weight"], 2)
    ('bfloat16', dtype('float32'), 4.0)
    """
    _check_layout(layout, tile, block, n_m)
    _check_values(values, activations, layout)
    check_sparse(a, "prepare")
    dtype = result_dtype(a.dtype, np.dtype(np.float32), "prepare")
    if values == "float32":
        dtype = _F32
    csr = to_csr(a, dtype)
    # Own the arrays (never the caller's), in canonical form: sorted, no duplicates, with
    # int32 indices whenever every index and offset fits (half the index bytes to stream).
    index_dtype = np.int32 if max(*csr.shape, csr.nnz) < 2**31 else np.int64
    owned = sp.csr_array((csr.data.copy(), csr.indices.astype(index_dtype),
                          csr.indptr.astype(index_dtype)), shape=csr.shape)
    owned.sum_duplicates()
    canonical = to_csr(owned, dtype)
    if values in _precision.REDUCED:
        # Rounded in the form x @ p reads: its rows are the outputs int8 scales belong to.
        t = transposed(canonical)
        stored, scales = _precision.reduce(t.data, t.indptr, values)
        return _reduced(Csr(t.indptr, t.indices, stored, t.shape, scales=scales), layout,
                        tile, block, n_m, activations)
    structured = _layouts.structured_form(canonical, layout, tile, block, n_m)
    prepared = PreparedMatrix(compressed(canonical), structured)
    _partition_for_default_threads(prepared._csr)
    return prepared


def _reduced(csr_t: Csr, layout: str, tile: int | None, block: tuple[int, int] | None,
             n_m: tuple[int, int] | None, activations: str | None) -> PreparedMatrix:
    """The PreparedMatrix of reduced values whose x @ p form is ``csr_t`` (the CSR arrays of
    the transpose, canonical, values stored and scaled as the format says), in ``layout``.

    Its structured form, when there is one, is built from the same values and scales (the
    scales of x @ p's outputs: the columns of W), and is then the only copy kept. Its stored
    entries are the positions the form stores: those of ``csr_t``, and for a declared layout
    that does not fit, the zeros it fills in too.
    """
    structured = None
    if layout != "csr":
        w = transposed(csr_t)  # W's CSR, the values as stored: what the layouts are built from
        structured = _layouts.structured_form(w, layout, tile, block, n_m)
        if isinstance(structured, _layouts.NmWeights) and activations is not None:
            structured = None  # no dot-product kernel for N:M: auto falls back to CSR
    if structured is None:
        prepared = PreparedMatrix(None, csr_t=compressed(csr_t), activations=activations)
        _partition_for_default_threads(prepared._csr_t)
    else:
        scales = None if csr_t.scales is None else read_only(csr_t.scales)
        structured = replace(structured, scales=scales)
        nnz = csr_t.nnz if structured.fits else _layouts.transposed_csr(structured).nnz
        prepared = PreparedMatrix(None, structured, nnz=nnz, activations=activations)
    if activations is not None:
        prepared.grouped(True)  # x @ p's grouped rows, built once (an unpickled matrix too)
    return prepared


_STATE_KEYS = ("shape", "indptr", "indices", "data", "layout", "block", "n_m")


def from_state(state: object) -> PreparedMatrix:
    """The PreparedMatrix of a pickled state (:meth:`PreparedMatrix.__getstate__`), checked
    as fully as :func:`prepare` checks a matrix, every derived form rebuilt.

    A state of reduced values (key ``values``: ``"bfloat16"``, ``"float16"`` or ``"int8"``)
    holds the CSR arrays of the transpose, its stored values (of the format's storage dtype;
    int8 within [-127, 127]) and, for int8, one finite, non-negative float32 scale per row;
    they are kept as they are, never rounded again.

    Also reads the state of earlier versions of spmm (the forms themselves, keyed ``csr``,
    ``csr_t`` and ``structured``), of which it keeps only the canonical data too.
    """
    if isinstance(state, Mapping) and "csr" in state:
        state = _state_of_forms(state)
    if not isinstance(state, Mapping):
        raise _bad_state(f"expected a dict, got {type(state).__name__}")
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        raise _bad_state(f"missing {missing}")
    shape = state["shape"]
    if (not isinstance(shape, tuple) or len(shape) != 2
            or not all(is_int(n) and 0 <= n < 2**63 for n in shape)):
        raise _bad_state(f"shape must be two integers in [0, 2**63); got {shape!r}")
    rows, cols = int(shape[0]), int(shape[1])
    fmt = state.get("values")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in _precision.REDUCED):
        raise _bad_state(f"values must be one of {_precision.REDUCED} (or absent, for float "
                         f"values); got {fmt!r}")
    # Reduced values come in the CSR arrays of the transpose: major = W's columns.
    major, minor = (cols, rows) if fmt is not None else (rows, cols)
    indptr, indices, data = (_owned(state[name], name) for name in ("indptr", "indices", "data"))
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise _bad_state(f"indptr and indices must be integer arrays; got {indptr.dtype} and "
                         f"{indices.dtype}")
    if fmt is not None:
        if data.dtype.newbyteorder("=") != _precision.STORAGE[fmt]:
            raise _bad_state(f"data of {fmt} values must be "
                             f"{_precision.STORAGE[fmt]}; got {data.dtype}")
    elif data.dtype.kind != "f" or data.dtype.itemsize not in (4, 8):
        raise _bad_state(f"data must be float32 or float64; got {data.dtype}")
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if len(indptr) != major + 1:
        kind = "columns (the arrays of the transpose)" if fmt is not None else "rows"
        raise _bad_state(f"indptr has {len(indptr)} entries; expected {major + 1} for "
                         f"{major} {kind}")
    try:
        _formats.check_compressed(indptr, indices, minor)
    except ValueError as exc:
        raise _bad_state(str(exc)) from None
    nnz = int(indptr[-1])
    if not len(indices) == len(data) == nnz:
        raise _bad_state(f"indices and data must hold indptr[-1] = {nnz} entries; they hold "
                         f"{len(indices)} and {len(data)}")
    _check_canonical(indptr, indices)
    layout, block, n_m = state["layout"], state["block"], state["n_m"]
    parameters = {"csr": (None, None), "tile": (block, None), "block": (block, None),
                  "n_m": (None, n_m)}
    if not isinstance(layout, str) or layout not in parameters:
        raise _bad_state(f"layout must be one of {tuple(parameters)}; got {layout!r}")
    if (block, n_m) != parameters[layout] or not _valid_parameters(layout, block, n_m):
        raise _bad_state(f"layout {layout!r} with block={block!r}, n_m={n_m!r}; expected "
                         "block=(1, width) for 'tile', (rows >= 2, columns) for 'block', "
                         f"n_m=(n, m) with 1 <= n <= m <= {MAX_GROUP} for 'n_m', the others "
                         "None")
    tile = block[1] if layout == "tile" else None
    declared = (layout, tile, block if layout == "block" else None, n_m)
    if fmt is not None:
        scales = _checked_scales(state.get("scales"), fmt, data, major)
        activations = state.get("activations")
        try:
            _check_values(fmt, activations, layout)
            return _reduced(Csr(indptr, indices, data, (cols, rows), scales=scales),
                            *declared, activations)
        except ValueError as exc:
            raise _bad_state(str(exc)) from None
    canonical = Csr(indptr, indices, data, (rows, cols))
    try:
        structured = _layouts.structured_form(canonical, *declared)
    except ValueError as exc:  # an N:M matrix keeping more than n of m somewhere
        raise _bad_state(str(exc)) from None
    prepared = PreparedMatrix(compressed(canonical), structured)
    _partition_for_default_threads(prepared._csr)
    return prepared


def _checked_scales(scales: object, fmt: str, data: np.ndarray,
                    outputs: int) -> np.ndarray | None:
    """The scales of a state of ``fmt`` values: for int8, ``outputs`` finite, non-negative
    float32 values (owned, native), its values checked within [-127, 127] too; else None."""
    if fmt != "int8":
        if scales is not None:
            raise _bad_state(f"{fmt} values have no scales; got {type(scales).__name__}")
        return None
    if scales is None:
        raise _bad_state("int8 values need their scales")
    scales = _owned(scales, "scales")
    if scales.dtype.newbyteorder("=") != _F32 or len(scales) != outputs:
        raise _bad_state(f"scales must be {outputs} float32 values (one per column); got "
                         f"{len(scales)} of {scales.dtype}")
    scales = scales.astype(_F32, copy=False)
    if not np.all(np.isfinite(scales) & (scales >= 0)):
        raise _bad_state("scales must be finite and non-negative")
    if data.size and int(np.min(data)) < -_precision.INT8_MAX:
        raise _bad_state(f"int8 values must lie in [-{_precision.INT8_MAX}, "
                         f"{_precision.INT8_MAX}]; got {int(np.min(data))}")
    return scales


def _bad_state(message: str) -> ValueError:
    return ValueError(f"PreparedMatrix: a corrupted or invalid pickled state: {message}")


def _owned(x: object, name: str) -> np.ndarray:
    """``x`` as a 1-D array that no one else can write to: an array unpickled in band owns
    its memory; one made from out-of-band buffers (pickle protocol 5) or from a view is
    copied, since its buffer's owner could change it after it is checked."""
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        kind = f"a {x.ndim}-D array" if isinstance(x, np.ndarray) else type(x).__name__
        raise _bad_state(f"{name} must be a 1-D numpy array; got {kind}")
    return x if x.flags.owndata else x.copy()


def _check_canonical(indptr: np.ndarray, indices: np.ndarray) -> None:
    """Column indices strictly increasing within each row (what ``prepare`` stores, and
    what the structured forms are built from: a duplicate would be dropped, not summed)."""
    if len(indices) < 2:
        return
    increasing = np.diff(indices.astype(np.int64)) > 0
    # Position p compares entries p and p + 1; it crosses a row boundary when p + 1 starts a
    # row (empty rows repeat a start, so mark the boundaries, not count them).
    crosses = np.zeros(len(indices) - 1, dtype=bool)
    starts = indptr[1:-1].astype(np.int64) - 1
    crosses[starts[(starts >= 0) & (starts < len(crosses))]] = True
    bad = np.flatnonzero(~(increasing | crosses))
    if len(bad):
        raise _bad_state(f"the column indices at positions {bad[0]} and {bad[0] + 1} are not "
                         "strictly increasing within their row (not canonical)")


def _valid_parameters(layout: str, block: object, n_m: object) -> bool:
    if layout == "csr":
        return True
    pair = block if layout != "n_m" else n_m
    if not (isinstance(pair, tuple) and len(pair) == 2
            and all(is_int(v) and v >= 1 for v in pair)):
        return False
    first, second = pair
    if layout == "tile":
        return first == 1
    if layout == "block":
        return first >= 2
    return first <= second <= MAX_GROUP


def _state_of_forms(state: Mapping) -> dict:
    """The canonical state of an earlier version's pickled forms (a ``Csr`` and a structured
    form): their arrays and parameters, to be checked like any state; the rest is dropped."""
    csr, form = state["csr"], state.get("structured")
    if not isinstance(csr, Csr) or not (form is None or isinstance(
            form, (_layouts.Panels, _layouts.NmWeights))):
        raise _bad_state("expected the forms of a PreparedMatrix (Csr and Panels or "
                         f"NmWeights); got {type(csr).__name__} and {type(form).__name__}")
    layout = "csr" if form is None else form.layout
    n_m = (form.n, form.m) if isinstance(form, _layouts.NmWeights) else None
    return {"shape": csr.shape, "indptr": csr.indptr, "indices": csr.indices, "data": csr.data,
            "layout": layout, "block": None if form is None else form.block, "n_m": n_m}


def _partition_for_default_threads(csr: Csr) -> None:
    """Compute the slices the default partition uses for the configured thread count ahead
    of any product: nnz-balanced, and the dynamic partition's chunks (one dense column;
    ``spmm._policy.choose_partition``).

    Other thread counts and partitions are computed on first use and kept as well. An invalid
    ``SPMM_*`` variable is reported by the first product, not here.
    """
    try:
        threads = _config.resolve()["num_threads"]
    except ValueError:
        return
    if threads > 1:
        for partition in ("nnz", "dynamic"):
            csr.slice_bounds(threads, _policy.PARTITION_CODES[partition])


def _check_values(values: object, activations: object, layout: object) -> None:
    """Raise ValueError unless ``values`` and ``activations`` are valid for ``prepare``."""
    choices = (None, *_precision.VALUE_FORMATS)
    if not (values is None or (isinstance(values, str) and values in choices)):
        raise ValueError(f"prepare: values must be one of {choices}; got {values!r}")
    kinds = (None, *_precision.ACTIVATIONS)
    if not (activations is None or (isinstance(activations, str) and activations in kinds)):
        raise ValueError(f"prepare: activations must be one of {kinds}; got {activations!r}")
    if activations is not None:
        if values != activations:
            raise ValueError(
                f"prepare: activations={activations!r} needs values={activations!r} (the "
                f"dot-product instructions multiply {activations} by {activations}); got "
                f"values={values!r}")
        if layout == "n_m":
            raise ValueError(
                "prepare: activations= has no kernel for the 'n_m' layout; use layout='csr' "
                "(or 'auto', which then uses CSR)")


def _check_layout(layout: object, tile: object, block: object, n_m: object) -> None:
    if not isinstance(layout, str) or layout not in _layouts.LAYOUTS:
        raise ValueError(f"prepare: layout must be one of {_layouts.LAYOUTS}; got {layout!r}")
    for name, value in (("tile", tile), ("block", block), ("n_m", n_m)):
        if value is not None and layout != name:
            raise ValueError(f"prepare: {name}= is for layout={name!r} (got layout={layout!r})")
    if tile is not None and not is_positive_int(tile):
        raise ValueError(f"prepare: tile must be a positive int; got {tile!r}")
    if block is not None and not (isinstance(block, tuple) and len(block) == 2
                                  and all(map(is_positive_int, block))):
        raise ValueError(
            f"prepare: block must be a tuple of two positive ints (rows, columns); got {block!r}")
    if n_m is not None and not (isinstance(n_m, tuple) and len(n_m) == 2
                                and all(map(is_positive_int, n_m))
                                and n_m[0] <= n_m[1] <= MAX_GROUP):
        raise ValueError(
            f"prepare: n_m must be a tuple of two ints (n, m) with 1 <= n <= m <= {MAX_GROUP}; "
            f"got {n_m!r}")

