"""Indices and offsets beyond 2^31.

The dense operands are huge but cost almost nothing: np.zeros takes them from calloc, so only
the pages a test writes or the kernels read become real memory. Nothing here touches more
than a few rows of them.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import BACKENDS, KERNELS, PARALLEL_BACKENDS, assert_matches_scipy

import spmm

BEYOND_INT32 = 2**31 + 10


@pytest.fixture(scope="module")
def tall_column():
    """np.zeros((2**31 + 10, 1), float32) with a few known rows beyond 2**31 (8 GiB virtual)."""
    b = np.zeros((BEYOND_INT32, 1), dtype=np.float32)
    b[2**31 + 1, 0] = 3.0
    b[2**31 + 9, 0] = -0.5
    b[7, 0] = 2.0
    return b


def int64_matrix_beyond_int32():
    """2 x (2**31 + 10) with int64 indices, stored entries at columns beyond 2**31."""
    indices = np.array([7, 2**31 + 1, 2**31 + 9, 2**31 + 1], dtype=np.int64)
    indptr = np.array([0, 3, 4], dtype=np.int64)
    data = np.array([1.0, 2.0, 4.0, -1.0], dtype=np.float32)
    a = sp.csr_array((data, indices, indptr), shape=(2, BEYOND_INT32))
    assert a.indices.dtype == np.int64
    return a


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_int64_column_indices_beyond_2_to_the_31_are_used_exactly(backend, kernel, tall_column):
    a = int64_matrix_beyond_int32()
    by_hand = np.array([[1.0 * 2.0 + 2.0 * 3.0 + 4.0 * -0.5], [-1.0 * 3.0]], dtype=np.float32)
    result = spmm.multiply(a, tall_column, backend=backend, kernel=kernel, num_threads=2)
    assert_matches_scipy(result, by_hand, dtype=np.float32)
    assert_matches_scipy(result, a @ tall_column, dtype=np.float32)


def test_int64_indices_beyond_2_to_the_31_work_for_a_1d_vector_too(tall_column):
    a = int64_matrix_beyond_int32()
    result = spmm.multiply(a, tall_column[:, 0], backend="serial")
    assert_matches_scipy(result, np.array([6.0, -3.0], dtype=np.float32), dtype=np.float32)


WIDE_COLUMNS = 40_000
INNER = 70_000


@pytest.fixture(scope="module")
def wide_dense():
    """np.zeros((70000, 40000), float32): 11.2 GB virtual, rows 0 and 69999 filled.

    Row 69999 starts 69999 * 40000 = 2.8e9 elements in: beyond what int32 can offset.
    """
    b = np.zeros((INNER, WIDE_COLUMNS), dtype=np.float32)
    b[INNER - 1] = np.linspace(-1.0, 1.0, WIDE_COLUMNS, dtype=np.float32)
    b[0] = 0.25
    return b


@pytest.mark.parametrize(("backend", "kernel"),
                         [("serial", "reordered"), ("serial", "tiled"), ("serial", "naive")]
                         + [(b, k) for b in PARALLEL_BACKENDS for k in ("reordered", "tiled")])
def test_int32_indices_whose_row_offset_overflows_32_bits_are_used_exactly(
    backend, kernel, wide_dense
):
    indices = np.array([INNER - 1, 0, INNER - 1, INNER - 1], dtype=np.int32)
    indptr = np.array([0, 2, 2, 4], dtype=np.int32)
    data = np.array([2.0, 1.0, -3.0, 0.5], dtype=np.float32)
    a = sp.csr_array((data, indices, indptr), shape=(3, INNER))
    assert a.indices.dtype == np.int32
    last_row = wide_dense[INNER - 1]
    by_hand = np.stack([2.0 * last_row + 0.25, np.zeros(WIDE_COLUMNS, np.float32),
                        -2.5 * last_row])
    result = spmm.multiply(a, wide_dense, backend=backend, kernel=kernel, num_threads=3)
    assert_matches_scipy(result, by_hand, dtype=np.float32)
