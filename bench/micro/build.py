"""Compiling the microbenchmarks' C++ sources (g++ or $CXX, -O3 for this machine's CPU, the
repository's headers): they measure the machine, not the portable build."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compile_cpp(source: Path, flags: tuple[str, ...] = ()) -> Path:
    """The executable built from ``source`` (cached by the hash of the source, the headers it
    may include and the flags, so an edited kernel is rebuilt)."""
    compiler = shlex.split(os.environ.get("CXX", "g++"))
    digest = hashlib.sha256(source.read_bytes() + " ".join(compiler + list(flags)).encode())
    for header in sorted((ROOT / "include").rglob("*")):
        if header.is_file():
            digest.update(header.read_bytes())
    out = Path(tempfile.gettempdir()) / f"spmm-micro-{source.stem}-{digest.hexdigest()[:16]}"
    if not out.exists():
        subprocess.run([*compiler, "-O3", "-march=native", "-std=c++17", "-pthread",
                        f"-I{ROOT / 'include'}",
                        *flags, str(source), "-o", str(out)], check=True)
    return out
