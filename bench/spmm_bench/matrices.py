"""Seeded sparse matrices with the patterns the suites measure, and the run's operand store.

Every generator returns a scipy ``csr_array`` with sorted indices, no duplicates, int32
indices and float64 values (cast to the benchmark dtype when stored), so one seed gives one
structure for both float32 and float64.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from .suites import MatrixSpec, Workload


def seed_for(*parts: object) -> int:
    """A stable 32-bit seed from a description (the same on every machine)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def allocate(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights``, none above ``cap``
    (water-filling; the units lost to rounding go to the largest remainders)."""
    w = np.asarray(weights, dtype=np.float64)
    if total > cap * len(w):
        raise ValueError(f"cannot place {total} entries in {len(w)} bins of at most {cap}")
    shares, free = np.zeros(len(w)), np.ones(len(w), dtype=bool)
    while True:
        share = w[free] * ((total - cap * np.count_nonzero(~free)) / w[free].sum())
        if not (share > cap).any():
            shares[free] = share
            break
        capped = np.flatnonzero(free)[share > cap]
        shares[capped], free[capped] = cap, False
    counts = np.floor(shares).astype(np.int64)
    counts[np.argsort(counts - shares, kind="stable")[:int(total - counts.sum())]] += 1
    return counts


def _csr(values: np.ndarray, cols: np.ndarray, indptr: np.ndarray,
         shape: tuple[int, int]) -> sp.csr_array:
    index = np.int32 if max(shape) < 2**31 and len(values) < 2**31 else np.int64
    return sp.csr_array((values, cols.astype(index), indptr.astype(index)), shape=shape)


def _masked(dense: np.ndarray, mask: np.ndarray) -> sp.csr_array:
    return sp.csr_array(np.where(mask, dense, 0.0))


def uniform(rng: np.random.Generator, shape: tuple[int, int], nnz: int) -> sp.csr_array:
    """``nnz`` positions drawn uniformly without replacement, standard normal values."""
    flat = np.sort(rng.choice(shape[0] * shape[1], size=nnz, replace=False, shuffle=False))
    rows, cols = np.divmod(flat, shape[1])
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
    return _csr(rng.standard_normal(nnz), cols, indptr, shape)


def stratified_rows(rng: np.random.Generator, shape: tuple[int, int],
                    per_row: int) -> sp.csr_array:
    """``per_row`` entries in every row, one in each of ``per_row`` equal bands of columns:
    sorted and distinct without a sort, so 10^8 entries take seconds."""
    m, n = shape
    band = n // per_row
    cols = (np.arange(per_row) * band + rng.integers(0, band, size=(m, per_row))).ravel()
    indptr = np.arange(0, m * per_row + 1, per_row, dtype=np.int64)
    return _csr(rng.standard_normal(m * per_row), cols, indptr, shape)


def with_row_lengths(rng: np.random.Generator, lengths: np.ndarray,
                     ncols: int) -> sp.csr_array:
    """Rows of the given lengths, columns uniform without replacement within each row
    (short rows redraw duplicates; rows longer than ncols / 16 sample theirs directly)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    long_rows = np.flatnonzero(lengths > ncols // 16)
    short = lengths.copy()
    short[long_rows] = 0
    rows = np.repeat(np.arange(len(lengths)), short)
    cols = rng.integers(0, ncols, size=len(rows))
    while True:
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        dup = np.zeros(len(rows), dtype=bool)
        dup[1:] = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
        if not dup.any():
            break
        cols[dup] = rng.integers(0, ncols, size=int(dup.sum()))
    for i in long_rows:
        rows = np.concatenate([rows, np.full(lengths[i], i)])
        cols = np.concatenate([cols, rng.choice(ncols, size=lengths[i], replace=False)])
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return _csr(rng.standard_normal(len(cols)), cols[order], indptr, (len(lengths), ncols))


def power_law_lengths(m: int, nnz: int, ncols: int, exponent: float = 0.8) -> np.ndarray:
    """Row lengths proportional to ``rank ** -exponent``, decreasing, summing to ``nnz``: a
    degree-ordered graph. With 2^17 rows of 16 on average, the first row holds about 43 000
    entries, the median row 6, and the first half of the rows 86 % of the entries."""
    return allocate(np.arange(1, m + 1, dtype=np.float64) ** -exponent, nnz, ncols)


def pruned(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
           skew: float = 0.75) -> sp.csr_array:
    """Weights W (in x out) that look magnitude-pruned: each output unit (a column) keeps
    its own log-normally distributed share of ``nnz``, its largest-magnitude weights."""
    n_in, n_out = shape
    dense = rng.standard_normal(shape)
    keep = allocate(rng.lognormal(0.0, skew, size=n_out), nnz, n_in)
    ordered = np.sort(np.abs(dense), axis=0)
    thresholds = np.where(keep > 0, ordered[np.clip(n_in - keep, 0, n_in - 1),
                                            np.arange(n_out)], np.inf)
    return _masked(dense, np.abs(dense) >= thresholds)


def block_sparse(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
                 block: int) -> sp.csr_array:
    """Whole ``block`` x ``block`` tiles kept, those of largest L2 norm; nnz rounded to
    whole tiles."""
    m, n = shape
    dense = rng.standard_normal(shape)
    norms = np.sqrt((dense.reshape(m // block, block, n // block, block) ** 2).sum(axis=(1, 3)))
    keep = norms >= np.sort(norms, axis=None)[norms.size - round(nnz / block**2)]
    return _masked(dense, np.kron(keep, np.ones((block, block), dtype=bool)))


def n_of_m(rng: np.random.Generator, shape: tuple[int, int], n: int, m: int) -> sp.csr_array:
    """N:M along the inputs (rows of W): in every group of ``m`` rows, each column keeps
    its ``n`` largest-magnitude weights."""
    rows, cols = shape
    dense = rng.standard_normal(shape)
    groups = dense[: rows // m * m].reshape(rows // m, m, cols)
    order = np.argsort(-np.abs(groups), axis=1, kind="stable")
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n, :], True, axis=1)
    mask = np.zeros(shape, dtype=bool)
    mask[: rows // m * m] = keep.reshape(-1, cols)
    return _masked(dense, mask)


def tile_wise(rng: np.random.Generator, shape: tuple[int, int], nnz: int,
              width: int) -> sp.csr_array:
    """Columns cut into tiles of ``width``; in each tile the row segments of largest norm
    are kept whole, spread evenly over the tiles; nnz rounded to whole segments."""
    m, n = shape
    dense = rng.standard_normal(shape)
    norms = np.sqrt((dense.reshape(m, n // width, width) ** 2).sum(axis=2))
    per_tile = allocate(np.ones(n // width), round(nnz / width), m)
    ordered = np.sort(norms, axis=0)
    thresholds = np.where(per_tile > 0, ordered[np.clip(m - per_tile, 0, m - 1),
                                                np.arange(n // width)], np.inf)
    return _masked(dense, np.repeat(norms >= thresholds, width, axis=1))


def generate(spec: MatrixSpec) -> sp.csr_array:
    """The sparse operand described by ``spec``, float64 values, from its own seed."""
    if spec.family == "file":
        return read_matrix_market(spec.path)
    rng = np.random.default_rng(seed_for(spec.id))
    rows, cols = spec.shape
    nnz = round((1 - spec.sparsity) * rows * cols)
    name, size = re.fullmatch(r"([a-z]+?)(\d*)", spec.pattern).groups()
    makers = {"uniform": lambda: uniform(rng, spec.shape, nnz),
              "pruned": lambda: pruned(rng, spec.shape, nnz),
              "powerlaw": lambda: with_row_lengths(
                  rng, power_law_lengths(rows, nnz, cols), cols),
              "rows": lambda: stratified_rows(rng, spec.shape, int(size)),
              "block": lambda: block_sparse(rng, spec.shape, nnz, int(size)),
              "tilewise": lambda: tile_wise(rng, spec.shape, nnz, int(size)),
              "nm": lambda: n_of_m(rng, spec.shape, round(int(size) * (1 - spec.sparsity)),
                                   int(size))}
    if name not in makers:
        raise ValueError(f"unknown pattern {spec.pattern!r}; expected uniform, pruned, "
                         "powerlaw, rows<k>, block<k>, tilewise<w> or nm<m>")
    return makers[name]()


def read_matrix_market(path: str) -> sp.csr_array:
    """A Matrix Market file as a canonical CSR array with float64 values."""
    m = scipy.io.mmread(path)
    if np.iscomplexobj(m):
        raise ValueError(f"{path}: complex matrices are not supported (spmm computes in reals)")
    a = sp.csr_array(m, dtype=np.float64)
    a.sum_duplicates()
    a.sort_indices()
    return a


class Store:
    """The run's operands and scipy's reference results, as files under ``root``: generated
    once by the parent, loaded by every worker, so all libraries see the same bytes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, name: str, ext: str) -> Path:
        return self.root / f"{kind}__{name.replace('/', '__')}.{ext}"

    def prepare(self, workloads: list[Workload], log: Any = None) -> dict[str, dict]:
        """Generate and save every operand; return each matrix's nnz, shape and index dtype
        (the structured patterns round nnz to whole tiles)."""
        facts: dict[str, dict] = {}
        made: dict[str, sp.csr_array] = {}
        for wl in workloads:
            spec, path = wl.matrix, self._path("matrix", f"{wl.matrix.id}/{wl.dtype}", "npz")
            if not path.exists():
                if spec.id not in made:
                    if log:
                        log(f"  generating {spec.id}")
                    made[spec.id] = generate(spec)
                a = made[spec.id]
                np.savez(path, data=a.data.astype(wl.dtype), indices=a.indices,
                         indptr=a.indptr, shape=np.array(a.shape))
            with np.load(path) as f:
                (rows, cols), nnz = (int(s) for s in f["shape"]), int(f["indptr"][-1])
                facts[spec.id] = {"nnz": nnz, "shape": [rows, cols],
                                  "index_dtype": str(f["indices"].dtype),
                                  "actual_sparsity": 1 - nnz / (rows * cols)}
            dense = self._dense_path(wl)
            if not dense.exists():
                rng = np.random.default_rng(seed_for("dense", wl.kind, wl.dense_shape))
                np.save(dense, rng.standard_normal(wl.dense_shape).astype(wl.dtype))
        return facts

    def _dense_path(self, wl: Workload) -> Path:
        rows, cols = wl.dense_shape
        return self._path("dense", f"{wl.kind}{rows}x{cols}/{wl.dtype}", "npy")

    def load(self, wl: Workload) -> tuple[sp.csr_array, np.ndarray]:
        """The sparse operand as a ``csr_array`` and the dense one (X or B), C-contiguous."""
        with np.load(self._path("matrix", f"{wl.matrix.id}/{wl.dtype}", "npz")) as f:
            a = sp.csr_array((f["data"], f["indices"], f["indptr"]),
                             shape=tuple(int(s) for s in f["shape"]))
        return a, np.load(self._dense_path(wl))

    def save_reference(self, wl: Workload, result: np.ndarray) -> None:
        np.save(self._path("reference", wl.id, "npy"), np.ascontiguousarray(result))

    def load_reference(self, wl: Workload) -> np.ndarray | None:
        path = self._path("reference", wl.id, "npy")
        return np.load(path) if path.exists() else None
