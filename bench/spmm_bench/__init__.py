"""spmm's comparison benchmark harness (``python bench/run.py --help``; method in
docs/benchmarks.md). It needs only numpy, scipy, threadpoolctl and spmm; tqdm, matplotlib and
the peers (PyTorch, sparse_dot_mkl, python-graphblas) are used when installed.

Modules, in the order a run uses them:

- ``suites``: the workloads as data, and the series measured on each.
- ``matrices``: seeded generators of the sparse patterns; the run's operand store.
- ``runner``: the measurement grid, one worker process per (library, thread count), rounds,
  re-measurement of disturbed points.
- ``machine``: what the machine says about itself; the GEMM and bandwidth ceilings.
- ``peers``: one class per library: its best form, set up before timing.
- ``worker``: inside a worker process: check against scipy, then time.
- ``views``: what is derived from the grid: GFLOP/s, roofline, the kernel waterfall, the
  ``auto`` check, ``prepare``'s payoff, break-even, the formats table.
- ``goals``: the goals of ``bench/goals.json``, measured / target.
- ``report``, ``plots``: results.json, report.md, auto_check.csv, the PNG plots.
"""
