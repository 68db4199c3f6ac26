"""The run's scratch directory: operands generated once, reference results, worker jobs.

The parent process generates every operand (seeded) and saves it here; each worker process
loads what it measures, so all libraries see byte-identical inputs and nothing is generated
twice. scipy's result of each workload is saved by the scipy worker, which runs first, and is
the reference every other library is checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from . import matrices
from .suites import MatrixSpec, Workload


def generate(spec: MatrixSpec) -> sp.csr_array:
    """The sparse operand described by ``spec``, float64 values, from its own seed."""
    if spec.family == "file":
        return read_matrix_market(spec.path)
    rng = np.random.default_rng(matrices.seed_for(spec.id))
    rows, cols = spec.shape
    nnz = round((1 - spec.sparsity) * rows * cols)
    if spec.pattern == "uniform":
        return matrices.uniform(rng, spec.shape, nnz)
    if spec.pattern == "pruned":
        return matrices.pruned(rng, spec.shape, nnz)
    if spec.pattern == "powerlaw":
        return matrices.with_row_lengths(
            rng, matrices.power_law_lengths(rows, nnz, cols), cols)
    if spec.pattern == "rows16":
        return matrices.stratified_rows(rng, spec.shape, round(nnz / rows))
    if spec.pattern == "block32":
        return matrices.block_sparse(rng, spec.shape, nnz, block=32)
    if spec.pattern == "nm4":
        return matrices.n_of_m(rng, spec.shape, round(4 * (1 - spec.sparsity)), 4)
    if spec.pattern == "tilewise128":
        return matrices.tile_wise(rng, spec.shape, nnz, width=128)
    raise ValueError(f"unknown pattern {spec.pattern!r}")


def read_matrix_market(path: str) -> sp.csr_array:
    """A Matrix Market file as a canonical CSR array with float64 values."""
    m = scipy.io.mmread(path)
    if np.iscomplexobj(m):
        raise ValueError(f"{path}: complex matrices are not supported (spmm computes in reals)")
    a = sp.csr_array(m, dtype=np.float64)
    a.sum_duplicates()
    a.sort_indices()
    return a


def _name(text: str) -> str:
    return text.replace("/", "__").replace(" ", "_")


class Store:
    """Operands and reference results of one run, as files under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def matrix_path(self, spec: MatrixSpec, dtype: str) -> Path:
        """Where the sparse operand of ``spec`` is stored, in ``dtype``."""
        return self.root / f"matrix__{_name(spec.id)}__{dtype}.npz"

    def dense_path(self, wl: Workload) -> Path:
        """Where the dense operand of ``wl`` is stored (shared by workloads of one shape)."""
        rows, cols = wl.dense_shape
        return self.root / f"dense__{wl.kind}_{rows}x{cols}__{wl.dtype}.npy"

    def reference_path(self, wl: Workload) -> Path:
        """Where scipy's result of ``wl`` is stored."""
        return self.root / f"reference__{_name(wl.id)}.npy"

    def prepare(self, workloads: Iterable[Workload],
                on_matrix: Callable[[str], None] | None = None) -> dict[str, dict]:
        """Generate and save every operand that is not on disk yet.

        Returns the facts of each matrix (nnz, shape, actual sparsity, index dtype), keyed by
        matrix id: the structured patterns round the target nnz to whole tiles.
        """
        facts: dict[str, dict] = {}
        generated: dict[str, sp.csr_array] = {}
        for wl in workloads:
            spec = wl.matrix
            path = self.matrix_path(spec, wl.dtype)
            if not path.exists():
                if spec.id not in generated:
                    if on_matrix is not None:
                        on_matrix(spec.id)
                    generated[spec.id] = generate(spec)
                a = generated[spec.id]
                np.savez(path, data=a.data.astype(wl.dtype), indices=a.indices,
                         indptr=a.indptr, shape=np.array(a.shape))
            if spec.id not in facts:
                with np.load(path) as f:
                    rows, cols = (int(s) for s in f["shape"])
                    nnz = int(f["indptr"][-1])
                    facts[spec.id] = {"nnz": nnz, "shape": [rows, cols],
                                      "index_dtype": str(f["indices"].dtype),
                                      "actual_sparsity": 1 - nnz / (rows * cols)}
            dense = self.dense_path(wl)
            if not dense.exists():
                rng = np.random.default_rng(matrices.seed_for("dense", wl.kind, wl.dense_shape))
                np.save(dense, rng.standard_normal(wl.dense_shape).astype(wl.dtype))
        return facts

    def load_matrix(self, wl: Workload) -> sp.csr_array:
        """The sparse operand of ``wl`` as a scipy ``csr_array``."""
        with np.load(self.matrix_path(wl.matrix, wl.dtype)) as f:
            shape = tuple(int(s) for s in f["shape"])
            return sp.csr_array((f["data"], f["indices"], f["indptr"]), shape=shape)

    def load_dense(self, wl: Workload) -> np.ndarray:
        """The dense operand of ``wl`` (X or B), C-contiguous."""
        return np.load(self.dense_path(wl))

    def save_reference(self, wl: Workload, result: np.ndarray) -> None:
        """Keep scipy's result of ``wl``: the others are checked against it."""
        np.save(self.reference_path(wl), np.ascontiguousarray(result))

    def load_reference(self, wl: Workload) -> np.ndarray | None:
        """scipy's result of ``wl``, or None if scipy did not produce one."""
        path = self.reference_path(wl)
        return np.load(path) if path.exists() else None
