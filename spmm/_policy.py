"""The choices a product makes: its kernel family, variant, partition and threads, and why.

Everything here decides; nothing computes. :func:`plan` is called once per product by the
pipeline (``spmm._pipeline``) and by :func:`spmm.explain`, so what explain reports is what
multiply does. The names come from the C++ vocabulary (``include/spmm/names.hpp``); what each
family's variant runs at each instruction set comes from the C++ registry
(``include/spmm/kernels/registry.hpp``).
"""

from __future__ import annotations

from typing import NamedTuple

from . import _config, _spmm_ext

FAMILY_CODES = _config.codes("family")
KERNEL_CODES = _config.codes("kernel")
BACKEND_CODES = _config.codes("backend")
PARTITION_CODES = _config.codes("partition")
SIMD_CODES = _config.codes("simd")

# The family that serves a sparse operand's stored form in each orientation: A @ B (the sparse
# operand on the left) and X @ W (on the right, computed as Yᵀ = Wᵀ Xᵀ). A CSR matrix read by
# rows on the left is read by columns on the right (its rows are Wᵀ's columns), and a CSC one
# the other way round; LIL and DOK are converted to CSR first, as scipy's own product does.
FAMILIES: dict[tuple[str, bool], str] = {
    ("csr", False): "csr_rows",
    ("csr", True): "csc_columns",
    ("csc", False): "csc_columns",
    ("csc", True): "csr_rows",
    ("coo", False): "coo",
    ("coo", True): "coo",
    ("bsr", False): "bsr_rows",
    ("bsr", True): "bsr_columns",
    ("dia", False): "dia",
    ("dia", True): "dia",
    ("prepared", False): "csr_rows",
    ("prepared", True): "csr_rows",
    ("tile", True): "panels",
    ("block", True): "panels",
    ("n_m", True): "n_m",
}

# Dense columns per thread from which ``auto`` transposes a user's CSR (X @ W) or CSC (A @ B)
# matrix per call and reads the copy by rows (``csr_rows``), rather than scattering its
# entries (``csc_columns``): the copy costs about 2 to 5 ns per stored entry, on one thread,
# and the row-driven kernel saves a load and a store of the output per entry and vector. Below
# it the scatter is faster (a 1024x4096 layer at 90 %, one thread: the copy and the rows 2.7 ms
# against the scatter's 2.1 at batch 64, 5.9 ms against 13.3 at batch 256). Measured by
# `python bench/run.py --suite formats` (the unprepared CSR and CSC rows at n 64 and 256).
TRANSPOSE_MIN_COLUMNS_PER_THREAD = 160

# Stored entries from which the copy above is made at TRANSPOSE_MIN_COLUMNS_PER_THREAD dense
# columns whatever the thread count: the copy is spread over the threads too, and on a matrix
# this large its fixed costs (two hand-offs to the threads, the allocation of the copy) are
# repaid. Two threads, batch 256, copy-and-rows against the scatter: 0.76x and 0.83x on 30k
# and 60k entries (1536x384, 384x1536), 0.97x to 1.86x on 236k to 1.7M entries (768x3072 to
# 4096x4096). Measured like TRANSPOSE_MIN_COLUMNS_PER_THREAD.
TRANSPOSE_MIN_ENTRIES_ANY_THREADS = 2**17

# Outputs beyond which a prepared matrix's one-column product reads its CSR form rather than
# the sliced layout (whose row positions are int32: spmm/_sliced.py).
SLICED_MAX_ROWS = 2**31 - 1

# With one dense column, CSR rows shorter than this (on average) are summed faster by the
# plain loop (one running sum per row) than by the gather kernel, whose fixed cost per row (a
# masked gather and a horizontal sum) then dominates. Re-measured by the "`auto` against every
# kernel" view of `python bench/run.py --suite dnn`.
ROWDOT_MIN_ENTRIES_PER_ROW = 12

# Whether this CPU's vector gathers are slower than as many scalar loads (AMD family 19h): the
# one-column sliced layout, which does nothing but gather from an x in L1, is then read with
# scalar loads (`reordered`, the portable loop). Measured by `python bench/run.py --suite
# batch1`; spmm._testing.slow_gathers replaces it.
SLOW_GATHERS = _spmm_ext.slow_gathers()


# The dense columns a one-column product of the sliced layout counts as against the minimum
# work for threads: its entries cost several times an entry and column of a wider product
# (kSlicedWorkColumns in include/spmm/product.hpp, where the measurement is named).
SLICED_WORK_COLUMNS = _spmm_ext.sliced_work_columns()


class Plan(NamedTuple):
    """What a product will run: its kernel ``family``, the ``kernel`` variant (``auto``
    resolved), the ``partition``, the threads it uses, the backend, the configured instruction
    set, and ``codes``: the same as the C++ call takes them, (kernel, backend, threads,
    partition, simd, minimum work); ``transpose``: a user's matrix read by columns as stored
    is transposed per call and read by rows (:data:`TRANSPOSE_MIN_COLUMNS_PER_THREAD`,
    :data:`TRANSPOSE_MIN_ENTRIES_ANY_THREADS`)."""

    family: str
    kernel: str
    partition: str
    num_threads: int
    backend: str
    simd: str
    codes: tuple[int, int, int, int, int, int]
    transpose: bool = False

    def body(self) -> tuple[str, str]:
        """What the registry runs for this plan: (body, its instruction set), e.g.
        ``("tiled", "avx512")``, or ``("reordered (no register-blocked body for dia)",
        "avx512")``."""
        return _spmm_ext.kernel_body(FAMILY_CODES[self.family], KERNEL_CODES[self.kernel],
                                     SIMD_CODES[self.simd])


# The work below which products run on the calling thread: -1 for the built-in threshold
# (kParallelMinWork in include/spmm/product.hpp); spmm._testing.parallel_min_work changes it.
min_work = -1


def choose_kernel(kernel: str, family: str, n: int, entries_per_row: float) -> str:
    """The variant ``auto`` stands for: ``tiled`` (it adapts inside C++: the width picks the
    register block, the dtype and instruction set the vector, one column the gather row-dot),
    except one column of a CSR product whose rows are short, where ``naive`` (one running sum
    per row) is faster (:data:`ROWDOT_MIN_ENTRIES_PER_ROW`), and the sliced layout on a CPU
    whose gathers are slow, where ``reordered`` (scalar loads) is (:data:`SLOW_GATHERS`)."""
    if kernel != "auto":
        return kernel
    if family == "csr_rows" and n == 1 and entries_per_row < ROWDOT_MIN_ENTRIES_PER_ROW:
        return "naive"
    if family == "sliced" and SLOW_GATHERS:
        return "reordered"
    return "tiled"


def choose_partition(partition: str, family: str, n: int) -> str:
    """The partition ``auto`` stands for: ``dynamic`` for a CSR product with one dense column
    (a row then costs a fixed part beside its entries, so equal entries are not equal work
    when row lengths are skewed, and idle threads take the next chunk), ``rows`` for DIA
    (every output row costs about the same), ``nnz`` otherwise (one cut per thread, balanced
    by stored entries, no hand-out cost), the one-column ``sliced`` layout included: it has
    no per-row cost, so equal entries are equal work."""
    if partition != "auto":
        return partition
    if family == "csr_rows" and n == 1:
        return "dynamic"
    return "rows" if family == "dia" else "nnz"


def family_of(kind: str, layout: str, transposed: bool, kernel: str, n: int = 2,
              out_rows: int = 0, sliced: bool = True) -> str:
    """The family that serves the sparse operand stored as ``kind`` in this orientation. A
    prepared matrix's structured layout serves ``x @ p`` unless a CSR kernel variant is named;
    a prepared CSR matrix's ``x @ p`` with one row of ``x`` (``n`` 1) reads the sliced
    one-column layout (``spmm._sliced``), under the same condition, unless ``sliced`` is
    False (a matrix of reduced values, which holds one form per orientation, or with
    ``activations``, whose products run the dot-product kernels)."""
    auto = kind == "prepared" and transposed and kernel == "auto"
    if auto and sliced and layout == "csr" and n == 1 and out_rows <= SLICED_MAX_ROWS:
        return "sliced"
    form = layout if auto and layout != "csr" else kind
    return FAMILIES[(form, transposed)]


# Plans already made, keyed by everything a plan depends on: a loop of products of one shape
# makes the same plan every time, and looking it up costs a fraction of making it (which counts
# on tiny products). Bounded: cleared when full.
_PLANS: dict[tuple, Plan] = {}
_PLANS_MAX = 4096


def plan(kind: str, layout: str, transposed: bool, shape: tuple[int, int], n: int,
         entries: int, config: tuple[str, int, str, str], partition: str,
         sliced: bool = True) -> Plan:
    """The plan of a product whose sparse operand is stored as ``kind`` (``csr``, ``csc``,
    ``coo``, ``bsr``, ``dia``, ``prepared``; ``layout`` a prepared matrix's layout), on the
    left (``transposed`` False: A @ B) or the right (X @ W), of ``shape``, times ``n`` dense
    columns (B's columns, X's rows), with ``entries`` multiply-adds per dense column;
    ``sliced``: whether a prepared matrix may read its one-column layout (:func:`family_of`)."""
    key = (kind, layout, transposed, shape, n, entries, config, partition, min_work, sliced)
    found = _PLANS.get(key)
    if found is not None:
        return found
    backend, threads, kernel, simd = config
    out_rows = shape[1] if transposed else shape[0]
    family = family_of(kind, layout, transposed, kernel, n, out_rows, sliced)
    transpose = (family == "csc_columns" and kind in ("csr", "csc") and kernel == "auto"
                 and n >= TRANSPOSE_MIN_COLUMNS_PER_THREAD
                 and (n >= TRANSPOSE_MIN_COLUMNS_PER_THREAD * threads
                      or entries >= TRANSPOSE_MIN_ENTRIES_ANY_THREADS))
    if transpose:
        family = "csr_rows"
    rows_read = shape[1] if (family == "csr_rows") == transposed else shape[0]
    kernel = choose_kernel(kernel, family, n, entries / max(1, rows_read))
    partition = choose_partition(partition, family, n)
    backend_code = BACKEND_CODES[backend]
    if threads > 1:
        work_columns = SLICED_WORK_COLUMNS if family == "sliced" else n
        threads = _spmm_ext.threads_used(entries, out_rows, work_columns, backend_code, threads,
                                         min_work)
    codes = (KERNEL_CODES[kernel], backend_code, threads, PARTITION_CODES[partition],
             SIMD_CODES[simd], min_work)
    made = Plan(family, kernel, partition, threads, backend, simd, codes, transpose)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = made
    return made


def reason(plan: Plan, kind: str, transposed: bool, n: int, out_rows: int, itemsize: int,
           threads: int, out_rows_contiguous: bool) -> str:
    """One line saying why ``plan`` runs what it does (for :func:`spmm.explain`); ``threads``
    is the configured count, ``out_rows_contiguous`` whether the output's rows are contiguous
    in the computed product (C for A @ B; Yᵀ for X @ W is not)."""
    product = "X @ W" if transposed else "A @ B"
    family = plan.family
    if kind in ("lil", "dok"):
        parts = [f"{product} with {kind.upper()}: converted to CSR (as scipy does), read by "
                 f"{family}"]
    elif kind == "prepared":
        form = "CSR form" if family == "csr_rows" else f"{family} layout"
        parts = [f"{product} with a prepared matrix: its {form}, read by {family}"]
    elif plan.transpose:
        parts = [f"{product} with {kind.upper()}: transposed per call (O(nnz), checked as it "
                 f"is read; {n} dense columns repay it), read by {family}"]
    else:
        parts = [f"{product} with {kind.upper()}: read as stored by {family}, no conversion"]
    body, _ = plan.body()
    if family == "sliced" and plan.kernel == "reordered":
        parts.append("scalar loads: this CPU's gathers are slower")
    elif body != plan.kernel:
        parts.append(f"{plan.kernel} runs {body}")
    if plan.num_threads == 1:
        alone = " (below the minimum work for threads)" if threads > 1 else ""
        parts.append("one thread" + alone)
    elif family in ("csc_columns", "coo", "bsr_columns"):
        split = _spmm_ext.splits_columns(out_rows, n, plan.num_threads, out_rows_contiguous,
                                         itemsize)
        parts.append(f"{plan.num_threads} threads split the {n} dense columns" if split else
                     f"{plan.num_threads} threads split the stored entries, each into a "
                     "private output, summed at the end")
    else:
        parts.append(f"{plan.num_threads} threads, {plan.partition} partition")
    return "; ".join(parts)
