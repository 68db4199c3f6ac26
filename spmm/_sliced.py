"""The one-column layout of a prepared matrix: ``x @ p`` with one row of ``x``.

A batch-1 product reads every stored entry once for one multiply-add: it is bound by the
per-row costs of a CSR row-dot (a masked tail, a horizontal sum and a data-dependent exit per
row) on layers that stay in cache, and by the bytes it streams on larger ones. The *sliced*
layout (``include/spmm/formats/sliced.hpp``) removes the per-row costs: the rows of Wᵀ are
sorted by length, longest first, cut into slices of :data:`SLICE_ROWS`, and each slice is
stored column by column, so the kernel runs one gather and one multiply-add per column of
:data:`SLICE_ROWS` rows and scatters the slice's sums to their rows once. The short last
columns of a slice are stored as they are, not padded: the layout holds exactly the CSR's
entries plus a position and a length per row and an offset per slice.

A prepared matrix builds it on its first batch-1 product from the CSR form of the transpose
(the form it replaces for that product), keeps it (counted in ``nbytes``) and never pickles
it: an unpickled matrix builds it again from its checked canonical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _spmm_ext
from ._operands import Csr, aligned_empty, read_only

#: Rows per slice (``kSliceRows`` of ``include/spmm/formats/sliced.hpp``).
SLICE_ROWS = 16

#: Rows beyond which the layout is not built (its positions are int32).
MAX_ROWS = 2**31 - 1


@dataclass(frozen=True)
class Sliced:
    """The sliced form of a CSR matrix (rows x cols): ``slice_ptr`` (int64, slices + 1: each
    slice's first entry), ``lens`` and ``perm`` (int32, per sorted position: the row's length
    and the row), ``indices`` and ``values`` (the entries, slice by slice, column by column
    within a slice; index and value types as the CSR's), ``scales`` (int8 values: the CSR's,
    per row in the rows' own order; else None)."""

    slice_ptr: np.ndarray
    lens: np.ndarray
    perm: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    scales: np.ndarray | None
    shape: tuple[int, int]

    @classmethod
    def from_csr(cls, csr: Csr) -> Sliced:
        """The sliced form of ``csr`` (a prepared matrix's CSR form: trusted, canonical)."""
        rows = csr.shape[0]
        lengths = np.diff(csr.indptr).astype(np.int32)
        # Longest first; a stable sort keeps rows of one length in their order, so a slice's
        # rows (and the results it scatters) stay close together when lengths repeat.
        perm = np.argsort(-lengths, kind="stable").astype(np.int32)
        lens = lengths[perm]
        per_slice = np.add.reduceat(lens.astype(np.int64), np.arange(0, rows, SLICE_ROWS)) \
            if rows else np.zeros(0, np.int64)
        slice_ptr = np.zeros(len(per_slice) + 1, np.int64)
        np.cumsum(per_slice, out=slice_ptr[1:])
        indices = aligned_empty(csr.nnz, csr.indices.dtype)
        values = aligned_empty(csr.nnz, csr.data.dtype)
        _spmm_ext.build_sliced(csr.indptr, csr.indices[:csr.nnz], csr.data[:csr.nnz], perm,
                               lens, slice_ptr, indices, values)
        return cls(read_only(slice_ptr), read_only(lens), read_only(perm), read_only(indices),
                   read_only(values), csr.scales, csr.shape)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays this form holds of its own (the scales are the CSR form's)."""
        return (self.slice_ptr, self.lens, self.perm, self.indices, self.values)

    def multiply_into(self, x: np.ndarray, out: np.ndarray, format_code: int,
                      codes: tuple[int, int, int, int, int, int]) -> np.ndarray:
        """Write ``x @ W`` into ``out`` for this form of Wᵀ (outputs x inputs): ``x`` one
        row (1-D, or 2-D with one row), ``out`` likewise; ``format_code`` the values' format
        (0: the product's dtype), ``codes`` the plan's."""
        rows, cols = self.shape
        _spmm_ext.sliced_product(self.slice_ptr, self.lens, self.perm, self.indices,
                                 self.values, format_code, self.scales, rows, cols, x, out,
                                 True, codes)
        return out
