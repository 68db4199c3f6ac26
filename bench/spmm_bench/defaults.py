"""Case settings shared by the plan and the readers of its results (no imports, no cycles)."""

# The partition of the default spmm cases: spmm's own choice (``spmm._api.choose_partition``),
# timed through the public ``spmm.multiply``. The partition table measures ``rows``, ``nnz``
# and ``dynamic`` beside it by name.
DEFAULT_PARTITION = "auto"
