"""Reduced-precision stored values: bfloat16, float16 and int8 weights, float32 accumulation.

A prepared matrix may store its values in fewer bytes (``spmm.prepare(a, values=...)``). They
are rounded once, here, when the matrix is prepared; the kernels widen them to float32 in
registers (``include/spmm/formats/values.hpp``) and accumulate in float32, so what a reduced
format saves is bytes, not arithmetic:

- ``"bfloat16"``: the upper half of a float32 (8 significant bits, float32's range), rounded
  to nearest even; stored as its bits (uint16), since numpy has no bfloat16.
- ``"float16"``: IEEE binary16 (11 significant bits, largest finite 65504), rounded to nearest
  even; a finite weight beyond its range is an error, never a silent infinity.
- ``"int8"``: symmetric, with one float32 scale per column of the matrix (per output of
  ``X @ W``; a row of the CSR form of the transpose, which ``prepare`` rounds):
  ``s = max|w| / 127`` over the column's stored weights, ``q = round(w / s)``; a weight is
  ``s * q``. ``A @ B`` uses the same values and scales (``spmm._prepared._left_form``), so
  each weight is rounded once. NaN and infinite weights are an error.

The bounds the documentation gives (docs/usage.md, "Reduced-precision values") are
:data:`UNIT_ROUNDOFF` and :func:`int8_bound`; the tests check them.
"""

from __future__ import annotations

import numpy as np

from . import _spmm_ext

#: The stored formats a prepared matrix may have, in the C++ vocabulary's order (names.hpp).
VALUE_FORMATS: tuple[str, ...] = _spmm_ext.vocabulary()["values"]
FORMAT_CODES: dict[str, int] = {name: code for code, name in enumerate(VALUE_FORMATS)}
REDUCED: tuple[str, ...] = tuple(name for name in VALUE_FORMATS if name != "float32")
#: What ``prepare(activations=...)`` may round the dense operand to.
ACTIVATIONS: tuple[str, ...] = ("bfloat16", "int8")

#: How each reduced format is held in numpy.
STORAGE: dict[str, np.dtype] = {"bfloat16": np.dtype(np.uint16),
                                "float16": np.dtype(np.float16), "int8": np.dtype(np.int8)}

#: The relative rounding error of a weight in the format's normal range (half a unit in the
#: last place): |w - rounded(w)| <= UNIT_ROUNDOFF * |w|.
UNIT_ROUNDOFF: dict[str, float] = {"float32": 2.0**-24, "bfloat16": 2.0**-8,
                                   "float16": 2.0**-11}

#: Below these magnitudes a format is subnormal, and the bound is absolute: half its smallest
#: step.
SUBNORMAL_STEP: dict[str, float] = {"bfloat16": 2.0**-133, "float16": 2.0**-24}

FLOAT16_MAX = 65504.0
INT8_MAX = 127


def format_of(stored: np.ndarray) -> str:
    """The format name of a form's stored values (``"float32"`` for float32 and float64)."""
    for name, dtype in STORAGE.items():
        if stored.dtype == dtype:
            return name
    return "float32"


def reduce(data: np.ndarray, indptr: np.ndarray, fmt: str,
           where: str = "prepare") -> tuple[np.ndarray, np.ndarray | None]:
    """``data`` (the float values of a CSR form with row pointers ``indptr``) rounded to
    ``fmt``: the stored array, and the int8 scales (one float32 per row) or None.

    Raises ValueError for a finite float16 weight beyond its range, or a non-finite int8 one.
    """
    if fmt == "bfloat16":
        return to_bfloat16(data, where), None
    if fmt == "float16":
        return to_float16(data, where), None
    return quantize(data, indptr, where)


def widen(stored: np.ndarray, scales: np.ndarray | None, indptr: np.ndarray) -> np.ndarray:
    """The float32 values a form's stored values stand for (int8: ``s * q`` of each row)."""
    fmt = format_of(stored)
    if fmt == "bfloat16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    if fmt == "float16":
        return stored.astype(np.float32)
    if fmt == "int8":
        per_entry = np.repeat(scales, np.diff(indptr.astype(np.int64)))
        return (stored.astype(np.float32) * per_entry).astype(np.float32)
    return stored.astype(np.float32)


def to_bfloat16(values: np.ndarray, where: str = "prepare") -> np.ndarray:
    """The bits of ``values`` (float32 or float64) rounded to the nearest bfloat16, ties to
    even, each rounded once: a float64 value goes through float32 rounded to odd, which keeps
    the information the second rounding needs (24 bits >= 8 + 2)."""
    if values.dtype == np.float64:
        with np.errstate(over="ignore"):
            f = values.astype(np.float32)
        wide = f.astype(np.float64)
        away = np.abs(wide) > np.abs(values)  # rounded away from zero: step back, then odd
        f[away] = np.nextafter(f[away], np.float32(0))
        bits = f.view(np.uint32).copy()
        bits |= (f.astype(np.float64) != values) & ~np.isnan(values)
    else:
        f = np.ascontiguousarray(values, dtype=np.float32)
        bits = f.view(np.uint32).copy()
    nan = np.isnan(f)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(np.uint16)  # stays a (quiet) NaN
    overflow = np.isinf((rounded.astype(np.uint32) << 16).view(np.float32)) & np.isfinite(values)
    if overflow.any():
        largest = float(np.max(np.abs(values[overflow])))
        raise ValueError(
            f"{where}: values='bfloat16' cannot hold a weight of magnitude {largest:.7g}: it "
            "rounds beyond bfloat16's largest finite value (3.3895e+38)")
    return rounded


def to_float16(values: np.ndarray, where: str = "prepare") -> np.ndarray:
    """``values`` rounded to the nearest float16, ties to even (numpy's conversion rounds once,
    from float32 or float64). A finite weight beyond float16's range is a ValueError naming the
    largest magnitude."""
    finite = np.isfinite(values)
    magnitudes = np.abs(values[finite]) if not finite.all() else np.abs(values)
    largest = float(magnitudes.max()) if magnitudes.size else 0.0
    if largest > FLOAT16_MAX:
        raise ValueError(
            f"{where}: values='float16' cannot hold the weights: the largest magnitude is "
            f"{largest:.7g}, beyond float16's largest finite value {FLOAT16_MAX:g}; scale the "
            "weights first, or use values='bfloat16' (float32's range) or 'int8' (scaled)")
    return values.astype(np.float16)


def quantize(data: np.ndarray, indptr: np.ndarray,
             where: str = "prepare") -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 values and one float32 scale per row of a CSR form: ``s = max|w| / 127``
    over the row's stored weights (0 for an empty or all-zero row), ``q = round(w / s)``, ties
    to even. Raises ValueError for a NaN or infinite weight."""
    if not np.all(np.isfinite(data)):
        bad = int(np.flatnonzero(~np.isfinite(data))[0])
        row = int(np.searchsorted(indptr, bad, side="right")) - 1
        raise ValueError(
            f"{where}: values='int8' needs finite weights; stored entry {bad} (of output "
            f"{row}) is {data[bad]}: a scale cannot represent it")
    rows = len(indptr) - 1
    starts = indptr[:-1].astype(np.int64)
    counts = np.diff(indptr.astype(np.int64))
    magnitudes = np.abs(data).astype(np.float64)
    largest = np.zeros(rows)
    filled = counts > 0
    if magnitudes.size:
        largest[filled] = np.maximum.reduceat(magnitudes, starts[filled])
    scales = (largest / INT8_MAX).astype(np.float32)
    # A scale that underflows float32 (a row of weights below about 1e-43) stores zeros.
    per_entry = np.repeat(scales.astype(np.float64), counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(per_entry > 0, np.rint(data / per_entry), 0.0)
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8), scales


def int8_bound(scales: np.ndarray) -> np.ndarray:
    """The largest rounding error of each output's int8 weights: half its scale."""
    return scales.astype(np.float64) / 2
