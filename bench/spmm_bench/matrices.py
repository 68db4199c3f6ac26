"""Seeded sparse matrices with the patterns the suites measure.

Every generator takes a ``numpy.random.Generator`` and returns a scipy ``csr_array`` with sorted
indices, no duplicates, int32 indices and float64 values (callers cast to the benchmark dtype),
so one seed gives one structure for both float32 and float64 runs.
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.sparse as sp


def seed_for(*parts: object) -> int:
    """A stable 32-bit seed from a workload's description (the same on every machine)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def allocate(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights``, none above ``cap``.

    Water-filling: bins whose share would exceed ``cap`` get ``cap`` and the rest is shared
    among the others; the units lost to rounding go to the largest remainders.
    """
    w = np.asarray(weights, dtype=np.float64)
    if total > cap * len(w):
        raise ValueError(f"cannot place {total} entries in {len(w)} bins of at most {cap}")
    shares = np.zeros(len(w))
    free = np.ones(len(w), dtype=bool)
    while True:
        remaining = total - cap * np.count_nonzero(~free)
        share = w[free] * (remaining / w[free].sum())
        over = share > cap
        if not over.any():
            shares[free] = share
            break
        capped = np.flatnonzero(free)[over]
        shares[capped] = cap
        free[capped] = False
    counts = np.floor(shares).astype(np.int64)
    missing = int(total - counts.sum())
    # Capped bins have no remainder, so they are never topped up past the cap.
    counts[np.argsort(counts - shares, kind="stable")[:missing]] += 1
    return counts


def _from_flat(flat: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> sp.csr_array:
    """CSR of the entries at sorted flat positions ``flat``, with standard normal values."""
    m, n = shape
    rows, cols = np.divmod(flat, n)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    values = rng.standard_normal(len(flat))
    return _csr(values, cols, indptr, shape)


def _csr(values: np.ndarray, cols: np.ndarray, indptr: np.ndarray,
         shape: tuple[int, int]) -> sp.csr_array:
    index = np.int32 if max(shape) < 2**31 and len(values) < 2**31 else np.int64
    return sp.csr_array((values, cols.astype(index), indptr.astype(index)), shape=shape)


def uniform(rng: np.random.Generator, shape: tuple[int, int], nnz: int) -> sp.csr_array:
    """``nnz`` entries at positions drawn uniformly without replacement (as scipy's
    ``random_array``), standard normal values."""
    m, n = shape
    flat = rng.choice(m * n, size=nnz, replace=False, shuffle=False)
    flat.sort()
    return _from_flat(flat, shape, rng)


def stratified_rows(rng: np.random.Generator, shape: tuple[int, int], per_row: int) -> sp.csr_array:
    """Every row with ``per_row`` entries, one drawn uniformly in each of ``per_row`` equal
    bands of columns: sorted and distinct without a sort, so that matrices of 10^8 entries are
    generated in seconds (the bandwidth workload). Standard normal values."""
    m, n = shape
    band = n // per_row
    cols = (np.arange(per_row, dtype=np.int64) * band
            + rng.integers(0, band, size=(m, per_row), dtype=np.int64)).ravel()
    indptr = np.arange(0, m * per_row + 1, per_row, dtype=np.int64)
    return _csr(rng.standard_normal(m * per_row), cols, indptr, shape)


def with_row_lengths(rng: np.random.Generator, row_lengths: np.ndarray, ncols: int) -> sp.csr_array:
    """Rows of the given lengths, columns uniform without replacement within each row.

    Short rows draw their columns all at once and redraw duplicates until none remain; rows
    longer than ``ncols / 16`` (where redrawing would converge slowly) sample theirs directly.
    """
    lengths = np.asarray(row_lengths, dtype=np.int64)
    m = len(lengths)
    long_rows = np.flatnonzero(lengths > ncols // 16)
    short = lengths.copy()
    short[long_rows] = 0
    rows = np.repeat(np.arange(m), short)
    cols = rng.integers(0, ncols, size=len(rows))
    while True:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        dup = np.zeros(len(rows), dtype=bool)
        dup[1:] = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
        count = int(np.count_nonzero(dup))
        if count == 0:
            break
        cols[dup] = rng.integers(0, ncols, size=count)
    if len(long_rows):
        extra_rows = [np.full(lengths[i], i) for i in long_rows]
        extra_cols = [np.sort(rng.choice(ncols, size=lengths[i], replace=False))
                      for i in long_rows]
        rows = np.concatenate([rows, *extra_rows])
        cols = np.concatenate([cols, *extra_cols])
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return _csr(rng.standard_normal(len(cols)), cols, indptr, (m, ncols))


def power_law_lengths(m: int, nnz: int, ncols: int, exponent: float = 0.8) -> np.ndarray:
    """Row lengths proportional to ``rank ** -exponent``, decreasing, summing to ``nnz``.

    Rows come sorted by decreasing length, as in a degree-ordered graph: the case where giving
    each thread the same number of rows is the most unbalanced. With 2^17 rows, 16 per row on
    average and the default exponent, the first row holds about 43 000 entries, the median
    row 6, and the first half of the rows 86 % of the entries.
    """
    weights = np.arange(1, m + 1, dtype=np.float64) ** -exponent
    return allocate(weights, nnz, ncols)


def pruned(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
           skew: float = 0.75) -> sp.csr_array:
    """A weight matrix W (in x out) that looks magnitude-pruned, with ``nnz`` kept weights.

    Dense weights are drawn standard normal. Each output unit (a column of W, i.e. a row of
    PyTorch's ``Linear.weight``) gets its own keep rate, drawn from a log-normal distribution
    of shape ``skew`` (a few units keep many weights, most keep few, as layer-wise magnitude
    pruning leaves them); within each column the largest-magnitude weights are kept.
    """
    n_in, n_out = shape
    dense = rng.standard_normal(shape)
    rates = rng.lognormal(mean=0.0, sigma=skew, size=n_out)
    keep = allocate(rates, nnz, n_in)
    magnitude = np.abs(dense)
    ordered = np.sort(magnitude, axis=0)  # ascending per column
    # The k_j largest of column j are those at or above its (n_in - k_j)-th smallest value.
    thresholds = np.where(keep > 0, ordered[np.clip(n_in - keep, 0, n_in - 1),
                                            np.arange(n_out)], np.inf)
    mask = magnitude >= thresholds
    return sp.csr_array(np.where(mask, dense, 0.0)).astype(np.float64)


def block_sparse(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
                 block: int = 32) -> sp.csr_array:
    """Zeros in whole ``block`` x ``block`` tiles: the tiles of largest L2 norm are kept.

    ``nnz`` is rounded to the nearest whole number of tiles.
    """
    m, n = shape
    dense = rng.standard_normal(shape)
    tiles = dense.reshape(m // block, block, n // block, block)
    norms = np.sqrt((tiles**2).sum(axis=(1, 3)))
    kept = round(nnz / block**2)
    threshold = np.sort(norms, axis=None)[norms.size - kept]
    keep_tile = norms >= threshold
    mask = np.repeat(np.repeat(keep_tile, block, axis=0), block, axis=1)
    return sp.csr_array(np.where(mask, dense, 0.0))


def n_of_m(rng: np.random.Generator, shape: tuple[int, int], n: int, m: int) -> sp.csr_array:
    """N:M sparsity along the inputs (the rows of W, in x out): in every group of ``m``
    consecutive rows, each column keeps its ``n`` weights of largest magnitude."""
    rows, cols = shape
    dense = rng.standard_normal(shape)
    groups = dense[: rows // m * m].reshape(rows // m, m, cols)
    order = np.argsort(-np.abs(groups), axis=1, kind="stable")
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n, :], True, axis=1)
    mask = np.zeros(shape, dtype=bool)
    mask[: rows // m * m] = keep.reshape(-1, cols)
    return sp.csr_array(np.where(mask, dense, 0.0))


def tile_wise(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
              width: int = 128) -> sp.csr_array:
    """Tile-wise sparsity: columns cut into tiles of ``width``, whole rows pruned in each tile.

    Within each column tile of W (in x out), the row segments of largest L2 norm are kept,
    so every tile is a dense product over a subset of the inputs. The kept segments are spread
    evenly over the tiles; ``nnz`` is rounded to whole segments.
    """
    m, n = shape
    dense = rng.standard_normal(shape)
    n_tiles = n // width
    segments = dense.reshape(m, n_tiles, width)
    norms = np.sqrt((segments**2).sum(axis=2))  # m x n_tiles
    per_tile = allocate(np.ones(n_tiles), round(nnz / width), m)
    ordered = np.sort(norms, axis=0)
    thresholds = np.where(per_tile > 0,
                          ordered[np.clip(m - per_tile, 0, m - 1), np.arange(n_tiles)], np.inf)
    keep = norms >= thresholds  # m x n_tiles
    mask = np.repeat(keep, width, axis=1)
    return sp.csr_array(np.where(mask, dense, 0.0))
