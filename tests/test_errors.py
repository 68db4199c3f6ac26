"""Bad input is a clear exception that says what is wrong: never a crash, never a wrong answer.

Corrupt matrices are multiplied in a forked child, so that a crash fails the test instead of
ending the test run.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import BACKENDS, KERNEL_SIMD_LEVELS, KERNELS, make_csr, outcome, run_in_forked_child

import spmm
from spmm._pipeline import multiply_with_partition

# Also run with the extension built with AddressSanitizer and UBSan (.ci/run).
pytestmark = pytest.mark.asan

A = sp.csr_array(np.arange(12.0).reshape(4, 3))


@pytest.mark.parametrize(("left", "right", "pattern"), [
    (A, np.ones((4, 2)), r"shape mismatch: a has shape \(4, 3\) and b has shape \(4, 2\)"),
    (A, np.ones(4), r"shape mismatch: a has shape \(4, 3\) and b has shape \(4,\)"),
    (np.ones((2, 3)), A, r"shape mismatch: a has shape \(2, 3\) and b has shape \(4, 3\)"),
    (np.ones(3), A, r"shape mismatch: a has shape \(3,\) and b has shape \(4, 3\)"),
], ids=["A@B", "A@b-vector", "X@W", "x-vector@W"])
def test_a_shape_mismatch_is_a_value_error_naming_both_shapes(left, right, pattern):
    with pytest.raises(ValueError, match=pattern):
        spmm.multiply(left, right)


def test_two_sparse_operands_are_a_type_error():
    with pytest.raises(TypeError, match="got two sparse operands"):
        spmm.multiply(A, A.T)
    with pytest.raises(TypeError, match="got two sparse operands"):
        spmm.multiply(spmm.prepare(A), A.T)


@pytest.mark.parametrize(("left", "right"), [
    (np.ones((4, 3)), np.ones((3, 2))),
    ([[1.0, 2.0]], [[1.0], [2.0]]),
    (A.toarray(), np.ones(3)),
])
def test_two_dense_operands_are_a_type_error(left, right):
    with pytest.raises(TypeError, match="got two dense operands"):
        spmm.multiply(left, right)


@pytest.mark.parametrize("product", ["A@B", "X@W"])
@pytest.mark.parametrize(("sparse", "dense", "pattern"), [
    (A.astype(np.complex128), np.ones((3, 2)), "unsupported sparse operand dtype complex128"),
    (A, np.ones((3, 2), dtype=np.complex64), "unsupported dense operand dtype complex64"),
    (A, np.ones((3, 2), dtype=object), "dtype object"),
    (A, [[1, "a"], [2, 3], [4, 5]], "dense operand"),
    (A.astype(np.longdouble), np.ones((3, 2)), "unsupported sparse operand dtype float128"),
    (A, np.ones((3, 2), dtype=np.longdouble), "unsupported dense operand dtype float128"),
], ids=["complex-sparse", "complex-dense", "object-dense", "strings", "longdouble-sparse",
        "longdouble-dense"])
def test_complex_longdouble_object_and_string_dtypes_are_a_type_error(product, sparse, dense,
                                                                      pattern):
    """longdouble would silently lose its precision in float64: refused like complex."""
    left, right = (sparse, dense) if product == "A@B" else (np.asarray(dense).T, sparse.T)
    with pytest.raises(TypeError, match=pattern):
        spmm.multiply(left, right)


@pytest.mark.parametrize("product", ["A@B", "X@W"])
def test_a_3d_dense_array_is_a_value_error(product):
    dense = np.ones((3, 3, 2))
    left, right = (A, dense) if product == "A@B" else (dense, A.T)
    with pytest.raises(ValueError, match=r"1-D or 2-D; got 3-D with shape \(3, 3, 2\)"):
        spmm.multiply(left, right)


# --------------------------------------------------------------------------------------------
# Corrupt CSR structure: built valid, then its arrays are mutated after construction.


def _set(name, position, value):
    def corrupt(a):
        getattr(a, name)[position] = value
    return corrupt


def _drop_last_indptr(a):
    a.indptr = a.indptr[:-1]


def _extra_indptr(a):
    a.indptr = np.append(a.indptr, a.indptr[-1]).astype(a.indptr.dtype)


CORRUPTIONS = {
    "indptr-not-monotone": (_set("indptr", 1, 5), r"non-decreasing"),
    "indptr[0]-not-0": (_set("indptr", 0, 1), r"indptr\[0\] must be 0"),
    "index-out-of-range": (_set("indices", 1, 5), r"index 5 .* out of range"),
    "negative-index": (_set("indices", 1, -1), r"index -1 .* out of range"),
    "indptr-too-short": (_drop_last_indptr, r"indptr has 4 entries, expected 5"),
    "indptr-too-long": (_extra_indptr, r"indptr has 6 entries, expected 5"),
    "indptr-end-beyond-indices": (_set("indptr", 4, 12), r"indptr\[4\] = 12 exceeds the 6"),
}


def corrupt_csr(corruption, index_dtype):
    """A valid 4 x 5 csr_array with 6 entries (row 1 empty), then corrupted in place."""
    a = sp.csr_array((np.arange(1.0, 7.0),
                      np.array([0, 2, 4, 1, 3, 4], dtype=index_dtype),
                      np.array([0, 3, 3, 5, 6], dtype=index_dtype)), shape=(4, 5))
    CORRUPTIONS[corruption][0](a)
    return a


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("product", ["A@B", "X@W", "prepare"])
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_csr_matrix_is_a_value_error_never_a_crash(corruption, product, index_dtype):
    a = corrupt_csr(corruption, index_dtype)
    calls = {
        "A@B": lambda: spmm.multiply(a, np.ones((5, 2)), backend="serial"),
        "X@W": lambda: spmm.multiply(np.ones((2, 4)), a, backend="serial"),
        "prepare": lambda: spmm.prepare(a),
    }
    kind, exc_type, message = run_in_forked_child(lambda: outcome(calls[product]))
    assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
    assert "corrupt sparse matrix" in message
    pattern = CORRUPTIONS[corruption][1]
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"


def _lil_column_out_of_range():
    a = sp.lil_array((5, 5))
    a[0, 0] = 1.0
    a.rows[0] = [10**6]
    return a


def _lil_row_lists_of_different_lengths():
    a = sp.lil_array((5, 5))
    a[0, 0] = 1.0
    a.data[0] = [1.0] * 1000
    return a


def _dia_offsets_not_matching_data():
    a = sp.dia_array((np.ones((3, 200)), [0, 1, -1]), shape=(200, 200))
    a.offsets = np.array([0], dtype=np.int32)
    return a


def _bsr_blocks_not_tiling_the_shape():
    a = sp.bsr_array(np.ones((4, 4)), blocksize=(2, 2))
    a.data = np.ones((1, 3, 3))
    return a


def _bsr_block_index_out_of_range():
    a = sp.bsr_array(np.ones((4, 4)), blocksize=(2, 2))
    a.indices[0] = 7
    return a


def _coo_coordinate_out_of_range():
    a = sp.coo_array(np.eye(5))
    a.coords[1][0] = 99
    return a


def _lil_with(row_columns):
    def make():
        a = sp.lil_array((5, 5))
        a[0, 0] = 1.0
        a.rows[0] = row_columns
        return a
    return make


def _lil_rows_as_a_list():
    a = sp.lil_array((5, 5))
    a[0, 0] = 1.0
    a.rows = list(a.rows)
    return a


def _dok_with_key(key):
    def make():
        a = sp.dok_array((5, 5))
        a[0, 0] = 1.0
        a._dict[key] = 2.0  # bypassing dok's own __setitem__ checks, as a corruption does
        return a
    return make


def _coo_with_three_coordinate_arrays():
    a = sp.coo_array(np.eye(5))
    a.coords = (*a.coords, a.coords[0])
    return a


OTHER_FORMAT_CORRUPTIONS = {
    "lil-column-out-of-range": (_lil_column_out_of_range, r"LIL row 0 has a column"),
    "lil-row-lists-of-different-lengths": (_lil_row_lists_of_different_lengths,
                                           r"LIL row 0 has 1 columns and 1000 values"),
    "dia-offsets-not-matching-data": (_dia_offsets_not_matching_data, r"DIA has 1 offsets"),
    "bsr-blocks-not-tiling-the-shape": (_bsr_blocks_not_tiling_the_shape, r"do not tile"),
    "bsr-block-index-out-of-range": (_bsr_block_index_out_of_range, r"index 7 .* out of range"),
    "coo-coordinate-out-of-range": (
        _coo_coordinate_out_of_range, r"column coordinate 99 at position 0 is out of range"),
    "lil-row-a-tuple": (_lil_with((0,)), r"LIL row 0 must hold a list of columns"),
    "lil-float-column": (_lil_with([0.5]), r"LIL row 0 has a column 0.5 that is not an integer"),
    "lil-list-column": (_lil_with([[0, 1]]), r"LIL row 0 has a column \[0, 1\] that is not an"),
    "lil-str-column": (_lil_with(["0"]), r"LIL row 0 has a column '0' that is not an integer"),
    "lil-negative-column": (_lil_with([-1]), r"LIL row 0 has a column out of range .* -1"),
    "lil-huge-column": (_lil_with([2**70]), r"LIL row 0 has a column out of range"),
    "lil-rows-a-list": (_lil_rows_as_a_list, r"LIL rows must be a 1-D object array of 5 lists"),
    "dok-key-of-three": (_dok_with_key((1, 2, 3)), r"DOK key must be a pair"),
    "dok-float-key": (_dok_with_key((1.5, 2)), r"DOK key must be a pair"),
    "dok-key-out-of-range": (_dok_with_key((7, 9)), r"DOK key .* got \(7, 9\)"),
    "coo-three-coordinate-arrays": (_coo_with_three_coordinate_arrays,
                                    r"COO coord(s|inates) must be (a tuple of )?two"),
}


@pytest.mark.parametrize("product", ["A@B", "X@W", "prepare"])
@pytest.mark.parametrize("corruption", OTHER_FORMAT_CORRUPTIONS)
def test_a_corrupt_lil_dia_bsr_or_coo_matrix_is_a_value_error_never_a_crash(corruption, product):
    """scipy's own conversions crash on these; spmm checks before it converts."""
    make, pattern = OTHER_FORMAT_CORRUPTIONS[corruption]
    a = make()
    m, k = a.shape
    calls = {
        "A@B": lambda: spmm.multiply(a, np.ones((k, 2)), backend="serial"),
        "X@W": lambda: spmm.multiply(np.ones((2, m)), a, backend="serial"),
        "prepare": lambda: spmm.prepare(a),
    }
    kind, exc_type, message = run_in_forked_child(lambda: outcome(calls[product]))
    assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
    assert "corrupt sparse matrix" in message
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"


@pytest.mark.parametrize("shape", [(5, -1), (5.0, 5), ("5", 5)],
                         ids=["negative", "float", "str"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"])
def test_a_sparse_matrix_whose_shape_was_overwritten_is_a_value_error(fmt, shape):
    a = sp.eye_array(5, format=fmt)
    a._shape = shape
    calls = [lambda: spmm.prepare(a), lambda: spmm.multiply(a, np.ones((5, 2))),
             lambda: spmm.multiply(np.ones((2, 5)), a)]
    for call in calls:
        kind, exc_type, message = run_in_forked_child(lambda call=call: outcome(call))
        assert (kind, exc_type) == ("raised", "ValueError"), f"{kind} {exc_type}: {message}"
        assert "shape must be two integers" in message


def test_checking_a_bsr_matrix_does_not_modify_it():
    a = sp.bsr_array((np.ones((3, 2, 2)), np.array([0, 1, 1]), np.array([0, 2, 3])),
                     shape=(4, 4))
    a.indices = np.array([0, 1, 1, 0, 0], dtype=a.indices.dtype)  # spare capacity
    spmm.multiply(a, np.ones((4, 2)))
    assert len(a.indices) == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_corruption_is_caught_before_any_kernel_runs_on_every_backend(backend):
    a = corrupt_csr("index-out-of-range", np.int32)
    for kernel in KERNELS:
        with pytest.raises(ValueError, match="out of range"):
            spmm.multiply(a, np.ones((5, 300)), backend=backend, kernel=kernel, num_threads=3)


# --------------------------------------------------------------------------------------------
# Configuration keywords.

CALLS = {
    "multiply": lambda **kw: spmm.multiply(A, np.ones((3, 2)), **kw),
    "set_config": lambda **kw: spmm.set_config(**kw),
    "config_context": lambda **kw: spmm.config_context(**kw).__enter__(),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name", ["cuda", "OpenMP", "", 1])
def test_an_unknown_backend_is_a_value_error_naming_the_valid_backends(call, name):
    with pytest.raises(ValueError, match="backend") as info:
        CALLS[call](backend=name)
    for backend in spmm.available_backends():
        assert repr(backend) in str(info.value)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name", ["fast", "Tiled", "", 2])
def test_an_unknown_kernel_is_a_value_error_naming_the_valid_kernels(call, name):
    with pytest.raises(ValueError, match="kernel") as info:
        CALLS[call](kernel=name)
    for kernel in KERNELS:
        assert repr(kernel) in str(info.value)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True, 2.0, np.float64(2)],
                         ids=["0", "-1", "1.5", "'2'", "True", "2.0", "np.float64(2)"])
def test_a_bad_thread_count_is_a_value_error_asking_for_a_positive_integer(call, value):
    with pytest.raises(ValueError, match=r"num_threads.* must be a positive integer"):
        CALLS[call](num_threads=value)


@pytest.mark.parametrize("value", [1, 2, 5, np.int64(3)], ids=["1", "2", "5", "np.int64(3)"])
def test_any_positive_integer_thread_count_is_accepted_also_more_than_the_cpus(value):
    a = make_csr((10, 3), 0.5, np.float64, np.int32, np.random.default_rng(0))
    np.testing.assert_allclose(spmm.multiply(a, np.ones((3, 2)), num_threads=value),
                               a @ np.ones((3, 2)), rtol=1e-12)
    spmm.set_config(num_threads=value)
    assert spmm.get_config()["num_threads"] == value


def test_an_unknown_partition_is_a_value_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"partition must be one of .*'rows'.*'nnz'.*'dynamic'"):
        multiply_with_partition(A, np.ones((3, 2)), partition="cyclic")


@pytest.mark.parametrize("cls", [sp.csr_array, sp.coo_array])
@pytest.mark.parametrize("product", ["A@B", "X@W"])
def test_a_1d_sparse_array_is_a_type_error(cls, product):
    vector = cls(np.array([1.0, 0.0, 2.0]))
    left, right = (vector, np.ones(3)) if product == "A@B" else (np.ones(3), vector)
    message = f"sparse operands must be 2-D; got a 1-D {cls.__name__}"
    for call in (spmm.multiply, spmm.explain):
        with pytest.raises(TypeError, match=message):
            call(left, right)


def _corrupt_matrix_with_a_result_larger_than_memory() -> str:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
    a = sp.csr_array((3, 5), dtype=np.float64)
    a.indptr = np.array([-1, 0, 0, 0], dtype=a.indptr.dtype)
    a._shape = (3, 2**31)  # the result of v @ a: 16 GiB
    try:  # (the threads backend: fork-safe, where OpenMP would warn in a forked child)
        spmm.multiply(np.ones(3), a, backend="threads")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


@pytest.mark.skipif("ASAN_OPTIONS" in os.environ,
                    reason="AddressSanitizer cannot run under an address-space limit")
def test_a_corrupt_matrix_whose_result_does_not_fit_in_memory_is_still_a_value_error():
    """The result is allocated before the kernels' fused checks run: when it cannot be, the
    matrix is checked first, and a corrupt one is the ValueError it would have been."""
    outcome_text = run_in_forked_child(_corrupt_matrix_with_a_result_larger_than_memory)
    assert outcome_text.startswith("ValueError") and "indptr" in outcome_text, outcome_text


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("level", KERNEL_SIMD_LEVELS)
def test_a_bad_index_anywhere_in_a_long_row_of_a_one_column_product_is_a_value_error(
    level, index_dtype, monkeypatch
):
    """The one-column gather kernel checks a register of indices before each gather: a bad
    index in the first, a middle or the masked last register of a 45-entry row, at each
    instruction set, is found and named (the product is never computed with it)."""
    monkeypatch.setenv("SPMM_SIMD", level)
    for position in (0, 17, 31, 44):
        for value in (-1, 50, np.iinfo(index_dtype).min, np.iinfo(index_dtype).max):
            a = sp.csr_array((np.ones(45), np.arange(45, dtype=index_dtype),
                              np.array([0, 0, 45], dtype=index_dtype)), shape=(2, 50))
            a.indices[position] = value
            kind, exc_type, message = run_in_forked_child(
                lambda a=a: outcome(lambda: spmm.multiply(a, np.ones((50, 1)), backend="serial")))
            assert (kind, exc_type) == ("raised", "ValueError"), f"{position} {value}: {message}"
            assert f"index {value} " in message, message
