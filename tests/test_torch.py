"""PyTorch interop: CPU tensors in and out of multiply without copies, and spmm.torch.SparseLinear.

torch is optional, so this file is skipped where it is not installed; CI installs it and sets
SPMM_REQUIRE_TORCH=1, which turns the skip into a failure.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_product_matches_scipy, make_csr, run_python

import spmm
from spmm import _torch_bridge

if os.environ.get("SPMM_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip(
        "torch", reason="PyTorch is optional and not installed (pip install torch==2.13.0)"
    )

from spmm.torch import SparseLinear  # only once torch is known to be there

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
FLOATS = (np.float32, np.float64)


def tensor(shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(-1.0, 1.0, shape).astype(dtype))


def numpy_view(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


# --------------------------------------------------------------------------------------------
# Import: torch is never a dependency.


def test_import_spmm_and_numpy_products_do_not_import_torch():
    proc = run_python("""
        import sys
        import numpy as np, scipy.sparse as sp, spmm
        a = sp.random_array((20, 10), density=0.3, format="csr", rng=0)
        spmm.multiply(a, np.ones((10, 3)))
        spmm.multiply(np.ones((4, 20)), spmm.prepare(a))
        print("torch" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_spmm_torch_without_torch_is_an_import_error_saying_pip_install_torch():
    proc = run_python("""
        import sys
        sys.modules["torch"] = None  # what an environment without torch looks like to import
        import spmm
        try:
            import spmm.torch
        except ImportError as exc:
            print(exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "pip install torch" in proc.stdout


# --------------------------------------------------------------------------------------------
# multiply: tensors in, tensors out.


@pytest.mark.parametrize("dtype", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("vector", [False, True], ids=["2d", "1d"])
@pytest.mark.parametrize("prepared", [False, True], ids=["scipy", "prepared"])
@pytest.mark.parametrize("transposed", [False, True], ids=["A@B", "X@W"])
def test_a_dense_tensor_gives_a_tensor_equal_to_scipy(dtype, vector, prepared, transposed, rng):
    sparse = make_csr((29, 37) if transposed else (37, 29), 0.2, dtype, np.int32, rng)
    dense = tensor((29,) if vector else (6, 29) if transposed else (29, 6), dtype, rng)
    operand = spmm.prepare(sparse) if prepared else sparse
    result = spmm.multiply(dense, operand) if transposed else spmm.multiply(operand, dense)
    assert type(result) is torch.Tensor
    assert result.dtype == TORCH_DTYPES[np.dtype(dtype)]
    assert result.shape == ((37,) if vector else (6, 37) if transposed else (37, 6))
    assert not result.requires_grad
    if transposed:
        assert_product_matches_scipy(result.numpy(), dense.numpy(), sparse)
    else:
        assert_product_matches_scipy(result.numpy(), sparse, dense.numpy())


def test_strided_tensors_are_read_as_they_are(rng):
    a = make_csr((30, 40), 0.2, np.float32, np.int32, rng)
    for b in (tensor((9, 40), np.float32, rng).T,                # Fortran order
              tensor((40, 14), np.float32, rng)[:, ::2],          # strided columns
              tensor((80, 5), np.float32, rng)[::2]):             # strided rows
        assert_product_matches_scipy(spmm.multiply(a, b).numpy(), a, b.numpy())


def test_the_dtype_follows_numpys_rules(rng):
    a = make_csr((8, 6), 0.5, np.float32, np.int32, rng)
    half = tensor((6, 3), np.float16, rng)
    integers = torch.arange(18, dtype=torch.int64).reshape(6, 3)
    assert spmm.multiply(a, half).dtype == torch.float32
    assert spmm.multiply(a, integers).dtype == torch.float64
    assert_product_matches_scipy(spmm.multiply(a, integers).numpy(), a, integers.numpy())


def test_the_bridge_hands_over_the_tensors_memory_and_wraps_the_result_without_copies(rng):
    b = tensor((5, 4), np.float32, rng)
    received: dict[str, Any] = {}
    result_array = np.ones((3, 4), dtype=np.float32)

    def product(a: Any, b_arr: Any, *, out: Any) -> np.ndarray:
        received.update(a=a, b=b_arr, out=out)
        return result_array

    a = sp.eye_array(3, 5, format="csr")
    result = _torch_bridge.multiply(product, a, b, None)
    assert received["a"] is a and received["out"] is None
    assert type(received["b"]) is np.ndarray
    assert received["b"].ctypes.data == b.data_ptr()
    assert received["b"].shape == (5, 4) and received["b"].strides == (16, 4)
    assert type(result) is torch.Tensor and result.data_ptr() == result_array.ctypes.data


def test_the_kernels_read_the_tensor_in_place(rng, extension_arrays):
    # Rows of 96 float32 (384 bytes): long enough that no aligned copy is made.
    a = make_csr((50, 40), 0.2, np.float32, np.int32, rng)
    b = tensor((40, 96), np.float32, rng)
    spmm.multiply(a, b)
    assert any(np.shares_memory(arr, numpy_view(b)) for arr in extension_arrays)
    # X @ W reads X^T: in place when X is Fortran-ordered, a transposed view of X^T.
    extension_arrays.clear()
    x = tensor((40, 96), np.float32, rng).T
    spmm.multiply(x, a.T.tocsr())
    assert any(np.shares_memory(arr, numpy_view(x)) for arr in extension_arrays)


def test_the_result_is_the_numpy_result_wrapped_without_a_copy(rng, monkeypatch):
    a = make_csr((12, 10), 0.3, np.float64, np.int32, rng)
    b = tensor((10, 4), np.float64, rng)
    wrapped: list[np.ndarray] = []
    from_numpy = torch.from_numpy

    def recording_from_numpy(arr: np.ndarray) -> torch.Tensor:
        wrapped.append(arr)
        return from_numpy(arr)

    monkeypatch.setattr(torch, "from_numpy", recording_from_numpy)
    result = spmm.multiply(a, b)
    assert len(wrapped) == 1 and result.data_ptr() == wrapped[0].ctypes.data


def test_operators_with_a_prepared_matrix_give_tensors(rng):
    # tensor @ p: torch's __matmul__ returns NotImplemented for an object it cannot convert,
    # so Python calls p.__rmatmul__; spmm.multiply(x, p) is the documented form.
    w = make_csr((20, 12), 0.3, np.float32, np.int32, rng)
    p = spmm.prepare(w)
    x, b = tensor((5, 20), np.float32, rng), tensor((12, 3), np.float32, rng)
    assert type(x @ p) is torch.Tensor
    assert_product_matches_scipy((x @ p).numpy(), x.numpy(), w)
    assert type(p @ b) is torch.Tensor
    np.testing.assert_array_equal((p @ b).numpy(), spmm.multiply(p, b).numpy())


def test_a_parameter_under_no_grad_is_read_as_if_detached(rng):
    a = make_csr((10, 8), 0.3, np.float32, np.int32, rng)
    param = torch.nn.Parameter(tensor((8, 3), np.float32, rng))
    with torch.no_grad():
        result = spmm.multiply(a, param)
    assert type(result) is torch.Tensor and not result.requires_grad
    assert_product_matches_scipy(result.numpy(), a, param.detach().numpy())
    with torch.inference_mode():
        result = spmm.multiply(a, param)
    assert_product_matches_scipy(result.numpy(), a, param.detach().numpy())


# --------------------------------------------------------------------------------------------
# out=


@pytest.mark.parametrize("transposed", [False, True], ids=["A@B", "X@W"])
def test_out_tensor_is_written_in_place_and_returned(transposed, rng):
    a = make_csr((15, 11), 0.3, np.float32, np.int32, rng)
    dense = tensor((4, 15) if transposed else (11, 4), np.float32, rng)
    out = torch.full((4, 11) if transposed else (15, 4), float("nan"))
    pointer, version = out.data_ptr(), out._version
    result = spmm.multiply(dense, a, out=out) if transposed else spmm.multiply(a, dense, out=out)
    assert result is out and out.data_ptr() == pointer
    assert out._version > version  # autograd sees the in-place write
    if transposed:
        assert_product_matches_scipy(out.numpy(), dense.numpy(), a)
    else:
        assert_product_matches_scipy(out.numpy(), a, dense.numpy())


def test_out_is_returned_as_given_whatever_the_dense_operand(rng):
    a = make_csr((6, 5), 0.5, np.float64, np.int32, rng)
    out_array = np.empty((6, 2))
    assert spmm.multiply(a, tensor((5, 2), np.float64, rng), out=out_array) is out_array
    out_tensor = torch.empty(6, 2, dtype=torch.float64)
    assert spmm.multiply(a, np.ones((5, 2)), out=out_tensor) is out_tensor
    np.testing.assert_allclose(out_tensor.numpy(), a @ np.ones((5, 2)))


def test_out_tensor_in_inference_mode(rng):
    a = make_csr((6, 5), 0.5, np.float32, np.int32, rng)
    with torch.inference_mode():
        out = torch.empty(6, 2)
        spmm.multiply(a, tensor((5, 2), np.float32, rng), out=out)
    assert out.is_inference()


@pytest.mark.parametrize(
    ("make_out", "match"),
    [
        (lambda: torch.empty(6, 2, dtype=torch.float64), "dtype"),
        (lambda: torch.empty(6, 3), "shape"),
        (lambda: torch.empty(2, 6).T, "C-contiguous"),
        (lambda: torch.empty(6, 2, requires_grad=True), "requires grad"),
    ],
    ids=["dtype", "shape", "order", "requires_grad"],
)
def test_an_unusable_out_tensor_is_a_value_error(make_out, match, rng):
    a = make_csr((6, 5), 0.5, np.float32, np.int32, rng)
    with pytest.raises(ValueError, match=match):
        spmm.multiply(a, tensor((5, 2), np.float32, rng), out=make_out())


def test_out_sharing_memory_with_the_dense_tensor_is_a_value_error(rng):
    a = sp.eye_array(6, format="csr", dtype=np.float32)
    b = tensor((6, 6), np.float32, rng)
    with pytest.raises(ValueError, match="share memory"):
        spmm.multiply(a, b, out=b)


# --------------------------------------------------------------------------------------------
# Tensors spmm refuses.


def test_a_tensor_requiring_grad_is_a_value_error_suggesting_detach_or_no_grad(rng):
    a = make_csr((6, 5), 0.5, np.float32, np.int32, rng)
    b = tensor((5, 2), np.float32, rng).requires_grad_()
    for call in (lambda: spmm.multiply(a, b), lambda: spmm.multiply(b.T, a.T)):
        with pytest.raises(ValueError, match=r"requires grad.*detach\(\).*no_grad"):
            call()
    assert_product_matches_scipy(spmm.multiply(a, b.detach()).numpy(), a, b.detach().numpy())


def test_a_tensor_not_on_the_cpu_is_a_type_error_naming_its_device(rng):
    a = make_csr((6, 5), 0.5, np.float32, np.int32, rng)
    with pytest.raises(TypeError, match=r"device 'meta'.*\.cpu\(\)"):
        spmm.multiply(a, torch.empty(5, 2, device="meta"))
    with pytest.raises(TypeError, match="device 'meta'"):
        spmm.multiply(a, tensor((5, 2), np.float32, rng), out=torch.empty(6, 2, device="meta"))


def test_a_tensor_numpy_cannot_view_is_a_type_error(rng):
    a = make_csr((6, 5), 0.5, np.float32, np.int32, rng)
    with pytest.raises(TypeError, match=r"bfloat16.*\.float\(\)"):
        spmm.multiply(a, torch.ones(5, 2, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=r"layout torch\.sparse_coo"):
        spmm.multiply(a, torch.ones(5, 2).to_sparse())


def test_two_tensors_are_a_type_error():
    with pytest.raises(TypeError, match="two torch tensors"):
        spmm.multiply(torch.ones(3, 4), torch.ones(4, 2))


def test_shape_errors_are_reported_as_for_arrays(rng):
    a = make_csr((6, 5), 0.5, np.float32, np.int32, rng)
    with pytest.raises(ValueError, match="shape mismatch"):
        spmm.multiply(a, torch.ones(4, 2))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        spmm.multiply(a, torch.ones(5, 2, 2))


# --------------------------------------------------------------------------------------------
# SparseLinear


PATTERNS = [
    ("unstructured", 0.7, {}),
    ("block", 0.5, {"block": (4, 4)}),
    ("n_m", None, {"n": 2, "m": 4}),
    ("tile_wise", 0.5, {"tile": 8, "column_sparsity": 0.1}),
]


def pruned_linear(linear: torch.nn.Linear, sparsity: float | None, pattern: str,
                  options: dict[str, Any]) -> torch.nn.Linear:
    """A copy of ``linear`` whose pruned weights are zero: the dense reference."""
    mask = spmm.prune_mask(linear.weight.detach().numpy().T, sparsity, pattern, **options)
    reference = torch.nn.Linear(linear.in_features, linear.out_features,
                                bias=linear.bias is not None, dtype=linear.weight.dtype)
    with torch.no_grad():
        reference.weight.copy_(linear.weight * torch.from_numpy(mask.T))
        if linear.bias is not None:
            reference.bias.copy_(linear.bias)
    return reference


@pytest.mark.parametrize(("pattern", "sparsity", "options"), PATTERNS,
                         ids=[p[0] for p in PATTERNS])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sparse_linear_equals_the_pruned_dense_linear(pattern, sparsity, options, bias, dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 24, bias=bias, dtype=dtype)
    sparse = SparseLinear.from_dense(linear, sparsity, pattern, **options)
    reference = pruned_linear(linear, sparsity, pattern, options)
    assert sparse.nnz == int(torch.count_nonzero(reference.weight))
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        for shape in [(40,), (7, 40), (3, 5, 40), (0, 40)]:
            x = torch.randn(shape, dtype=dtype)
            y = sparse(x)
            assert y.shape == (*shape[:-1], 24) and y.dtype == dtype
            torch.testing.assert_close(y, reference(x), rtol=rtol, atol=rtol)


def test_sparse_linear_in_a_network_under_inference_mode():
    torch.manual_seed(1)
    dense = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    sparse = torch.nn.Sequential(SparseLinear.from_dense(dense[0], 0.0), torch.nn.ReLU(),
                                 SparseLinear.from_dense(dense[2], 0.0))
    x = torch.randn(16, 32)
    with torch.inference_mode():
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-5, atol=1e-5)


def test_sparse_linear_refuses_an_input_that_requires_grad_while_recording():
    layer = SparseLinear.from_dense(torch.nn.Linear(8, 4), 0.5)
    x = torch.randn(3, 8, requires_grad=True)
    with pytest.raises(ValueError, match=r"inference-only.*no_grad"):
        layer(x)
    with torch.no_grad():
        assert not layer(x).requires_grad


def test_sparse_linear_input_errors():
    layer = SparseLinear.from_dense(torch.nn.Linear(8, 4), 0.5)
    with torch.no_grad():
        with pytest.raises(ValueError, match="in_features = 8"):
            layer(torch.ones(3, 7))
        with pytest.raises(ValueError, match="in_features = 8"):
            layer(torch.tensor(1.0))
        with pytest.raises(TypeError, match=r"torch\.Tensor"):
            layer(np.ones((3, 8), dtype=np.float32))
    with pytest.raises(TypeError, match=r"torch\.nn\.Linear"):
        SparseLinear.from_dense(torch.nn.Conv1d(8, 4, 1), 0.5)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\)"):
        SparseLinear.from_sparse(sp.eye_array(8, 4, format="csr"), torch.ones(3))


def test_sparse_linear_from_sparse_takes_spmms_orientation(rng):
    w = make_csr((12, 5), 0.4, np.float32, np.int32, rng)  # (in_features, out_features)
    bias = rng.uniform(size=5).astype(np.float32)
    for weight in (w, spmm.prepare(w)):
        layer = SparseLinear.from_sparse(weight, bias)
        assert (layer.in_features, layer.out_features, layer.nnz) == (12, 5, w.nnz)
        x = tensor((4, 12), np.float32, rng)
        with torch.no_grad():
            y = layer(x)
        np.testing.assert_allclose(y.numpy(), x.numpy() @ w + bias, rtol=1e-5, atol=1e-6)


def test_sparse_linear_owns_its_bias_and_weights():
    linear = torch.nn.Linear(6, 3)
    layer = SparseLinear.from_dense(linear, 0.0)
    x = torch.randn(2, 6)
    with torch.no_grad():
        before = layer(x)
        linear.weight.mul_(2)
        linear.bias.add_(1)
        torch.testing.assert_close(layer(x), before, rtol=0, atol=0)
    assert list(layer.parameters()) == [] and "bias" in dict(layer.named_buffers())


def test_sparse_linear_dtype_conversions_change_the_bias_only():
    layer = SparseLinear.from_dense(torch.nn.Linear(8, 4), 0.5)
    x = torch.randn(2, 8)
    with torch.no_grad():
        before = layer(x)
        layer.double()
        assert layer.bias.dtype == torch.float64 and layer.prepared.dtype == np.float32
        after = layer(x)  # float32 weights and input: float32 output, whatever the bias
        assert after.dtype == torch.float32
        torch.testing.assert_close(after, before)
        assert layer(x.double()).dtype == torch.float64


def test_sparse_linear_repr():
    layer = SparseLinear.from_dense(torch.nn.Linear(16, 8, bias=False), 0.75)
    assert repr(layer) == ("SparseLinear(in_features=16, out_features=8, bias=False, nnz=32, "
                           "sparsity=0.750, dtype=float32)")
    assert (layer.nnz, layer.sparsity) == (32, 0.75)


def test_sparse_linear_state_dict_round_trips_through_torch_save_weights_only():
    torch.manual_seed(2)
    source = SparseLinear.from_dense(torch.nn.Linear(20, 10), 0.6, "n_m", n=2, m=5)
    target = SparseLinear.from_dense(torch.nn.Linear(20, 10), 0.3)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    assert target.nnz == source.nnz
    x = torch.randn(4, 20)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"shape \(20, 10\)"):
        SparseLinear.from_dense(torch.nn.Linear(20, 9, bias=False), 0.3).load_state_dict(
            {"_extra_state": source.state_dict()["_extra_state"]})


def test_sparse_linear_pickles():
    layer = SparseLinear.from_dense(torch.nn.Linear(9, 4), 0.5, "block", block=(3, 2))
    copy = pickle.loads(pickle.dumps(layer))
    x = torch.randn(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), layer(x), rtol=0, atol=0)


def test_sparse_linear_state_dict_keeps_a_declared_layout():
    """A declared layout that does not fit the weights exactly (stored with zeros) is in the
    state too: loading rebuilds the same form, not the one detection would choose."""
    torch.manual_seed(3)
    source = SparseLinear(spmm.prepare(
        spmm.prune(np.random.default_rng(3).standard_normal((32, 48)), 0.7), layout="tile",
        tile=16))
    target = SparseLinear.from_dense(torch.nn.Linear(32, 48, bias=False), 0.5)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    assert (target.prepared.layout, target.prepared.block) == ("tile", (1, 16))
    x = torch.randn(4, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def _state_without(key: str) -> Any:
    def corrupt(state: dict) -> dict:
        return {k: v for k, v in state.items() if k != key}
    return corrupt


def _state_with(key: str, value: Any) -> Any:
    def corrupt(state: dict) -> dict:
        return {**state, key: value(state[key]) if callable(value) else value}
    return corrupt


def _index_out_of_range(indices: torch.Tensor) -> torch.Tensor:
    changed = indices.clone()
    changed[0] = 10**6
    return changed


SPARSE_LINEAR_CORRUPTIONS = {
    "not-a-dict": (lambda state: [state["data"]], "must be a dict"),
    "indices-missing": (_state_without("indices"), "indices must be a strided tensor"),
    "indices-a-list": (_state_with("indices", lambda t: t.tolist()), "strided tensor"),
    "data-bfloat16": (_state_with("data", lambda t: t.to(torch.bfloat16)), "data"),
    "index-out-of-range": (_state_with("indices", _index_out_of_range), "out of range"),
    "indptr-short": (_state_with("indptr", lambda t: t[:-1]), "indptr has"),
    "layout-unknown": (_state_with("layout", "bsr"), "layout must be one of"),
    "n_m-over-255": (_state_with("n_m", (2, 300)), "<= 255"),
}


@pytest.mark.parametrize("corruption", SPARSE_LINEAR_CORRUPTIONS)
def test_a_corrupted_sparse_linear_state_is_a_value_error_saying_what_is_wrong(corruption):
    torch.manual_seed(4)
    source = SparseLinear.from_dense(torch.nn.Linear(20, 10), None, "n_m", n=2, m=4)
    state = source.state_dict()
    corrupt, says = SPARSE_LINEAR_CORRUPTIONS[corruption]
    state["_extra_state"] = corrupt(state["_extra_state"])
    target = SparseLinear.from_dense(torch.nn.Linear(20, 10), 0.3)
    with pytest.raises(ValueError, match=says):
        target.load_state_dict(state)


def test_a_sparse_linear_state_of_an_earlier_version_has_its_layout_detected():
    torch.manual_seed(5)
    source = SparseLinear.from_dense(torch.nn.Linear(20, 10), None, "n_m", n=2, m=4)
    extra = source.state_dict()["_extra_state"]
    earlier = {key: extra[key] for key in ("shape", "indptr", "indices", "data")}
    target = SparseLinear.from_dense(torch.nn.Linear(20, 10), 0.3)
    target.load_state_dict({"bias": source.bias, "_extra_state": earlier})
    assert target.prepared.n_m == (2, 4)


def test_a_saved_sparse_linear_with_a_corrupted_weight_array_is_a_value_error():
    """torch.save(module) pickles its PreparedMatrix: a corrupted index in the file is found
    when it is loaded, before any product. (The legacy format is one pickle stream, whose
    bytes can be patched; the zip format stores the same pickle with a checksum.)"""
    torch.manual_seed(6)
    layer = SparseLinear.from_dense(torch.nn.Linear(40, 30), 0.5)
    buffer = io.BytesIO()
    torch.save(layer, buffer, _use_new_zipfile_serialization=False)
    blob = buffer.getvalue()
    indices = layer.prepared._csr.indices
    assert blob.count(indices.tobytes()) == 1
    changed = np.array(indices, copy=True)
    # Out of range for 30 columns; bytes below 0x80, which protocol 2 (torch's) stores as they
    # are inside the latin-1 string it makes of an array's bytes.
    changed[0] = 0x7F7F
    buffer = io.BytesIO(blob.replace(indices.tobytes(), changed.tobytes()))
    with pytest.raises(ValueError, match="out of range"):
        torch.load(buffer, weights_only=False)


# --------------------------------------------------------------------------------------------
# Reduced-precision weights (values=) and half-precision inputs.

REDUCED = ("bfloat16", "float16", "int8")


@pytest.mark.parametrize("values", REDUCED)
@pytest.mark.parametrize("pattern, options", [("unstructured", {}), ("tile_wise", {"tile": 8}),
                                              ("n_m", {"n": 2, "m": 4})])
def test_sparse_linear_with_reduced_values_equals_its_rounded_weights(values, pattern, options):
    torch.manual_seed(6)
    linear = torch.nn.Linear(24, 16)
    layer = SparseLinear.from_dense(linear, 0.5, pattern, values=values, **options)
    assert layer.prepared.values == values and f"values={values}" in repr(layer)
    rounded = torch.from_numpy(layer.prepared.to_scipy().toarray())
    x = torch.randn(3, 5, 24)
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, x @ rounded + linear.bias.detach(), rtol=1e-5, atol=1e-5)


def test_sparse_linear_values_must_agree_with_a_prepared_matrix():
    p = spmm.prepare(sp.random_array((6, 4), density=0.5, rng=0), values="int8")
    assert SparseLinear(p).prepared is p and SparseLinear(p, values="int8").prepared is p
    with pytest.raises(ValueError, match=r"values='bfloat16'.*'int8'"):
        SparseLinear(p, values="bfloat16")
    with pytest.raises(ValueError, match="values must be one of"):
        SparseLinear.from_dense(torch.nn.Linear(6, 4), 0.5, values="int4")


@pytest.mark.parametrize("values", [None, *REDUCED])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_are_computed_in_float32_and_returned_in_their_dtype(values, dtype):
    torch.manual_seed(7)
    layer = SparseLinear.from_dense(torch.nn.Linear(32, 8), 0.75, values=values)
    x = torch.randn(4, 32).to(dtype)
    with torch.no_grad():
        y = layer(x)
        wide = layer(x.float())
    assert y.dtype == dtype and y.shape == (4, 8)
    torch.testing.assert_close(y, wide.to(dtype), rtol=0, atol=0)


@pytest.mark.parametrize("values", [None, *REDUCED])
def test_a_float64_input_gives_float64(values):
    layer = SparseLinear.from_dense(torch.nn.Linear(12, 6), 0.5, values=values)
    x = torch.randn(2, 12, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, layer(x.float()).double(), rtol=1e-6, atol=1e-6)


def test_an_input_of_another_dtype_is_a_type_error_naming_the_accepted_ones():
    layer = SparseLinear.from_dense(torch.nn.Linear(4, 2), 0.5)
    with pytest.raises(TypeError, match=r"torch.int32.*torch.float32, torch.float64, "
                                        r"torch.bfloat16, torch.float16"):
        layer(torch.ones(1, 4, dtype=torch.int32))


@pytest.mark.parametrize("values", REDUCED)
@pytest.mark.parametrize("pattern, options", [("unstructured", {}), ("block", {"block": (2, 4)})])
def test_reduced_weights_round_trip_through_state_dict_as_stored(values, pattern, options):
    torch.manual_seed(8)
    source = SparseLinear.from_dense(torch.nn.Linear(16, 12), 0.5, pattern, values=values,
                                     **options)
    extra = source.state_dict()["_extra_state"]
    stored = {"bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.int8}
    assert extra["values"] == values and extra["data"].dtype == stored[values]
    assert (extra["scales"] is not None) == (values == "int8")
    target = SparseLinear.from_dense(torch.nn.Linear(16, 12), 0.3)  # float32: replaced
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    assert (target.prepared.values, target.prepared.layout) == (values, source.prepared.layout)
    assert target.prepared.nbytes == source.prepared.nbytes
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    np.testing.assert_array_equal(target.prepared.to_scipy().toarray(),
                                  source.prepared.to_scipy().toarray())


def test_a_corrupted_reduced_state_is_a_value_error():
    source = SparseLinear.from_dense(torch.nn.Linear(8, 4), 0.5, values="int8")
    state = source.state_dict()
    state["_extra_state"] = {**state["_extra_state"],
                             "scales": -state["_extra_state"]["scales"] - 1}
    with pytest.raises(ValueError, match="scales must be finite and non-negative"):
        SparseLinear.from_dense(torch.nn.Linear(8, 4), 0.5).load_state_dict(state)
