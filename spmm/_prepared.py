"""``prepare``: a sparse matrix converted once for many products."""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

from ._operands import Csr, check_sparse, result_dtype, to_csr

# Column indices fit in 16 bits up to this many columns: half the index bytes of int32, which
# the narrow (bandwidth-bound) products stream with every stored entry.
MAX_COLUMNS_16BIT = 2**16


def compressed(csr: Csr) -> Csr:
    """``csr`` (canonical, validated) in the prepared layout, owning its arrays.

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
    return Csr(csr.indptr.astype(offset_dtype), csr.indices.astype(index_dtype),
               csr.data, csr.shape, {})  # data: already a copy of our own


class PreparedMatrix:
    """A sparse matrix converted once, for many products with dense operands.

    Created by :func:`spmm.prepare`. It owns its arrays: later changes to the matrix it was
    made from are not seen. It supports ``p @ x``, ``x @ p`` and ``spmm.multiply(p, x)`` /
    ``spmm.multiply(x, p)`` with the same results as scipy.

    The CSR form (for ``p @ x``) is built by ``prepare``; the CSR form of the transpose (for
    ``x @ p``) is built on first use and kept.

    Attributes
    ----------
    shape : tuple of int
        ``(rows, columns)``.
    dtype : numpy.dtype
        float32 or float64: the dtype of the stored values.
    nnz : int
        Number of stored entries (duplicates summed).
    nbytes : int
        Memory held by the arrays of every form built so far, in bytes.
    """

    # Make numpy defer ``ndarray @ PreparedMatrix`` to ``__rmatmul__``.
    __array_ufunc__ = None

    def __init__(self, csr: Csr) -> None:
        self._csr = csr
        self._csr_t: Csr | None = None
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self._csr.shape

    @property
    def dtype(self) -> np.dtype:
        return self._csr.data.dtype

    @property
    def nnz(self) -> int:
        return self._csr.nnz

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for x in self.stored_arrays())

    def __getstate__(self) -> dict:
        # A lock cannot be pickled: drop it, and make a new one on unpickling.
        return {"csr": self._csr, "csr_t": self._csr_t}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["csr"])
        self._csr_t = state["csr_t"]

    def stored_arrays(self) -> list[np.ndarray]:
        """The arrays of every form built so far (``out=`` must not overlap them)."""
        forms = [self._csr] + ([self._csr_t] if self._csr_t is not None else [])
        return [x for f in forms for x in (f.indptr, f.indices, f.data)]

    def csr(self, dtype: np.dtype) -> Csr:
        """CSR arrays of the matrix with values of ``dtype`` (for ``p @ x``)."""
        return self._csr.astype(dtype)

    def csr_transposed(self, dtype: np.dtype) -> Csr:
        """CSR arrays of the transpose with values of ``dtype`` (for ``x @ p``)."""
        with self._lock:
            if self._csr_t is None:
                self._csr_t = compressed(to_csr(self.to_scipy(), self.dtype, transpose=True))
        return self._csr_t.astype(dtype)

    def to_scipy(self) -> sp.csr_array:
        """The matrix as a scipy ``csr_array``.

        It shares this matrix's values (do not modify them); 16-bit indices are widened to
        int32, as scipy needs.
        """
        c = self._csr
        indptr, indices = c.indptr, c.indices
        if indices.dtype == np.uint16:
            index_dtype = np.int32 if c.nnz < 2**31 else np.int64
            indptr, indices = indptr.astype(index_dtype), indices.astype(index_dtype)
        return sp.csr_array((c.data, indices, indptr), shape=c.shape)

    def footprint(self) -> dict[str, int]:
        """Bytes of this matrix next to the forms it replaces.

        Returns
        -------
        dict
            ``"prepared"``: :attr:`nbytes` (every form built so far); ``"scipy_csr"``: the
            same matrix as a scipy CSR matrix (int32 indices when they fit, as scipy stores
            them); ``"dense"``: as a dense array of the same dtype.
        """
        rows, cols = self.shape
        index_bytes = 4 if max(rows, cols, self.nnz) < 2**31 else 8
        itemsize = self.dtype.itemsize
        return {
            "prepared": self.nbytes,
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
        from ._api import multiply

        return multiply(self, other)

    def __rmatmul__(self, other: object) -> np.ndarray:
        if sp.issparse(other) or isinstance(other, PreparedMatrix):
            return NotImplemented
        from ._api import multiply

        return multiply(other, self)

    def __repr__(self) -> str:
        return (
            f"<PreparedMatrix {self.shape[0]}x{self.shape[1]}, {self.nnz} stored "
            f"{self.dtype} entries, {self.nbytes} bytes>"
        )


def prepare(a: sp.spmatrix | sp.sparray) -> PreparedMatrix:
    """Convert a sparse matrix once for many products.

    Parameters
    ----------
    a : scipy.sparse matrix or array, 2-D, any format
        The matrix, typically pruned weights used at every inference step. Its values are
        stored as float32 when they are float16/float32, else as float64.

    Returns
    -------
    PreparedMatrix
        A copy of ``a`` in canonical CSR form (sorted indices, duplicates summed, 16-bit column
        indices when ``a`` has at most 65,536 columns, else int32 when the shape and nnz allow,
        whatever ``a`` used), with its structure validated once, and the partition of its
        rows among the configured number of threads computed.

    Raises
    ------
    TypeError
        If ``a`` is not a 2-D scipy.sparse matrix/array, or has a complex or object dtype.
    ValueError
        If its structure is corrupt.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, spmm
    >>> w = sp.random_array((1024, 256), density=0.1, format="csr", dtype=np.float32, rng=0)
    >>> p = spmm.prepare(w)
    >>> x = np.ones((8, 1024), dtype=np.float32)
    >>> np.allclose(x @ p, x @ w, rtol=1e-5)
    True
    """
    check_sparse(a, "prepare")
    dtype = result_dtype(a.dtype, np.dtype(np.float32), "prepare")
    csr = to_csr(a, dtype)
    # Own the arrays (never the caller's), in canonical form: sorted, no duplicates, with
    # int32 indices whenever every index and offset fits (half the index bytes to stream).
    index_dtype = np.int32 if max(*csr.shape, csr.nnz) < 2**31 else np.int64
    owned = sp.csr_array((csr.data.copy(), csr.indices.astype(index_dtype),
                          csr.indptr.astype(index_dtype)), shape=csr.shape)
    owned.sum_duplicates()
    prepared = PreparedMatrix(compressed(to_csr(owned, dtype)))
    _partition_for_default_threads(prepared._csr)
    return prepared


def _partition_for_default_threads(csr: Csr) -> None:
    """Compute the nnz-balanced slices for the configured thread count ahead of any product.

    Other thread counts and partitions are computed on first use and kept as well. An invalid
    ``SPMM_*`` variable is reported by the first product, not here.
    """
    from . import _config
    from ._api import _PARTITION_CODES, DEFAULT_PARTITION

    try:
        threads = _config.resolve()["num_threads"]
    except ValueError:
        return
    if threads > 1:
        csr.slice_bounds(threads, _PARTITION_CODES[DEFAULT_PARTITION])
