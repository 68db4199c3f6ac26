"""One adapter per library: how it is loaded, limited to a thread count, and called.

Each adapter gives its library the operands in its best form, built before timing (so
conversions are not timed), and preallocates the output wherever the library accepts one.
The forms were chosen by measurement on the 2-core Zen 5 VM (docs/benchmarks.md, MEASURED.md):
for ``X @ W`` the sparse peers are fastest on ``Wᵀ`` in CSR times ``Xᵀ``, their natural
dense-on-the-left calls being 2-10x slower.

:data:`PEERS` is the table of optional peers, looked up at run time (tests replace entries).
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import site
import sys
import sysconfig
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from . import timing
from .defaults import DEFAULT_PARTITION
from .suites import Workload

# Above this size the dense operand of the "dense" baseline is not built: the science
# matrices (2^17 square) would need 64 GiB in float32.
DENSE_LIMIT_BYTES = 2 * 2**30


class Skipped(Exception):
    """A measurement that cannot be made here; the message says why."""


@dataclass
class Operands:
    """One workload's operands inside a worker, with conversions built once and shared."""

    workload: Workload
    sparse: sp.csr_array  # W (in x out) for "xw", A (m x k) for "ab"
    dense: np.ndarray  # X (batch x in) or B (k x n), C-contiguous
    _memo: dict[str, Any] = field(default_factory=dict)

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per workload and worker (conversions shared by cases)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def transposed_csr(self) -> sp.csr_array:
        """Wᵀ in CSR (the CSC arrays of W), the fast form of the sparse peers for X @ W."""
        return self.memo("wt", lambda: sp.csr_array(self.sparse.T.tocsr()))

    @property
    def dense_t(self) -> np.ndarray:
        """Xᵀ, C-contiguous."""
        return self.memo("xt", lambda: np.ascontiguousarray(self.dense.T))

    def empty_out(self, transposed: bool = False) -> np.ndarray:
        """A preallocated output (or its transpose, for the Cᵀ = Wᵀ Xᵀ forms)."""
        rows, cols = self.workload.out_shape
        shape = (cols, rows) if transposed else (rows, cols)
        return np.empty(shape, dtype=self.dense.dtype)


@dataclass
class Bound:
    """A library bound to one workload: ``call()`` is what is timed; ``output(ret)`` turns
    the call's return value into the product as an array (untimed); ``None`` when the call
    computes no product (spmm's ``prepare``)."""

    call: Callable[[], Any]
    output: Callable[[Any], np.ndarray] | None
    details: dict[str, Any] = field(default_factory=dict)


class Library:
    """Base adapter. ``module`` is what must be importable; ``uses_blas`` asks for a pause
    after each measurement (MEASURED.md: BLAS/OpenMP workers keep spinning after a call)."""

    name = ""
    module = ""
    install = ""
    uses_blas = False
    distributions: tuple[str, ...] = ()
    forms: ClassVar[dict[str, str]] = {}

    def skip_reason(self, wl: Workload) -> str | None:
        """Why this library cannot run ``wl`` at all (decided before any process starts)."""
        return None

    def load(self, threads: int) -> None:
        """Import the library and limit it to ``threads`` (beyond the environment)."""

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        """The library's call on ``ops`` in its best form, everything built before timing.

        Raises :class:`Skipped` when the case cannot run here.
        """
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        """Installed versions of the library's distributions."""
        found = {}
        for dist in self.distributions:
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
        return found


class ScipyLibrary(Library):
    """scipy.sparse: the reference and the baseline (serial)."""

    name = "scipy"
    module = "scipy"
    distributions = ("scipy",)
    forms: ClassVar[dict[str, str]] = {
        "xw": "x @ w, X C-contiguous, W a csr_array or a csc_array, whichever is faster on the "
              "workload (tried before timing, `form_used` in each record: neither wins "
              "everywhere); scipy allocates its result (no out=)",
        "ab": "a @ b, A a csr_array, B C-contiguous; scipy allocates its result (no out=)",
    }

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        s, d = ops.sparse, ops.dense
        if ops.workload.kind == "ab":
            return Bound(lambda: s @ d, np.asarray)
        # scipy computes X @ W as (Wᵀ Xᵀ)ᵀ; measured on the 2-core VM (1024 x 4096 at 10 % and
        # 50 %), W as CSC is up to 1.4x faster at batch 1 and 256, CSR up to 1.2x at 16 and 64.
        s_csc = ops.memo("w_csc", lambda: sp.csc_array(s))
        candidates = {"W as CSR": lambda: d @ s, "W as CSC": lambda: d @ s_csc}
        chosen = timing.fastest(candidates)
        return Bound(candidates[chosen], np.asarray, {"form_used": chosen})


class DenseLibrary(Library):
    """The dense product, numpy's BLAS GEMM, on the densified operand."""

    name = "dense"
    module = "numpy"
    uses_blas = True
    distributions = ("numpy",)
    forms: ClassVar[dict[str, str]] = {
        "xw": "numpy.matmul(X, W_dense, out=C): BLAS GEMM on C-contiguous operands",
        "ab": "numpy.matmul(A_dense, B, out=C): BLAS GEMM on C-contiguous operands",
    }

    def skip_reason(self, wl: Workload) -> str | None:
        rows, cols = wl.matrix.shape
        nbytes = rows * cols * np.dtype(wl.dtype).itemsize
        if nbytes > DENSE_LIMIT_BYTES:
            return (f"the dense {rows}x{cols} {wl.dtype} matrix would take "
                    f"{nbytes / 2**30:.0f} GiB")
        return None

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        full = ops.memo("dense_sparse", lambda: ops.sparse.toarray())
        out = ops.empty_out()
        if ops.workload.kind == "xw":
            x = ops.dense
            return Bound(lambda: np.matmul(x, full, out=out), lambda _: out)
        b = ops.dense
        return Bound(lambda: np.matmul(full, b, out=out), lambda _: out)


class SpmmLibrary(Library):
    """spmm: ``case`` names the backend, kernel, partition and variant."""

    name = "spmm"
    module = "spmm"
    distributions = ("spmm",)
    forms: ClassVar[dict[str, str]] = {
        "xw": "spmm.multiply(X, P, out=C): P = spmm.prepare(W) (layout auto: a structured "
              "layout where W has one, `layout_used` in each record) with the CSR of Wᵀ "
              "built before timing; X Fortran-ordered (Xᵀ rows contiguous, so no copy)",
        "ab": "spmm.multiply(P, B, out=C): P = spmm.prepare(A); B C-contiguous",
    }
    variants: ClassVar[dict[str, str]] = {
        "unprepared": "spmm.multiply on the scipy csr_array itself: for X @ W the CSR of Wᵀ "
                      "is rebuilt on every call, for A @ B the structure is re-validated",
        "prepare": "the one-time cost: spmm.prepare(W), plus building the CSR of Wᵀ for X @ W",
    }

    def load(self, threads: int) -> None:
        import spmm

        self._spmm = spmm

    def versions(self) -> dict[str, str]:
        found = super().versions()
        try:
            import spmm

            found["spmm"] = spmm.__version__
        except ImportError:
            pass
        return found

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        spmm = self._spmm
        backend = case["backend"]
        if backend not in spmm.available_backends():
            raise Skipped(f"this build of spmm has no {backend!r} backend "
                          f"(it has {spmm.available_backends()})")
        xw = ops.workload.kind == "xw"
        sparse = ops.sparse

        def prepare() -> Any:
            p = spmm.prepare(sparse)
            if xw and hasattr(p, "csr_transposed"):
                p.csr_transposed(p.dtype)  # otherwise built on first use, i.e. while timed
            return p

        details: dict[str, Any] = {"simd_used": spmm.get_config()["simd"]}
        if case["variant"] == "prepare":
            prepared = ops.memo("prepared", prepare)
            return Bound(prepare, None, {**details, **_footprint(ops, prepared),
                                         **_layout_used(prepared, case, xw)})
        operand = sparse if case["variant"] == "unprepared" else ops.memo("prepared", prepare)
        dense = ops.memo("x_fortran", lambda: np.asfortranarray(ops.dense)) if xw else ops.dense
        out = ops.empty_out()
        threads = 1 if backend == "serial" else case["threads"]
        kwargs = dict(out=out, backend=backend, num_threads=threads, kernel=case["kernel"])
        if case["partition"] == DEFAULT_PARTITION:  # time the public function
            multiply = spmm.multiply
        else:
            from spmm._api import multiply_with_partition

            def multiply(a: Any, b: Any, **kw: Any) -> np.ndarray:
                return multiply_with_partition(a, b, partition=case["partition"], **kw)

        left, right = (dense, operand) if xw else (operand, dense)
        details.update(_layout_used(operand, case, xw))
        if details["layout_used"] == "csr":
            details["kernel_used"] = _kernel_used(spmm, case["kernel"], ops)
        else:  # the structured layout's own kernel: the CSR rule does not apply
            details["kernel_used"] = details["layout_used"]
        return Bound(lambda: multiply(left, right, **kwargs), lambda _: out, details)


def _layout_used(operand: Any, case: dict[str, Any], xw: bool) -> dict[str, Any]:
    """The form spmm's call runs: ``layout_used`` (``"csr"``, or the structured layout of
    ``PreparedMatrix.layout``: ``"tile"``, ``"block"``, ...) and ``block_used`` (its unit,
    ``PreparedMatrix.block``, as a list; None for CSR).

    A structured layout serves only ``x @ p`` with ``kernel="auto"``: an explicit kernel, the
    unprepared scipy matrix and ``p @ x`` run the CSR form. For the ``prepare`` variant, the
    layout ``prepare`` built. An spmm without structured layouts has no ``layout``: "csr".
    """
    layout = getattr(operand, "layout", "csr")
    block = getattr(operand, "block", None)
    if case["variant"] != "prepare" and not (xw and case["kernel"] == "auto"):
        layout = "csr"
    if layout == "csr" or block is None:
        return {"layout_used": layout, "block_used": None}
    return {"layout_used": layout, "block_used": [int(v) for v in block]}


def _kernel_used(spmm: Any, kernel: str, ops: Operands) -> str | None:
    """The kernel spmm's ``auto`` stands for here, from ``spmm._api.choose_kernel`` (private:
    None when it is missing or takes other arguments than this harness knows)."""
    if kernel != "auto":
        return kernel
    choose = getattr(getattr(spmm, "_api", None), "choose_kernel", None)
    # The rows the kernels walk: A's for A @ B, Wᵀ's (W's columns) for X @ W.
    rows = ops.sparse.shape[1] if ops.workload.kind == "xw" else ops.sparse.shape[0]
    try:
        if choose is None:
            return None
        return choose(kernel, ops.workload.n, ops.sparse.nnz / max(1, rows))
    except TypeError:  # a newer rule with more inputs: the record then says "?"
        return None


def _footprint(ops: Operands, prepared: Any) -> dict[str, int]:
    """Bytes of the prepared matrix, of the scipy CSR matrix it came from, and of the dense
    matrix it stands for: ``PreparedMatrix.footprint()`` where spmm has it, else counted
    here from the operand the workers load."""
    if hasattr(prepared, "footprint"):
        sizes = prepared.footprint()
        return {"prepared_nbytes": int(sizes["prepared"]),
                "csr_nbytes": int(sizes["scipy_csr"]), "dense_nbytes": int(sizes["dense"])}
    csr = ops.sparse
    rows, cols = csr.shape
    return {"prepared_nbytes": int(prepared.nbytes),
            "csr_nbytes": int(csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes),
            "dense_nbytes": rows * cols * csr.data.itemsize}


def find_mkl_rt() -> str | None:
    """The ``libmkl_rt.so.N`` that pip's ``mkl`` package installs under the environment's
    ``lib/`` (or the user base's, after ``pip install --user``).

    sparse_dot_mkl does not look there (MEASURED.md); ``MKL_RT`` tells it where.
    """
    prefixes = dict.fromkeys([sys.prefix, sysconfig.get_path("data"), site.getuserbase()])
    for prefix in prefixes:
        candidates = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        versioned = [c for c in candidates if c.rsplit(".so", 1)[1]]
        if versioned or candidates:
            return (versioned or candidates)[-1]
    return None


class MklLibrary(Library):
    """Intel MKL's sparse BLAS through sparse_dot_mkl."""

    name = "mkl"
    module = "sparse_dot_mkl"
    install = "pip install sparse-dot-mkl mkl"
    uses_blas = True
    distributions = ("sparse-dot-mkl", "mkl")
    forms: ClassVar[dict[str, str]] = {
        "xw": "dot_product_mkl(Wt, Xt, out=Ct, out_scalar=0): Wᵀ a scipy CSR, Xᵀ "
              "C-contiguous, so MKL's mkl_sparse_?_mm runs on CSR x row-major; C = Ctᵀ",
        "ab": "dot_product_mkl(A, B, out=C, out_scalar=0): A a scipy CSR, B C-contiguous",
    }

    def load(self, threads: int) -> None:
        if "MKL_RT" not in os.environ:
            found = find_mkl_rt()
            if found:
                os.environ["MKL_RT"] = found
        import sparse_dot_mkl

        self._dot = sparse_dot_mkl.dot_product_mkl

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        dot = self._dot
        if ops.workload.kind == "xw":
            wt, xt, out_t = ops.transposed_csr, ops.dense_t, ops.empty_out(transposed=True)
            return Bound(lambda: dot(wt, xt, out=out_t, out_scalar=0.0), lambda _: out_t.T)
        a, b, out = ops.sparse, ops.dense, ops.empty_out()
        return Bound(lambda: dot(a, b, out=out, out_scalar=0.0), lambda _: out)


class TorchLibrary(Library):
    """PyTorch's CPU sparse CSR product: ``torch.sparse.mm``'s kernel.

    ``torch.sparse.mm(S, D)`` with S in CSR is ``torch._sparse_mm``, which zero-fills a new
    output and calls ``addmm(zeros, S, D, beta=0, alpha=1)``; ``torch.mm(S, D, out=C)`` on a
    CSR tensor (``_sparse_csr_mm_out``) calls the same ``addmm`` into C (both reach
    ``addmm_out_sparse_csr_cpu``, MKL's sparse BLAS in the CPU wheel). The ``out=`` form is
    timed, as for every peer that accepts one: the same kernel without the allocation.
    """

    name = "torch"
    module = "torch"
    install = "pip install torch==2.13.0 (CPU wheel; not in the bench extra)"
    uses_blas = True
    distributions = ("torch",)
    forms: ClassVar[dict[str, str]] = {
        "xw": "torch.mm(Wt, Xt, out=Ct), torch.sparse.mm's kernel (both run addmm on the CSR "
              "tensor; sparse.mm also allocates and zero-fills C): Wᵀ a sparse_csr_tensor "
              "sharing scipy's int32 arrays, Xᵀ contiguous; C = Ctᵀ (X @ W_csr converts on "
              "every call)",
        "ab": "torch.mm(A, B, out=C), torch.sparse.mm's kernel: A a sparse_csr_tensor "
              "sharing scipy's arrays",
    }

    def load(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self._torch = torch

    def _csr(self, a: sp.csr_array) -> Any:
        torch = self._torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(
                torch.from_numpy(a.indptr), torch.from_numpy(a.indices),
                torch.from_numpy(a.data), size=a.shape, check_invariants=False)

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        torch = self._torch
        if ops.workload.kind == "xw":
            left = self._csr(ops.transposed_csr)
            right = torch.from_numpy(ops.dense_t)
            out = torch.from_numpy(ops.empty_out(transposed=True))
            return Bound(lambda: torch.mm(left, right, out=out), lambda _: out.numpy().T)
        left = self._csr(ops.sparse)
        right = torch.from_numpy(ops.dense)
        out = torch.from_numpy(ops.empty_out())
        return Bound(lambda: torch.mm(left, right, out=out), lambda _: out.numpy())


class TorchDenseLibrary(TorchLibrary):
    """PyTorch's dense layer: what ``torch.nn.Linear`` computes on the unpruned weights.

    ``nn.Linear(in, out, bias=False).forward(x)`` is ``torch.nn.functional.linear(x,
    weight)`` with ``weight`` = Wᵀ (out x in); the function is called directly (the module's
    call adds only Python overhead). It has no ``out=``: torch allocates the result.
    PyTorch's SGEMM is its bundled MKL's (MEASURED.md: about 95 GFLOP/s on one core here,
    against OpenBLAS's 224), so "dense" in the targets stays numpy's product.
    """

    name = "torch-dense"
    forms: ClassVar[dict[str, str]] = {
        "xw": "torch.nn.functional.linear(X, Wt), i.e. nn.Linear(in, out, bias=False) with "
              "weight Wᵀ: X a tensor sharing numpy's buffer, Wᵀ the dense weights (out x in, "
              "contiguous); torch allocates C",
        "ab": "— (a layer computes X @ W: the A @ B workloads are skipped)",
    }

    def skip_reason(self, wl: Workload) -> str | None:
        if wl.kind != "xw":
            return "nn.Linear is a layer (X @ W); A @ B has no dense layer to compare with"
        return DenseLibrary().skip_reason(wl)

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        torch = self._torch
        linear = torch.nn.functional.linear
        weight = torch.from_numpy(ops.memo("dense_sparse_t",
                                           lambda: np.ascontiguousarray(ops.sparse.T.toarray())))
        x = torch.from_numpy(ops.dense)

        def call() -> Any:
            with torch.inference_mode():
                return linear(x, weight)

        return Bound(call, lambda ret: ret.numpy())


class GraphblasLibrary(Library):
    """SuiteSparse:GraphBLAS through python-graphblas."""

    name = "graphblas"
    module = "graphblas"
    install = "pip install python-graphblas"
    distributions = ("python-graphblas", "suitesparse-graphblas")
    forms: ClassVar[dict[str, str]] = {
        "xw": "Ct << Wt.mxm(Xt, plus_times): Wᵀ a by-row (CSR) Matrix, Xᵀ full by column "
              "(X's row-major buffer), Ct by column (= C row-major)",
        "ab": "C << A.mxm(B, plus_times): A by row (CSR), B full by row, C by row",
    }

    def load(self, threads: int) -> None:
        import graphblas as gb

        gb.ss.config["nthreads"] = threads
        self._gb = gb

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        gb = self._gb
        semiring = gb.semiring.plus_times[gb.dtypes.lookup_dtype(ops.dense.dtype)]
        xw = ops.workload.kind == "xw"
        a = ops.transposed_csr if xw else ops.sparse
        left = gb.Matrix.ss.import_csr(nrows=a.shape[0], ncols=a.shape[1], indptr=a.indptr,
                                       col_indices=a.indices, values=a.data,
                                       take_ownership=False)
        if xw:
            right = gb.Matrix.ss.import_fullc(values=ops.dense.T, take_ownership=False)
        else:
            right = gb.Matrix.ss.import_fullr(values=ops.dense, take_ownership=False)
        rows, cols = a.shape[0], right.shape[1]
        out = gb.Matrix(left.dtype, rows, cols)
        out.ss.config["format"] = "by_col" if xw else "by_row"

        def call() -> None:
            out << left.mxm(right, semiring)

        def output(_: Any) -> np.ndarray:
            dense = out.to_dense(fill_value=0)
            return dense.T if xw else dense

        return Bound(call, output)

    def versions(self) -> dict[str, str]:
        found = super().versions()
        try:
            about = self._gb.ss.about
            found["SuiteSparse:GraphBLAS"] = ".".join(map(str, about["library_version"]))
        except Exception:  # not loaded in this process, or an older binding
            pass
        return found


SCIPY = ScipyLibrary()
SPMM = SpmmLibrary()

#: Optional peers by name (``--peers``). Tests replace entries to simulate missing or wrong peers.
PEERS: dict[str, Library] = {
    "dense": DenseLibrary(),
    "torch": TorchLibrary(),
    "torch-dense": TorchDenseLibrary(),
    "mkl": MklLibrary(),
    "graphblas": GraphblasLibrary(),
}


def get(name: str) -> Library:
    """The adapter called ``name``: ``"scipy"``, ``"spmm"`` or a key of :data:`PEERS`."""
    if name == "scipy":
        return SCIPY
    if name == "spmm":
        return SPMM
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown library {name!r}; expected scipy, spmm or one of "
                         f"{sorted(PEERS)}") from None


def not_installed_reason(lib: Library) -> str | None:
    """Why ``lib`` cannot be imported here (checked without importing it), or None."""
    import importlib.util

    try:
        found = importlib.util.find_spec(lib.module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    hint = f" ({lib.install})" if lib.install else ""
    return f"not installed: no module named {lib.module!r}{hint}"
