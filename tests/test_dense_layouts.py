"""The dense operand may have any memory order, strides, byte order or array-like type."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    BACKENDS,
    KERNELS,
    assert_product_matches_scipy,
    assert_sparse_unchanged,
    make_csr,
    make_dense,
    sparse_arrays,
)

import spmm


def read_only(array):
    array.setflags(write=False)
    return array


# Each layout makes a dense operand of the given shape, with random float64 values.
def packed_record_field(shape, rng):
    """The float64 field of a packed record array: its row stride (8 * columns + 1 bytes) is
    not a multiple of the item size."""
    rows, cols = (shape[0], 1) if len(shape) == 1 else shape
    records = np.zeros(rows, dtype=[("values", np.float64, (cols,)), ("flag", np.int8)])
    records["values"] = make_dense((rows, cols), np.float64, rng)
    return records["values"][:, 0] if len(shape) == 1 else records["values"]


LAYOUTS_2D = {
    "C-order": lambda shape, rng: make_dense(shape, np.float64, rng),
    "Fortran-order": lambda shape, rng: np.asfortranarray(make_dense(shape, np.float64, rng)),
    "every-second-column": lambda shape, rng: make_dense(
        (shape[0], 2 * shape[1]), np.float64, rng)[:, ::2],
    "every-third-row": lambda shape, rng: make_dense(
        (3 * shape[0], shape[1]), np.float64, rng)[::3],
    "negative-row-stride": lambda shape, rng: make_dense(shape, np.float64, rng)[::-1],
    "negative-strides-both": lambda shape, rng: make_dense(shape, np.float64, rng)[::-1, ::-1],
    "transposed-view": lambda shape, rng: make_dense(shape[::-1], np.float64, rng).T,
    "broadcast-row-zero-row-stride": lambda shape, rng: np.broadcast_to(
        make_dense(shape[1], np.float64, rng), shape),
    "broadcast-column-zero-column-stride": lambda shape, rng: np.broadcast_to(
        make_dense((shape[0], 1), np.float64, rng), shape),
    "broadcast-scalar-all-strides-zero": lambda shape, rng: np.broadcast_to(
        np.float64(rng.uniform(-1, 1)), shape),
    "read-only": lambda shape, rng: read_only(make_dense(shape, np.float64, rng)),
    "big-endian-float64": lambda shape, rng: make_dense(shape, np.float64, rng).astype(">f8"),
    "big-endian-float32": lambda shape, rng: make_dense(shape, np.float32, rng).astype(">f4"),
    "float32-Fortran-strided": lambda shape, rng: np.asfortranarray(make_dense(
        (shape[0], 2 * shape[1]), np.float32, rng))[:, ::2],
    # view(), unlike np.matrix(...), does not raise numpy's PendingDeprecationWarning
    "packed-record-field": packed_record_field,
    "np.matrix": lambda shape, rng: make_dense(shape, np.float64, rng).view(np.matrix),
    "nested-lists": lambda shape, rng: make_dense(shape, np.float64, rng).tolist(),
}

LAYOUTS_1D = {
    "contiguous": lambda n, rng: make_dense(n, np.float64, rng),
    "every-second-element": lambda n, rng: make_dense(2 * n, np.float64, rng)[::2],
    "negative-stride": lambda n, rng: make_dense(n, np.float64, rng)[::-1],
    "broadcast-zero-stride": lambda n, rng: np.broadcast_to(np.float64(0.5), (n,)),
    "read-only": lambda n, rng: read_only(make_dense(n, np.float64, rng)),
    "big-endian": lambda n, rng: make_dense(n, np.float64, rng).astype(">f8"),
    "column-of-a-C-matrix": lambda n, rng: make_dense((n, 3), np.float64, rng)[:, 1],
    "packed-record-field": lambda n, rng: packed_record_field((n,), rng),
    "list": lambda n, rng: make_dense(n, np.float64, rng).tolist(),
}

SPARSE_SHAPE = (23, 17)
OTHER = 6


def products(layout, rng):
    """[(A, B), (X, W)] with the dense operand made by ``layout``."""
    a = make_csr(SPARSE_SHAPE, 0.3, np.float64, np.int32, rng, empty_rows=(0, 22))
    m, k = SPARSE_SHAPE
    return [(a, layout((k, OTHER), rng)), (layout((OTHER, m), rng), a)]


def check_untouched_product(left, right, **kw):
    """multiply(left, right) equals scipy and modifies neither operand."""
    sparse, dense = (left, right) if hasattr(left, "tocsr") else (right, left)
    sparse_before = sparse_arrays(sparse)
    dense_before = np.array(dense, copy=True)
    result = spmm.multiply(left, right, **kw)
    assert_product_matches_scipy(result, left, right)
    np.testing.assert_array_equal(np.asarray(dense), dense_before)
    assert_sparse_unchanged(sparse, sparse_before)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS_2D)
def test_a_2d_dense_operand_of_any_layout_gives_scipys_result(layout, backend, kernel, rng):
    for left, right in products(LAYOUTS_2D[layout], rng):
        check_untouched_product(left, right, backend=backend, kernel=kernel, num_threads=3)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS_1D)
def test_a_1d_dense_operand_of_any_layout_gives_scipys_1d_result(layout, backend, kernel, rng):
    a = make_csr(SPARSE_SHAPE, 0.3, np.float64, np.int32, rng)
    m, k = SPARSE_SHAPE
    for left, right in [(a, LAYOUTS_1D[layout](k, rng)), (LAYOUTS_1D[layout](m, rng), a)]:
        check_untouched_product(left, right, backend=backend, kernel=kernel, num_threads=2)


def test_the_layouts_really_have_the_strides_they_are_named_for(rng):
    """Guards the layout table itself: each entry is the memory layout it claims to be."""
    shape = (5, 4)
    made = {name: make(shape, rng) for name, make in LAYOUTS_2D.items()}
    assert made["Fortran-order"].flags.f_contiguous and not made["Fortran-order"].flags.c_contiguous
    assert made["every-second-column"].strides == (64, 16)
    assert made["every-third-row"].strides == (96, 8)
    assert made["negative-row-stride"].strides[0] < 0
    assert all(s < 0 for s in made["negative-strides-both"].strides)
    assert made["broadcast-row-zero-row-stride"].strides == (0, 8)
    assert made["broadcast-column-zero-column-stride"].strides == (8, 0)
    assert made["broadcast-scalar-all-strides-zero"].strides == (0, 0)
    assert made["packed-record-field"].strides == (33, 8)
    assert packed_record_field((5,), rng).strides == (9,)
    assert not made["read-only"].flags.writeable
    assert not made["big-endian-float64"].dtype.isnative
    assert isinstance(made["np.matrix"], np.matrix)
    assert isinstance(made["nested-lists"], list)
