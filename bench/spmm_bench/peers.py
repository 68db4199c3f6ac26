"""One peer abstraction: how each library is loaded, set up and called.

A :class:`Peer` binds a workload's operands into a call: what the library needs is built once,
before timing, in its fastest form (:attr:`Peer.forms`), with the output preallocated where
the library accepts one. A library that is missing, or cannot take a case, is skipped with the
reason, never faked. For ``X @ W`` the sparse peers are fastest on ``Wᵀ`` in CSR times ``Xᵀ``;
their natural calls (``dot_product_mkl(X, W)``, GraphBLAS's ``X.mxm(W)``, torch's
``X @ W_csr``, which converts W on every call) are slower, some by an order of magnitude.
:data:`PEERS` is looked up at run time: the tests replace entries.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import site
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .suites import Workload

# The dense baselines are not built above this size (the 2^17 science matrices: 64 GiB).
DENSE_LIMIT_BYTES = 2 * 2**30


# Where every dense operand and output handed to a library starts: a cache line. numpy aligns
# large arrays to 16 bytes only, and Intel MKL's sparse product runs a slower kernel when its
# dense operand or output is not 64-byte aligned (1.8x slower at batch 256 on 1024x1024 at
# 90 %, one and two threads): with arrays wherever the allocator put them, a library's figure
# would depend on the process it ran in.
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a multiple of ALIGNMENT."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` starting on a multiple of ALIGNMENT."""
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


class Skipped(Exception):
    """A case that cannot run here; the message says why."""


@dataclass
class Operands:
    """One workload's operands in a worker; conversions are built once and shared."""

    workload: Workload
    csr: sp.csr_array  # W (in x out) for X @ W, A for A @ B
    dense: np.ndarray  # X or B, C-contiguous, on a cache line (ALIGNMENT)
    _memo: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dense = aligned_copy(self.dense)

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def sparse(self) -> Any:
        """The sparse operand as handed to the library: the workload's scipy format."""
        fmt = self.workload.format or "csr"
        if fmt == "bsr":
            return self.memo("bsr", lambda: sp.bsr_array(self.csr, blocksize=(4, 4)))
        return self.memo(fmt, lambda: self.csr.asformat(fmt))

    @property
    def wt(self) -> sp.csr_array:
        """Wᵀ in CSR (W's CSC arrays): the sparse peers' fast form of X @ W."""
        return self.memo("wt", lambda: sp.csr_array(self.csr.T.tocsr()))

    @property
    def dense_t(self) -> np.ndarray:
        return self.memo("xt", lambda: aligned_copy(self.dense.T))

    def empty_out(self, transposed: bool = False) -> np.ndarray:
        rows, cols = self.workload.out_shape
        return aligned_empty((cols, rows) if transposed else (rows, cols), self.dense.dtype)


@dataclass
class Bound:
    """``call()`` is timed; ``output(returned)`` gives the product (None: nothing to check,
    e.g. ``spmm.prepare``'s cost); ``details`` go into the record."""

    call: Callable[[], Any]
    output: Callable[[Any], np.ndarray] | None
    details: dict[str, Any] = field(default_factory=dict)


class Peer:
    """A library. ``uses_blas``: its threads spin after a call, so the worker pauses after
    its measurements before anything else runs."""

    name = module = install = ""
    uses_blas = False
    forms: ClassVar[dict[str, str]] = {}

    def skip_reason(self, wl: Workload) -> str | None:
        """Why the library cannot run ``wl`` at all (decided before any worker starts)."""
        return None

    def load(self, threads: int) -> None:
        """Import the library and limit it to ``threads`` (beyond the environment)."""

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        raise NotImplementedError

    def threads_reported(self) -> int | None:
        """The thread count the loaded library says it will use (None: it says nothing), read
        in the worker after :meth:`load`: the runner notes any that differs from the limit."""
        return None

    def missing(self) -> str | None:
        """Why the library cannot be imported here (checked without importing it)."""
        try:
            if importlib.util.find_spec(self.module) is not None:
                return None
        except (ImportError, ValueError):
            pass
        return f"not installed: no module named {self.module!r}" + (
            f" ({self.install})" if self.install else "")


def call_seconds(fn: Callable[[], Any]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Scipy(Peer):
    name = module = "scipy"
    forms: ClassVar[dict[str, str]] = {
        "xw": "x @ w: W as CSR or as CSC, whichever is faster on the workload (`form_used`); "
              "a workload with a format uses W in that format",
        "ab": "a @ b: A as CSR, or in the workload's format",
    }

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        s, d = ops.sparse, ops.dense
        if ops.workload.kind == "ab":
            return Bound(lambda: s @ d, np.asarray)
        if ops.workload.format:
            return Bound(lambda: d @ s, np.asarray)
        # Neither wins everywhere: W as CSC was up to 1.4x faster at batch 1 and 256, CSR up
        # to 1.2x at 16 and 64 (the quick suite's layer, form_used in each record).
        s_csc = ops.memo("csc", lambda: sp.csc_array(s))
        forms = {"W as CSR": lambda: d @ s, "W as CSC": lambda: d @ s_csc}
        chosen = min(forms, key=lambda f: min(call_seconds(forms[f]) for _ in range(3)))
        return Bound(forms[chosen], np.asarray, {"form_used": chosen})


class Dense(Peer):
    name, module, uses_blas = "dense", "numpy", True
    forms: ClassVar[dict[str, str]] = {
        "xw": "numpy.matmul(X, W_dense, out=C): BLAS GEMM", "ab": "numpy.matmul(A_dense, B, out=C)"}

    def skip_reason(self, wl: Workload) -> str | None:
        rows, cols = wl.matrix.shape
        nbytes = rows * cols * np.dtype(wl.dtype).itemsize
        if nbytes > DENSE_LIMIT_BYTES:
            return f"the dense {rows}x{cols} {wl.dtype} matrix would take {nbytes / 2**30:.0f} GiB"
        return None

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        full, out = ops.memo("full", ops.csr.toarray), ops.empty_out()
        left, right = (ops.dense, full) if ops.workload.kind == "xw" else (full, ops.dense)
        return Bound(lambda: np.matmul(left, right, out=out), lambda _: out)


class Spmm(Peer):
    """spmm. ``case`` names the series: ``backend`` (None: the default call, exactly
    ``spmm.multiply(a, b)``), ``kernel``, ``partition``, ``operand`` (``given``: the scipy
    object; ``prepared``: ``spmm.prepare(a)``; ``prepared-csr``: ``prepare(a,
    layout="csr")``; ``prepare``: the cost of ``spmm.prepare(a)`` itself)."""

    name = module = "spmm"
    forms: ClassVar[dict[str, str]] = {
        "xw": "default call: spmm.multiply(X, W) on the scipy object or the PreparedMatrix; "
              "an explicit backend: spmm.multiply(X, P, out=C, backend=, num_threads=, "
              "kernel=) with X Fortran-ordered (Xᵀ's rows contiguous: no copy)",
        "ab": "default call: spmm.multiply(A, B); an explicit backend: spmm.multiply(P, B, "
              "out=C, backend=, num_threads=, kernel=)",
    }

    def load(self, threads: int) -> None:
        import spmm

        self.spmm = spmm

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        spmm, backend, operand = self.spmm, case["backend"], case["operand"]
        if backend and backend not in spmm.available_backends():
            raise Skipped(f"this build of spmm has no {backend!r} backend "
                          f"(it has {spmm.available_backends()})")
        xw, given = ops.workload.kind == "xw", ops.sparse

        def prepare(layout: str = "auto") -> Any:
            p = spmm.prepare(given, layout=layout)
            if xw:
                p.csr_transposed(p.dtype)  # else built on first use, i.e. while timed
            return p

        details = {"simd_used": spmm.get_config()["simd"]}
        if operand == "prepare":
            p = ops.memo("prepared", prepare)
            return Bound(prepare, None, {**details, "layout_used": p.layout,
                                         "footprint": p.footprint()})
        matrix = given if operand == "given" else ops.memo(
            operand, lambda: prepare("csr" if operand == "prepared-csr" else "auto"))
        if backend is None:
            keywords: dict[str, Any] = {}
            left, right = (ops.dense, matrix) if xw else (matrix, ops.dense)
            call, output = (lambda: spmm.multiply(left, right)), np.asarray
        else:
            dense = ops.memo("x_f", lambda: aligned_copy(ops.dense.T).T) if xw else ops.dense
            left, right = (dense, matrix) if xw else (matrix, dense)
            keywords = {"out": ops.empty_out(), "backend": backend, "kernel": case["kernel"],
                        "num_threads": 1 if backend == "serial" else case["threads"]}
            if case["partition"]:
                from spmm._pipeline import multiply_with_partition

                call = lambda: multiply_with_partition(  # noqa: E731
                    left, right, partition=case["partition"], **keywords)
            else:
                call = lambda: spmm.multiply(left, right, **keywords)  # noqa: E731
            output = lambda _: keywords["out"]  # noqa: E731
        explain = getattr(spmm, "explain", None)
        said = details["explain"] = explain(left, right, **keywords) if explain else None
        # A structured layout serves only x @ p with the default kernel; explain names the
        # kernel family that reads it (anything but csr_rows for a prepared matrix).
        layout = getattr(matrix, "layout", "csr")
        if not xw or case["kernel"] not in (None, "auto"):
            layout = "csr"
        if said:
            layout = said["layout"] if said.get("family") not in (
                None, "csr_rows") and said["layout"] in ("tile", "block", "n_m") else "csr"
        details.update(layout_used=layout, kernel_used=said and said.get("kernel"))
        return Bound(call, output, details)


def find_mkl_rt() -> str | None:
    """The ``libmkl_rt.so.N`` that pip's ``mkl`` installs under the environment's ``lib/``
    (or the user base's): sparse_dot_mkl does not look there, ``MKL_RT`` tells it."""
    for prefix in dict.fromkeys([sys.prefix, sysconfig.get_path("data"), site.getuserbase()]):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        versioned = [f for f in found if f.rsplit(".so", 1)[1]]
        if versioned or found:
            return (versioned or found)[-1]
    return None


class Mkl(Peer):
    """Intel MKL's sparse BLAS (``mkl_sparse_?_mm`` on CSR x row-major) via sparse_dot_mkl."""

    name, module, uses_blas = "mkl", "sparse_dot_mkl", True
    install = "pip install sparse-dot-mkl mkl"
    forms: ClassVar[dict[str, str]] = {
        "xw": "dot_product_mkl(Wt, Xt, out=Ct, out_scalar=0): Wᵀ a scipy CSR; C = Ctᵀ",
        "ab": "dot_product_mkl(A, B, out=C, out_scalar=0): A a scipy CSR"}

    def load(self, threads: int) -> None:
        if "MKL_RT" not in os.environ and find_mkl_rt():
            os.environ["MKL_RT"] = find_mkl_rt()
        import sparse_dot_mkl

        self.dot, self.mkl = sparse_dot_mkl.dot_product_mkl, sparse_dot_mkl

    def threads_reported(self) -> int | None:
        return int(self.mkl.mkl_get_max_threads())

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        dot = self.dot
        if ops.workload.kind == "xw":
            wt, xt, out_t = ops.wt, ops.dense_t, ops.empty_out(transposed=True)
            return Bound(lambda: dot(wt, xt, out=out_t, out_scalar=0.0), lambda _: out_t.T)
        a, b, out = ops.csr, ops.dense, ops.empty_out()
        return Bound(lambda: dot(a, b, out=out, out_scalar=0.0), lambda _: out)


class Torch(Peer):
    """``torch.mm(S, D, out=C)`` on a CSR tensor: ``torch.sparse.mm``'s kernel (both reach
    ``addmm_out_sparse_csr_cpu``), without its allocation and zero fill."""

    name, module, uses_blas = "torch", "torch", True
    install = "pip install torch==2.13.0 (CPU wheel; not in the bench extra)"
    forms: ClassVar[dict[str, str]] = {
        "xw": "torch.mm(Wt, Xt, out=Ct): Wᵀ a sparse_csr_tensor sharing scipy's arrays, Xᵀ "
              "contiguous; C = Ctᵀ",
        "ab": "torch.mm(A, B, out=C): A a sparse_csr_tensor sharing scipy's arrays"}

    def load(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch

    def threads_reported(self) -> int | None:
        return int(self.torch.get_num_threads())

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        torch, xw = self.torch, ops.workload.kind == "xw"
        a = ops.wt if xw else ops.csr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            left = torch.sparse_csr_tensor(*(torch.from_numpy(v) for v in (
                a.indptr, a.indices, a.data)), size=a.shape, check_invariants=False)
        right = torch.from_numpy(ops.dense_t if xw else ops.dense)
        out = torch.from_numpy(ops.empty_out(transposed=xw))
        return Bound(lambda: torch.mm(left, right, out=out),
                     lambda _: out.numpy().T if xw else out.numpy())


class TorchDense(Torch):
    """What ``nn.Linear(in, out, bias=False)`` computes on the unpruned weights: PyTorch's
    own dense GEMM (its bundled MKL), beside numpy's."""

    name = "torch-dense"
    forms: ClassVar[dict[str, str]] = {
        "xw": "torch.nn.functional.linear(X, Wt) under inference_mode: nn.Linear(bias=False) "
              "with weight Wᵀ dense; torch allocates C", "ab": "skipped (a layer's product)"}

    def skip_reason(self, wl: Workload) -> str | None:
        if wl.kind != "xw":
            return "nn.Linear is a layer (X @ W); A @ B has no dense layer to compare with"
        return Dense().skip_reason(wl)

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        torch = self.torch
        weight = torch.from_numpy(ops.memo("wt_full", lambda: ops.wt.toarray()))
        x = torch.from_numpy(ops.dense)

        def call() -> Any:
            with torch.inference_mode():
                return torch.nn.functional.linear(x, weight)

        return Bound(call, lambda ret: ret.numpy())


class Graphblas(Peer):
    name, module, install = "graphblas", "graphblas", "pip install python-graphblas"
    forms: ClassVar[dict[str, str]] = {
        "xw": "Ct << Wt.mxm(Xt, plus_times): Wᵀ by row (CSR), Xᵀ full by column (X's buffer), "
              "Ct by column", "ab": "C << A.mxm(B, plus_times): A by row, B and C full by row"}

    def load(self, threads: int) -> None:
        import graphblas as gb

        gb.ss.config["nthreads"] = threads
        self.gb = gb

    def threads_reported(self) -> int | None:
        return int(self.gb.ss.config["nthreads"])

    def bind(self, ops: Operands, case: dict[str, Any]) -> Bound:
        gb, xw = self.gb, ops.workload.kind == "xw"
        a = ops.wt if xw else ops.csr
        left = gb.Matrix.ss.import_csr(nrows=a.shape[0], ncols=a.shape[1], indptr=a.indptr,
                                       col_indices=a.indices, values=a.data,
                                       take_ownership=False)
        right = (gb.Matrix.ss.import_fullc(values=ops.dense.T, take_ownership=False) if xw
                 else gb.Matrix.ss.import_fullr(values=ops.dense, take_ownership=False))
        out = gb.Matrix(left.dtype, a.shape[0], right.shape[1])
        out.ss.config["format"] = "by_col" if xw else "by_row"
        semiring = gb.semiring.plus_times[gb.dtypes.lookup_dtype(ops.dense.dtype)]

        def call() -> None:
            out << left.mxm(right, semiring)

        return Bound(call, lambda _: out.to_dense(fill_value=0).T if xw
                     else out.to_dense(fill_value=0))


#: Every library by name; scipy and spmm always run, the others are ``--peers``.
PEERS: dict[str, Peer] = {p.name: p for p in (Scipy(), Spmm(), Dense(), Torch(), TorchDense(),
                                              Mkl(), Graphblas())}


def get(name: str) -> Peer:
    """The peer called ``name``."""
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown library {name!r}; expected one of {sorted(PEERS)}") from None
