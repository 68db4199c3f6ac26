"""``prune``: magnitude pruning of a dense weight matrix to unstructured, block, N:M and
tile-wise sparsity.

Every pattern reduces to one of two selections, both deterministic:

- *exact count*: prune exactly ``count`` units of equal size (single weights, whole columns,
  weights inside an N:M group), the smallest scores first;
- *nearest prefix*: units that may differ in size (blocks and row pieces, smaller at ragged
  edges) are ranked the same way, and the prefix of the ranking whose total size is nearest
  to the target number of weights is pruned (the shorter prefix on a tie).

In both, ties between equal scores are broken by position: the unit later in row-major order is
pruned first (so of two equal weights, the earlier one is kept).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._checks import choices, is_positive_int

PATTERNS = ("unstructured", "block", "n_m", "tile_wise")
NORMS = ("l1", "l2")
FORMATS = ("csr", "csc")

# The options that apply to only some patterns: name -> (those patterns, the default). An option
# given with another pattern is an error, not silently ignored (e.g. ``tile=`` with "block").
_OPTIONS: dict[str, tuple[tuple[str, ...], Any]] = {
    "block": (("block",), (32, 32)),
    "n": (("n_m",), 2),
    "m": (("n_m",), 4),
    "tile": (("tile_wise",), 128),
    "norm": (("block", "tile_wise"), "l1"),
    "column_sparsity": (("tile_wise",), 0.0),
}

# Two sparsities closer than this are the same: 1 - n/m is rarely exact in binary (2/3).
_SPARSITY_TOLERANCE = 1e-9


def prune(
    w: Any,
    sparsity: float | None = None,
    pattern: str = "unstructured",
    *,
    block: tuple[int, int] | None = None,
    n: int | None = None,
    m: int | None = None,
    tile: int | None = None,
    norm: str | None = None,
    column_sparsity: float | None = None,
    format: str = "csr",
) -> sp.csr_array | sp.csc_array:
    """Prune a dense weight matrix by magnitude to a target sparsity, in one of four patterns.

    ``w`` is oriented as in ``X @ w``: shape ``(in_features, out_features)``, one row per
    input feature and one column per output. A PyTorch ``nn.Linear`` stores its weight the
    other way round, ``(out_features, in_features)``, and computes ``x @ weight.T``: prune
    ``linear.weight.detach().numpy().T``.

    Parameters
    ----------
    w : array_like, 2-D, real
        The weights. It is never modified. float32 and float64 are kept as they are; float16
        becomes float32; bool, integer and other floating dtypes become float64 (the rule of
        :func:`spmm.multiply`). Complex and object dtypes are a ``TypeError``; NaN is a
        ``ValueError`` (it has no magnitude to rank); infinities are the largest magnitudes.
    sparsity : float in [0, 1)
        The fraction of weights to prune. The number of pruned weights is
        ``round(sparsity * w.size)`` exactly for ``"unstructured"``, and as near to it as the
        pattern's granularity allows otherwise (see Notes). Optional for ``"n_m"``, whose
        sparsity is ``1 - n/m``; if given there, it must equal that value.
    pattern : {"unstructured", "block", "n_m", "tile_wise"}, default "unstructured"
        - ``"unstructured"``: the weights of smallest ``|w|`` are pruned (Han et al., 2015).
        - ``"block"``: ``w`` is cut into ``block = (r, c)`` blocks, aligned at ``(0, 0)``; the
          blocks of smallest norm are pruned whole (Gray et al., 2017).
        - ``"n_m"``: in every group of ``m`` consecutive weights along the input dimension
          (rows ``m*g`` to ``m*g + m - 1`` of one column), the ``n`` of largest ``|w|`` are
          kept (Mishra et al., 2021; 2:4 on NVIDIA's sparse tensor cores).
        - ``"tile_wise"``: optionally, whole columns of smallest norm are pruned first
          (``column_sparsity``); the remaining columns are cut into tiles of ``tile``
          consecutive columns, and inside each tile whole rows are pruned, a different set per
          tile: the row pieces (one row of one tile) of smallest norm, ranked over all tiles
          together (Guo et al., 2020).
    block : (int, int), default (32, 32)
        Block rows and columns, for ``"block"`` only. A block larger than ``w`` is allowed
        (then ``w`` is one block).
    n, m : int, default 2 and 4
        Keep ``n`` of every ``m``, for ``"n_m"`` only; ``1 <= n <= m``.
    tile : int, default 128
        The tile width G (columns per tile), for ``"tile_wise"`` only.
    norm : {"l1", "l2"}, default "l1"
        The norm that ranks blocks, row pieces and columns, for ``"block"`` and
        ``"tile_wise"``. It is divided by the number of weights (L1: mean ``|w|``; L2: root
        mean square) so that a ragged edge block or row piece is ranked by the same per-weight
        scale as a full one, rather than pruned first for being small.
    column_sparsity : float in [0, 1), default 0.0
        For ``"tile_wise"`` only: the fraction of whole columns (output features) pruned
        first, at most ``sparsity``. ``round(column_sparsity * out_features)`` columns are
        pruned, or fewer if those alone would prune more weights than ``sparsity`` asks (which
        rounding can cause only when the two are nearly equal).
    format : {"csr", "csc"}, default "csr"
        The result's format. :func:`spmm.multiply` reads either as stored, in both products;
        for many products pass the result to :func:`spmm.prepare`.

    Returns
    -------
    scipy.sparse.csr_array or scipy.sparse.csc_array
        The pruned weights, of ``w``'s shape and (converted) dtype. Every kept weight is stored
        with ``w``'s value, also one that is zero in ``w``: the stored pattern is the pattern's
        structure, and ``nnz`` is the number of kept weights. Indices are sorted, without
        duplicates. :func:`spmm.prune_mask` returns the same selection as a boolean array.

    Raises
    ------
    TypeError
        If ``w`` is a scipy.sparse matrix, or has a complex, object or other non-real dtype.
    ValueError
        If ``w`` is not 2-D or holds NaN; if ``sparsity`` is missing, not in [0, 1), or
        (for ``"n_m"``) not ``1 - n/m``; if ``pattern``, ``norm`` or ``format`` is unknown;
        if ``block``, ``n``, ``m`` or ``tile`` is not a positive integer, or ``n > m``; if
        ``column_sparsity`` is not in [0, ``sparsity``]; or if an option is given for a
        pattern it does not apply to.

    See Also
    --------
    prune_mask : the same selection, as a boolean array (True = kept).
    prepare : convert the result once for many products.

    Notes
    -----
    Let ``k = round(sparsity * w.size)`` (Python's ``round``: halves to even). The number of
    pruned weights is:

    - ``"unstructured"``: exactly ``k``.
    - ``"block"``: within ``r * c / 2`` of ``k``. Blocks are pruned in ranking order, and the
      number of blocks is the one whose total size is nearest to ``k`` (the smaller on a tie).
      When ``r`` divides the rows and ``c`` the columns, this is ``r * c`` times the multiple
      nearest to ``k / (r * c)``.
    - ``"n_m"``: exactly ``out_features * (q * (m - n) + max(rem - n, 0))`` where
      ``q, rem = divmod(in_features, m)``: a ragged last group of ``rem < m`` rows keeps the
      ``min(n, rem)`` largest, so the sparsity is ``1 - n/m`` exactly when ``m`` divides
      ``in_features``, and a little less otherwise.
    - ``"tile_wise"``: within ``tile / 2`` of ``k``: the columns are pruned first (an exact
      count), then row pieces as blocks are, to the nearest total. The last tile is narrower
      when ``tile`` does not divide the remaining columns.

    Ranking is deterministic. Scores are ``|w|`` (unstructured, N:M) or the normalized norm
    (block, row piece, column). Among equal scores the unit later in row-major order is
    pruned first, so the earlier one is kept: the later weight (flat C index) for
    ``"unstructured"``, the later block of the block grid for ``"block"``, the later row of
    its group for ``"n_m"``, the later column, and the later (row, tile) piece, for
    ``"tile_wise"``. Tiles of ``"tile_wise"`` are formed from consecutive *kept* columns, as
    in the authors' implementation, so that every tile is a dense product over its kept rows
    and ``tile`` live columns.

    References
    ----------
    S. Han, J. Pool, J. Tran, W. J. Dally, "Learning both Weights and Connections for
    Efficient Neural Networks", NeurIPS 2015.

    S. Gray, A. Radford, D. P. Kingma, "GPU Kernels for Block-Sparse Weights", OpenAI, 2017.

    A. Mishra, J. A. Latorre, J. Pool, D. Stosic, D. Stosic, G. Venkatesh, C. Yu,
    P. Micikevicius, "Accelerating Sparse Deep Neural Networks", arXiv:2104.08378, 2021.

    C. Guo, B. Y. Hsueh, J. Leng, Y. Qiu, Y. Guan, Z. Wang, X. Jia, X. Li, M. Guo, Y. Zhu,
    "Accelerating Sparse DNN Models without Hardware-Support via Tile-Wise Sparsity",
    SC 2020 (arXiv:2008.13006).

    Examples
    --------
    >>> import numpy as np, spmm
    >>> w = np.arange(1.0, 9.0).reshape(4, 2)        # 4 inputs, 2 outputs
    >>> spmm.prune(w, 0.5).toarray()                 # the 4 smallest |w| pruned
    array([[0., 0.],
           [0., 0.],
           [5., 6.],
           [7., 8.]])
    >>> spmm.prune(w, pattern="n_m", n=1, m=2).toarray()   # 1 of every 2 rows, per column
    array([[0., 0.],
           [3., 4.],
           [0., 0.],
           [7., 8.]])
    """
    w = _as_weights(w, "prune")
    if not isinstance(format, str) or format not in FORMATS:
        raise ValueError(f"prune: format must be one of {choices(FORMATS)}; got {format!r}")
    keep = _keep_mask(w, sparsity, pattern, "prune", block=block, n=n, m=m, tile=tile,
                      norm=norm, column_sparsity=column_sparsity)
    return _to_sparse(w, keep, format)


def prune_mask(
    w: Any,
    sparsity: float | None = None,
    pattern: str = "unstructured",
    *,
    block: tuple[int, int] | None = None,
    n: int | None = None,
    m: int | None = None,
    tile: int | None = None,
    norm: str | None = None,
    column_sparsity: float | None = None,
) -> np.ndarray:
    """The weights :func:`spmm.prune` keeps, as a boolean array.

    Parameters
    ----------
    w, sparsity, pattern, block, n, m, tile, norm, column_sparsity
        As for :func:`spmm.prune`.

    Returns
    -------
    numpy.ndarray of bool
        ``w``'s shape; True where the weight is kept. ``prune(w, ...)`` stores exactly the
        entries where this is True, so ``np.where(mask, w, 0)`` is its dense form. Useful to
        re-apply a pruning pattern during a masked fine-tune.

    Raises
    ------
    TypeError, ValueError
        As for :func:`spmm.prune`.

    Examples
    --------
    >>> import numpy as np, spmm
    >>> w = np.array([[4.0, -1.0], [2.0, 3.0]])
    >>> spmm.prune_mask(w, 0.5)
    array([[ True, False],
           [False,  True]])
    """
    w = _as_weights(w, "prune_mask")
    return _keep_mask(w, sparsity, pattern, "prune_mask", block=block, n=n, m=m, tile=tile,
                      norm=norm, column_sparsity=column_sparsity)


# --------------------------------------------------------------------------------------------
# Checking the arguments.


def _as_weights(w: Any, where: str) -> np.ndarray:
    """``w`` as a 2-D float32 or float64 array without NaN (the caller's array when it is one)."""
    if sp.issparse(w):
        raise TypeError(
            f"{where}: w must be a dense array, got a scipy.sparse {type(w).__name__}; pruning "
            "ranks every weight, so pass its dense form (w.toarray())"
        )
    try:
        arr = np.asarray(w)
    except ValueError as exc:  # e.g. a ragged nested list: a shape problem
        raise ValueError(f"{where}: w is not a regular array: {exc}") from exc
    except Exception as exc:
        raise TypeError(f"{where}: cannot convert {type(w).__name__} to a numpy array") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{where}: w has dtype {arr.dtype}; expected real numbers (float32 and float64 are "
            "kept, float16 becomes float32, bool, integers and other floats become float64)"
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{where}: w must be 2-D (in_features x out_features); got {arr.ndim}-D with shape "
            f"{arr.shape}"
        )
    single = arr.dtype in (np.dtype(np.float16), np.dtype(np.float32))
    # copy=False: the caller's array itself when it already has the dtype; it is only read.
    arr = arr.astype(np.float32 if single else np.float64, copy=False)
    nan = np.isnan(arr)
    if nan.any():
        i, j = (int(x) for x in np.argwhere(nan)[0])
        raise ValueError(f"{where}: w holds NaN (first at [{i}, {j}]); a NaN has no magnitude "
                         "to rank")
    return arr


def _positive_int(value: Any, name: str, where: str) -> int:
    if not is_positive_int(value):
        raise ValueError(f"{where}: {name} must be a positive integer; got {value!r}")
    return int(value)


def _fraction(value: Any, name: str, where: str, meaning: str) -> float:
    """``value`` as a float in [0, 1), else a ValueError saying what ``name`` means."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0 <= float(value) < 1):
        raise ValueError(f"{where}: {name} must be a number in [0, 1) ({meaning}); "
                         f"got {value!r}")
    return float(value)


def _options(pattern: Any, given: dict[str, Any], where: str) -> dict[str, Any]:
    """The options of ``pattern``: the given ones, else the defaults. Others must be None."""
    if not isinstance(pattern, str) or pattern not in PATTERNS:
        raise ValueError(f"{where}: pattern must be one of {choices(PATTERNS)}; "
                         f"got {pattern!r}")
    options = {}
    for name, value in given.items():
        patterns, default = _OPTIONS[name]
        if pattern in patterns:
            options[name] = default if value is None else value
        elif value is not None:
            applies = " or ".join(repr(p) for p in patterns)
            raise ValueError(f"{where}: {name}= applies to pattern={applies} only; got "
                             f"{name}={value!r} with pattern={pattern!r}")
    if "norm" in options and (not isinstance(options["norm"], str)
                              or options["norm"] not in NORMS):
        raise ValueError(f"{where}: norm must be one of {choices(NORMS)}; "
                         f"got {options['norm']!r}")
    return options


# --------------------------------------------------------------------------------------------
# The patterns.


def _keep_mask(w: np.ndarray, sparsity: Any, pattern: Any, where: str,
               **given: Any) -> np.ndarray:
    """The boolean mask (True = kept) of ``pattern`` for ``w`` (already checked)."""
    options = _options(pattern, given, where)
    if pattern == "n_m":
        n = _positive_int(options["n"], "n", where)
        m = _positive_int(options["m"], "m", where)
        if n > m:
            raise ValueError(f"{where}: n must be at most m (keep n of every m); "
                             f"got n={n}, m={m}")
        if sparsity is not None:
            asked = _fraction(sparsity, "sparsity", where, "the fraction of weights to prune")
            if not math.isclose(asked, 1 - n / m, rel_tol=0, abs_tol=_SPARSITY_TOLERANCE):
                raise ValueError(
                    f"{where}: pattern='n_m' with n={n}, m={m} has sparsity 1 - n/m = "
                    f"{1 - n / m:g}; got sparsity={sparsity!r}. Omit sparsity, or choose n "
                    "and m for the sparsity you want")
        return _n_m_keep(w, n, m)

    if sparsity is None:
        raise ValueError(f"{where}: sparsity is required for pattern={pattern!r} (a number "
                         "in [0, 1): the fraction of weights to prune)")
    fraction = _fraction(sparsity, "sparsity", where, "the fraction of weights to prune")
    target = round(fraction * w.size)
    if pattern == "unstructured":
        return _keep_all_but_smallest(np.abs(w).ravel(), target).reshape(w.shape)
    if pattern == "block":
        try:
            r, c = options["block"]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: block must be a pair (rows, columns) of positive "
                             f"integers; got {options['block']!r}") from None
        r, c = _positive_int(r, "block[0]", where), _positive_int(c, "block[1]", where)
        return _block_keep(w, target, r, c, options["norm"])
    tile = _positive_int(options["tile"], "tile", where)
    column_fraction = _fraction(options["column_sparsity"], "column_sparsity", where,
                                "the fraction of whole columns to prune")
    if column_fraction > fraction:
        raise ValueError(f"{where}: column_sparsity must be at most sparsity; got "
                         f"column_sparsity={column_fraction!r}, sparsity={fraction!r}")
    return _tile_wise_keep(w, target, tile, options["norm"], column_fraction)


def _norm_terms(w: np.ndarray, norm: str) -> np.ndarray:
    """Per-weight terms whose sum over a unit ranks it: ``|w|`` (L1) or ``w**2`` (L2).

    In float64, so float32 sums keep their ranking. The L2 score stays a mean square: the
    square root would not change the order.
    """
    return np.abs(w, dtype=np.float64) if norm == "l1" else np.square(w, dtype=np.float64)


def _block_keep(w: np.ndarray, target: int, r: int, c: int, norm: str) -> np.ndarray:
    rows, cols = w.shape
    if w.size == 0:
        return np.ones(w.shape, dtype=bool)
    row_starts, col_starts = np.arange(0, rows, r), np.arange(0, cols, c)
    sums = np.add.reduceat(np.add.reduceat(_norm_terms(w, norm), row_starts, axis=0),
                           col_starts, axis=1)
    heights = np.diff(np.append(row_starts, rows))
    widths = np.diff(np.append(col_starts, cols))
    sizes = np.outer(heights, widths)
    keep_blocks = _keep_nearest_prefix((sums / sizes).ravel(), sizes.ravel(), target)
    keep_blocks = keep_blocks.reshape(sums.shape)
    return np.repeat(np.repeat(keep_blocks, heights, axis=0), widths, axis=1)


def _n_m_keep(w: np.ndarray, n: int, m: int) -> np.ndarray:
    rows, cols = w.shape
    keep = np.ones(w.shape, dtype=bool)
    magnitude = np.abs(w)
    full = rows - rows % m
    # Reshapes of C-contiguous slices are views: _prune_in_groups writes into ``keep``.
    _prune_in_groups(magnitude[:full].reshape(full // m, m, cols), m - n,
                     keep[:full].reshape(full // m, m, cols))
    _prune_in_groups(magnitude[full:][np.newaxis], max(rows - full - n, 0),
                     keep[full:][np.newaxis])
    return keep


def _prune_in_groups(magnitude: np.ndarray, count: int, keep: np.ndarray) -> None:
    """Set ``keep`` False at the ``count`` smallest of each group along axis 1.

    ``magnitude`` and ``keep`` are (groups, group size, columns). Ties: the later row first.
    """
    size = magnitude.shape[1]
    if count == 0 or magnitude.size == 0:
        return
    # A stable sort of the reversed group puts, among equal values, the later row first.
    order = size - 1 - np.argsort(magnitude[:, ::-1, :], axis=1, kind="stable")
    np.put_along_axis(keep, order[:, :count, :], False, axis=1)


def _tile_wise_keep(w: np.ndarray, target: int, tile: int, norm: str,
                    column_fraction: float) -> np.ndarray:
    rows, cols = w.shape
    if w.size == 0:
        return np.ones(w.shape, dtype=bool)
    terms = _norm_terms(w, norm)
    # Whole columns first. All have ``rows`` weights, so their sums rank them as their means.
    # At most target // rows of them, so that the row pieces never have to give weights back.
    pruned_columns = min(round(column_fraction * cols), target // rows)
    kept_columns = np.flatnonzero(_keep_all_but_smallest(terms.sum(axis=0), pruned_columns))
    keep = np.zeros(w.shape, dtype=bool)
    if kept_columns.size == 0:
        return keep
    # Tiles of ``tile`` consecutive kept columns; a row piece is one row of one tile.
    starts = np.arange(0, kept_columns.size, tile)
    widths = np.diff(np.append(starts, kept_columns.size))
    sums = np.add.reduceat(terms[:, kept_columns], starts, axis=1)
    sizes = np.broadcast_to(widths, sums.shape)
    keep_pieces = _keep_nearest_prefix((sums / sizes).ravel(), sizes.ravel(),
                                       target - pruned_columns * rows).reshape(sums.shape)
    keep[:, kept_columns] = np.repeat(keep_pieces, widths, axis=1)
    return keep


# --------------------------------------------------------------------------------------------
# The two selections.


def _keep_all_but_smallest(scores: np.ndarray, count: int) -> np.ndarray:
    """Keep mask of 1-D ``scores`` with exactly the ``count`` smallest pruned.

    Among equal scores the later position is pruned first. Linear time (a partition, not a
    sort): this is the path of every weight of a large matrix.
    """
    keep = np.ones(scores.size, dtype=bool)
    if count == 0:
        return keep
    threshold = np.partition(scores, count - 1)[count - 1]
    below = scores < threshold
    keep[below] = False
    ties = np.flatnonzero(scores == threshold)
    # threshold is the count-th smallest: at least one tie is needed, and enough exist.
    needed = count - int(np.count_nonzero(below))
    keep[ties[ties.size - needed:]] = False
    return keep


def _prune_order(scores: np.ndarray) -> np.ndarray:
    """Positions of 1-D ``scores`` from the first to prune: ascending, ties later first."""
    # A stable sort of the reversed scores puts, among equal scores, the later position first.
    return scores.size - 1 - np.argsort(scores[::-1], kind="stable")


def _keep_nearest_prefix(scores: np.ndarray, sizes: np.ndarray, target: int) -> np.ndarray:
    """Keep mask of units (1-D ``scores``, ``sizes`` in weights) pruning about ``target``.

    The units are pruned in :func:`_prune_order`; the number pruned is the one whose total
    size is nearest to ``target`` (the smaller number on a tie), so the total is within half
    the largest unit of ``target``. ``0 <= target <= sizes.sum()``.
    """
    order = _prune_order(scores)
    totals = np.concatenate(([0], np.cumsum(sizes[order])))
    count = int(np.searchsorted(totals, target, side="left"))  # totals[count] >= target
    if count > 0 and totals[count] - target >= target - totals[count - 1]:
        count -= 1
    keep = np.ones(scores.size, dtype=bool)
    keep[order[:count]] = False
    return keep


def _to_sparse(w: np.ndarray, keep: np.ndarray, format: str) -> sp.csr_array | sp.csc_array:
    """The entries of ``w`` where ``keep`` is True, zeros included, as CSR or CSC."""
    # The CSC arrays of w are the CSR arrays of w.T: one construction for both.
    values, mask = (w.T, keep.T) if format == "csc" else (w, keep)
    major, minor = np.nonzero(mask)  # row-major order: sorted indices, no duplicates
    index_dtype = np.int32 if max(*w.shape, major.size) < 2**31 else np.int64
    indptr = np.zeros(mask.shape[0] + 1, dtype=index_dtype)
    np.cumsum(np.bincount(major, minlength=mask.shape[0]), out=indptr[1:])
    cls = sp.csc_array if format == "csc" else sp.csr_array
    return cls((values[major, minor], minor.astype(index_dtype), indptr), shape=w.shape)
