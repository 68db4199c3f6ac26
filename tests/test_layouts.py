"""Structured layouts: prepare(w, layout=...) stores tile-wise and block sparsity as panels.

``x @ p`` then runs the column-tile kernel (a gather of X's kept columns and a dense micro-GEMM
per tile); every result must equal scipy's product of the same matrix, for every instruction
set, backend, thread count, batch size (the micro-kernel's block sizes and their remainders),
ragged last tiles and blocks, and any layout of X and of ``out``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    BACKENDS,
    KERNEL_SIMD_LEVELS,
    PARTITIONS,
    THREAD_COUNTS,
    VALUE_DTYPES,
    assert_product_matches_scipy,
    assert_sparse_unchanged,
    ids,
    make_dense,
    sparse_arrays,
)

import spmm
from spmm._pipeline import multiply_with_partition

# Batch sizes: one row, every remainder of the micro-kernel's blocks (12, 8, 6, 4, 2, 1) and
# several full blocks.
BATCHES = (1, 2, 3, 5, 7, 11, 13, 25, 64)


def tile_wise(shape, width, keep, dtype, rng, *, empty_tile=False):
    """W (rows x cols) with tile-wise sparsity: per tile of ``width`` columns, each row's
    whole segment kept with probability ``keep`` (the last tile may be narrower)."""
    rows, cols = shape
    tiles = -(-cols // width)
    kept = rng.random((rows, tiles)) < keep
    if empty_tile:
        kept[:, 0] = False
    mask = np.repeat(kept, width, axis=1)[:, :cols]
    values = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    return sp.csr_array(np.where(mask, values, 0).astype(dtype))


def block_sparse(shape, block, keep, dtype, rng):
    """W with ``block`` = (r, c) blocks, each kept with probability ``keep`` (the last block
    row and column may be ragged)."""
    rows, cols = shape
    r, c = block
    kept = rng.random((-(-rows // r), -(-cols // c))) < keep
    mask = np.repeat(np.repeat(kept, r, axis=0), c, axis=1)[:rows, :cols]
    values = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    return sp.csr_array(np.where(mask, values, 0).astype(dtype))


def n_m_sparse(shape, n, m, dtype, rng):
    """W with N:M sparsity along the inputs (spmm.prune's n_m pattern; a last, shorter group
    keeps min(n, its rows))."""
    w = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    return spmm.prune(w.astype(dtype), pattern="n_m", n=n, m=m)


# (name, W maker, expected layout, expected block or (n, m)): ragged last tiles, blocks and
# groups included; N:M groups of 16 exceed an AVX2 register of doubles (the portable loop).
STRUCTURES = {
    "tile-128-ragged": (lambda d, rng: tile_wise((300, 300), 128, 0.3, d, rng), "tile", (1, 128)),
    "tile-32-empty-tile": (lambda d, rng: tile_wise((53, 96), 32, 0.5, d, rng, empty_tile=True),
                           "tile", (1, 32)),
    "tile-16-narrow": (lambda d, rng: tile_wise((29, 17), 16, 0.6, d, rng), "tile", (1, 16)),
    "block-32x32": (lambda d, rng: block_sparse((128, 160), (32, 32), 0.3, d, rng),
                    "block", (32, 32)),
    "block-8x16-ragged": (lambda d, rng: block_sparse((37, 70), (8, 16), 0.4, d, rng),
                          "block", (8, 16)),
    "n_m-2:4-ragged": (lambda d, rng: n_m_sparse((38, 100), 2, 4, d, rng), "n_m", (2, 4)),
    "n_m-1:8": (lambda d, rng: n_m_sparse((64, 40), 1, 8, d, rng), "n_m", (1, 8)),
    "n_m-5:16-ragged": (lambda d, rng: n_m_sparse((70, 33), 5, 16, d, rng), "n_m", (5, 16)),
}


def shape_of(p):
    return p.n_m if p.layout == "n_m" else p.block


@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("name", STRUCTURES)
def test_auto_finds_the_structure_a_matrix_has(name, dtype, rng):
    make, layout, block = STRUCTURES[name]
    p = spmm.prepare(make(dtype, rng))
    assert (p.layout, shape_of(p)) == (layout, block)
    assert layout in repr(p)


def _first_rows_empty(w, rows):
    w = w.tolil()
    w[:rows] = 0
    return sp.csr_array(w)


def _one_entry_broken(w):
    """``w`` with the last stored entry of its last stored row removed: a tile, block or group
    left incomplete, far past the first rows."""
    w = sp.csr_array(w)
    w.data[-1] = 0
    w.eliminate_zeros()
    return w


# Matrices of 2048 rows, where auto first looks at a window of 64 rows: a structure must be
# found when the window holds it, even after hundreds of empty rows; and a matrix whose window
# fits but whose later rows do not must still be rejected.
TALL = {
    "tile after 600 empty rows": (lambda rng: _first_rows_empty(
        tile_wise((2048, 96), 32, 0.3, np.float32, rng), 600), ("tile", (1, 32))),
    "block 16x32 after 304 empty rows": (lambda rng: _first_rows_empty(
        block_sparse((2048, 64), (16, 32), 0.3, np.float32, rng), 304), ("block", (16, 32))),
    "n_m 2:4": (lambda rng: n_m_sparse((2048, 40), 2, 4, np.float32, rng), ("n_m", (2, 4))),
    "n_m 3:8, ragged last group": (lambda rng: n_m_sparse((2044, 37), 3, 8, np.float32, rng),
                                   ("n_m", (3, 8))),
    "n_m 5:16": (lambda rng: n_m_sparse((2048, 33), 5, 16, np.float32, rng), ("n_m", (5, 16))),
    "tile 32, ragged last tile, window at the last rows": (lambda rng: _first_rows_empty(
        tile_wise((2048, 90), 32, 0.3, np.float32, rng), 1984), ("tile", (1, 32))),
    "tile broken in the last row": (lambda rng: _one_entry_broken(
        tile_wise((2048, 96), 32, 0.3, np.float32, rng)), ("csr", None)),
    "n_m broken in the last group": (lambda rng: _one_entry_broken(
        n_m_sparse((2048, 40), 2, 4, np.float32, rng)), ("csr", None)),
    "unstructured": (lambda rng: sp.random_array((2048, 300), density=0.2, format="csr",
                                                 dtype=np.float32, rng=rng), ("csr", None)),
}


@pytest.mark.parametrize("name", TALL)
def test_auto_decides_on_tall_matrices_as_on_the_whole_matrix(name, rng):
    make, (layout, shape) = TALL[name]
    w = make(rng)
    p = spmm.prepare(w)
    assert p.layout == layout
    if shape is not None:
        assert shape_of(p) == shape
    x = make_dense((5, w.shape[0]), np.float32, rng)
    assert_product_matches_scipy(spmm.multiply(x, p), x, w)


def test_auto_rejects_a_tall_unstructured_matrix_from_its_first_64_rows(monkeypatch, rng):
    from spmm import _layouts

    seen = []
    fitting_width = _layouts._fitting_width

    def recording(csr, row_of):
        seen.append(csr.shape[0])
        return fitting_width(csr, row_of)

    monkeypatch.setattr(_layouts, "_fitting_width", recording)
    w = sp.random_array((2048, 300), density=0.2, format="csr", dtype=np.float32, rng=rng)
    assert spmm.prepare(w).layout == "csr"
    assert seen == [64], "only the window was searched"


@pytest.mark.parametrize("dtype", VALUE_DTYPES, ids=ids(VALUE_DTYPES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("level", KERNEL_SIMD_LEVELS)
@pytest.mark.parametrize("name", STRUCTURES)
def test_structured_products_equal_scipy_at_every_simd_level_and_batch(
    name, level, backend, dtype, monkeypatch, rng
):
    monkeypatch.setenv("SPMM_SIMD", level)
    w = STRUCTURES[name][0](dtype, rng)
    p = spmm.prepare(w)
    assert p.layout == STRUCTURES[name][1]
    for batch in BATCHES:
        x = make_dense((batch, w.shape[0]), dtype, rng)
        result = spmm.multiply(x, p, backend=backend, num_threads=2)
        assert_product_matches_scipy(result, x, w, err_msg=f"{level}, batch {batch}")


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("threads", THREAD_COUNTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_structured_products_equal_scipy_for_every_thread_count_and_partition(
    backend, threads, partition, rng
):
    for name, (make, _, _) in STRUCTURES.items():
        w = make(np.float32, rng)
        x = make_dense((9, w.shape[0]), np.float32, rng)
        result = multiply_with_partition(x, spmm.prepare(w), backend=backend,
                                         num_threads=threads, partition=partition)
        assert_product_matches_scipy(result, x, w, err_msg=name)


def x_layouts(x):
    """The same X as C-ordered, Fortran-ordered, a strided view, a reversed view."""
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3), dtype=x.dtype)
    big[::2, ::3] = x
    return {
        "C": x,
        "F": np.asfortranarray(x),
        "strided": big[::2, ::3],
        "reversed": np.ascontiguousarray(x[::-1])[::-1],
    }


@pytest.mark.parametrize("pattern", ["tile", "block"])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "reversed"])
def test_structured_products_read_x_in_any_layout(layout, pattern, rng):
    w = (tile_wise((70, 90), 32, 0.4, np.float64, rng) if pattern == "tile" else
         block_sparse((64, 96), (16, 16), 0.5, np.float64, rng))
    p = spmm.prepare(w)
    assert p.layout == pattern
    x = x_layouts(make_dense((13, w.shape[0]), np.float64, rng))[layout]
    assert_product_matches_scipy(p.__rmatmul__(x), x, w)
    assert_product_matches_scipy(spmm.multiply(x, p), x, w)


def test_a_one_dimensional_x_is_one_row(rng):
    w = block_sparse((64, 48), (16, 16), 0.5, np.float32, rng)
    x = make_dense(64, np.float32, rng)
    result = spmm.multiply(x, spmm.prepare(w))
    assert result.shape == (48,)
    assert_product_matches_scipy(result, x, w)


@pytest.mark.parametrize("vector", [False, True], ids=["2-D", "1-D"])
def test_structured_products_write_into_out(vector, rng):
    w = tile_wise((40, 64), 16, 0.5, np.float32, rng)
    x = make_dense(40 if vector else (6, 40), np.float32, rng)
    out = np.full(64 if vector else (6, 64), np.nan, dtype=np.float32)
    result = spmm.multiply(x, spmm.prepare(w), out=out)
    assert result is out
    assert_product_matches_scipy(out, x, w)


def test_a_float32_structured_matrix_times_float64_x_computes_in_float64(rng):
    w = tile_wise((50, 64), 32, 0.5, np.float32, rng)
    x = make_dense((5, 50), np.float64, rng)
    result = spmm.multiply(x, spmm.prepare(w))
    assert result.dtype == np.float64
    assert_product_matches_scipy(result, x, w)


def test_empty_batches_and_all_pruned_tiles_give_empty_and_zero_results(rng):
    w = tile_wise((30, 64), 16, 0.5, np.float32, rng, empty_tile=True)
    p = spmm.prepare(w)
    assert spmm.multiply(np.zeros((0, 30), np.float32), p).shape == (0, 64)
    x = make_dense((4, 30), np.float32, rng)
    result = spmm.multiply(x, p)
    assert np.all(result[:, :16] == 0)
    assert_product_matches_scipy(result, x, w)


@pytest.mark.parametrize("kernel", ["naive", "reordered", "tiled"])
def test_naming_a_csr_kernel_computes_a_structured_matrix_with_its_csr_form(kernel, rng):
    w = block_sparse((64, 64), (16, 16), 0.5, np.float64, rng)
    x = make_dense((7, 64), np.float64, rng)
    assert_product_matches_scipy(spmm.multiply(x, spmm.prepare(w), kernel=kernel), x, w)


def test_p_times_b_uses_the_csr_form_of_a_structured_matrix(rng):
    w = tile_wise((64, 50), 32, 0.5, np.float32, rng)
    b = make_dense((50, 7), np.float32, rng)
    assert_product_matches_scipy(spmm.prepare(w) @ b, w, b)


def test_unstructured_and_dense_matrices_and_declared_csr_stay_csr(rng):
    unstructured = sp.random_array((64, 64), density=0.3, format="csr", rng=rng)
    assert spmm.prepare(unstructured).layout == "csr"
    assert spmm.prepare(sp.csr_array((64, 64))).layout == "csr"
    structured = tile_wise((64, 64), 32, 0.5, np.float64, rng)
    assert spmm.prepare(structured, layout="csr").layout == "csr"
    assert spmm.prepare(structured, layout="csr").block is None


@pytest.mark.parametrize("declared", [{"layout": "tile", "tile": 16},
                                      {"layout": "block", "block": (8, 16)},
                                      {"layout": "tile"}, {"layout": "block"}],
                         ids=["tile-16", "block-8x16", "tile-default", "block-default"])
def test_a_declared_layout_that_does_not_fit_fills_zeros_and_equals_scipy_for_finite_x(
    declared, rng
):
    w = sp.random_array((45, 70), density=0.2, format="csr", dtype=np.float64, rng=rng)
    p = spmm.prepare(w, **declared)
    assert p.layout == declared["layout"]
    x = make_dense((11, 45), np.float64, rng)
    assert_product_matches_scipy(spmm.multiply(x, p), x, w)


def test_the_zero_fill_of_a_declared_layout_turns_an_inf_of_x_into_nan_as_documented(rng):
    w = sp.csr_array(np.array([[1.0, 0.0], [0.0, 1.0]] * 8))  # no fitting tile of 16 rows
    x = np.zeros((1, 16))
    x[0, 0] = np.inf
    declared = spmm.multiply(x, spmm.prepare(w, layout="tile", tile=2))
    assert np.isnan(declared[0, 1]), "0 * inf in a filled position is NaN"
    assert np.array_equal(spmm.multiply(x, spmm.prepare(w)), x @ w), "auto never fills"


def test_the_declared_default_shapes_are_pruning_defaults(rng):
    w = sp.random_array((64, 256), density=0.3, format="csr", rng=rng)
    assert spmm.prepare(w, layout="tile").block == (1, 128)
    assert spmm.prepare(w, layout="block").block == (32, 32)


def test_prepare_with_a_structured_layout_leaves_the_matrix_unchanged(rng):
    w = tile_wise((64, 64), 32, 0.5, np.float32, rng)
    before = sparse_arrays(w)
    spmm.prepare(w, layout="tile", tile=16)
    assert_sparse_unchanged(w, before)


def test_a_structured_prepared_matrix_pickles_with_its_layout(rng):
    w = block_sparse((64, 64), (16, 16), 0.5, np.float32, rng)
    p = pickle.loads(pickle.dumps(spmm.prepare(w)))
    assert (p.layout, p.block) == ("block", (16, 16))
    x = make_dense((5, 64), np.float32, rng)
    assert_product_matches_scipy(x @ p, x, w)


def test_the_footprint_of_a_structured_matrix_counts_its_panels(rng):
    w = tile_wise((256, 256), 128, 0.25, np.float32, rng)
    p = spmm.prepare(w)
    csr_only = spmm.prepare(w, layout="csr")
    assert p.nbytes > csr_only.nbytes + w.nnz * 4 - 1  # the panels hold every kept value


def test_out_overlapping_x_or_the_panels_is_refused(rng):
    w = tile_wise((64, 64), 32, 0.5, np.float64, rng)
    p = spmm.prepare(w)
    x = make_dense((64, 64), np.float64, rng)
    with pytest.raises(ValueError, match="share memory"):
        spmm.multiply(x, p, out=x)


def test_a_shape_mismatch_names_both_shapes(rng):
    p = spmm.prepare(tile_wise((64, 64), 32, 0.5, np.float64, rng))
    with pytest.raises(ValueError, match=r"\(3, 65\).*\(64, 64\)"):
        spmm.multiply(np.ones((3, 65)), p)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layout": "bsr"}, "layout must be one of"),
    ({"layout": None}, "layout must be one of"),
    ({"layout": "csr", "tile": 16}, "tile= is for layout='tile'"),
    ({"layout": "tile", "tile": 0}, "tile must be a positive int"),
    ({"layout": "tile", "tile": 2.5}, "tile must be a positive int"),
    ({"layout": "auto", "block": (2, 2)}, "block= is for layout='block'"),
    ({"layout": "block", "block": (2,)}, "block must be a tuple of two positive ints"),
    ({"layout": "block", "block": (0, 4)}, "block must be a tuple of two positive ints"),
    ({"layout": "tile", "n_m": (2, 4)}, "n_m= is for layout='n_m'"),
    ({"layout": "n_m", "n_m": (5, 4)}, "n_m must be a tuple of two ints"),
    ({"layout": "n_m", "n_m": (1, 256)}, "n_m must be a tuple of two ints"),
])
def test_invalid_layout_arguments_are_clear_errors(kwargs, message, rng):
    w = tile_wise((16, 16), 16, 0.5, np.float32, rng)
    with pytest.raises(ValueError, match=message):
        spmm.prepare(w, **kwargs)


def test_a_declared_n_m_layout_zero_fills_columns_keeping_fewer(rng):
    w = n_m_sparse((40, 24), 1, 4, np.float64, rng)
    p = spmm.prepare(w, layout="n_m", n_m=(2, 4))
    assert p.n_m == (2, 4)
    x = make_dense((5, 40), np.float64, rng)
    assert_product_matches_scipy(spmm.multiply(x, p), x, w)


def test_a_declared_n_m_layout_refuses_a_group_keeping_more_and_names_it(rng):
    w = n_m_sparse((40, 24), 3, 4, np.float32, rng)
    message = r"keeps 3 weights in inputs 0\.\.\.3; at most 2 of every 4"
    with pytest.raises(ValueError, match=message):
        spmm.prepare(w, layout="n_m", n_m=(2, 4))


def test_n_m_without_a_fitting_structure_asks_for_n_m(rng):
    w = sp.random_array((64, 64), density=0.3, format="csr", rng=rng)
    with pytest.raises(ValueError, match="needs n_m=\\(n, m\\)"):
        spmm.prepare(w, layout="n_m")


def test_x_times_a_structured_matrix_builds_no_csr_form_of_the_transpose(rng):
    w = tile_wise((64, 64), 32, 0.5, np.float32, rng)
    p = spmm.prepare(w)
    before = p.nbytes
    x = make_dense((5, 64), np.float32, rng)
    assert_product_matches_scipy(x @ p, x, w)
    assert_product_matches_scipy(spmm.multiply(x.astype(np.float64), p), x.astype(np.float64), w)
    assert p._csr_t is None, "the structured kernel needs no CSR of W transposed"
    assert p.nbytes > before  # only the float64 copy of the panels was added


# The codes of a serial product: tiled, serial, 1 thread, nnz, scalar, default minimum work.
SERIAL = (2, 0, 1, 1, 0, -1)


def test_the_extension_checks_the_operand_shapes_against_the_layout(rng):
    from spmm import _spmm_ext

    form = spmm.prepare(tile_wise((64, 64), 32, 0.5, np.float32, rng))._structured
    x = np.ones((3, 64), np.float32)
    for y in (np.empty((3, 128), np.float32), np.empty((2, 64), np.float32)):
        with pytest.raises(ValueError, match="structured product"):
            _spmm_ext.panels_times_dense(64, 64, form.width, form.run, form.unit_ptr,
                                         form.unit_row, form.values, x, y, SERIAL)
    with pytest.raises(ValueError, match="do not fit its shape"):
        _spmm_ext.panels_times_dense(64, 64, 16, form.run, form.unit_ptr, form.unit_row,
                                     form.values, x, np.empty((3, 64), np.float32), SERIAL)


@pytest.mark.parametrize(("kwargs", "block", "n_m"), [
    ({"layout": "tile", "tile": 2**22}, (1, 4), None),
    ({"layout": "block", "block": (2**20, 16)}, (4, 4), None),
    ({"layout": "n_m", "n_m": (255, 255)}, None, (4, 4)),
], ids=["tile", "block", "n_m"])
def test_a_declared_unit_larger_than_the_matrix_is_clamped_to_it(kwargs, block, n_m, rng):
    """A 4 x 4 matrix with tiles of 2**22 columns or blocks of 2**20 rows: panels sized by
    the matrix, not by the declared shape (64 MiB of zeros otherwise)."""
    w = sp.csr_array(np.diag([1.0, 2.0, 3.0, 4.0]).astype(np.float32))
    p = spmm.prepare(w, **kwargs)
    assert (p.block, p.n_m) == (block, n_m)
    assert p.nbytes < 4096
    x = make_dense((3, 4), np.float32, rng)
    assert_product_matches_scipy(x @ p, x, w)


def test_auto_stores_no_zero_in_a_short_last_n_m_group(rng):
    """13 inputs in groups of 4: the last group is row 12 alone, keeping 1 where the others
    keep 2. An N:M form would zero fill its second slot, and that zero would meet x[12]: with
    x[12] = inf, NaN instead of scipy's inf. auto keeps such a matrix in CSR."""
    w = n_m_sparse((13, 8), 2, 4, np.float64, rng)
    p = spmm.prepare(w)
    x = make_dense((3, 13), np.float64, rng)
    x[:, 12] = [np.inf, -np.inf, np.nan]
    assert_product_matches_scipy(x @ p, x, w)
    # A last group of 2 rows keeps 2 as the others do: no zero, the N:M form is exact.
    assert spmm.prepare(n_m_sparse((14, 8), 2, 4, np.float64, rng)).n_m == (2, 4)
