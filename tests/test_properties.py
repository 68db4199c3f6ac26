"""Property-based tests: for any shape (0 included), density, dtype, format, backend, kernel,
thread count, partition and dense layout, the product equals scipy's.

The conftest's derandomized hypothesis profile makes every run try the same examples.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    FORMATS,
    INDEX_DTYPES,
    KERNELS,
    PARTITIONS,
    assert_product_matches_scipy,
    make_csr,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import spmm
from spmm import _spmm_ext
from spmm._pipeline import multiply_with_partition

SPARSE_DTYPES = [np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int32, np.bool_)]
DENSE_DTYPES = [np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int64, np.bool_)]


def elements(dtype):
    """Values of ``dtype``, NaN and infinities included for floats."""
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        return st.integers(-100, 100)
    finite = st.floats(-1e3, 1e3, width=8 * dtype.itemsize)
    return st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf]))


LAYOUTS = {
    "C": lambda a: a,
    "Fortran": np.asfortranarray,
    "reversed": lambda a: np.ascontiguousarray(a[::-1])[::-1],
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "read-only": lambda a: _read_only(a.copy()),
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    # (a list of no rows cannot say how many columns it has: kept as an array)
    "list": lambda a: a.tolist() if a.ndim == 1 or a.shape[0] else a,
}


def _read_only(a):
    a.setflags(write=False)
    return a


@st.composite
def sparse_matrices(draw, max_side=24):
    m = draw(st.integers(0, max_side))
    k = draw(st.integers(0, max_side))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]) | st.floats(0, 1))
    dtype = draw(st.sampled_from(SPARSE_DTYPES))
    index_dtype = draw(st.sampled_from(INDEX_DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    cls = draw(st.sampled_from([sp.csr_array, sp.csr_matrix]))
    a = make_csr((m, k), density, dtype, index_dtype, np.random.default_rng(seed), cls=cls)
    # scipy converts float16 only in its CSR constructor, not between formats
    sparse_format = "csr" if dtype == np.float16 else draw(st.sampled_from(FORMATS))
    return a.asformat(sparse_format)


@st.composite
def dense_operands(draw, shape):
    dtype = draw(st.sampled_from(DENSE_DTYPES))
    array = draw(hnp.arrays(dtype, shape, elements=elements(dtype)))
    return LAYOUTS[draw(st.sampled_from(sorted(LAYOUTS)))](array)


@st.composite
def products(draw):
    a = draw(sparse_matrices())
    m, k = a.shape
    other = draw(st.none() | st.integers(0, 12))
    if draw(st.booleans()):  # A @ B
        return a, draw(dense_operands((k,) if other is None else (k, other)))
    return draw(dense_operands((m,) if other is None else (other, m))), a


@settings(max_examples=1500)
@given(
    operands=products(),
    backend=st.sampled_from(BACKENDS),
    kernel=st.sampled_from(KERNELS),
    num_threads=st.integers(1, 4),
    partition=st.sampled_from(PARTITIONS),
)
def test_any_product_equals_scipys(operands, backend, kernel, num_threads, partition):
    left, right = operands
    result = multiply_with_partition(left, right, backend=backend, kernel=kernel,
                                     num_threads=num_threads, partition=partition)
    assert_product_matches_scipy(result, left, right)


@settings(max_examples=400)
@given(a=sparse_matrices(), data=st.data())
def test_any_prepared_matrix_multiplies_like_its_source(a, data):
    """Its source's values (stored in p.dtype, which holds them exactly or is float64), its
    source's products."""
    m, k = a.shape
    p = spmm.prepare(a)
    b = data.draw(dense_operands((k, data.draw(st.integers(0, 5)))))
    x = data.draw(dense_operands((m,)))
    source = sp.csr_array(a, dtype=p.dtype)
    assert_product_matches_scipy(p @ b, source, b)
    assert_product_matches_scipy(x @ p, x, source)


@settings(max_examples=500)
@given(
    lengths=hnp.arrays(np.int64, st.integers(0, 60), elements=st.integers(0, 50)),
    threads=st.integers(1, 70),
    code=st.sampled_from([0, 1, 2]),
    index_dtype=st.sampled_from(INDEX_DTYPES),
)
def test_any_partition_covers_all_rows_in_order(lengths, threads, code, index_dtype):
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    bounds = _spmm_ext.partition_bounds(indptr, threads, code)
    assert bounds[0] == 0 and bounds[-1] == len(lengths)
    assert np.all(np.diff(bounds) >= 0)
    slices = max(1, min(threads, len(lengths)))  # never more slices than rows
    if code == 0:
        assert len(bounds) == slices + 1
    if code == 1 and len(lengths) and indptr[-1]:
        share = indptr[-1] / slices
        assert np.abs(np.diff(indptr[bounds]) - share).max() <= lengths.max()
