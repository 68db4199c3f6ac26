"""Plain-text pieces shared by the report, its sections and the plots: workload names,
number formats and Markdown tables."""

from __future__ import annotations

from typing import Any


def workload_name(wl: dict[str, Any]) -> str:
    """``dnn 1024x4096 uniform 90% b64`` / ``science 131072x131072 powerlaw n=8``, with
    `` f64`` appended for float64."""
    rows, cols = wl["shape"]
    suffix = "" if wl["dtype"] == "float32" else " f64"
    if wl["kind"] == "xw":
        return (f"{wl['family']} {rows}x{cols} {wl['pattern']} {wl['sparsity'] * 100:g}% "
                f"b{wl['n']}{suffix}")
    if wl["family"] == "file":
        return f"{wl.get('path', wl['id']).rsplit('/', 1)[-1]} n={wl['n']}{suffix}"
    return f"{wl['family']} {rows}x{cols} {wl['pattern']} n={wl['n']}{suffix}"


def fmt(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals (none from 100 up); an em dash for None."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds, 3 significant digits; an em dash for None."""
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.3g}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
