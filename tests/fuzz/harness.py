"""spmm's fuzz harness: random and corrupted inputs, each run in a child process.

Hypothesis with structured strategies drives it rather than a byte-level fuzzer (atheris): the
inputs are sparse matrices, keywords and pickles whose validity depends on their structure, so
drawing that structure directly (formats, dtypes, shapes, named corruptions) reaches the
checks far more often than mutating bytes does, and shrinks a failure to a readable recipe.

A *recipe* is a JSON-able dict (:func:`recipes` draws them) from which :func:`build` makes the
operands deterministically: a sparse operand in any scipy format and class with any index and
value dtype (corrupted or not), or a PreparedMatrix, or one restored from a (corrupted)
pickle, or a ``spmm.torch.SparseLinear`` loaded from a (corrupted) state; a dense operand of
any dtype, order, strides and size, with NaN and inf; an ``out=``; keywords and ``SPMM_*``
environment values, good and bad. :func:`check` runs one product and compares it with an
independent reference (:func:`reference_entries` reads every format's arrays by its own rules,
in Python, without scipy's C code). The contract it checks:

- every call either returns scipy's product (within a bound relative to ``|a| @ |b|``,
  elementwise; for a restored object, the product of its ``to_scipy()``; a structured layout
  stored with zero fill may turn 0 x inf into NaN, as documented) or raises ``TypeError`` or
  ``ValueError``; an input the reference finds invalid must raise; a valid, well-formed one
  must not;
- the operands are never modified;
- nothing crashes or hangs: :func:`run_isolated` runs each recipe in a forked child, and a
  child killed by a signal, or alive after its time limit, is a crash.

Unpickling corrupted bytes may fail inside pickle or numpy with any exception (pickle executes
what the bytes say); only exceptions raised from spmm's own code must be TypeError or
ValueError.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import os
import pickle
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

import spmm

try:  # as fuzz.harness (the test suite), or as harness (tests/fuzz/run.py)
    from .isolation import forked
except ImportError:
    from isolation import forked

try:  # SparseLinear states are fuzzed when PyTorch is installed
    import torch

    from spmm.torch import SparseLinear
except ImportError:
    torch = None

CORPUS = Path(__file__).parent / "corpus"
SPMM_DIR = os.path.dirname(spmm.__file__)

FORMATS = ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
INDEX_DTYPES = ("int32", "int64", "int8", "int16", "uint16", "uint32", "uint64", ">i4")
VALUE_DTYPES = ("float64", "float32", "float16", "bool", "int8", "uint8", "int16", "int32",
                "int64", "uint64", ">f8", ">f4", "<f4")
BACKENDS = ("openmp", "threads", "serial")
KERNELS = ("auto", "naive", "reordered", "tiled")
# (valid, invalid) values of each configuration variable (neon or avx512 may be valid names
# this CPU lacks: an error too).
ENV_VALUES = {
    "SPMM_BACKEND": (("openmp", "threads", "serial"), ("cuda", "", " threads")),
    "SPMM_NUM_THREADS": (("1", "2", "3"), ("0", "-1", "two", "1.5", "99999999999", "")),
    "SPMM_KERNEL": (KERNELS, ("fast", "")),
    "SPMM_SIMD": (("scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16", "neon"),
                  ("sse", "")),
}
CHILD_SECONDS = 60  # one case takes milliseconds: a child alive this long hangs

# --------------------------------------------------------------------------------------------
# Recipes.

_SIZES = st.sampled_from((0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 33, 64, 70))


def _corruption(draw: Callable, fmt: str) -> dict:
    """One named change to a sparse matrix's stored arrays."""
    fields = {
        "csr": ("indptr", "indices", "data", "shape"),
        "csc": ("indptr", "indices", "data", "shape"),
        "coo": ("row", "col", "data", "coords", "shape"),
        "bsr": ("indptr", "indices", "data", "shape"),
        "dia": ("offsets", "data", "shape"),
        "lil": ("rows", "data", "shape"),
        "dok": ("keys", "shape"),
    }[fmt]
    field = draw(st.sampled_from(fields))
    op = draw(st.sampled_from(("set", "set", "set", "truncate", "extend", "dtype", "replace")))
    value = draw(st.sampled_from(("neg", "zero", "major", "minor", "minor-1", "nnz+1",
                                  "2**31", "2**32", "2**32+1", "2**63-1", "prev", "next",
                                  "random")))
    return {"field": field, "op": op, "at": draw(st.floats(0, 1, exclude_max=True)),
            "value": value,
            "dtype": draw(st.sampled_from(("float64", "int8", "uint64", "object", "int64",
                                           "bool", "complex128")))}


def _pickle_corruption(draw: Callable) -> dict:
    kind = draw(st.sampled_from(("none", "none", "field", "field", "field", "bytes",
                                 "array-bytes", "buffers")))
    return {
        "kind": kind,
        "field": draw(st.sampled_from(("shape", "indptr", "indices", "data", "layout", "block",
                                       "n_m", "missing", "state", "swap"))),
        "value": draw(st.sampled_from(("neg", "zero", "major", "minor", "minor-1", "nnz+1",
                                       "2**31", "2**32", "2**32+1", "2**63-1", "prev", "next",
                                       "random"))),
        "dtype": draw(st.sampled_from(("float64", "int8", "uint64", "object", "int64", "bool",
                                       ">f8", "complex128", "float16"))),
        "target": draw(st.sampled_from(("indptr", "indices", "data", "anywhere"))),
        "flips": draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                         st.integers(0, 255)), min_size=1, max_size=4)),
        "protocol": draw(st.sampled_from((2, 4, 5, 5))),
    }


def _layout(draw: Callable) -> dict:
    layout = draw(st.sampled_from(("auto", "auto", "csr", "tile", "block", "n_m")))
    recipe: dict[str, Any] = {"layout": layout}
    if layout == "tile" and draw(st.booleans()):
        recipe["tile"] = draw(st.sampled_from((1, 3, 16, 32, 128, 2**22)))
    if layout == "block" and draw(st.booleans()):
        recipe["block"] = [draw(st.sampled_from((1, 2, 3, 8, 2**20))),
                           draw(st.sampled_from((1, 5, 16, 64)))]
    if layout == "n_m" and draw(st.booleans()):
        m = draw(st.sampled_from((1, 2, 4, 8, 16, 255)))
        recipe["n_m"] = [draw(st.integers(1, m)), m]
    return recipe


@st.composite
def recipes(draw: Callable) -> dict:
    """A random fuzz case: see the module docstring."""
    kinds = ["scipy"] * 6 + ["prepared"] * 2 + ["restored"] * 4 + ["odd"]
    if torch is not None:
        kinds += ["sparse_linear"] * 2
    kind = draw(st.sampled_from(kinds))
    fmt = draw(st.sampled_from(FORMATS))
    sparse = {
        "kind": kind,
        "format": fmt,
        "cls": draw(st.sampled_from(("array", "matrix"))),
        "shape": [draw(_SIZES), draw(_SIZES)],
        "density": draw(st.sampled_from((0.0, 0.05, 0.2, 0.5, 1.0))),
        "structure": draw(st.sampled_from(("random", "random", "tile", "block", "n_m"))),
        "index_dtype": draw(st.sampled_from(INDEX_DTYPES)),
        "value_dtype": draw(st.sampled_from(VALUE_DTYPES)),
        "values": draw(st.sampled_from(("normal", "normal", "normal", "nan", "inf", "zeros",
                                        "huge", "tiny", "ints"))),
        "special": draw(st.sampled_from(("none", "none", "duplicates", "unsorted",
                                         "spare"))),
        "corruptions": [] if kind != "scipy" else [
            _corruption(draw, fmt) for _ in range(draw(st.sampled_from((0, 0, 0, 1, 1, 2))))],
        "odd": draw(st.sampled_from(("coo1d", "dense", "none", "str", "3d", "ragged",
                                     "two-sparse"))),
    }
    if kind in ("prepared", "restored", "sparse_linear"):
        sparse["prepare"] = _layout(draw)
        sparse["pickle"] = _pickle_corruption(draw)
    # Three calls in four are well formed (dtypes, shapes, out=, keywords, environment), so
    # that most corrupted matrices reach the checks and most valid ones the kernels; the
    # fourth draws every argument from its good and bad values.
    good = draw(st.sampled_from((True, True, True, False)))

    def pick(valid: tuple, invalid: tuple = ()) -> Any:
        return draw(st.sampled_from(valid if good else valid + invalid))

    dense = {
        "dtype": pick(VALUE_DTYPES, ("complex64", "object", "str", ">i2")),
        "vector": draw(st.booleans()),
        "width": draw(st.sampled_from((0, 1, 2, 3, 5, 8, 16, 17))),
        "mismatch": pick((0,), (0, 1, -1)),
        "order": draw(st.sampled_from(("C", "F"))),
        "step": [draw(st.sampled_from((1, 1, 2, -1))), draw(st.sampled_from((1, 1, 2, -1)))],
        "values": draw(st.sampled_from(("normal", "normal", "normal", "nan", "inf", "huge",
                                        "ints"))),
        "as": pick(("ndarray", "ndarray", "ndarray", "list", "matrix", "unaligned")),
    }
    out = pick((None, None, "right"), ("wrong-shape", "wrong-dtype", "fortran", "strided",
                                       "readonly", "alias", "list"))
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs["backend"] = pick((*BACKENDS, None), ("cuda", "", 1))
    if draw(st.booleans()):
        kwargs["num_threads"] = pick((None, 1, 2, 3, 4, 7, 64),  # (the bound: 64 per CPU)
                                     (0, -1, 1.5, "2", True, 4097, 2**31))
    if draw(st.booleans()):
        kwargs["kernel"] = pick((*KERNELS, None), ("fast", 2))
    env = {name: pick(valid, invalid) for name, (valid, invalid) in ENV_VALUES.items()
           if draw(st.integers(0, 3)) == 0}
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "side": draw(st.sampled_from(("left", "right"))),
        "call": draw(st.sampled_from(("multiply", "multiply", "operator", "partition"))),
        "partition": pick(("auto", "rows", "nnz", "dynamic"), ("bad",)),
        "sparse": sparse,
        "dense": dense,
        "out": out,
        "kwargs": kwargs,
        "env": env,
    }


# --------------------------------------------------------------------------------------------
# Building the operands.


class Invalid(Exception):
    """The reference finds the input invalid: spmm must raise TypeError or ValueError."""


class _Refused(Exception):
    """``prepare`` refused the recipe's declared layout (a ValueError): no product to run."""


def _values(n: int | tuple, dtype: np.dtype, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` random values of ``dtype``, of the kind the recipe asks for."""
    if dtype.kind in "OUS":
        return rng.standard_normal(n).astype(dtype)
    if dtype.kind == "b":
        return rng.random(n) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if kind == "huge":
            return rng.choice(np.array([info.min, info.max, 0, 1], dtype=dtype), n)
        return rng.integers(max(info.min, -9), min(info.max, 9), n, endpoint=True).astype(dtype)
    if kind == "ints":
        x = rng.integers(-4, 5, n).astype(np.float64)
    elif kind == "zeros":
        x = np.where(rng.random(n) < 0.5, 0.0, rng.standard_normal(n))
    elif kind == "huge":
        x = rng.choice([1.0, -1.0], n) * np.finfo(dtype).max / rng.choice([1, 2, 3], n)
    elif kind == "tiny":
        x = rng.standard_normal(n) * np.finfo(dtype).smallest_subnormal * 7
    else:
        x = rng.standard_normal(n)
    x = np.asarray(x)
    if kind in ("nan", "inf") and x.size:
        special = np.nan if kind == "nan" else np.inf
        x = x.copy()
        x.flat[rng.integers(0, x.size, max(1, x.size // 7))] = special * rng.choice(
            [1, -1], max(1, x.size // 7))
    return x.astype(dtype)


def _structured_mask(structure: str, shape: tuple[int, int],
                     rng: np.random.Generator) -> np.ndarray:
    rows, cols = shape
    if structure == "tile":  # whole row segments of 16 columns
        kept = rng.random((rows, -(-cols // 16))) < 0.5
        return np.repeat(kept, 16, axis=1)[:, :cols]
    if structure == "block":  # 4 x 16 blocks
        kept = rng.random((-(-rows // 4), -(-cols // 16))) < 0.5
        return np.repeat(np.repeat(kept, 4, axis=0), 16, axis=1)[:rows, :cols]
    mask = np.zeros(shape, dtype=bool)  # 2:4 along the rows of each column
    for g in range(0, rows, 4):
        size = min(4, rows - g)
        for j in range(cols):
            mask[g + rng.choice(size, min(2, size), replace=False), j] = True
    return mask


def _storable(dtype: np.dtype) -> np.dtype:
    """The dtype scipy's constructors accept for values of ``dtype`` (native; no float16)."""
    dtype = dtype.newbyteorder("=")
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _canonical(recipe: dict, rng: np.random.Generator) -> sp.csr_array:
    """The valid matrix a recipe starts from, as a canonical CSR array (values of a dtype
    scipy's constructors accept: see :func:`_with_value_dtype`)."""
    s = recipe["sparse"]
    shape = tuple(s["shape"])
    dtype = _storable(np.dtype(s["value_dtype"]))
    if s["structure"] == "random" or 0 in shape:
        mask = rng.random(shape) < s["density"]
    else:
        mask = _structured_mask(s["structure"], shape, rng)
    rows, cols = np.nonzero(mask)
    values = _values(len(rows), dtype, s["values"], rng)
    return sp.csr_array((values, (rows, cols)), shape=shape)


def _with_index_dtype(a: Any, dtype: np.dtype) -> None:
    """Give ``a``'s index arrays ``dtype`` when every index fits in it (scipy keeps them)."""
    names = {"csr": ("indptr", "indices"), "csc": ("indptr", "indices"),
             "bsr": ("indptr", "indices"), "coo": ()}.get(a.format)
    if names is None:
        return
    if a.format == "coo":
        if all(len(c) == 0 or np.can_cast(c.max(), dtype) for c in a.coords):
            a.coords = tuple(c.astype(dtype) for c in a.coords)
        return
    arrays = [getattr(a, n) for n in names]
    if all(len(x) == 0 or (x.max() <= np.iinfo(dtype).max) for x in arrays):
        for n, x in zip(names, arrays, strict=True):
            setattr(a, n, x.astype(dtype))


def _special(a: Any, special: str, rng: np.random.Generator) -> Any:
    """Unsorted indices, duplicates or spare capacity, for the formats that can hold them."""
    if special == "none" or a.nnz == 0:
        return a
    if a.format in ("csr", "csc"):
        indptr, indices, data = a.indptr.copy(), a.indices.copy(), a.data.copy()
        if special == "unsorted":
            for i in range(len(indptr) - 1):
                lo, hi = int(indptr[i]), int(indptr[i + 1])
                order = rng.permutation(hi - lo)
                indices[lo:hi], data[lo:hi] = indices[lo:hi][order], data[lo:hi][order]
        elif special == "duplicates":  # every entry of row 0's... stored twice, same column
            row = int(np.argmax(np.diff(indptr) > 0))
            p = int(indptr[row])
            indices = np.insert(indices, p, indices[p])
            data = np.insert(data, p, data[p])
            indptr = indptr.copy()
            indptr[row + 1:] += 1
        else:  # spare: entries beyond indptr[-1], which must be ignored
            beyond = np.iinfo(indices.dtype).max  # out of range, but never read
            indices = np.append(indices, np.array([beyond], indices.dtype))
            data = np.append(data, data[:1])
        cls = type(a)
        b = cls((data, indices, indptr), shape=a.shape)
        b.indptr, b.indices, b.data = indptr, indices, data
        return b
    if a.format == "coo" and special in ("duplicates", "unsorted"):
        order = rng.permutation(a.nnz)
        coords = tuple(np.concatenate([c[order], c[:1]]) for c in a.coords)
        return type(a)((np.concatenate([a.data[order], a.data[:1]]), coords), shape=a.shape)
    return a


def _number(value: str, array: Any, position: int, major: int, minor: int, nnz: int,
            rng: np.random.Generator) -> int:
    """The integer a corruption writes."""
    flat = list(np.asarray(array).ravel()) if array is not None else []
    table = {
        "neg": -1, "zero": 0, "major": major, "minor": minor, "minor-1": minor - 1,
        "nnz+1": nnz + 1, "2**31": 2**31, "2**32": 2**32, "2**32+1": 2**32 + 1,
        "2**63-1": 2**63 - 1,
        "prev": int(flat[position - 1]) if 0 < position <= len(flat) else 0,
        "next": int(flat[position + 1]) if position + 1 < len(flat) else 0,
        "random": int(rng.integers(0, max(1, minor))),
    }
    return table[value]


def _set_entry(array: np.ndarray, at: float, number: int) -> np.ndarray:
    """``array`` with one entry set to ``number``, widened to int64 or uint64 to hold it."""
    if len(array) == 0:
        return array
    out = np.array(array, copy=True)
    if not np.can_cast(np.min_scalar_type(number), out.dtype):
        out = out.astype(np.uint64 if number >= 2**63 else np.int64)
    out[int(at * len(out))] = number
    return out


def _corrupt_array(array: Any, c: dict, major: int, minor: int, nnz: int,
                   rng: np.random.Generator) -> Any:
    op = c["op"]
    array = np.asarray(array)
    if op == "set":
        position = int(c["at"] * len(array)) if len(array) else 0
        return _set_entry(array, c["at"], _number(c["value"], array, position, major, minor,
                                                  nnz, rng))
    if op == "truncate":
        return array[:-1]
    if op == "extend":
        return np.concatenate([array, array[:1]]) if len(array) else np.zeros(1, array.dtype)
    if op == "dtype":
        with np.errstate(all="ignore"):
            return array.astype(c["dtype"])
    return array.reshape(1, -1)  # replace: a 2-D array


def _corrupt(a: Any, c: dict, rng: np.random.Generator) -> None:
    """Apply one corruption to ``a``'s stored arrays, in place, as a user's assignment does."""
    fmt, field = a.format, c["field"]
    rows, cols = a.shape
    nnz = a.nnz if fmt not in ("lil",) else sum(map(len, a.rows))
    if field == "shape":
        value = {"neg": (-1, cols), "zero": (rows, 0), "2**31": (rows, 2**31),
                 "prev": (rows + 1, cols), "next": (rows, cols + 1),
                 "random": (float(rows), cols), "2**63-1": (rows, 2**63)}.get(c["value"],
                                                                          (str(rows), cols))
        a._shape = value
        return
    if fmt in ("csr", "csc", "bsr"):
        major, minor = (rows, cols) if fmt != "csc" else (cols, rows)
        if fmt == "bsr":
            major, minor = rows // max(1, a.blocksize[0]), cols // max(1, a.blocksize[1])
        if field == "data" and fmt == "bsr" and c["op"] == "replace":
            a.data = a.data.reshape(a.data.shape[0], -1)
            return
        setattr(a, field, _corrupt_array(getattr(a, field), c, major + 1 if field == "indptr"
                                         else major, minor, nnz, rng))
    elif fmt == "coo":
        if field == "coords":
            a.coords = (*a.coords, a.coords[0]) if c["op"] != "truncate" else a.coords[:1]
        elif field == "data":
            a.data = _corrupt_array(a.data, c, rows, cols, nnz, rng)
        else:
            axis = 0 if field == "row" else 1
            coords = list(a.coords)
            coords[axis] = _corrupt_array(coords[axis], c, (rows, cols)[axis],
                                          (rows, cols)[axis], nnz, rng)
            a.coords = tuple(coords)
    elif fmt == "dia":
        if field == "offsets":
            a.offsets = _corrupt_array(a.offsets, c, rows, cols, nnz, rng)
        else:
            a.data = _corrupt_array(a.data, c, rows, cols, nnz, rng) if c["op"] != "replace" \
                else a.data.ravel()
    elif fmt == "lil":
        if rows == 0:
            return
        i = int(c["at"] * rows)
        if field == "rows" and c["op"] == "replace":
            a.rows = list(a.rows)
        elif field == "rows":
            value = {"set": [_number(c["value"], None, 0, rows, cols, nnz, rng)],
                     "truncate": a.rows[i][:-1], "extend": [*a.rows[i], cols],
                     "dtype": tuple(a.rows[i])}[c["op"]]
            if c["op"] == "dtype" and c["dtype"] in ("float64", "object"):
                value = [float(j) + 0.5 for j in a.rows[i]]
            a.rows[i] = value
            if c["op"] == "set":
                a.data[i] = [1.0]
        elif c["op"] == "truncate":
            a.data = a.data[:-1]
        else:
            a.data[i] = [*a.data[i], 1.0]
    elif fmt == "dok":
        key = {"set": (_number(c["value"], None, 0, rows, cols, nnz, rng), 0),
               "truncate": (0,), "extend": (0, 0, 0), "dtype": (0.5, 0),
               "replace": "key"}[c["op"]]
        a._dict[key] = 1.0


def _scipy_operand(recipe: dict, rng: np.random.Generator) -> Any:
    s = recipe["sparse"]
    canonical = _canonical(recipe, rng)
    fmt = s["format"]
    if fmt == "bsr":
        rows, cols = canonical.shape
        block = next(((r, c) for r, c in ((2, 2), (1, 4), (3, 1), (1, 1))
                      if rows % r == 0 and cols % c == 0))
        a = canonical.tobsr(blocksize=block)
    else:
        a = canonical.asformat(fmt)
    if s["cls"] == "matrix":
        a = getattr(sp, f"{fmt}_matrix")(a)
    _with_index_dtype(a, np.dtype(s["index_dtype"]))
    a = _special(a, s["special"], rng)
    dtype = np.dtype(s["value_dtype"])
    if dtype != a.dtype and isinstance(getattr(a, "data", None), np.ndarray) and (
            a.data.dtype != object):
        a.data = a.data.astype(dtype)  # float16 or byte-swapped: scipy stores them if given
    for c in s["corruptions"]:
        try:
            _corrupt(a, c, rng)
        except (ValueError, TypeError, IndexError, OverflowError, AttributeError):
            pass  # a corruption scipy itself refuses to store: the matrix stays as it was
    return a


def _prepare_kwargs(s: dict) -> dict:
    p = dict(s["prepare"])
    for name in ("block", "n_m"):
        if name in p:
            p[name] = tuple(p[name])
    return p


class _Stand:
    """Pickles as a PreparedMatrix restored from ``state``, whatever ``state`` is."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self) -> tuple:
        return (_new_prepared, (), self.state)


def _new_prepared() -> spmm.PreparedMatrix:
    return spmm.PreparedMatrix.__new__(spmm.PreparedMatrix)


def _corrupt_state(state: dict, c: dict, rng: np.random.Generator) -> Any:
    """A field-level corruption of a PreparedMatrix's (or SparseLinear's) state."""
    state = dict(state)
    field = c["field"]
    rows, cols = state["shape"]
    nnz = len(state["data"])
    if field == "missing":
        state.pop(rng.choice(sorted(state)), None)
    elif field == "state":
        return list(state.values())
    elif field == "swap":
        state["indptr"], state["indices"] = state["indices"], state["indptr"]
    elif field == "shape":
        number = _number(c["value"], None, 0, rows, cols, nnz, rng)
        state["shape"] = (rows, number) if abs(number) <= 2**20 else (rows, float(cols))
    elif field in ("indptr", "indices", "data"):
        array = np.asarray(state[field])
        if c["dtype"] != "int64" or field == "data":
            with np.errstate(all="ignore"):
                state[field] = array.astype(c["dtype"])
        else:
            position = int(c["at"] * len(array)) if len(array) else 0
            state[field] = _set_entry(array, c["at"], _number(c["value"], array, position,
                                                              rows, cols, nnz, rng))
    elif field == "layout":
        state["layout"] = rng.choice(["csr", "tile", "block", "n_m", "bsr", None])
    else:  # block or n_m: another layout's parameters, or nonsense
        choices = [None, (1, 16), (4, 16), (2, 4), (0, 4), (5, 4), (2, 300), (1.5, 2), "4"]
        state[field] = choices[int(rng.integers(0, len(choices)))]
    return state


def _flip(blob: bytes, flips: list, lo: int = 0, hi: int | None = None) -> bytes:
    hi = len(blob) if hi is None else hi
    data = bytearray(blob)
    for at, byte in flips:
        if hi > lo:
            data[lo + int(at * (hi - lo))] = byte
    return bytes(data)


def _restored(p: spmm.PreparedMatrix, c: dict, rng: np.random.Generator) -> Any:
    """``p`` pickled, corrupted as the recipe says, and unpickled."""
    kind = c["kind"]
    if kind == "field":
        return pickle.loads(pickle.dumps(_Stand(_corrupt_state(p.__getstate__(), c, rng))))
    buffers: list = []
    protocol = c["protocol"]
    callback = buffers.append if protocol == 5 and kind == "buffers" else None
    blob = pickle.dumps(p, protocol=protocol, buffer_callback=callback)
    if kind == "bytes":
        blob = _flip(blob, c["flips"])
    elif kind == "array-bytes":
        target = c["target"] if c["target"] != "anywhere" else "data"
        raw = getattr(p._csr, target).tobytes()
        at = blob.find(raw)
        if at >= 0 and raw:
            blob = _flip(blob, c["flips"], at, at + len(raw))
    elif kind == "buffers":
        writable = [bytearray(b.raw()) for b in buffers]
        for buffer in writable[:1]:
            buffer[:] = _flip(bytes(buffer), c["flips"])
        return pickle.loads(blob, buffers=writable)
    return pickle.loads(blob)


def _sparse_linear(p: spmm.PreparedMatrix, c: dict, rng: np.random.Generator) -> Any:
    """A SparseLinear loaded from ``p``'s module state, corrupted as the recipe says."""
    source = SparseLinear(p, bias=np.ones(p.shape[1], dtype=p.dtype) if p.shape[1] else None)
    state = source.state_dict()
    if c["kind"] == "field":
        extra = state["_extra_state"]
        corrupted = _corrupt_state({k: (v.numpy() if isinstance(v, torch.Tensor) else v)
                                    for k, v in extra.items()}, c, rng)
        if isinstance(corrupted, dict):
            corrupted = {k: (torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray)
                             and v.dtype.kind in "biuf" and v.dtype.isnative else v)
                         for k, v in corrupted.items()}
        state["_extra_state"] = corrupted
    elif c["kind"] in ("bytes", "array-bytes"):
        buffer = io.BytesIO()
        torch.save(state, buffer, _use_new_zipfile_serialization=False)
        state = torch.load(io.BytesIO(_flip(buffer.getvalue(), c["flips"])), weights_only=True)
    target = SparseLinear(spmm.prepare(sp.csr_array(p.shape, dtype=p.dtype)),
                          bias=np.zeros(p.shape[1], dtype=p.dtype) if p.shape[1] else None)
    target.load_state_dict(state)
    return target


def build_sparse(recipe: dict, rng: np.random.Generator) -> Any:
    """The sparse operand of a recipe (may raise while restoring a corrupted one)."""
    s = recipe["sparse"]
    kind = s["kind"]
    if kind == "scipy":
        return _scipy_operand(recipe, rng)
    if kind == "odd":
        return {"coo1d": lambda: sp.coo_array(np.ones(3)), "dense": lambda: np.ones((3, 3)),
                "none": lambda: None, "str": lambda: "sparse",
                "3d": lambda: np.ones((2, 2, 2)), "ragged": lambda: [[1.0], [1.0, 2.0]],
                "two-sparse": lambda: sp.eye_array(3, format="csr")}[s["odd"]]()
    base = _canonical(recipe, rng)
    try:
        p = spmm.prepare(base, **_prepare_kwargs(s))
    except ValueError as exc:  # a declared N:M layout the matrix does not fit
        raise _Refused(str(exc)) from None
    if kind == "prepared":
        return p
    if kind == "restored":
        return _restored(p, s["pickle"], rng)
    return _sparse_linear(p, s["pickle"], rng)


def build_dense(recipe: dict, shape_of_sparse: tuple[int, int] | None,
                rng: np.random.Generator) -> Any:
    d = recipe["dense"]
    rows, cols = shape_of_sparse if shape_of_sparse is not None else (3, 3)
    inner, outer = (cols, rows) if recipe["side"] == "left" else (rows, cols)
    inner = max(inner + d["mismatch"], 0)
    width = d["width"]
    if inner > 2**16:  # a corrupted shape: no such operand fits in memory, give a wrong one
        inner = 1
    if outer > 2**16:  # nor such a result: only a product of zero columns is possible
        width = 0
    if d["vector"] and outer <= 2**16:
        shape: tuple[int, ...] = (inner,)
    else:
        shape = (inner, width) if recipe["side"] == "left" else (width, inner)
    dtype = np.dtype(d["dtype"]) if d["dtype"] != "str" else np.dtype("U3")
    steps = [abs(s) for s in d["step"][:len(shape)]]
    big = tuple(n * s for n, s in zip(shape, steps, strict=True))
    x = np.asarray(_values(big, dtype if dtype.kind != "U" else np.dtype(np.float64),
                           d["values"], rng))
    if dtype.kind == "U":
        x = x.astype(dtype)
    if d["order"] == "F":
        x = np.asfortranarray(x)
    index = tuple(slice(None, None, s) for s in d["step"][:len(shape)])
    x = x[index]
    if d["as"] == "list":
        return x.tolist()
    if d["as"] == "matrix" and x.ndim == 2:
        return np.asmatrix(x)
    if d["as"] == "unaligned" and x.dtype.itemsize > 1 and x.dtype.kind in "biuf":
        raw = np.zeros(x.nbytes + 1, dtype=np.uint8)[1:]
        y = raw.view(x.dtype).reshape(x.shape)
        y[...] = x
        return y
    return x


# --------------------------------------------------------------------------------------------
# The independent reference: every format's entries, read by its own rules.


def _ints(x: Any, what: str) -> list[int]:
    if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype.kind not in "iu":
        raise Invalid(f"{what} is not a 1-D integer array")
    return [int(v) for v in x.tolist()]


def _shape(a: Any) -> tuple[int, int]:
    shape = a.shape
    if (not isinstance(shape, tuple) or len(shape) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_))
                       and 0 <= n < 2**63 for n in shape)):
        raise Invalid(f"shape {shape!r}")
    return int(shape[0]), int(shape[1])


def _compressed(indptr: Any, indices: Any, major: int, minor: int,
                stored: int) -> list[tuple[int, int, int]]:
    """(major index, minor index, position) of a valid compressed structure."""
    ptr, idx = _ints(indptr, "indptr"), _ints(indices, "indices")
    if len(ptr) != major + 1 or ptr[0] != 0:
        raise Invalid("indptr length or start")
    if any(b < a for a, b in itertools.pairwise(ptr)):
        raise Invalid("indptr decreasing")
    if ptr[-1] > min(len(idx), stored):
        raise Invalid("indptr[-1] beyond the stored entries")
    out = []
    for i in range(major):
        for p in range(ptr[i], ptr[i + 1]):
            if not 0 <= idx[p] < minor:
                raise Invalid("index out of range")
            out.append((i, idx[p], p))
    return out


def reference_entries(a: Any) -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]:
    """(shape, rows, cols, values) of every entry ``a`` stores (in float64; duplicates apart,
    to be summed as scipy's ``a @ b`` sums them; DIA's stored zeros dropped, as scipy's CSR
    form drops them), or Invalid. Written from the formats' definitions, in Python, so that it never
    runs scipy's conversion code on a corrupt matrix."""
    if not sp.issparse(a) or a.ndim != 2:
        raise Invalid("not a 2-D sparse matrix")
    fmt = a.format
    rows, cols = _shape(a)
    entries: list[tuple[int, int, Any]] = []
    data = getattr(a, "data", None)
    if fmt in ("csr", "csc", "coo", "bsr", "dia"):
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "biuf":
            raise Invalid("data")
    if fmt in ("csr", "csc"):
        if data.ndim != 1:
            raise Invalid("data not 1-D")
        major, minor = (rows, cols) if fmt == "csr" else (cols, rows)
        for i, j, p in _compressed(a.indptr, a.indices, major, minor, len(data)):
            entries.append((i, j, data[p]) if fmt == "csr" else (j, i, data[p]))
    elif fmt == "coo":
        coords = a.coords
        if not isinstance(coords, tuple) or len(coords) != 2 or data.ndim != 1:
            raise Invalid("coords")
        r, c = _ints(coords[0], "row"), _ints(coords[1], "col")
        if not len(r) == len(c) == len(data):
            raise Invalid("coordinate lengths")
        for i, j, v in zip(r, c, data, strict=True):
            if not (0 <= i < rows and 0 <= j < cols):
                raise Invalid("coordinate out of range")
            entries.append((i, j, v))
    elif fmt == "bsr":
        if data.ndim != 3 or 0 in data.shape[1:]:
            raise Invalid("bsr data")
        br, bc = data.shape[1:]
        if rows % br or cols % bc:
            raise Invalid("blocks do not tile")
        for i, j, p in _compressed(a.indptr, a.indices, rows // br, cols // bc, len(data)):
            for r in range(br):
                for c in range(bc):
                    entries.append((i * br + r, j * bc + c, data[p, r, c]))
    elif fmt == "dia":
        offsets = _ints(a.offsets, "offsets")
        if data.ndim != 2 or len(offsets) != data.shape[0]:
            raise Invalid("dia data")
        for d, k in enumerate(offsets):
            for j in range(min(data.shape[1], cols)):
                if 0 <= j - k < rows and data[d, j] != 0:
                    entries.append((j - k, j, data[d, j]))
    elif fmt == "lil":
        lrows, ldata = a.rows, a.data
        for x in (lrows, ldata):
            if not isinstance(x, np.ndarray) or x.dtype != object or x.shape != (rows,):
                raise Invalid("lil arrays")
        for i in range(rows):
            columns, values = lrows[i], ldata[i]
            if type(columns) is not list or type(values) is not list:
                raise Invalid("lil row not a list")
            if len(columns) != len(values):
                raise Invalid("lil lengths")
            for j, v in zip(columns, values, strict=True):
                if not isinstance(j, (int, np.integer)) or not 0 <= j < cols:
                    raise Invalid("lil column")
                entries.append((i, int(j), v))
    elif fmt == "dok":
        for key, v in a.items():
            if (type(key) is not tuple or len(key) != 2
                    or not all(isinstance(k, (int, np.integer))
                               and not isinstance(k, (bool, np.bool_)) for k in key)
                    or not (0 <= key[0] < rows and 0 <= key[1] < cols)):
                raise Invalid("dok key")
            entries.append((int(key[0]), int(key[1]), v))
    if np.dtype(a.dtype).kind not in "biuf":
        raise Invalid("dtype")
    try:
        values = np.array([v for _, _, v in entries], dtype=a.dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Invalid(f"values: {exc}") from None
    r = np.array([e[0] for e in entries], dtype=np.int64)
    c = np.array([e[1] for e in entries], dtype=np.int64)
    return (rows, cols), r, c, values.astype(np.float64)


# --------------------------------------------------------------------------------------------
# The product and its verdict.


def promised_dtype(sparse: np.dtype, dense: np.dtype) -> np.dtype:
    """The result dtype the design promises: numpy's result_type when it is float32 or
    float64; float16 alone gives float32; integers and bool alone give float64."""
    sparse, dense = (np.dtype(t).newbyteorder("=") for t in (sparse, dense))
    common = np.result_type(sparse, dense)
    if common in (np.float32, np.float64):
        return np.dtype(common)
    return np.dtype(np.float32 if common == np.float16 else np.float64)


def _snapshot(x: Any) -> Any:
    """A deep copy of what an operand stores, to check that spmm does not modify it."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if sp.issparse(x):
        return {k: copy.deepcopy(v) for k, v in vars(x).items()}
    return None


def _same(before: Any, after: Any) -> bool:
    if isinstance(before, np.ndarray):
        return isinstance(after, np.ndarray) and before.shape == after.shape and bool(
            np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"))
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_same(before[k], after[k]) for k in before)
    if isinstance(before, (list, tuple)):
        return len(before) == len(after) and all(_same(x, y) for x, y in zip(before, after,
                                                                                strict=True))
    if isinstance(before, (float, np.floating)) and np.isnan(before):
        return isinstance(after, (float, np.floating)) and bool(np.isnan(after))
    try:
        return bool(before == after)
    except Exception:
        return True


def _out(recipe: dict, shape: tuple[int, ...], dtype: np.dtype, dense: Any) -> Any:
    kind = recipe["out"]
    if kind is None:
        return None
    if kind == "alias":
        return dense
    if kind == "list":
        return np.zeros(shape).tolist()
    if kind == "wrong-shape":
        return np.empty((*shape, 1), dtype)
    if kind == "wrong-dtype":
        return np.empty(shape, np.float32 if dtype == np.float64 else np.float64)
    if kind == "fortran":
        return np.asfortranarray(np.empty(shape, dtype))
    if kind == "strided":
        return np.empty(tuple(2 * n for n in shape), dtype)[tuple(slice(None, None, 2)
                                                                  for _ in shape)]
    if kind == "readonly":
        out = np.empty(shape, dtype)
        out.flags.writeable = False
        return out
    return np.empty(shape, dtype)


def _in_spmm(exc: BaseException) -> bool:
    """Whether ``exc`` was raised from inside spmm's own code."""
    return any(frame.filename.startswith(SPMM_DIR)
               for frame in traceback.extract_tb(exc.__traceback__))


def _allowed(exc: BaseException) -> bool:
    return isinstance(exc, (TypeError, ValueError))


def _matches(result: np.ndarray, expected: np.ndarray, magnitude: np.ndarray,
             inner: int, nan_ok_rows: np.ndarray | None) -> str | None:
    """None when ``result`` equals ``expected`` within the rounding bound, else why not."""
    info = np.finfo(result.dtype)
    steps = inner + 2
    res = np.asarray(result, dtype=np.float64)
    bound = steps * info.eps * magnitude + steps * info.tiny
    overflow = magnitude * (1 + steps * info.eps) > info.max  # partial sums may overflow
    with np.errstate(invalid="ignore"):
        ok = (overflow
              | (np.isnan(expected) & np.isnan(res))
              | (np.isinf(expected) & (res == expected))
              | (np.isfinite(expected) & (np.abs(res - expected) <= bound)))
    if nan_ok_rows is not None:
        ok |= np.isnan(res) & nan_ok_rows
    if ok.all():
        return None
    where = tuple(int(i) for i in np.argwhere(~ok)[0])
    return (f"at {where}: got {res[where]!r}, expected {expected[where]!r} "
            f"(bound {bound[where]:.3g}, magnitude {magnitude[where]:.3g})")


def check(recipe: dict) -> dict:
    """Run one recipe in this process; the verdict ``{"status": "ok" | "wrong" | ...}``."""
    rng = np.random.default_rng(recipe["seed"])
    for name, value in recipe["env"].items():
        os.environ[name] = value
    s = recipe["sparse"]
    corrupted = bool(s["corruptions"]) or (s["kind"] in ("restored", "sparse_linear")
                                           and s["pickle"]["kind"] != "none")
    try:
        sparse = build_sparse(recipe, rng)
    except _Refused as exc:
        return {"status": "ok", "note": f"prepare refused the declared layout: {exc}"}
    except Exception as exc:
        if s["kind"] in ("restored", "sparse_linear") and corrupted:
            if not _in_spmm(exc) or _allowed(exc):
                return {"status": "ok", "note": f"restoring raised {type(exc).__name__}"}
            return {"status": "bad-exception", "why": f"restoring raised {type(exc).__name__}: "
                    f"{exc}", "trace": traceback.format_exc()}
        return {"status": "error", "why": f"building raised {type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()}
    module = sparse if torch is not None and isinstance(sparse, SparseLinear) else None
    holder = module.prepared if module is not None else sparse
    try:
        reference = reference_entries(holder.to_scipy() if isinstance(
            holder, spmm.PreparedMatrix) else holder)
    except Invalid as exc:
        reference = exc
    except Exception as exc:
        reference = Invalid(f"{type(exc).__name__}: {exc}")
    if isinstance(holder, spmm.PreparedMatrix) and isinstance(reference, Invalid):
        return {"status": "wrong", "why": f"a prepared or restored matrix is invalid: "
                f"{reference}"}
    shape = reference[0] if not isinstance(reference, Invalid) else None
    dense = build_dense(recipe, shape, rng)
    if module is not None:
        return _check_module(recipe, module, dense, reference)
    left, right = (sparse, dense) if recipe["side"] == "left" else (dense, sparse)
    dense_array = np.asarray(dense)
    snapshots = (_snapshot(sparse), _snapshot(dense))
    expected = dtype = None
    clean = (not corrupted and s["kind"] in ("scipy", "prepared", "restored")
             and recipe["dense"]["dtype"] not in ("complex64", "object", "str")
             and recipe["dense"]["mismatch"] == 0 and not recipe["env"]
             and all(_valid_keyword(k, v) for k, v in recipe["kwargs"].items())
             and recipe["call"] != "partition")
    if not isinstance(reference, Invalid) and dense_array.dtype.kind in "biuf" and (
            dense_array.ndim in (1, 2)) and (
            dense_array.shape[0] == shape[1] if recipe["side"] == "left"
            else dense_array.shape[-1] == shape[0]):
        dtype = promised_dtype(holder.dtype, dense_array.dtype)
        expected, magnitude, inner = _reference_product(reference, dense_array,
                                                        recipe["side"])
    out = None
    if expected is not None:
        out = _out(recipe, expected.shape, dtype, dense)
        current = np.dtype(np.float32 if {np.dtype(holder.dtype).newbyteorder("="),
                                          dense_array.dtype.newbyteorder("=")} <= {
            np.dtype(np.float16), np.dtype(np.float32)} else np.float64)
        if recipe["out"] not in (None, "right") or current != dtype:
            clean = False  # the out= rules (and this dtype rule) may refuse it
    try:
        result = _call(recipe, left, right, out)
    except Exception as exc:
        known = _known_issue(recipe, exc, expected)
        if known:
            return {"status": "known", "why": f"{known}: {type(exc).__name__}: {exc}"}
        if not _allowed(exc):
            return {"status": "bad-exception", "why": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc()}
        if clean and not isinstance(reference, Invalid) and expected is not None:
            return {"status": "rejected-valid", "why": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc()}
        return {"status": "ok", "note": f"raised {type(exc).__name__}"}
    if not (_same(snapshots[0], _snapshot(sparse)) and _same(snapshots[1], _snapshot(dense))):
        return {"status": "wrong", "why": "an operand was modified"}
    if isinstance(reference, Invalid):
        return {"status": "wrong", "why": f"accepted an invalid matrix ({reference})"}
    if expected is None:
        return {"status": "wrong", "why": f"accepted a dense operand of {dense_array.dtype}, "
                                          f"{dense_array.ndim}-D"}
    if out is not None and result is not out:
        return {"status": "wrong", "why": "out= was given but not returned"}
    if (type(result) is not np.ndarray and out is None) or result.shape != expected.shape:
        return {"status": "wrong", "why": f"got {type(result).__name__} "
                f"{getattr(result, 'shape', '')}, expected ndarray {expected.shape}"}
    if not result.dtype.isnative or result.dtype not in (dtype, np.float64):
        # float64 where float32 is promised computes more precisely, never wrongly; the
        # dtype rule itself is the business of the product tests.
        return {"status": "wrong", "why": f"dtype {result.dtype}, promised {dtype}"}
    nan_rows = _padded_nan_rows(holder, dense_array, recipe, expected.shape)
    why = _matches(result, expected, magnitude, inner, nan_rows)
    return {"status": "ok"} if why is None else {"status": "wrong", "why": why}


# Failures of spmm/_pipeline.py (the dispatch), reported as "known" (counted and printed, not
# failing the run) until it fixes them; then their entry goes. Each predicate is as narrow as
# the failure it names.
KNOWN_ISSUES: dict[str, Callable[[dict, BaseException, Any], bool]] = {}


def _known_issue(recipe: dict, exc: BaseException, expected: Any) -> str | None:
    for name, applies in KNOWN_ISSUES.items():
        if applies(recipe, exc, expected):
            return name
    return None


def _valid_keyword(name: str, value: Any) -> bool:
    if name == "backend":
        return value is None or value in spmm.available_backends()
    if name == "kernel":
        return value is None or value in KERNELS
    return value is None or (type(value) is int and 1 <= value <= 64)


def _padded_nan_rows(holder: Any, dense: np.ndarray, recipe: dict,
                     shape: tuple[int, ...]) -> np.ndarray | None:
    """Where a structured layout stored with zero fill may give NaN (x @ p, x not finite)."""
    form = getattr(holder, "_structured", None)
    if form is None or form.fits or recipe["side"] != "right" or dense.dtype.kind != "f":
        return None
    bad = ~np.isfinite(dense)
    rows = bad.any(axis=-1) if dense.ndim == 2 else np.array(bad.any())
    return np.broadcast_to(rows[:, None] if dense.ndim == 2 else rows, shape)


def _reference_product(reference: tuple, dense: np.ndarray,
                       side: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(expected, |a| @ |b| over finite values, the most entries summed into one element)."""
    (rows, cols), r, c, v = reference
    b = dense.astype(np.float64)
    finite_v = np.where(np.isfinite(v), np.abs(v), 0.0)
    finite_b = np.where(np.isfinite(b), np.abs(b), 0.0)
    with np.errstate(all="ignore"):
        if side == "left":  # A @ B: b is (cols, n) or (cols,)
            b2 = b.reshape(cols, 1) if b.ndim == 1 else b
            fb2 = finite_b.reshape(b2.shape)
            expected = np.zeros((rows, b2.shape[1]))
            magnitude = np.zeros_like(expected)
            np.add.at(expected, r, v[:, None] * b2[c])
            np.add.at(magnitude, r, finite_v[:, None] * fb2[c])
            counts = np.unique(r, return_counts=True)[1]
            shape = (rows,) if dense.ndim == 1 else (rows, b2.shape[1])
        else:  # X @ A: x is (n, rows) or (rows,)
            x2 = b.reshape(1, rows) if b.ndim == 1 else b
            fx2 = finite_b.reshape(x2.shape)
            expected = np.zeros((x2.shape[0], cols))
            magnitude = np.zeros_like(expected)
            np.add.at(expected.T, c, v[:, None] * x2.T[r])
            np.add.at(magnitude.T, c, finite_v[:, None] * fx2.T[r])
            counts = np.unique(c, return_counts=True)[1]
            shape = (cols,) if dense.ndim == 1 else (x2.shape[0], cols)
    inner = int(counts.max()) if len(counts) else 0
    return expected.reshape(shape), magnitude.reshape(shape), inner


def _call(recipe: dict, left: Any, right: Any, out: Any) -> Any:
    kwargs = dict(recipe["kwargs"])
    if (recipe["call"] == "operator" and out is None and not kwargs
            and isinstance(left if recipe["side"] == "left" else right, spmm.PreparedMatrix)):
        return left @ right  # (with a scipy matrix, @ is scipy's own product)
    if recipe["call"] == "partition":
        from spmm._pipeline import multiply_with_partition

        partition = recipe["partition"] if recipe["partition"] != "bad" else "cyclic"
        return multiply_with_partition(left, right, out=out, partition=partition, **kwargs)
    return spmm.multiply(left, right, out=out, **kwargs)


def _check_module(recipe: dict, module: Any, dense: Any, reference: Any) -> dict:
    """A loaded SparseLinear: forward(x) is x @ W + bias, or a TypeError/ValueError."""
    x = np.asarray(dense)
    if x.dtype.kind != "f" or x.ndim != 2 or not x.dtype.isnative:
        return {"status": "ok", "note": "not a float tensor"}
    tensor = torch.from_numpy(x.copy())  # (a copy: C-ordered, positive strides)
    try:
        with torch.no_grad():
            y = module(tensor)
    except Exception as exc:
        if _allowed(exc):
            return {"status": "ok", "note": f"forward raised {type(exc).__name__}"}
        return {"status": "bad-exception", "why": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()}
    if isinstance(reference, Invalid) or x.shape[1] != module.in_features:
        return {"status": "wrong", "why": "forward accepted an invalid input"}
    expected, magnitude, inner = _reference_product(reference, x, "right")
    if module.bias is not None:
        expected = expected + module.bias.double().numpy()
        magnitude = magnitude + np.abs(module.bias.double().numpy())
    result = y.numpy()
    why = _matches(result, expected, magnitude, inner + 1,
                   _padded_nan_rows(module.prepared, x, {"side": "right"}, expected.shape))
    return {"status": "ok"} if why is None else {"status": "wrong", "why": why}


# --------------------------------------------------------------------------------------------
# Isolation.

FAILURES = ("crash", "hang", "wrong", "bad-exception", "rejected-valid", "error")


def run_isolated(recipe: dict, timeout: float = CHILD_SECONDS) -> dict:
    """:func:`check` in a forked child: a crash or a hang is a verdict, not the end of us."""
    def work() -> bytes:
        # Warnings are not verdicts (the OpenMP-after-fork one, numpy's overflow ones), and a
        # test run's filterwarnings=error must not turn them into exceptions here.
        warnings.simplefilter("ignore")
        try:
            import resource

            # Keep a runaway allocation from taking the machine (not under AddressSanitizer,
            # which maps terabytes of address space for its shadow memory).
            if "ASAN_OPTIONS" not in os.environ:
                limit = 8 * 2**30
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
        try:
            verdict = check(recipe)
        except MemoryError as exc:
            # The reference itself (a product the recipe's shape makes larger than the
            # child's memory limit) cannot be computed: nothing to compare with.
            verdict = {"status": "ok", "note": f"too large to check here: {exc}"}
        except BaseException as exc:
            verdict = {"status": "error", "why": f"{type(exc).__name__}: {exc}",
                       "trace": traceback.format_exc()}
        return json.dumps(verdict, default=repr).encode()

    status, result = forked(work, timeout)
    if status != "ok":
        return {"status": status, "why": result}
    return json.loads(result)


def save(recipe: dict, verdict: dict, directory: Path = CORPUS) -> Path:
    """Write a failing recipe to the corpus, named by its content."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(recipe, sort_keys=True, indent=1)
    name = f"{verdict['status']}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"
    path = directory / name
    path.write_text(json.dumps({"verdict": {k: verdict.get(k) for k in ("status", "why")},
                                "recipe": recipe}, sort_keys=True, indent=1) + "\n")
    return path


def load_corpus(directory: Path = CORPUS) -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text())["recipe"])
            for p in sorted(directory.glob("*.json"))]


def signature(recipe: dict, verdict: dict) -> tuple:
    """What tells one failure from another: its status, the operand's kind and format, the
    corruption's kind and the start of its message without numbers."""
    s = recipe["sparse"]
    why = "".join(ch for ch in str(verdict.get("why"))[:40] if not ch.isdigit())
    return (verdict["status"], s["kind"], s["format"] if s["kind"] == "scipy" else "",
            (s.get("pickle") or {}).get("kind", ""), why)


def describe(recipe: dict) -> str:
    s = recipe["sparse"]
    return (f"{s['kind']} {s['format']} {s['shape']} {s['value_dtype']}/{s['index_dtype']} "
            f"{recipe['side']} corruptions={s['corruptions'] or s.get('pickle', {}).get('kind')}")


if __name__ == "__main__":  # replay one file: python harness.py corpus/x.json
    for path in sys.argv[1:]:
        recipe = json.loads(Path(path).read_text())["recipe"]
        print(path, describe(recipe), run_isolated(recipe), sep="\n  ")
