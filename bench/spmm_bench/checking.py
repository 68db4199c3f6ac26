"""Checking a result against scipy's before it is timed.

Tolerance: the largest absolute error may be this fraction of the largest absolute value of
the reference. Summation orders differ between libraries; with standard normal operands and
up to a few thousand terms per entry, float32 rounding stays near 1e-6 of that scale, so 1e-4
leaves a wide margin while any real error (a missing chunk, a wrong index) is of order 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RELATIVE_TOLERANCE = {"float32": 1e-4, "float64": 1e-9}


def compare(got: Any, expected: np.ndarray, dtype: str) -> tuple[bool, dict[str, Any]]:
    """Whether ``got`` equals ``expected`` to rounding, and the figures behind the verdict.

    Returns
    -------
    ok : bool
    details : dict
        ``max_abs_error``, ``tolerance`` and, when not ok, ``reason``.
    """
    got = np.asarray(got)
    if got.shape != expected.shape:
        return False, {"reason": f"result has shape {got.shape}, scipy's has {expected.shape}"}
    finite = np.isfinite(expected)
    if not np.array_equal(np.isfinite(got), finite):
        bad = int(np.count_nonzero(np.isfinite(got) != finite))
        return False, {"reason": f"{bad} entries are NaN/Inf where scipy's are not, or the "
                                 "reverse"}
    if expected.size == 0:
        return True, {"max_abs_error": 0.0, "tolerance": 0.0}
    # In the result's own dtype: its rounding is far below the tolerance, and the science
    # outputs (hundreds of MB) are not copied to float64.
    if finite.all():
        diff = np.abs(got - expected)
        scale = float(np.abs(expected).max()) or 1.0
    else:
        diff = np.abs(np.where(finite, got - expected, 0))
        scale = float(np.abs(np.where(finite, expected, 0)).max()) or 1.0
    error = float(diff.max())
    tolerance = RELATIVE_TOLERANCE.get(dtype, 1e-4) * scale
    details = {"max_abs_error": error, "tolerance": tolerance}
    if not error <= tolerance:
        where = np.unravel_index(int(diff.argmax()), diff.shape)
        details["reason"] = (f"wrong result: max |error| {error:.3g} > tolerance {tolerance:.3g} "
                             f"(at {tuple(int(i) for i in where)}: got {got[where]!r}, "
                             f"scipy {expected[where]!r})")
        return False, details
    return True, details
