"""The suites as data: which products are measured, and which series run on each.

A suite is a list of :class:`Grid` entries; a grid is the cartesian product of its fields
(matrix shapes x patterns x sparsities x dense widths x dtypes x operand formats). Entries
that describe the same workload merge their ``series`` sets, so a subset gets extra series by
being listed again (the ablation on one layer, the scaling on a few widths). Reading this file
tells you everything a suite measures; :mod:`runner` turns the series sets into measurements.

Series sets (what runs on a workload besides scipy, the reference):

- ``peers``: the optional peers the grid names (dense, torch, torch-dense, mkl, graphblas).
- ``backends``: spmm on ``spmm.prepare(a)`` with each backend explicitly, at each thread
  count (serial at one), with the kernels of ``--kernels``.
- ``default``: ``spmm.multiply(a, b)`` as a user writes it (no keywords) on the scipy
  object and on ``spmm.prepare(a)``, and the one-time cost of ``spmm.prepare(a)``.
- ``kernels``: ``auto`` and each explicit kernel, serial, one thread, prepared (the check of
  ``auto``'s choice).
- ``ablation``: the kernel waterfall (:func:`ablation_steps`), serial backend, one thread.
- ``partition``: each work partition on the parallel backends at the most threads.
- ``scaling``: the parallel backends at the ``--scaling-threads`` counts.
- ``layout``: the CSR kernel ``tiled`` beside ``auto`` where ``prepare`` finds a structured
  layout, on every backend and thread count.
- ``formats``: ``spmm.multiply(a, b)`` on the scipy object in its format, and the default
  call on ``spmm.prepare(a, layout="csr")``, at each thread count.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

SUITES = ("quick", "dnn", "science", "structured", "formats", "batch1", "all")
HIDDEN_SUITES = ("tiny",)  # the harness's own tests: seconds, not minutes
PEERS = ("dense", "torch", "torch-dense", "mkl", "graphblas")
REGULAR = ("peers", "backends", "default", "kernels")
SCIENCE_ROWS = 2**17
SCIENCE_SPARSITY = 1 - 16 / SCIENCE_ROWS  # 16 stored entries per row on average
BOTH = ("float32", "float64")


@dataclass(frozen=True)
class MatrixSpec:
    """A sparse operand: enough to regenerate it exactly (its seed derives from its id)."""

    family: str  # dnn, science, structured, transformer, tiny, file
    shape: tuple[int, int]
    pattern: str  # uniform, pruned, powerlaw, rows16, block<k>, tilewise<w>, nm<m>, file
    sparsity: float  # the target fraction of zeros
    path: str = ""  # the Matrix Market file of family "file"

    @property
    def id(self) -> str:
        if self.family == "file":
            return f"file/{self.path.rsplit('/', 1)[-1]}"
        rows, cols = self.shape
        return f"{self.family}/{rows}x{cols}/{self.pattern}/s{self.sparsity * 100:g}"


@dataclass(frozen=True)
class Workload:
    """One product: ``X @ W`` (kind ``xw``, W sparse, n = batch) or ``A @ B`` (kind ``ab``)."""

    suite: str
    kind: str
    matrix: MatrixSpec
    n: int
    dtype: str
    # None: CSR, and every library takes it in its best form. A format name: the operand is
    # handed over as that scipy object, which scipy and spmm's default call use as it is.
    format: str | None = None
    series: tuple[str, ...] = REGULAR
    peers: tuple[str, ...] = PEERS

    @property
    def id(self) -> str:
        width = "batch" if self.kind == "xw" else "n"
        tail = f"/{self.format}" if self.format else ""
        return f"{self.matrix.id}/{width}{self.n}/{self.dtype}{tail}"

    @property
    def dense_shape(self) -> tuple[int, int]:
        rows, cols = self.matrix.shape
        return (self.n, rows) if self.kind == "xw" else (cols, self.n)

    @property
    def out_shape(self) -> tuple[int, int]:
        rows, cols = self.matrix.shape
        return (self.n, cols) if self.kind == "xw" else (rows, self.n)

    def describe(self) -> dict[str, Any]:
        """The parameters stored with every measurement (and read back by the workers)."""
        m = self.matrix
        return {"id": self.id, "suite": self.suite, "kind": self.kind,
                "product": "X @ W" if self.kind == "xw" else "A @ B", "matrix_id": m.id,
                "family": m.family, "shape": list(m.shape), "pattern": m.pattern,
                "sparsity": m.sparsity, "path": m.path, "n": self.n, "dtype": self.dtype,
                "format": self.format, "series": list(self.series), "peers": list(self.peers),
                "dense_shape": list(self.dense_shape), "out_shape": list(self.out_shape)}


def from_description(d: dict[str, Any]) -> Workload:
    """The :class:`Workload` that :meth:`Workload.describe` described."""
    m = MatrixSpec(d["family"], tuple(d["shape"]), d["pattern"], d["sparsity"], d["path"])
    return Workload(d["suite"], d["kind"], m, d["n"], d["dtype"], d["format"],
                    tuple(d["series"]), tuple(d["peers"]))


@dataclass(frozen=True)
class Grid:
    """The cartesian product of its fields; ``dtypes=None`` takes the run's ``--dtype``."""

    family: str
    kind: str
    shapes: tuple[tuple[int, int], ...]
    patterns: tuple[str, ...]
    sparsities: tuple[float, ...]
    widths: tuple[int, ...]
    series: tuple[str, ...] = REGULAR
    dtypes: tuple[str, ...] | None = None
    formats: tuple[str | None, ...] = (None,)
    peers: tuple[str, ...] = PEERS


def _science(rows: int = SCIENCE_ROWS, widths: tuple[int, ...] = (1, 8, 64, 256),
             **kw: Any) -> list[Grid]:
    sparsity = (1 - 16 / rows,)
    uniform = Grid("science", "ab", ((rows, rows),), ("uniform", "powerlaw"), sparsity, widths,
                   **kw)
    return [uniform, replace(uniform, series=("partition",)),
            replace(uniform, patterns=("uniform",), series=("ablation",)),
            replace(uniform, widths=tuple(w for w in widths if w in (8, 64)),
                    series=("scaling",))]


DNN_SHAPES = ((1024, 1024), (1024, 4096), (4096, 1024))
LAYER = ((1024, 4096),)
STRUCTURED = ((4096, 4096),)
TRANSFORMER = ((384, 384), (384, 1536), (1536, 384))
BATCH1 = ((384, 1536), (1024, 4096), (4096, 4096))

DEFINITIONS: dict[str, list[Grid]] = {
    # 60 % decides the break-even goal ("at most 60 %") by a measurement.
    "dnn": [Grid("dnn", "xw", DNN_SHAPES, ("uniform", "pruned"),
                 (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99), (1, 16, 64, 256)),
            # A 4096-input layer whose Xᵀ (4 MiB at batch 256) exceeds L2: the passes' goal.
            Grid("dnn", "xw", ((4096, 4096),), ("uniform",), (0.9,), (64, 256)),
            Grid("dnn", "xw", LAYER, ("uniform",), (0.9,), (1, 16, 64, 256), ("ablation",)),
            Grid("dnn", "xw", LAYER, ("uniform",), (0.9,), (1, 64, 256), ("scaling",))],
    "science": [
        *_science(),
        # The science goals against MKL are set in float32 and float64.
        Grid("science", "ab", ((SCIENCE_ROWS, SCIENCE_ROWS),), ("uniform", "powerlaw"),
             (SCIENCE_SPARSITY,), (8, 64), dtypes=BOTH),
        # Much larger than the last-level cache, so n = 1 streams A from memory; its 2^17
        # columns keep x in L2 (with 2^23 columns every library measured x's TLB misses).
        Grid("science", "ab", ((2**23, SCIENCE_ROWS),), ("rows16",), (SCIENCE_SPARSITY,), (1,),
             ("peers", "backends", "default"))],
    # nm4 exists only where 4 (1 - s) is whole: 2:4 at 50 %, 1:4 at 75 %.
    "structured": [
        Grid("structured", "xw", STRUCTURED, ("uniform",), (0.5, 0.75, 0.9), (64, 256)),
        Grid("structured", "xw", STRUCTURED, ("block32", "tilewise128"), (0.5, 0.75, 0.9),
             (64, 256), (*REGULAR, "layout")),
        Grid("structured", "xw", STRUCTURED, ("nm4",), (0.5, 0.75), (64, 256),
             (*REGULAR, "layout")),
        Grid("structured", "xw", STRUCTURED, ("uniform", "block32", "tilewise128"), (0.9,),
             (64,), ("ablation",))],
    # spmm's default call on the very scipy object a user holds, in each format, against
    # scipy on that object and spmm on the prepared CSR form; then pruned transformer layers.
    "formats": [
        Grid("science", "ab", ((SCIENCE_ROWS, SCIENCE_ROWS),), ("uniform",),
             (SCIENCE_SPARSITY,), (1, 8, 64), ("formats",), BOTH, ("csr", "csc", "coo"), ()),
        Grid("dnn", "ab", STRUCTURED, ("pruned",), (0.9,), (1, 8, 64), ("formats",), BOTH,
             ("csr", "csc", "coo"), ()),
        Grid("dnn", "ab", STRUCTURED, ("block4",), (0.9,), (1, 8, 64), ("formats",), BOTH,
             ("bsr",), ()),
        Grid("dnn", "xw", (*LAYER, *STRUCTURED), ("pruned",), (0.9,), (1, 16, 256),
             ("formats",), BOTH, ("csr", "csc", "coo"), ()),
        Grid("dnn", "xw", (*LAYER, *STRUCTURED), ("block4",), (0.9,), (1, 16, 256),
             ("formats",), BOTH, ("bsr",), ()),
        Grid("transformer", "xw", TRANSFORMER, ("pruned",), (0.9, 0.95), (16, 64, 256),
             ("peers", "formats"), ("float32",), ("csr",), ("dense", "mkl"))],
    # One input at a time through pruned layers at 90 % (x @ W, batch 1): the batch-1 goals'
    # three shapes, every peer, the kernels' check (the sliced layout against the CSR
    # row-dot) and the scaling series. The memory limit (a W of 4x the last-level cache) is
    # bench/batch1_memory.py: a scipy matrix of that size would not fit beside its copies.
    "batch1": [Grid("dnn", "xw", BATCH1, ("uniform",), (0.9,), (1,)),
               Grid("dnn", "xw", BATCH1, ("uniform",), (0.9,), (1,), ("scaling",))],
    # A handful of points: one layer at 90 % and the science matrices at 2^15 rows, n = 8.
    "quick": [Grid("dnn", "xw", LAYER, ("uniform",), (0.9,), (1, 64),
                   (*REGULAR, "ablation")),
              Grid("dnn", "xw", LAYER, ("uniform",), (0.9,), (64,), ("scaling",)),
              Grid("dnn", "xw", LAYER, ("pruned",), (0.9,), (64,)),
              *_science(rows=2**15, widths=(8,))[:3],
              Grid("science", "ab", ((2**15, 2**15),), ("uniform",), (1 - 16 / 2**15,), (8,),
                   ("scaling",))],
    # Seconds end to end. The tile-wise matrix is one spmm.prepare turns into its tile layout.
    "tiny": [Grid("tiny", "xw", ((96, 160),), ("uniform",), (0.9,), (1,),
                  (*REGULAR, "ablation")),
             Grid("tiny", "xw", ((96, 160),), ("pruned",), (0.8,), (8,)),
             Grid("tiny", "ab", ((600, 600),), ("powerlaw",), (1 - 8 / 600,), (4,),
                  (*REGULAR, "ablation", "partition", "scaling")),
             Grid("tiny", "xw", ((192, 256),), ("tilewise128",), (0.5,), (8,),
                  (*REGULAR, "layout")),
             Grid("tiny", "xw", ((64, 96),), ("block4",), (0.75,), (4,), ("formats",),
                  formats=("csc", "bsr"), peers=())],
}


@dataclass(frozen=True)
class ClusterProduct:
    """A product of the dask suite (:mod:`cluster`): X (``n`` rows in blocks of ``block``) @ W
    (kind ``xw``), or A @ B with B of ``n`` columns in blocks of ``block`` (kind ``ab``); the
    sparse operand prepared and in memory, one key of the graph; on a LocalCluster of each
    count of ``workers`` one-thread worker processes."""

    kind: str
    matrix: MatrixSpec
    n: int
    block: int
    dtype: str = "float32"
    workers: tuple[int, ...] = (1, 2)

    @property
    def id(self) -> str:
        width = "batch" if self.kind == "xw" else "n"
        return f"dask/{self.matrix.id}/{width}{self.n}/block{self.block}/{self.dtype}"


# The dask suite: scheduling overhead small next to each task's product (X @ W: 2^14-row
# blocks, 0.1 s or more of compute each), within memory (X's blocks of 64 MiB are made on
# the workers, each output block of 256 MiB reduced where it is made); A @ B: the science
# matrix replicated, B's column blocks streamed. "dask-tiny": the harness's own test.
CLUSTERS: dict[str, list[ClusterProduct]] = {
    "dask": [ClusterProduct("xw", MatrixSpec("dnn", (1024, 4096), "uniform", 0.9), 2**18,
                            2**14),
             ClusterProduct("ab", MatrixSpec("science", (SCIENCE_ROWS, SCIENCE_ROWS),
                                             "uniform", SCIENCE_SPARSITY), 256, 32)],
    "dask-tiny": [ClusterProduct("xw", MatrixSpec("tiny", (96, 160), "uniform", 0.9), 64, 16,
                                 workers=(2,)),
                  ClusterProduct("ab", MatrixSpec("tiny", (600, 600), "powerlaw", 1 - 8 / 600),
                                 8, 4, workers=(2,))],
}

@dataclass(frozen=True)
class PrecisionGroup:
    """Products of the precision suite (:mod:`precision`): each reduced format of ``formats``
    (or, with ``activations``, each format that has an activations option) against the
    float32 prepared form of the same matrix, 90 % sparse, X @ W (batch n) and A @ B (n
    columns) for each n of ``widths``, at each thread count. ``shape`` None: a square matrix
    whose bfloat16 form is larger than the measured last-level cache
    (``precision.beyond_llc_shape``)."""

    name: str
    shape: tuple[int, int] | None
    widths: tuple[int, ...]
    activations: bool = False
    pattern: str = "uniform"
    sparsity: float = 0.9
    formats: tuple[str, ...] = ("bfloat16", "float16", "int8")


# The precision suite: batch 1 streaming a matrix from memory (larger than the LLC) and from
# the cache (a benchmark layer), then batches of 16 to 256, then the opt-in activations.
# "precision-tiny": the harness's own test.
PRECISION: dict[str, list[PrecisionGroup]] = {
    "precision": [PrecisionGroup("beyond-llc", None, (1,), pattern="rows"),
                  PrecisionGroup("layer", LAYER[0], (1,)),
                  PrecisionGroup("batched", LAYER[0], (16, 64, 256)),
                  PrecisionGroup("activations", LAYER[0], (16, 64, 256), activations=True)],
    "precision-tiny": [PrecisionGroup("beyond-llc", (160, 96), (1,)),
                       PrecisionGroup("batched", (96, 160), (8,)),
                       PrecisionGroup("activations", (96, 160), (8,), activations=True)],
}
PRECISION_THREADS = (1, 2)

MATRIX_FILE = Grid("file", "ab", (), ("file",), (), (1, 8, 64),
                   (*REGULAR, "ablation", "partition", "scaling"))


def expand(suite: str, grids: list[Grid], dtypes: list[str]) -> list[Workload]:
    """The workloads of ``grids``, in order; entries for one workload merge their series."""
    found: dict[str, Workload] = {}
    for g in grids:
        for shape, pattern, sparsity, n, dtype, fmt in itertools.product(
                g.shapes, g.patterns, g.sparsities, g.widths, g.dtypes or dtypes, g.formats):
            wl = Workload(suite, g.kind, MatrixSpec(g.family, shape, pattern, sparsity), n,
                          dtype, fmt, g.series, g.peers)
            old = found.get(wl.id)
            if old is not None:
                wl = replace(old, series=tuple(dict.fromkeys(old.series + g.series)),
                             peers=tuple(dict.fromkeys(old.peers + g.peers)))
            found[wl.id] = wl
    return list(found.values())


def workloads(suite: str, dtypes: list[str]) -> list[Workload]:
    """The workloads of ``suite`` (one of :data:`SUITES` or ``tiny``)."""
    if suite != "all" and suite not in DEFINITIONS:
        raise ValueError(f"unknown suite {suite!r}; expected one of {SUITES}")
    names = ("dnn", "science", "structured", "formats") if suite == "all" else (suite,)
    merged: dict[str, Workload] = {}
    for name in names:  # a workload in two suites is measured once, under the first
        for wl in expand(name, DEFINITIONS[name], dtypes):
            merged.setdefault(wl.id, wl)
    return list(merged.values())


def file_workloads(path: str, shape: tuple[int, int], sparsity: float,
                   dtypes: list[str]) -> list[Workload]:
    """``A @ B`` for a Matrix Market file's matrix A, B of 1, 8 and 64 columns."""
    m = MatrixSpec("file", shape, "file", sparsity, path)
    return [Workload("matrix", "ab", m, n, dtype, None, MATRIX_FILE.series)
            for n in MATRIX_FILE.widths for dtype in dtypes]


def label(case: dict[str, Any]) -> str:
    """The series a measurement belongs to: ``scipy``, ``mkl``, ``spmm`` (the default call on
    the scipy object), ``spmm prepared-csr``, ``spmm openmp prepared``, ``spmm serial naive
    scalar``, ...: spmm, then what differs from the default call."""
    if case["library"] != "spmm":
        return case["library"]
    parts = (case["backend"], None if case["kernel"] in (None, "auto") else case["kernel"],
             case["partition"] and f"{case['partition']}-partition",
             None if case["operand"] == "given" else case["operand"], case["simd"])
    return " ".join(["spmm", *(p for p in parts if p)])


def float_levels(config: dict[str, Any]) -> list[str]:
    """The SIMD levels of spmm's ``show_config`` whose float kernels differ, lowest first (a
    level that only adds dot-product instructions runs the float kernels of the one below)."""
    build = config.get("build", {})
    bodies = build.get("float_kernel_levels") or {}
    return list(dict.fromkeys(bodies.values())) or build.get("simd_levels") or []


def default_levels(config: dict[str, Any]) -> set[str | None]:
    """spmm's default SIMD level in ``config`` and the level whose float kernels it runs: a
    series at either is measured at the process default (no ``simd`` of its own)."""
    simd = config.get("runtime", {}).get("config", {}).get("simd")
    bodies = config.get("build", {}).get("float_kernel_levels") or {}
    return {simd, bodies.get(simd, simd)}


def ablation_steps(levels: list[str]) -> list[dict[str, str]]:
    """The kernel waterfall: each step changes one thing (serial backend, one thread). Steps
    before ``prepared`` multiply the scipy CSR object as it is stored (the kernel family that
    reads it is in each record's ``explain``); without a level above ``scalar`` the SIMD steps
    are left out."""
    best = levels[-1] if levels else "scalar"
    steps = [("naive", "naive", "scalar", "given", "textbook loop order, portable code"),
             ("reordered", "reordered", "scalar", "given", "contiguous innermost loop"),
             ("tiled", "tiled", "scalar", "given", "reordered + cache tiling")]
    if best != "scalar":
        steps.append((f"SIMD ({best})", "reordered", best, "given",
                      f"the reordered loop compiled for {best}, no register blocking"))
        if best == "avx512" and "avx2" in levels:
            steps.append(("register blocking (avx2)", "tiled", "avx2", "given",
                          "the register-blocked kernel at AVX2 width"))
        steps.append((f"register blocking ({best})", "tiled", best, "given",
                      f"the register-blocked tiled kernel for {best}"))
    steps.append(("prepared", "tiled", best, "prepared", "on spmm.prepare(a): its CSR form"))
    keys = ("name", "kernel", "simd", "operand", "meaning")
    return [dict(zip(keys, s, strict=True)) for s in steps]
