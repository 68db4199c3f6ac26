"""Build spmm's extension module; everything else is in pyproject.toml.

OpenMP is detected by compiling, linking and running a tiny program with the build's own
compiler. Without it (or with SPMM_DISABLE_OPENMP=1) the build goes on: the ``openmp``
backend is then missing and ``threads`` becomes the default.

SPMM_EXTRA_COMPILE_ARGS (default empty) adds compiler flags, split like a shell command line,
after the build's own: ``SPMM_EXTRA_COMPILE_ARGS=-march=native`` is how the benchmark builds
the native copy it compares the portable build with (bench/native_build.py). A default build
never passes -march.
"""

import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent.resolve()

# -O3 for the auto-vectorizer; no -march=native, so the module runs on any x86-64: the AVX2
# and AVX-512 kernels are compiled with target pragmas and chosen at run time (simd.hpp).
BASE_COMPILE_ARGS = ["-std=c++17", "-O3"]
OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <cstdio>
    int main() {
        int n = 0;
        #pragma omp parallel reduction(+ : n)
        n += 1;
        std::printf("%d", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def _compiler_accepts(compiler, source: str, compile_args, link_args) -> bool:
    """Compile, link and run ``source``; True when all three succeed and it prints 1."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text(source)
        try:
            objects = compiler.compile([str(src)], output_dir=tmp, extra_postargs=compile_args)
            exe = str(Path(tmp) / "probe")
            compiler.link_executable(objects, exe, extra_postargs=link_args,
                                     target_lang="c++")
            out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        except Exception:  # any failure means "not supported"
            return False
        return out.returncode == 0 and out.stdout.strip() == "1"


def _openmp_flags(compiler) -> list[str]:
    """The OpenMP flags to use, or [] when OpenMP is disabled or does not work."""
    if os.environ.get("SPMM_DISABLE_OPENMP", "0") not in ("", "0"):
        print("spmm: SPMM_DISABLE_OPENMP is set: building without OpenMP", file=sys.stderr)
        return []
    flag = "/openmp" if compiler.compiler_type == "msvc" else "-fopenmp"
    if _compiler_accepts(compiler, OPENMP_PROBE, [*BASE_COMPILE_ARGS, flag], [flag]):
        return [flag]
    print(
        "\n*** spmm: the compiler cannot build OpenMP programs with "
        f"{flag!r}.\n*** Building WITHOUT OpenMP: the 'openmp' backend will be missing and "
        "'threads' becomes the default.\n*** To get it, install a compiler with OpenMP "
        "support (gcc, or clang with libomp) and reinstall.\n",
        file=sys.stderr,
    )
    return []


class BuildExt(build_ext):
    """Adds the probed OpenMP flags to every extension before building it."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            base = ["/std:c++17", "/O2"]
        else:
            base = list(BASE_COMPILE_ARGS)
        openmp = _openmp_flags(self.compiler)
        extra = shlex.split(os.environ.get("SPMM_EXTRA_COMPILE_ARGS", ""))
        if extra:
            print(f"spmm: SPMM_EXTRA_COMPILE_ARGS adds {extra}", file=sys.stderr)
        compile_args = base + openmp + extra
        quoted = " ".join(shlex.quote(a) for a in compile_args)
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + ext.extra_compile_args
            ext.extra_link_args = openmp + ext.extra_link_args
            ext.define_macros.append(("SPMM_COMPILE_ARGS", f'"{quoted}"'))
        super().build_extensions()


# SPMM_CYTHON_DEBUG=1 turns bounds checks back on, for debugging the Cython layer.
DEBUG = os.environ.get("SPMM_CYTHON_DEBUG", "0") not in ("", "0")
directives = {"language_level": 3, "boundscheck": DEBUG, "wraparound": DEBUG}

extensions = [
    Extension(
        "spmm._spmm_ext",
        sources=["spmm/_spmm_ext.pyx"],
        include_dirs=[str(HERE / "include"), numpy.get_include()],
        language="c++",
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        depends=[str(p.relative_to(HERE)) for p in sorted((HERE / "include" / "spmm").rglob("*"))
                 if p.is_file()],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
