"""CPU torch tensors as the dense operand and ``out`` of :func:`spmm.multiply`, without copies.

A tensor is passed to the product as the numpy array that shares its memory
(``Tensor.numpy()``), and a product whose dense operand was a tensor returns its numpy result
wrapped by ``torch.from_numpy``, which shares memory too. torch is never imported here: a
tensor can exist only once its caller has imported torch, so ``sys.modules`` says whether there
is anything to look for, and a process without torch pays one dictionary lookup per product.

spmm computes no gradients. A tensor that requires grad is refused while autograd is recording
(the product would silently cut the graph); under ``torch.no_grad()`` or
``torch.inference_mode()`` it is read through a detached view, as torch's own operations would.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def has_tensor(*objects: object) -> bool:
    """Whether any of ``objects`` is a torch tensor (False at once if torch is not imported)."""
    torch = sys.modules.get("torch")
    tensor_type = getattr(torch, "Tensor", None)
    if tensor_type is None:
        return False
    return any(isinstance(x, tensor_type) for x in objects)


def multiply(product: Callable[..., Any], a: Any, b: Any, out: Any, **options: Any) -> Any:
    """``product(a, b, out=out, **options)`` with every tensor replaced by a numpy view of it.

    The result is ``out`` when it is given (a tensor or an ndarray: the object passed in);
    otherwise a tensor sharing the numpy result's memory when the dense operand was a tensor,
    else the numpy result.
    """
    torch = sys.modules["torch"]
    a_tensor, b_tensor = isinstance(a, torch.Tensor), isinstance(b, torch.Tensor)
    a_arr, b_arr, out_arr = as_numpy(a, b, out)
    out_tensor = out_arr is not out
    result = product(a_arr, b_arr, out=out_arr, **options)
    if out is not None:
        if out_tensor:
            _mark_written(torch, out)
        return out
    return torch.from_numpy(result) if a_tensor or b_tensor else result


def as_numpy(a: Any, b: Any, out: Any) -> tuple[Any, Any, Any]:
    """``a``, ``b`` and ``out`` with every CPU tensor replaced by the numpy array sharing its
    memory (the others as they are); a TypeError or ValueError for a tensor numpy cannot view
    in place, or one that requires grad while autograd records."""
    torch = sys.modules["torch"]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        raise TypeError(
            "multiply: exactly one operand must be a scipy.sparse matrix/array or a "
            "PreparedMatrix, got two torch tensors; for dense @ dense use torch.matmul"
        )
    a = _as_numpy(torch, a, "the dense operand") if isinstance(a, torch.Tensor) else a
    b = _as_numpy(torch, b, "the dense operand") if isinstance(b, torch.Tensor) else b
    out = _as_numpy(torch, out, "out") if isinstance(out, torch.Tensor) else out
    return a, b, out


def _as_numpy(torch: Any, t: Any, role: str) -> Any:
    """The numpy array sharing ``t``'s memory, or a TypeError/ValueError saying why not."""
    if t.device.type != "cpu":
        # TypeError, as torch's own Tensor.numpy(): the memory is not an array numpy can read.
        raise TypeError(
            f"multiply: {role} is a torch tensor on device '{t.device}'; spmm computes on the "
            "CPU and reads tensors in place: move it with .cpu() (a copy) first"
        )
    if t.layout is not torch.strided:
        raise TypeError(
            f"multiply: {role} is a torch tensor of layout {t.layout}; spmm takes strided "
            "(dense) tensors, and its sparse operand as a scipy.sparse matrix or PreparedMatrix"
        )
    if t.requires_grad:
        if role == "out":
            raise ValueError(
                "multiply: out is a torch tensor that requires grad, but spmm computes no "
                "gradients (inference only): pass a tensor that does not require grad"
            )
        if torch.is_grad_enabled():
            raise ValueError(
                f"multiply: {role} is a torch tensor that requires grad, but spmm computes no "
                "gradients (inference only): pass tensor.detach(), or call spmm under "
                "torch.no_grad() or torch.inference_mode()"
            )
        t = t.detach()  # under no_grad: what torch's own ops would do (a view, no copy)
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:  # bfloat16, complex conjugate views, ...
        hint = " (convert it with .float() first: a copy)" if t.is_floating_point() else ""
        raise TypeError(
            f"multiply: {role} is a torch tensor of dtype {t.dtype} that numpy cannot view "
            f"without a copy{hint}: {exc}"
        ) from exc


def _mark_written(torch: Any, t: Any) -> None:
    """Tell autograd that ``t`` was modified in place, as torch's own in-place ops do.

    A tensor that autograd saved for a backward pass and that is later overwritten must make
    that backward pass fail, not compute with the new values: torch detects it by the
    tensor's version counter, which a write through numpy does not advance. Inference
    tensors have no version counter.
    """
    increment_version = getattr(torch.autograd.graph, "increment_version", None)
    if increment_version is not None and not t.is_inference():
        increment_version(t)
