"""Small argument checks shared by the modules that validate user input."""

from __future__ import annotations

import numbers
from collections.abc import Iterable


def choices(values: Iterable[object]) -> str:
    """``{'a', 'b'}``: the valid values, as an error message names them."""
    return "{" + ", ".join(repr(v) for v in values) + "}"


def is_int(value: object) -> bool:
    """Whether ``value`` is a Python or numpy integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least 1."""
    return is_int(value) and value >= 1  # type: ignore[operator]
