"""``prepare(activations=...)``: the grouped rows the dot-product kernels read.

With activations, every product rounds the dense operand to the stored values' format and the
CPU's dot-product instruction multiplies (``include/spmm/kernels/dot.hpp``): ``vdpbf16ps``
takes pairs of bfloat16 values, ``vpdpbusd`` quads of int8 values. The stored entries of each
output are grouped accordingly, once, here: group ``b`` of an output holds its weights at the
positions ``[b G, b G + G)`` of the contracted dimension (``G`` = 2 or 4), a zero where it
stores none, packed in one 32-bit word (lowest position in the lowest bits). The dense operand
is packed the same way at each call, so a group's dense values are one aligned 32-bit word per
dense vector.

int8 rows also carry their correction: ``vpdpbusd`` multiplies unsigned by signed bytes, so
the dense values are stored as ``q + 128`` and ``128 * sum(w)`` (modulo 2**32) is subtracted
from each integer sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _precision
from ._operands import Csr, read_only

#: Positions of the contracted dimension per group, by activations format.
GROUP = {"bfloat16": 2, "int8": 4}

#: The most stored weights an output may have with int8 activations: the integer sum is then
#: exact in int32 (127 * 127 * 133143 < 2**31). Mirrors kMaxInt8Entries in kernels/dot.hpp.
MAX_INT8_ENTRIES = 133143


@dataclass(frozen=True)
class Grouped:
    """The grouped rows of a CSR form of reduced values (``rows`` outputs, contracted over
    ``cols``): ``ptr`` (rows + 1, int64) into the groups, each group's ``block`` (int32: it
    covers positions ``[block * G, block * G + G)``) and packed ``words`` (uint32); for int8
    the rows' ``scales`` (float32) and ``correction`` (int32)."""

    ptr: np.ndarray
    block: np.ndarray
    words: np.ndarray
    scales: np.ndarray | None
    correction: np.ndarray | None
    shape: tuple[int, int]

    def arrays(self) -> list[np.ndarray]:
        """Every array held (for ``nbytes``)."""
        return [x for x in (self.ptr, self.block, self.words, self.scales, self.correction)
                if x is not None]


def grouped(csr: Csr, fmt: str) -> Grouped:
    """The grouped rows of ``csr`` (canonical: column indices increasing within each row; its
    values stored in ``fmt``, ``"bfloat16"`` or ``"int8"``, int8 with one scale per row).

    Raises ValueError for int8 when an output stores more than :data:`MAX_INT8_ENTRIES`
    weights (its integer sum could overflow int32).
    """
    g = GROUP[fmt]
    rows, cols = csr.shape
    counts = np.diff(csr.indptr.astype(np.int64))
    if fmt == "int8" and counts.size and counts.max() > MAX_INT8_ENTRIES:
        row = int(np.argmax(counts))
        raise ValueError(
            f"prepare: activations='int8' allows at most {MAX_INT8_ENTRIES} stored weights "
            f"per output (its integer sum must fit int32); output {row} stores "
            f"{int(counts[row])}")
    row_of = np.repeat(np.arange(rows, dtype=np.int64), counts)
    position = csr.indices.astype(np.int64)
    block = position // g
    # Entries are sorted by (row, position), so a new group starts where (row, block) changes.
    starts = np.ones(len(block), dtype=bool)
    if len(block):
        starts[1:] = (row_of[1:] != row_of[:-1]) | (block[1:] != block[:-1])
    group_of = np.cumsum(starts) - 1
    groups = int(starts.sum())
    lanes = np.zeros((groups, g), dtype=_precision.STORAGE[fmt])
    lanes[group_of, position % g] = csr.data
    words = lanes.view(np.uint32).reshape(groups) if groups else np.zeros(0, np.uint32)
    per_row = np.bincount(row_of[starts], minlength=rows) if groups else np.zeros(rows, np.int64)
    ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(per_row, out=ptr[1:])
    scales = correction = None
    if fmt == "int8":
        sums = np.zeros(rows, dtype=np.int64)
        np.add.at(sums, row_of, csr.data.astype(np.int64))
        correction = read_only(((128 * sums) & 0xFFFFFFFF).astype(np.uint32).view(np.int32))
        scales = read_only(np.ascontiguousarray(csr.scales, dtype=np.float32))
    return Grouped(read_only(ptr), read_only(block[starts].astype(np.int32)),
                   read_only(np.ascontiguousarray(words, dtype=np.uint32)), scales, correction,
                   (rows, cols))
