"""``spmm.torch``: :class:`SparseLinear`, an inference-only drop-in for ``torch.nn.Linear``.

PyTorch is optional: ``import spmm`` never imports it, and importing this module without it is
an ImportError that says how to install it. (This module is named like the package it needs;
absolute imports make ``import torch`` below the real one.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    import torch
except ImportError as exc:
    raise ImportError(
        "spmm.torch needs PyTorch, which spmm does not install: pip install torch (spmm is "
        "tested with torch 2.13.0; pip install 'spmm[torch]' installs it as well)"
    ) from exc

from ._pipeline import multiply
from ._prepared import PreparedMatrix, from_state, prepare
from ._prune import prune

__all__ = ["SparseLinear"]

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
# Inputs numpy cannot hold (bfloat16) or that spmm would return as float32 (float16): computed
# in float32, returned in their own dtype, as torch.nn.Linear returns its input's dtype.
_HALF_DTYPES = (torch.bfloat16, torch.float16)
_INPUT_DTYPES = (torch.float32, torch.float64, *_HALF_DTYPES)


class SparseLinear(torch.nn.Module):
    """``y = x @ W + b`` with sparse weights, computed by :func:`spmm.multiply`.

    An inference-only replacement for ``torch.nn.Linear``: the same input and output shapes,
    with the weights pruned (:meth:`from_dense`) and stored as a :class:`spmm.PreparedMatrix`.
    It has no parameters: nothing in it is trained.

    Parameters
    ----------
    weight : scipy.sparse matrix/array or PreparedMatrix, shape (in_features, out_features)
        The weights in spmm's orientation (as :func:`spmm.prune` returns them, as in
        ``x @ weight``): the transpose of ``nn.Linear.weight``. A scipy matrix is copied
        (:func:`spmm.prepare`); a PreparedMatrix is used as it is.
    bias : torch.Tensor or array_like, shape (out_features,), optional
        Copied, as a tensor of the weights' dtype. None: no bias.
    values : {None, "float32", "bfloat16", "float16", "int8"}, optional
        How the weights are stored, as :func:`spmm.prepare` takes it (reduced formats:
        computed in float32). For a PreparedMatrix ``weight``: None or its own format.

    Attributes
    ----------
    prepared : PreparedMatrix
        The weights, (in_features, out_features).
    bias : torch.Tensor or None
        A buffer (in ``state_dict``, moved by ``.to()``), not a parameter.
    in_features, out_features, nnz : int
    sparsity : float
        The fraction of the weights that are not stored.

    Notes
    -----
    ``forward(x)`` takes a CPU tensor of shape ``(..., in_features)`` and returns one of shape
    ``(..., out_features)``: the leading dimensions are flattened into the batch of one
    product ``x2d @ W`` (a view when ``x`` allows it, as a contiguous ``x`` does), then
    restored. ``x`` is float32, float64, bfloat16 or float16. A float32 or float64 ``x``
    gives what :func:`spmm.multiply` gives: float32 with float32 or reduced weights, float64
    with float64 weights or a float64 ``x`` (computed in float32 with reduced weights). A
    bfloat16 or float16 ``x`` is converted to float32, multiplied, and the result (bias
    added) returned in ``x``'s dtype, as ``torch.nn.Linear`` would.

    It computes no gradients. An input that requires grad while autograd is recording is a
    ValueError (rather than a silently detached result, which would stop training from
    reaching earlier layers without a word): run inference under ``torch.no_grad()`` or
    ``torch.inference_mode()``.

    ``.to()``, ``.half()``, ``.double()`` and friends convert the bias only: the weights stay
    in spmm's prepared form, on the CPU, in their dtype. ``state_dict()`` holds the bias and
    the weights (CSR tensors ``indptr``, ``indices``, ``data`` and the shape, as the module's
    extra state; reduced weights as stored: bfloat16, float16 or int8 tensors of the
    transpose, int8 with its ``scales``), so ``torch.save(m.state_dict())`` and
    ``load_state_dict`` (into a SparseLinear of the same shape, whatever its format: the
    state's is loaded) round-trip, also with ``torch.load(weights_only=True)``.

    Examples
    --------
    >>> import torch
    >>> from spmm.torch import SparseLinear
    >>> linear = torch.nn.Linear(64, 32)
    >>> sparse = SparseLinear.from_dense(linear, 0.75)
    >>> sparse
    SparseLinear(in_features=64, out_features=32, bias=True, nnz=512, sparsity=0.750, dtype=float32)
    >>> with torch.no_grad():
    ...     y = sparse(torch.ones(8, 10, 64))
    >>> y.shape
    torch.Size([8, 10, 32])
    """

    bias: torch.Tensor | None

    def __init__(self, weight: Any, bias: Any = None, *, values: str | None = None) -> None:
        super().__init__()
        if isinstance(weight, PreparedMatrix):
            if values is not None and values != weight.values:
                raise ValueError(
                    f"SparseLinear: values={values!r}, but the PreparedMatrix given stores "
                    f"{weight.values!r} values; pass values=None, or prepare the weights with "
                    f"values={values!r}")
            self.prepared = weight
        else:
            self.prepared = prepare(weight, values=values)
        if bias is not None:
            if isinstance(bias, torch.Tensor):
                bias = bias.detach()
            bias = torch.as_tensor(bias, dtype=_TORCH_DTYPES[self.prepared.dtype],
                                   device="cpu").clone()
            if tuple(bias.shape) != (self.out_features,):
                raise ValueError(
                    f"SparseLinear: bias has shape {tuple(bias.shape)}; expected "
                    f"({self.out_features},) for weights of shape {self.prepared.shape} "
                    "(in_features, out_features)"
                )
        self.register_buffer("bias", bias)

    @classmethod
    def from_dense(cls, linear: torch.nn.Linear, sparsity: float | None = None,
                   pattern: str = "unstructured", *, values: str | None = None,
                   **prune_options: Any) -> SparseLinear:
        """Prune a ``torch.nn.Linear`` by magnitude and make it a SparseLinear.

        Parameters
        ----------
        linear : torch.nn.Linear
            Its weight is pruned as ``spmm.prune(linear.weight.T, sparsity, pattern,
            **prune_options)`` (float32 unless it is float64); its bias is copied. ``linear``
            is not modified.
        sparsity : float in [0, 1), optional
            The fraction of weights to prune (optional for ``pattern="n_m"``).
        pattern : {"unstructured", "block", "n_m", "tile_wise"}, default "unstructured"
            See :func:`spmm.prune`.
        values : {None, "float32", "bfloat16", "float16", "int8"}, optional
            How the pruned weights are stored (:func:`spmm.prepare`).
        **prune_options
            ``block``, ``n``, ``m``, ``tile``, ``norm``, ``column_sparsity``: see
            :func:`spmm.prune`.

        Returns
        -------
        SparseLinear

        Raises
        ------
        TypeError
            If ``linear`` is not a ``torch.nn.Linear``.
        ValueError
            As :func:`spmm.prune`, for a bad sparsity, pattern or option, and as
            :func:`spmm.prepare` for a bad ``values`` or weights it cannot hold.
        """
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(
                f"SparseLinear.from_dense: expected a torch.nn.Linear, got {type(linear).__name__}"
            )
        weight = linear.weight.detach().cpu()
        if weight.dtype not in (torch.float32, torch.float64):
            weight = weight.float()  # bfloat16 has no numpy dtype; half is pruned as float32
        pruned = prune(weight.numpy().T, sparsity, pattern, **prune_options)
        return cls(pruned, linear.bias, values=values)

    @classmethod
    def from_sparse(cls, weight: Any, bias: Any = None, *,
                    values: str | None = None) -> SparseLinear:
        """A SparseLinear of already sparse weights: the same as ``SparseLinear(weight, bias)``.

        Parameters
        ----------
        weight : scipy.sparse matrix/array or PreparedMatrix, shape (in_features, out_features)
            spmm's orientation: the transpose of ``nn.Linear.weight``.
        bias : torch.Tensor or array_like, shape (out_features,), optional
        values : {None, "float32", "bfloat16", "float16", "int8"}, optional
            How the weights are stored (:func:`spmm.prepare`).

        Returns
        -------
        SparseLinear
        """
        return cls(weight, bias, values=values)

    @property
    def in_features(self) -> int:
        return self.prepared.shape[0]

    @property
    def out_features(self) -> int:
        return self.prepared.shape[1]

    @property
    def nnz(self) -> int:
        return self.prepared.nnz

    @property
    def sparsity(self) -> float:
        size = self.in_features * self.out_features
        return 1.0 - self.nnz / size if size else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W + b`` for ``x`` of shape ``(..., in_features)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SparseLinear: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"SparseLinear: the input has shape {tuple(x.shape)}; its last dimension "
                f"must be in_features = {self.in_features}"
            )
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                "SparseLinear is inference-only and computes no gradients, but its input "
                "requires grad: run it under torch.no_grad() or torch.inference_mode()"
            )
        if x.dtype not in _INPUT_DTYPES:
            raise TypeError(
                f"SparseLinear: the input's dtype is {x.dtype}; expected one of "
                f"{', '.join(map(str, _INPUT_DTYPES))}")
        leading = x.shape[:-1]
        x2d = x.reshape(math.prod(leading), self.in_features)
        if x.dtype in _HALF_DTYPES:
            x2d = x2d.float()
        y = multiply(x2d, self.prepared)
        if self.bias is not None:
            # y is spmm's fresh result: adding in place allocates nothing. The bias may have
            # been converted by .to()/.double(): it takes the output's dtype, not the reverse.
            y += self.bias.to(y.dtype)
        if x.dtype in _HALF_DTYPES:
            y = y.to(x.dtype)
        return y.reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, nnz={self.nnz}, sparsity={self.sparsity:.3f}, "
            f"dtype={self.prepared.dtype}"
            + (f", values={self.prepared.values}" if self.prepared.reduced else "")
        )

    def get_extra_state(self) -> dict[str, Any]:
        """The weights for ``state_dict``: CSR arrays as tensors (copies), the shape and the
        layout's parameters (:attr:`PreparedMatrix.layout`, ``block``, ``n_m``).

        Reduced weights are saved as stored (never rounded again): the CSR arrays of the
        transpose, their values a bfloat16, float16 or int8 tensor, with ``values`` naming
        the format, the int8 ``scales`` (float32, one per output) and ``activations``.
        """
        if self.prepared.reduced:
            state = self.prepared.__getstate__()
            data = np.array(state["data"])
            if state["values"] == "bfloat16":  # numpy holds bfloat16 as its bits
                values = torch.from_numpy(data.view(np.int16)).view(torch.bfloat16)
            else:
                values = torch.from_numpy(data)
            scales, indices = state["scales"], state["indices"]
            if indices.dtype == np.uint16:  # torch's uint16 is not fully supported
                indices = indices.astype(np.int32)
            return {**state, "indptr": torch.from_numpy(np.array(state["indptr"])),
                    "indices": torch.from_numpy(np.array(indices)),
                    "data": values,
                    "scales": None if scales is None else torch.from_numpy(np.array(scales))}
        csr = self.prepared.to_scipy()
        return {
            "shape": tuple(csr.shape),
            "indptr": torch.from_numpy(np.array(csr.indptr)),
            "indices": torch.from_numpy(np.array(csr.indices)),
            "data": torch.from_numpy(np.array(csr.data)),
            "layout": self.prepared.layout,
            "block": self.prepared.block,
            "n_m": self.prepared.n_m,
        }

    def set_extra_state(self, state: Any) -> None:
        """Load the weights of :meth:`get_extra_state` (of this module's shape).

        They are checked as a pickled :class:`PreparedMatrix` is (a ValueError says what is
        wrong) and their derived forms rebuilt. A state without a layout (saved by an earlier
        version of spmm) has its layout detected again, as :func:`spmm.prepare` does.
        """
        if not isinstance(state, dict):
            raise ValueError(f"SparseLinear: the weights' state must be a dict; got "
                             f"{type(state).__name__}")
        fields = {name: state.get(name) for name in ("shape", "layout", "block", "n_m")}
        reduced = state.get("values") is not None
        if reduced:
            fields.update(values=state["values"], activations=state.get("activations"))
        names = ("indptr", "indices", "data") + (("scales",) if state.get("scales") is not None
                                                  else ())
        for name in names:
            tensor = state.get(name)
            if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
                raise ValueError(f"SparseLinear: the weights' {name} must be a strided tensor; "
                                 f"got {type(tensor).__name__}")
            tensor = tensor.detach().cpu()
            if name == "data" and tensor.dtype == torch.bfloat16 and reduced and (
                    state["values"] == "bfloat16"):
                fields[name] = tensor.view(torch.int16).numpy().view(np.uint16)
                continue
            try:
                fields[name] = tensor.numpy()
            except TypeError as exc:  # a dtype numpy lacks (bfloat16...)
                raise ValueError(f"SparseLinear: the weights' {name}: {exc}") from None
        if "layout" not in state:
            fields["layout"] = "csr"
        shape = fields["shape"]
        if isinstance(shape, (list, torch.Size)):
            fields["shape"] = tuple(shape)
        if fields["shape"] != self.prepared.shape:
            raise ValueError(
                f"SparseLinear: the state's weights have shape {fields['shape']}; this "
                f"module's have {self.prepared.shape} (in_features, out_features)"
            )
        prepared = from_state(fields)
        self.prepared = prepared if "layout" in state else prepare(prepared.to_scipy())
