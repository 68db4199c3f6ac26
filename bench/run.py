"""Run spmm's comparison benchmarks: ``python bench/run.py --help``.

Run as a script (not ``python -m``): Python then puts this file's directory, ``bench/``, first
on ``sys.path``, so ``spmm_bench`` is found here and ``spmm`` is the installed package, never
the uncompiled source tree at the repository root.
"""

import sys

from spmm_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
