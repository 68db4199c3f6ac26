"""spmm's comparison benchmark suite.

Run it with ``python bench/run.py --help`` (from the repository root or anywhere else): the
script puts ``bench/`` on ``sys.path``, never the repository root, so ``import spmm`` finds the
installed package and not the uncompiled source tree. The core harness needs only numpy, scipy,
threadpoolctl and spmm; tqdm, matplotlib and the peers (PyTorch, sparse_dot_mkl,
python-graphblas) are used when installed. Methodology: ``docs/benchmarks.md``.

Modules, in the order a run uses them:

- ``cli``: the command line.
- ``suites``: the workloads of each suite (what is measured).
- ``matrices``: seeded generators of the sparse patterns.
- ``store``: the run's scratch directory (operands and reference results on disk).
- ``plan``: which (library, configuration, thread count) runs on which workload, in which
  worker process.
- ``machine``: the machine description and its measured bandwidth and compute peak.
- ``libraries``: one adapter per library, holding its best calling form.
- ``worker``: one process per (library, thread count): check, then time.
- ``checking``, ``timing``: comparison with scipy; warm-up, repeats, CPU/wall ratio.
- ``runner``: launches the workers, shows progress, re-measures disturbed points.
- ``disturbance``: the rules that flag a disturbed measurement.
- ``metrics``: GFLOP/s, speedups, arithmetic intensity, roofline fraction, break-even.
- ``ablation``, ``autocheck``, ``payoff``, ``targets``: the kernel work's summaries (issue 5):
  the kernel waterfall, ``auto`` against every kernel, ``prepare``'s cost and bytes, and the
  targets as measured / target (issue 5's, and issue 6's for the structured layouts).
- ``report``, ``sections``, ``text``, ``plots``, ``plots_kernels``: the terminal table, the
  Markdown report and the PNG plots.
- ``native``: the portable build against a ``-march=native`` one (``bench/native_build.py``,
  ``run.py --native``).
"""

__version__ = "1.0"
