"""Structured layouts of a prepared matrix: tile-wise and block sparsity as column-tile panels.

For ``X @ W`` with W (inputs x outputs) pruned in a structured way, ``prepare`` can store W as
*panels* (``include/spmm/formats/structured.hpp``): W's columns are cut into tiles of
``width`` outputs; in each tile, the kept input rows come in *units* of ``run`` consecutive
rows (1 for tile-wise sparsity, the block height for block sparsity) whose whole segment in
the tile is stored densely. The kernel then computes every tile as a gather of X's kept
columns and a small dense product, with no index per stored entry.

A layout *fits* a matrix when every segment it stores is fully stored in the matrix (no zero
fill): ``layout="auto"`` only picks a fitting one, so its products are exactly scipy's. A
declared layout (``layout="tile"`` or ``"block"``) that does not fit stores zeros where the
matrix stores nothing: the products are scipy's for finite X, but an inf or NaN of X at such
a position gives NaN, as a dense product would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np

from . import _precision, _spmm_ext
from ._operands import SIMD_ALIGNMENT, Csr, aligned_empty, read_only

LAYOUTS = ("auto", "csr", "tile", "block", "n_m")

# Tile widths (outputs per tile) auto and the declared layouts try, widest first: a wider tile
# reuses each gathered X value over more outputs. 16 floats is one AVX-512 register: narrower
# tiles would not fill the micro-kernel's vectors.
TILE_WIDTHS = (256, 128, 64, 32, 16)

# Block heights tried for the block layout, tallest first (a run of kept rows read with no
# index per row).
BLOCK_HEIGHTS = (64, 32, 16, 8, 4, 2)

# The declared layouts' parameters when nothing fits: the defaults of spmm.prune.
DEFAULT_TILE_WIDTH = 128
DEFAULT_BLOCK = (32, 32)

# A panel row is padded to a whole number of the widest register's lanes of the dtype the
# kernel computes in (one cache line of them: 16 float32 or 8 float64 lanes), so that the
# kernel's last vector of a tile never reads past the row. Reduced values are widened to
# float32 lanes: a row of 32 int8 weights takes 32 bytes, not a cache line of 64.
_ROW_ALIGN = SIMD_ALIGNMENT


_CONVERSION_LOCK = threading.Lock()


def _with_values_of(form: Panels | NmWeights, dtype: np.dtype) -> Panels | NmWeights:
    """``form`` with its values converted to ``dtype`` (aligned; made once and kept). A form
    of reduced values (``spmm._precision``) is used as it is: its products compute in float32.

    Under a lock: another thread may be reading the cache (``PreparedMatrix.stored_arrays``
    snapshots it) or converting the same form.
    """
    if form.values.dtype == dtype or form.reduced:
        return form
    with _CONVERSION_LOCK:
        if dtype not in form._by_dtype:
            values = aligned_empty(form.values.size, dtype).reshape(form.values.shape)
            values[...] = form.values
            form._by_dtype[dtype] = replace(form, values=read_only(values), _by_dtype={})
        return form._by_dtype[dtype]


@dataclass(frozen=True)
class Panels:
    """W in the column-tile layout: the arrays ``spmm._spmm_ext.panels_times_dense`` takes.

    Attributes
    ----------
    shape : (int, int)
        W's (inputs, outputs).
    width : int
        Outputs per tile (the last tile may be narrower).
    run : int
        Input rows per unit: 1 for the tile layout, the block height for the block layout.
    unit_ptr : ndarray of int64, (tiles + 1,)
        Tile t holds units ``unit_ptr[t]:unit_ptr[t+1]``.
    unit_row : ndarray of int32
        The first input row of each unit.
    values : ndarray, (units * run, ld)
        The panel rows, the array 64-byte aligned, each row padded with zeros to ``ld`` elements
        (whole float32 or float64 registers of the widest level, ``_ROW_ALIGN``): float32 or
        float64, or a reduced format (``spmm._precision``).
    fits : bool
        Whether every stored segment is fully stored in the matrix (no zero fill).
    scales : ndarray of float32, (outputs,), or None
        int8 values only: output j's products are scaled by ``scales[j]``.
    """

    shape: tuple[int, int]
    width: int
    run: int
    unit_ptr: np.ndarray
    unit_row: np.ndarray
    values: np.ndarray
    fits: bool
    _by_dtype: dict = field(default_factory=dict, compare=False, repr=False)
    scales: np.ndarray | None = field(default=None, compare=False)

    @property
    def layout(self) -> str:
        return "tile" if self.run == 1 else "block"

    @property
    def block(self) -> tuple[int, int]:
        """(run, width): the shape of a block, (1, width) for tile-wise sparsity."""
        return (self.run, self.width)

    @property
    def reduced(self) -> bool:
        return _precision.format_of(self.values) != "float32"

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for x in self.arrays())

    def arrays(self) -> tuple[np.ndarray, ...]:
        scales = () if self.scales is None else (self.scales,)
        return (self.unit_ptr, self.unit_row, self.values, *scales)

    def multiply_into(self, x: np.ndarray, y: np.ndarray,
                      codes: tuple[int, int, int, int, int, int]) -> None:
        """y = x @ W (2-D, see ``spmm._spmm_ext.panels_times_dense``; float32 x and y for
        reduced values); codes: kernel, backend, threads, partition, SIMD level, minimum work
        (``spmm._policy.Plan.codes``)."""
        rows, cols = self.shape
        if self.reduced:
            code = _precision.FORMAT_CODES[_precision.format_of(self.values)]
            _spmm_ext.reduced_panels_times_dense(rows, cols, self.width, self.run,
                                                 self.unit_ptr, self.unit_row, self.values,
                                                 code, self.scales, x, y, codes)
            return
        _spmm_ext.panels_times_dense(rows, cols, self.width, self.run, self.unit_ptr,
                                     self.unit_row, self.values, x, y, codes)

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every position the panels store inside the matrix (zero fill included): (input
        rows, output columns, stored values), in no particular order."""
        rows, cols = self.shape
        tiles = len(self.unit_ptr) - 1
        unit_tile = np.repeat(np.arange(tiles, dtype=np.int64), np.diff(self.unit_ptr))
        k = self.unit_row.astype(np.int64)[:, None] + np.arange(self.run)  # units x run
        c = unit_tile[:, None] * self.width + np.arange(self.width)  # units x width
        units = len(self.unit_row)
        v = self.values.reshape(units, self.run, -1)[:, :, :self.width]
        inside = (k < rows)[:, :, None] & (c < cols)[:, None, :]
        k3 = np.broadcast_to(k[:, :, None], inside.shape)
        c3 = np.broadcast_to(c[:, None, :], inside.shape)
        return k3[inside], c3[inside], v[inside]

    def astype(self, dtype: np.dtype) -> Panels:
        """The same panels with values of ``dtype`` (converted once and kept)."""
        return _with_values_of(self, dtype)


@dataclass(frozen=True)
class NmWeights:
    """W with N:M sparsity along its inputs, compressed: what ``nm_times_dense`` takes.

    Attributes
    ----------
    shape : (int, int)
        W's (inputs, outputs).
    n, m : int
        At most ``n`` kept weights in every group of ``m`` consecutive inputs of each output.
    values : ndarray, (chunks, groups * n, NM_CHUNK)
        For each chunk of NM_CHUNK output columns, row ``g * n + s``: the ``s``-th kept
        weight of group ``g`` of each column (zero where a column keeps fewer; the last chunk
        zero padded): one contiguous stream per chunk, 64-byte aligned. float32 or float64, or
        a reduced format (``spmm._precision``).
    offsets : ndarray of uint8, same shape
        The position of each of those weights inside its group.
    fits : bool
        Whether every slot holds a stored weight: every column keeps exactly ``n`` in every
        group, the last, shorter one included (a zero-filled slot multiplies a real row of X,
        so 0 x inf there would give NaN).
    scales : ndarray of float32, (outputs,), or None
        int8 values only: output j's products are scaled by ``scales[j]``.
    """

    shape: tuple[int, int]
    n: int
    m: int
    values: np.ndarray
    offsets: np.ndarray
    fits: bool
    _by_dtype: dict = field(default_factory=dict, compare=False, repr=False)
    scales: np.ndarray | None = field(default=None, compare=False)

    layout = "n_m"
    block = None

    @property
    def reduced(self) -> bool:
        return _precision.format_of(self.values) != "float32"

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for x in self.arrays())

    def arrays(self) -> tuple[np.ndarray, ...]:
        scales = () if self.scales is None else (self.scales,)
        return (self.values, self.offsets, *scales)

    def multiply_into(self, x: np.ndarray, y: np.ndarray,
                      codes: tuple[int, int, int, int, int, int]) -> None:
        """y = x @ W (2-D, see ``spmm._spmm_ext.nm_times_dense``); codes as for
        :meth:`Panels.multiply_into`."""
        rows, cols = self.shape
        if self.reduced:
            code = _precision.FORMAT_CODES[_precision.format_of(self.values)]
            _spmm_ext.reduced_nm_times_dense(rows, cols, self.n, self.m, self.values, code,
                                             self.scales, self.offsets, x, y, codes)
            return
        _spmm_ext.nm_times_dense(rows, cols, self.n, self.m, self.values, self.offsets, x, y,
                                 codes)

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every position the slots store inside the matrix: (input rows, output columns,
        stored values), each position once. A zero-filled slot (offset 0, value 0) that falls
        on a kept weight's position gives way to it; one that falls elsewhere stays a stored
        zero."""
        rows, cols = self.shape
        chunks, slots, chunk = self.values.shape
        group = np.arange(slots, dtype=np.int64) // max(self.n, 1)
        k = group[None, :, None] * self.m + self.offsets.astype(np.int64)
        c = np.broadcast_to(np.arange(chunks, dtype=np.int64)[:, None, None] * chunk
                            + np.arange(chunk), k.shape)
        inside = (k < rows) & (c < cols)
        k, c, v = k[inside], c[inside], self.values[inside]
        # Each position once: sorted by position, a kept (nonzero) value before a fill.
        order = np.lexsort((v == 0, k, c))
        k, c, v = k[order], c[order], v[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = (k[1:] != k[:-1]) | (c[1:] != c[:-1])
        return k[first], c[first], v[first]

    def astype(self, dtype: np.dtype) -> NmWeights:
        """The same weights with values of ``dtype`` (converted once and kept)."""
        return _with_values_of(self, dtype)


# Output columns per chunk of the N:M layout: a multiple of every vector length, and a chunk's
# values (groups * n rows of 256 bytes in float32) stay in L2 while every batch block reads them.
NM_CHUNK = 64

# Group sizes auto tries for N:M sparsity, smallest first (the most structure). Offsets are
# one byte, and the permute kernels hold a group in one register (16 floats with AVX-512).
NM_GROUPS = (4, 8, 16)

# N:M detection counts stored entries per (group, column): tried only on matrices dense
# enough to be N:M-pruned layers (at least 1 kept in 16) and of bounded count arrays.
_NM_MIN_DENSITY = 1 / 16
_NM_MAX_COUNTS = 2**26


def _group_counts(csr: Csr, row_of: np.ndarray, m: int) -> np.ndarray:
    """Stored entries per (group of m input rows, column): groups x cols."""
    rows, cols = csr.shape
    groups = -(-rows // m)
    key = (row_of // m) * cols + csr.indices.astype(np.int64)
    return np.bincount(key, minlength=groups * cols).reshape(groups, cols)


def _fitting_n_m(csr: Csr, row_of: np.ndarray) -> tuple[int, int] | None:
    """The (n, m) with the smallest m of NM_GROUPS for which every output column keeps exactly
    n < m weights in every group of m inputs (min(n, rows left) in a last, shorter group), and
    the form needs no zero fill: a last group shorter than n would leave slots whose zero
    meets a real row of X, where an inf or NaN gives NaN, not scipy's result."""
    rows, cols = csr.shape
    if rows * cols == 0 or csr.nnz < _NM_MIN_DENSITY * rows * cols:
        return None
    for m in NM_GROUPS:
        groups = -(-rows // m)
        if m > rows or groups * cols > _NM_MAX_COUNTS:
            continue
        counts = _group_counts(csr, row_of, m)
        n = int(counts.max())
        sizes = np.minimum(m, rows - np.arange(groups) * m)
        if n < m and sizes[-1] >= n and np.all(counts == np.minimum(n, sizes)[:, None]):
            return (n, m)
    return None


def build_n_m(csr: Csr, n: int, m: int) -> NmWeights:
    """``csr`` (W, canonical) compressed as N:M weights; a column keeping fewer than n in a
    group is zero filled. Raises ValueError if some group keeps more than n.

    A group of more than ``rows`` inputs is clamped to ``rows`` (and n to the group), which
    keeps the same weights: the memory then follows the matrix, not the declared group.
    """
    rows, cols = csr.shape
    m = max(1, min(m, rows))
    n = min(n, m)
    groups = -(-rows // m) if rows else 0
    row_of = _row_of_entries(csr)
    col_of = csr.indices.astype(np.int64)
    group_of = row_of // m
    key = group_of * cols + col_of
    order = np.argsort(key, kind="stable")  # by group and column, rows ascending (CSR order)
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(key) else key
    run_lengths = np.diff(np.r_[starts, len(key)])
    if len(run_lengths) and run_lengths.max() > n:
        worst = sorted_key[starts[np.argmax(run_lengths)]]
        raise ValueError(
            f"prepare: layout='n_m' with n_m=({n}, {m}): output column {worst % cols} keeps "
            f"{run_lengths.max()} weights in inputs {worst // cols * m}..."
            f"{min(rows, worst // cols * m + m) - 1}; at most {n} of every {m} are allowed")
    slot = np.empty(len(key), dtype=np.int64)
    slot[order] = np.arange(len(key)) - np.repeat(starts, run_lengths)
    chunks = -(-cols // NM_CHUNK)
    shape = (chunks, groups * n, NM_CHUNK)
    values = aligned_empty(int(np.prod(shape)), csr.data.dtype).reshape(shape)
    values[...] = 0
    offsets = np.zeros(shape, dtype=np.uint8)
    where = (col_of // NM_CHUNK, group_of * n + slot, col_of % NM_CHUNK)
    values[where] = csr.data
    offsets[where] = row_of - group_of * m
    fits = bool(csr.nnz == groups * n * cols)  # every slot a stored weight
    return NmWeights((rows, cols), n, m, read_only(values), read_only(offsets), fits)


def _row_of_entries(csr: Csr) -> np.ndarray:
    indptr = csr.indptr.astype(np.int64)
    return np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(indptr))


def _fits_width(col: np.ndarray, same_row_next: np.ndarray, cols: int, width: int) -> bool:
    """Whether the stored columns of every row (sorted) are whole tiles of ``width``: each
    entry that does not end its tile is followed, in its row, by the next column."""
    ends_tile = (col % width == width - 1) | (col == cols - 1)
    follows = np.zeros(len(col), dtype=bool)
    follows[:-1] = same_row_next & (col[1:] == col[:-1] + 1)
    starts_ok = np.ones(len(col), dtype=bool)
    starts_ok[1:] = (col[1:] % width == 0) | (same_row_next & (col[1:] == col[:-1] + 1))
    if len(col):
        starts_ok[0] = col[0] % width == 0
    return bool(np.all(ends_tile | follows) and np.all(starts_ok))


def _fitting_width(csr: Csr, row_of: np.ndarray) -> int | None:
    """The widest tile width whose (row, tile) segments are each fully stored or empty.

    Widths are powers of two, so a width fits only if every narrower one does: the narrowest
    is tried first, which rejects an unstructured matrix after one pass over its entries.
    """
    cols = csr.shape[1]
    col = csr.indices.astype(np.int64)
    same_row_next = row_of[1:] == row_of[:-1]
    best = None
    for width in sorted(w for w in TILE_WIDTHS if w <= cols):
        if not _fits_width(col, same_row_next, cols, width):
            break
        best = width
    return best


def _fitting_height(csr: Csr, row_of: np.ndarray, width: int) -> int:
    """The tallest block height h (or 1) such that, in every tile, the kept rows come in whole
    aligned groups of h (the last group may be shorter)."""
    rows = csr.shape[0]
    starts = csr.indices.astype(np.int64) % width == 0
    seg_row, seg_tile = row_of[starts], csr.indices.astype(np.int64)[starts] // width
    for h in BLOCK_HEIGHTS:
        if h > rows:
            continue
        groups = -(-rows // h)
        group = seg_row // h
        keys, counts = np.unique(seg_tile * groups + group, return_counts=True)
        sizes = np.minimum(h, rows - (keys % groups) * h)
        if np.all(counts == sizes):
            return h
    return 1


# Rows of the window detect() tries first: the tallest block, a multiple of the largest N:M
# group, so that the window's blocks and groups are the matrix's.
_PROBE_ROWS = 64


def _probe_window(csr: Csr) -> Csr | None:
    """The rows [r0, r0 + _PROBE_ROWS) of ``csr`` as a CSR of their own, r0 the first stored
    row rounded down to a multiple of _PROBE_ROWS; None when the window would pass the last row
    or hold more than half of the stored entries (then the full detection costs about as much).

    A layout that fits the matrix fits this window: its tiles are whole in every row, and its
    blocks and N:M groups are aligned to multiples of _PROBE_ROWS, so the window holds whole
    ones. So when nothing fits the window, nothing fits the matrix, and an unstructured matrix
    is rejected after looking at 64 rows instead of all its entries (the full detection took
    several times as long as the rest of ``prepare`` on an unstructured layer).
    """
    rows, cols = csr.shape
    indptr = csr.indptr
    first = int(np.searchsorted(indptr, 0, side="right")) - 1  # first row with an entry
    r0 = first // _PROBE_ROWS * _PROBE_ROWS
    r1 = r0 + _PROBE_ROWS
    if r1 > rows or int(indptr[r1]) > csr.nnz // 2:
        return None
    lo, hi = int(indptr[r0]), int(indptr[r1])
    return Csr(indptr[r0:r1 + 1] - indptr[r0], csr.indices[lo:hi], csr.data[lo:hi],
               (_PROBE_ROWS, cols))


def detect(csr: Csr) -> tuple[str, int, int]:
    """The structured layout that fits ``csr`` (canonical): ``("tile", 1, width)``,
    ``("block", height, width)``, ``("n_m", n, m)``, or ``("csr", 0, 0)`` when none does."""
    if csr.nnz == 0:
        return ("csr", 0, 0)
    window = _probe_window(csr)
    if window is not None and detect(window) == ("csr", 0, 0):
        return ("csr", 0, 0)
    row_of = _row_of_entries(csr)
    width = _fitting_width(csr, row_of)
    if width is not None:
        height = _fitting_height(csr, row_of, width)
        return ("tile", 1, width) if height == 1 else ("block", height, width)
    n_m = _fitting_n_m(csr, row_of)
    return ("csr", 0, 0) if n_m is None else ("n_m", *n_m)


def build(csr: Csr, run: int, width: int) -> Panels:
    """``csr`` (W, canonical, float32/float64 values) in the column-tile layout with units of
    ``run`` rows and tiles of ``width`` outputs; segments partly stored are zero filled.

    A tile wider than the matrix or a unit taller than it is clamped to the matrix: the same
    products, with panels sized by the matrix rather than by the declared shape (a 4 x 4
    matrix with tiles of 2**22 columns would otherwise hold 64 MiB of zeros).
    """
    rows, cols = csr.shape
    run, width = max(1, min(run, rows)), max(1, min(width, cols))
    tiles = -(-cols // width) if cols else 0
    groups = -(-rows // run) if rows else 0
    row_of = _row_of_entries(csr)
    col_of = csr.indices.astype(np.int64)
    tile_of = col_of // width
    group_of = row_of // run
    keys = tile_of * groups + group_of  # units in tile-major order, rows ascending
    units = np.unique(keys)
    unit_ptr = np.zeros(tiles + 1, dtype=np.int64)
    if tiles:
        np.cumsum(np.bincount(units // groups, minlength=tiles), out=unit_ptr[1:])
    unit_row = ((units % groups) * run).astype(np.int32) if groups else units.astype(np.int32)
    lane_bytes = 8 if csr.data.dtype == np.float64 else 4
    lanes = _ROW_ALIGN // lane_bytes
    ld = -(-width // lanes) * lanes
    values = aligned_empty(len(units) * run * ld, csr.data.dtype).reshape(len(units) * run, ld)
    values[...] = 0
    unit_of = np.searchsorted(units, keys)
    values[unit_of * run + (row_of - group_of * run), col_of - tile_of * width] = csr.data
    # It fits when the stored entries fill every unit's segments inside the matrix.
    stored_rows = np.minimum(run, rows - unit_row.astype(np.int64))
    tile_widths = np.minimum(width, cols - (units // groups) * width) if groups else units
    fits = bool(csr.nnz == int(np.sum(stored_rows * tile_widths)))
    return Panels((rows, cols), width, run, read_only(unit_ptr), read_only(unit_row),
                  read_only(values), fits)


def structured_form(csr: Csr, layout: str, tile: int | None, block: tuple[int, int] | None,
                    n_m: tuple[int, int] | None) -> Panels | NmWeights | None:
    """The structured form ``prepare(layout=...)`` stores for W = ``csr`` (canonical), or None
    for CSR.

    ``auto``: the fitting structure, if any; ``tile`` / ``block`` / ``n_m``: the given shape,
    else the fitting one, else the default (zero filled; N:M has no default: an error);
    ``csr``: None.
    """
    if layout == "csr" or csr.shape[0] >= 2**31:
        return None
    declared = {"tile": tile, "block": block, "n_m": n_m}.get(layout)
    kind, first, second = ("csr", 0, 0) if declared is not None else detect(csr)
    if layout == "auto":
        layout = kind
        if kind == "csr":
            return None
    if layout == "tile":
        width = tile if tile is not None else second if kind == "tile" else DEFAULT_TILE_WIDTH
        return build(csr, 1, int(width))
    if layout == "block":
        if block is None:
            block = (first, second) if kind == "block" else DEFAULT_BLOCK
        return build(csr, int(block[0]), int(block[1]))
    if n_m is None:
        if kind != "n_m":
            raise ValueError(
                "prepare: layout='n_m' needs n_m=(n, m): the matrix is not N:M sparse for any "
                f"group size of {NM_GROUPS} (every output keeping the same n < m weights in "
                "every group of m inputs)")
        n_m = (first, second)
    return build_n_m(csr, int(n_m[0]), int(n_m[1]))


def transposed_csr(form: Panels | NmWeights) -> Csr:
    """The CSR arrays of Wᵀ (rows: W's outputs) holding every position ``form`` stores, its
    values as they are stored (a reduced format's included) and its int8 scales: the inverse of
    building the form from them. Canonical: sorted, each position once. int64 pointers and
    indices (``spmm._prepared.compressed`` narrows them)."""
    rows, cols = form.shape
    k, c, v = form.positions()
    order = np.lexsort((k, c))
    indptr = np.zeros(cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(c, minlength=cols), out=indptr[1:])
    return Csr(indptr, k[order], np.ascontiguousarray(v[order]), (cols, rows),
               scales=form.scales)
