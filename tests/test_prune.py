"""``spmm.prune`` and ``spmm.prune_mask``: magnitude pruning to a target sparsity.

``w`` is ``(in_features, out_features)``, as in ``X @ w``. For every pattern the tests check,
in this order: the count of pruned weights (the exactness rule of the docstring's Notes), the
structure (what is pruned together), that the largest magnitudes are the ones kept, that the
result equals a slow reference written from the definition (exact arithmetic, Python sorts),
determinism and the tie rule, the result's form (values, dtype, format, no mutation), products
through ``spmm.multiply``, and the errors.

Hypothesis draws small integer-valued weights: many ties (so the tie rule is exercised) and
exact norms (so the reference's exact ranking is the one spmm must reproduce).
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_product_matches_scipy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import spmm

# --------------------------------------------------------------------------------------------
# Helpers.


def pruned_count(keep: np.ndarray) -> int:
    return keep.size - int(np.count_nonzero(keep))


def target(sparsity: float, w: np.ndarray) -> int:
    """The number of weights a sparsity asks for, as the docstring defines it."""
    return round(sparsity * w.size)


def unit_score(w: np.ndarray, cells: list[tuple[int, int]], norm: str) -> Fraction:
    """The exact per-weight norm of a unit: mean |w| (L1) or mean w**2 (L2, same order as RMS)."""
    terms = [abs(Fraction(float(w[i, j]))) ** (1 if norm == "l1" else 2) for i, j in cells]
    return sum(terms, Fraction(0)) / len(cells)


def reference_keep(w: np.ndarray, units: list[list[tuple[int, int]]], goal: int,
                   norm: str = "l1") -> np.ndarray:
    """Prune whole units (listed in row-major order), lowest score first, ties later first,
    as many as bring the pruned total nearest to ``goal`` (fewer on a tie)."""
    scores = [unit_score(w, u, norm) for u in units]
    order = sorted(range(len(units)), key=lambda u: (scores[u], -u))
    totals = [0]
    for u in order:
        totals.append(totals[-1] + len(units[u]))
    count = min(range(len(totals)), key=lambda c: (abs(totals[c] - goal), c))
    keep = np.ones(w.shape, dtype=bool)
    for u in order[:count]:
        for i, j in units[u]:
            keep[i, j] = False
    return keep


def blocks(shape: tuple[int, int], r: int, c: int) -> list[list[tuple[int, int]]]:
    rows, cols = shape
    return [[(i, j) for i in range(bi, min(bi + r, rows)) for j in range(bj, min(bj + c, cols))]
            for bi in range(0, rows, r) for bj in range(0, cols, c)]


def reference_n_m(w: np.ndarray, n: int, m: int) -> np.ndarray:
    keep = np.ones(w.shape, dtype=bool)
    for j in range(w.shape[1]):
        for start in range(0, w.shape[0], m):
            group = range(start, min(start + m, w.shape[0]))
            ranked = sorted(group, key=lambda i: (abs(float(w[i, j])), -i))
            for i in ranked[:max(len(group) - n, 0)]:
                keep[i, j] = False
    return keep


def expected_kept_columns(w: np.ndarray, sparsity: float, column_sparsity: float,
                          norm: str) -> list[int]:
    """The columns left by tile_wise's first stage: round(column_sparsity * columns) of the
    weakest pruned, capped so that they alone never exceed the asked count."""
    rows, cols = w.shape
    if w.size == 0:
        return list(range(cols))
    pruned = min(round(column_sparsity * cols), target(sparsity, w) // rows)
    columns = [[(i, j) for i in range(rows)] for j in range(cols)]
    keep = reference_keep(w, columns, pruned * rows, norm)
    return [j for j in range(cols) if keep[:, j].all()]


def expected_tiles(kept_columns: list[int], tile: int) -> list[list[int]]:
    """Tiles: runs of ``tile`` consecutive kept columns (the last one may be narrower)."""
    return [kept_columns[t:t + tile] for t in range(0, len(kept_columns), tile)]


def reference_tile_wise(w: np.ndarray, sparsity: float, tile: int, norm: str,
                        column_sparsity: float) -> np.ndarray:
    rows, cols = w.shape
    kept = expected_kept_columns(w, sparsity, column_sparsity, norm)
    tiles = expected_tiles(kept, tile)
    pieces = [[(i, j) for j in tiles[t]] for i in range(rows) for t in range(len(tiles))]
    keep = np.zeros(w.shape, dtype=bool)
    keep[:, kept] = True
    pieces_goal = target(sparsity, w) - rows * (cols - len(kept))
    return keep & reference_keep(w, pieces, pieces_goal, norm)


@st.composite
def weights(draw, max_side: int = 12) -> np.ndarray:
    """Small integer-valued weights (float32 or float64), zero-size shapes included."""
    shape = (draw(st.integers(0, max_side)), draw(st.integers(0, max_side)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return draw(hnp.arrays(dtype, shape, elements=st.integers(-4, 4).map(float)))


sparsities = st.floats(0, 1, exclude_max=True)


@pytest.fixture
def w(rng) -> np.ndarray:
    """A 67 x 45 float32 weight matrix: odd sides, so every block, group and tile is ragged."""
    return rng.standard_normal((67, 45)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# unstructured: the smallest |w| are pruned, exactly round(sparsity * size) of them.


@settings(max_examples=150)
@given(w=weights(), sparsity=sparsities)
def test_unstructured_prunes_exactly_the_asked_count_of_the_smallest_magnitudes(w, sparsity):
    keep = spmm.prune_mask(w, sparsity)
    assert pruned_count(keep) == target(sparsity, w)
    if keep.any() and not keep.all():
        assert np.abs(w[keep]).min() >= np.abs(w[~keep]).max()
    units = [[(i, j)] for i, j in product(range(w.shape[0]), range(w.shape[1]))]
    np.testing.assert_array_equal(keep, reference_keep(w, units, target(sparsity, w)))


def test_unstructured_ties_keep_the_earlier_weights_in_row_major_order():
    w = np.ones((3, 4))
    np.testing.assert_array_equal(spmm.prune_mask(w, 0.5),
                                  [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    w = np.array([[3.0, -1.0, 1.0], [1.0, 2.0, -1.0]])   # four ties at |w| = 1, two pruned
    np.testing.assert_array_equal(spmm.prune_mask(w, 2 / 6),
                                  [[1, 1, 1], [0, 1, 0]])


def test_infinities_are_the_largest_magnitudes():
    w = np.array([[np.inf, 1.0], [-np.inf, 2.0]])
    np.testing.assert_array_equal(spmm.prune(w, 0.5).toarray(), [[np.inf, 0], [-np.inf, 0]])


# --------------------------------------------------------------------------------------------
# block: whole r x c blocks, ranked by their mean L1 or L2 norm; ragged edge blocks included.


@settings(max_examples=150)
@given(w=weights(), sparsity=sparsities, r=st.integers(1, 5), c=st.integers(1, 5),
       norm=st.sampled_from(["l1", "l2"]))
def test_block_prunes_whole_blocks_to_within_half_a_block_of_the_asked_count(
        w, sparsity, r, c, norm):
    keep = spmm.prune_mask(w, sparsity, "block", block=(r, c), norm=norm)
    assert abs(pruned_count(keep) - target(sparsity, w)) <= r * c / 2
    units = blocks(w.shape, r, c)
    for cells in units:
        assert len({bool(keep[i, j]) for i, j in cells}) == 1, "a block was cut"
    kept = [unit_score(w, u, norm) for u in units if keep[u[0]]]
    pruned = [unit_score(w, u, norm) for u in units if not keep[u[0]]]
    if kept and pruned:
        assert min(kept) >= max(pruned)
    np.testing.assert_array_equal(keep, reference_keep(w, units, target(sparsity, w), norm))


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("block", [(8, 8), (16, 4), (1, 45), (67, 1), (100, 100)])
def test_block_keeps_blocks_whole_on_a_ragged_matrix(w, block, norm):
    r, c = block
    result = spmm.prune(w, 0.75, "block", block=block, norm=norm)
    keep = result.toarray() != 0
    assert abs(pruned_count(keep) - target(0.75, w)) <= r * c / 2
    for bi, bj in product(range(0, w.shape[0], r), range(0, w.shape[1], c)):
        piece = keep[bi:bi + r, bj:bj + c]
        assert piece.all() or not piece.any(), "a block was cut"


def test_blocks_that_divide_the_matrix_prune_the_nearest_multiple_of_a_block():
    w = np.arange(1.0, 65.0).reshape(8, 8)      # 16 blocks of 2 x 2, 4 weights each
    # 0.1 asks for 6: 4 and 8 are as near, and the tie prunes fewer.
    for sparsity, expected in [(0.1, 4), (0.5, 32), (0.55, 36), (0.99, 64)]:
        assert pruned_count(spmm.prune_mask(w, sparsity, "block", block=(2, 2))) == expected


def test_a_ragged_edge_block_is_ranked_by_its_mean_not_its_sum():
    # The 1-row edge block holds the largest weights per entry but the smaller sum.
    w = np.array([[1.0, 1.0], [1.0, 1.0], [1.5, 1.5]])
    np.testing.assert_array_equal(spmm.prune_mask(w, 4 / 6, "block", block=(2, 2)),
                                  [[0, 0], [0, 0], [1, 1]])


def test_a_block_larger_than_the_matrix_makes_it_one_block():
    w = np.arange(6.0).reshape(2, 3)
    assert spmm.prune_mask(w, 0.4, "block", block=(32, 32)).all()      # 2 asked: nearer 0
    assert not spmm.prune_mask(w, 0.6, "block", block=(32, 32)).any()  # 4 asked: nearer 6


# --------------------------------------------------------------------------------------------
# n_m: n of every m consecutive weights along the input dimension (rows) are kept.


@settings(max_examples=150)
@given(w=weights(max_side=14), data=st.data())
def test_n_m_keeps_the_n_largest_of_every_group_of_m_rows(w, data):
    m = data.draw(st.integers(1, 6))
    n = data.draw(st.integers(1, m))
    keep = spmm.prune_mask(w, pattern="n_m", n=n, m=m)
    rows, cols = w.shape
    q, rem = divmod(rows, m)
    assert pruned_count(keep) == cols * (q * (m - n) + max(rem - n, 0))
    for start in range(0, rows, m):
        group_keep, group = keep[start:start + m], np.abs(w[start:start + m])
        np.testing.assert_array_equal(group_keep.sum(axis=0), min(n, len(group)))
        for j in range(cols):
            if not group_keep[:, j].all():
                assert group[group_keep[:, j], j].min() >= group[~group_keep[:, j], j].max()
    np.testing.assert_array_equal(keep, reference_n_m(w, n, m))


def test_2_4_prunes_half_of_a_layer_whose_inputs_are_a_multiple_of_4(w):
    w = w[:64]
    result = spmm.prune(w, pattern="n_m")                          # n=2, m=4 by default
    assert result.nnz == w.size // 2
    assert result.nnz == spmm.prune(w, 0.5, "n_m", n=2, m=4).nnz   # the same sparsity, given


def test_n_m_groups_run_along_the_input_dimension_and_ties_keep_the_earlier_rows():
    w = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0], [9.0, 5.0]])
    np.testing.assert_array_equal(spmm.prune_mask(w, pattern="n_m", n=2, m=4),
                                  [[0, 1], [0, 1], [1, 0], [1, 0], [1, 1]])


def test_a_torch_linear_weight_is_pruned_through_its_transpose():
    # nn.Linear stores (out, in) and computes x @ weight.T: its 2:4 groups run along `in`,
    # the contiguous last axis of weight, which is the first axis of weight.T.
    weight = np.array([[1.0, 2.0, 3.0, 4.0], [8.0, 7.0, 6.0, 5.0]])   # (out=2, in=4)
    pruned = spmm.prune(weight.T, pattern="n_m").toarray().T
    np.testing.assert_array_equal(pruned, [[0, 0, 3, 4], [8, 7, 0, 0]])


# --------------------------------------------------------------------------------------------
# tile_wise: whole columns first, then per tile of G kept columns, whole row pieces.


@settings(max_examples=150)
@given(w=weights(), sparsity=sparsities, tile=st.integers(1, 5),
       norm=st.sampled_from(["l1", "l2"]), column_share=st.floats(0, 1))
def test_tile_wise_prunes_row_pieces_per_tile_to_within_half_a_tile_of_the_asked_count(
        w, sparsity, tile, norm, column_share):
    column_sparsity = column_share * sparsity
    keep = spmm.prune_mask(w, sparsity, "tile_wise", tile=tile, norm=norm,
                           column_sparsity=column_sparsity)
    assert abs(pruned_count(keep) - target(sparsity, w)) <= tile / 2
    kept_columns = expected_kept_columns(w, sparsity, column_sparsity, norm)
    assert not np.delete(keep, kept_columns, axis=1).any(), "a pruned column has a weight"
    kept_pieces, pruned_pieces = [], []
    for columns in expected_tiles(kept_columns, tile):
        for i in range(w.shape[0]):
            assert len(set(keep[i, columns])) == 1, "a row piece was cut"
            score = unit_score(w, [(i, j) for j in columns], norm)
            (kept_pieces if keep[i, columns[0]] else pruned_pieces).append(score)
    if kept_pieces and pruned_pieces:
        assert min(kept_pieces) >= max(pruned_pieces), "a kept piece ranks below a pruned one"
    np.testing.assert_array_equal(
        keep, reference_tile_wise(w, sparsity, tile, norm, column_sparsity))


@pytest.mark.parametrize("tile", [1, 8, 16, 45, 128])
@pytest.mark.parametrize("column_sparsity", [0.0, 0.25])
def test_tile_wise_prunes_whole_columns_then_whole_row_pieces_of_each_tile(
        w, tile, column_sparsity):
    keep = spmm.prune(w, 0.75, "tile_wise", tile=tile,
                      column_sparsity=column_sparsity).toarray() != 0
    assert abs(pruned_count(keep) - target(0.75, w)) <= tile / 2
    kept_columns = expected_kept_columns(w, 0.75, column_sparsity, "l1")
    assert w.shape[1] - len(kept_columns) == round(column_sparsity * w.shape[1])
    assert not np.delete(keep, kept_columns, axis=1).any()
    column_norms = np.abs(w).sum(axis=0)
    if len(kept_columns) < w.shape[1]:
        assert column_norms[kept_columns].min() >= np.delete(column_norms, kept_columns).max()
    row_sets = set()
    for columns in expected_tiles(kept_columns, tile):
        piece = keep[:, columns]
        assert (piece.all(axis=1) | ~piece.any(axis=1)).all(), "a row piece was cut"
        row_sets.add(frozenset(np.flatnonzero(piece[:, 0])))
    if tile < len(kept_columns):
        assert len(row_sets) > 1, "every tile kept the same rows"


def test_tile_wise_without_column_pruning_is_block_pruning_with_one_row_blocks(w):
    for norm in ("l1", "l2"):
        np.testing.assert_array_equal(
            spmm.prune_mask(w, 0.6, "tile_wise", tile=16, norm=norm),
            spmm.prune_mask(w, 0.6, "block", block=(1, 16), norm=norm))


def test_tiles_are_formed_from_the_columns_left_after_column_pruning():
    # Column 1 is the weakest; the tiles of 2 are then columns {0, 2} and {3}.
    w = np.array([[5.0, 0.1, 5.0, 1.0], [1.0, 0.1, 1.0, 9.0], [4.0, 0.1, 4.0, 2.0]])
    keep = spmm.prune_mask(w, 0.5, "tile_wise", tile=2, column_sparsity=0.25)
    np.testing.assert_array_equal(keep, [[1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 1, 1]])


def test_column_pruning_is_capped_by_the_total_when_rounding_would_exceed_it():
    w = np.arange(1.0, 22.0).reshape(3, 7)
    # round(0.5 * 7) = 4 columns would prune 12 weights; round(0.5 * 21) = 10 are asked.
    keep = spmm.prune_mask(w, 0.5, "tile_wise", tile=2, column_sparsity=0.5)
    assert (~keep.any(axis=0)).sum() == 3
    assert abs(pruned_count(keep) - 10) <= 1


# --------------------------------------------------------------------------------------------
# Every pattern: determinism, the result's form, no mutation, products.

PATTERNS = {
    "unstructured": {},
    "block": {"block": (4, 8), "norm": "l2"},
    "n_m": {"n": 1, "m": 4},
    "tile_wise": {"tile": 16, "column_sparsity": 0.1},
}


def prune_kwargs(pattern: str) -> dict:
    sparsity = {} if pattern == "n_m" else {"sparsity": 0.7}
    return {"pattern": pattern, **sparsity, **PATTERNS[pattern]}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pruning_twice_gives_the_same_result(w, pattern):
    first, second = (spmm.prune(w, **prune_kwargs(pattern)) for _ in range(2))
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_the_result_stores_every_kept_weight_with_its_value_zeros_included(w, pattern, fmt):
    w = w.copy()
    w[::5, ::3] = 0.0                 # zeros in w: some of them are kept, and stored
    result = spmm.prune(w, **prune_kwargs(pattern), format=fmt)
    keep = spmm.prune_mask(w, **prune_kwargs(pattern))
    assert type(result) is (sp.csc_array if fmt == "csc" else sp.csr_array)
    assert result.shape == w.shape and result.dtype == w.dtype
    assert result.nnz == keep.sum()
    assert result.has_sorted_indices
    stored = sp.coo_array(result)
    assert keep[stored.row, stored.col].all()
    np.testing.assert_array_equal(stored.data, w[stored.row, stored.col])
    np.testing.assert_array_equal(result.toarray(), np.where(keep, w, 0))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_weights_are_never_modified(w, pattern):
    original = w.copy()
    w.setflags(write=False)           # and a read-only array is accepted
    spmm.prune(w, **prune_kwargs(pattern))
    spmm.prune_mask(w.T, **prune_kwargs(pattern))     # a non-contiguous view too
    np.testing.assert_array_equal(w, original)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_products_with_pruned_weights_equal_scipys(w, rng, pattern, fmt):
    pruned = spmm.prune(w, **prune_kwargs(pattern), format=fmt)
    x = rng.standard_normal((9, w.shape[0])).astype(np.float32)
    assert_product_matches_scipy(spmm.multiply(x, pruned), x, pruned)
    assert_product_matches_scipy(x @ spmm.prepare(pruned), x, pruned)
    v = rng.standard_normal(w.shape[1])
    assert_product_matches_scipy(spmm.multiply(pruned, v), pruned, v)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_an_empty_matrix_prunes_to_an_empty_matrix(pattern, shape):
    result = spmm.prune(np.zeros(shape), **prune_kwargs(pattern))
    assert result.shape == shape and result.nnz == 0


@pytest.mark.parametrize("pattern", ["unstructured", "block", "tile_wise"])
def test_sparsity_zero_keeps_every_weight(w, pattern):
    kwargs = {**prune_kwargs(pattern), "sparsity": 0.0}
    if pattern == "tile_wise":
        kwargs["column_sparsity"] = 0.0
    assert spmm.prune_mask(w, **kwargs).all()


@pytest.mark.parametrize(("dtype", "expected"), [
    (np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float32),
    (np.int32, np.float64), (np.uint8, np.float64), (np.bool_, np.float64),
])
def test_float32_and_float64_are_kept_float16_becomes_float32_the_rest_float64(dtype, expected):
    w = np.array([[1, 0, 3], [4, 5, 1]]).astype(dtype)
    result = spmm.prune(w, 0.5)
    assert result.dtype == expected
    np.testing.assert_array_equal(result.toarray(), np.where(spmm.prune_mask(w, 0.5), w, 0))


def test_array_likes_and_fortran_arrays_are_accepted(w):
    expected = spmm.prune_mask(w, 0.5)
    np.testing.assert_array_equal(spmm.prune_mask(w.tolist(), 0.5), expected)
    np.testing.assert_array_equal(spmm.prune_mask(np.asfortranarray(w), 0.5), expected)


# --------------------------------------------------------------------------------------------
# Errors: each names the bad value and the valid ones.

W = np.arange(1.0, 17.0).reshape(4, 4)


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((W,), {}, r"sparsity is required for pattern='unstructured'"),
    ((W, 1.0), {}, r"sparsity must be a number in \[0, 1\).*got 1\.0"),
    ((W, -0.1), {}, r"sparsity must be a number in \[0, 1\).*got -0\.1"),
    ((W, float("nan")), {}, r"sparsity must be a number in \[0, 1\)"),
    ((W, "half"), {}, r"sparsity must be a number in \[0, 1\).*got 'half'"),
    ((W, True), {}, r"sparsity must be a number in \[0, 1\)"),
    ((W, 0.5, "random"), {},
     r"pattern must be one of {'unstructured', 'block', 'n_m', 'tile_wise'}; got 'random'"),
    ((W, 0.5, "block"), {"norm": "l3"}, r"norm must be one of {'l1', 'l2'}; got 'l3'"),
    ((W, 0.5, "block"), {"block": (0, 4)}, r"block\[0\] must be a positive integer; got 0"),
    ((W, 0.5, "block"), {"block": (2, 2.5)}, r"block\[1\] must be a positive integer"),
    ((W, 0.5, "block"), {"block": 4}, r"block must be a pair \(rows, columns\)"),
    ((W, 0.5, "block"), {"block": (1, 2, 3)}, r"block must be a pair \(rows, columns\)"),
    ((W, None, "n_m"), {"n": 5, "m": 4}, r"n must be at most m.*got n=5, m=4"),
    ((W, None, "n_m"), {"n": 0}, r"n must be a positive integer; got 0"),
    ((W, None, "n_m"), {"m": -4}, r"m must be a positive integer; got -4"),
    ((W, 0.7, "n_m"), {}, r"pattern='n_m' with n=2, m=4 has sparsity 1 - n/m = 0\.5; got "
                          r"sparsity=0\.7"),
    ((W, 0.5, "tile_wise"), {"tile": 0}, r"tile must be a positive integer; got 0"),
    ((W, 0.5, "tile_wise"), {"tile": 8.0}, r"tile must be a positive integer; got 8\.0"),
    ((W, 0.5, "tile_wise"), {"column_sparsity": 0.6},
     r"column_sparsity must be at most sparsity; got column_sparsity=0\.6, sparsity=0\.5"),
    ((W, 0.5, "tile_wise"), {"column_sparsity": 1.0},
     r"column_sparsity must be a number in \[0, 1\)"),
    ((W, 0.5), {"tile": 8}, r"tile= applies to pattern='tile_wise' only; got tile=8 with "
                            r"pattern='unstructured'"),
    ((W, 0.5, "n_m"), {"norm": "l2"}, r"norm= applies to pattern='block' or 'tile_wise' only"),
    ((W, 0.5, "block"), {"column_sparsity": 0.1}, r"column_sparsity= applies to "),
    ((W, 0.5, "tile_wise"), {"block": (2, 2)}, r"block= applies to pattern='block' only"),
    ((np.ones(4), 0.5), {}, r"w must be 2-D \(in_features x out_features\); got 1-D"),
    ((np.ones((2, 2, 2)), 0.5), {}, r"w must be 2-D .*got 3-D with shape \(2, 2, 2\)"),
    ((np.array([[1.0, np.nan]]), 0.5), {}, r"w holds NaN \(first at \[0, 1\]\)"),
    (([[1.0], [1.0, 2.0]], 0.5), {}, r"w is not a regular array"),
])
def test_bad_arguments_are_a_value_error_naming_the_valid_values(args, kwargs, message):
    for function in (spmm.prune, spmm.prune_mask):
        with pytest.raises(ValueError, match=message):
            function(*args, **kwargs)


def test_an_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match=r"format must be one of {'csr', 'csc'}; got 'coo'"):
        spmm.prune(W, 0.5, format="coo")


@pytest.mark.parametrize(("w", "message"), [
    (sp.csr_array(W), r"w must be a dense array, got a scipy.sparse csr_array"),
    (W.astype(complex), r"w has dtype complex128; expected real numbers"),
    (np.array([["a", "b"]]), r"w has dtype <U1; expected real numbers"),
    (np.array([[object()]]), r"w has dtype object; expected real numbers"),
])
def test_a_sparse_or_non_real_weight_matrix_is_a_type_error(w, message):
    with pytest.raises(TypeError, match=message):
        spmm.prune(w, 0.5)
