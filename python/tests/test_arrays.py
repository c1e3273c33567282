"""Inputs: NumPy dtype/shape/stride errors name the problem; __array__ / __dlpack__ producers are accepted;
engine errors surface as netquant.NetquantError subclasses with the engine's code and message."""

from __future__ import annotations

import numpy as np
import pytest

import netquant
from conftest import importance, weights


def test_non_contiguous_is_a_value_error(rng):
    w = weights(rng, (20, 30))
    with pytest.raises(ValueError, match="C-contiguous"):
        netquant.quantize(w.T, backend="cpu")
    with pytest.raises(ValueError, match="C-contiguous"):
        netquant.quantize(w[:, ::2], backend="cpu")
    with pytest.raises(ValueError, match="C-contiguous"):
        netquant.quantize(w, importance(rng, (30, 20)).T, backend="cpu")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_non_float_is_a_type_error(rng, dtype):
    with pytest.raises(TypeError, match="tensor 'w'"):
        netquant.quantize(np.ones(10, dtype=dtype), backend="cpu")


def test_object_array_is_a_type_error():
    with pytest.raises(TypeError, match="object arrays"):
        netquant.quantize(np.array([1.0, "x", None], dtype=object), backend="cpu")
    with pytest.raises(TypeError, match="object arrays"):
        netquant.save_safetensors("/nonexistent/x.safetensors", {"a": np.array([object()])})


def test_big_endian_is_a_value_error(rng):
    with pytest.raises(ValueError, match="byte order"):
        netquant.quantize(weights(rng, (10,)).astype(">f4"), backend="cpu")


def test_importance_shape_mismatch(rng):
    with pytest.raises(netquant.NetquantValueError) as e:
        netquant.quantize(weights(rng, (10, 20)), importance(rng, (20, 10)), backend="cpu")
    assert e.value.code == "shape_mismatch"
    assert isinstance(e.value, ValueError) and isinstance(e.value, netquant.NetquantError)
    with pytest.raises(netquant.NetquantValueError):
        netquant.quantize_model({"a": weights(rng, (5,))}, {"a": importance(rng, (6,))}, backend="cpu")


def test_engine_errors_keep_code_and_message(rng):
    with pytest.raises(netquant.NetquantValueError, match="kmeans") as e:
        netquant.quantize(weights(rng, (10,)), method="no-such-method")
    assert e.value.code == "invalid_argument"
    with pytest.raises(netquant.NetquantValueError) as e:
        netquant.quantize(weights(rng, (10,)), scope="group:x")
    assert e.value.code == "invalid_argument"
    with pytest.raises(netquant.NetquantError):
        netquant.quantize(weights(rng, (10,)), backend="warp-drive")


def test_cuda_without_device_is_unavailable(rng):
    if netquant.cuda_available():
        pytest.skip("a CUDA device answers here")
    with pytest.raises(netquant.NetquantRuntimeError) as e:
        netquant.quantize(weights(rng, (10,)), backend="cuda")
    assert e.value.code == "unavailable" and isinstance(e.value, RuntimeError)


def test_unknown_keyword_and_k_with_bits(rng):
    with pytest.raises(TypeError, match="unexpected keyword"):
        netquant.quantize(weights(rng, (10,)), lamda=0.1)
    with pytest.raises(ValueError, match="either k or bits"):
        netquant.quantize(weights(rng, (10,)), k=4, bits=2)


def test_whole_number_parameters_are_checked_by_name(rng):
    w = weights(rng, (37, 11))
    # Out of the engine's type: named, not pybind11's "incompatible function arguments".
    for kwargs, kind, says in [
        (dict(seed=-1), ValueError, "seed: -1 is outside 0..18446744073709551615"),
        (dict(seed=2**64), ValueError, "seed: "),
        (dict(k=2**40), ValueError, "k: "),
        (dict(method="ecsq", target_size=-5), ValueError, "target_size: -5"),
        (dict(batch_weights=2**63), ValueError, "batch_weights: "),
        (dict(k=4.5), TypeError, "k: expected an integer, got 4.5"),
        (dict(k=True), TypeError, "k: expected an integer, got a bool"),
        (dict(max_iter="10"), TypeError, "max_iter: expected an integer"),
        (dict(bits=float("nan")), TypeError, "bits: expected an integer"),
    ]:
        call = netquant.quantize_model if "target_size" in kwargs or "batch_weights" in kwargs else netquant.quantize
        arg = {"w": w} if call is netquant.quantize_model else w
        with pytest.raises(kind, match=says.replace("(", r"\(").replace(".", r"\.")):
            call(arg, **{"method": "hw-kmeans", **kwargs})
    with pytest.raises(TypeError, match="ks: expected an integer"):
        netquant.sweep({"w": w}, method="hw-kmeans", ks=[2, 4.5])
    with pytest.raises(ValueError, match="batch_weights: -18446744073709551616 is outside"):
        netquant.prune({"w": w}, fraction=0.5, batch_weights=-(2**64))
    # Whole numbers in other clothes run as themselves: a NumPy integer, an integral float, the type's ends.
    base = netquant.quantize(w, method="hw-kmeans", k=4, init="kmeans++", seed=7)
    for same in (dict(k=np.int64(4), seed=np.uint64(7)), dict(k=4.0, seed=7.0)):
        r = netquant.quantize(w, method="hw-kmeans", init="kmeans++", **same)
        assert np.array_equal(r.indices, base.indices) and np.array_equal(r.codebook, base.codebook)
    netquant.quantize(w, method="hw-kmeans", k=4, init="kmeans++", seed=2**64 - 1)


class ArrayOnly:
    """A producer with only __array__ (like many array libraries)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __array__(self, dtype=None):
        return self._a if dtype is None else self._a.astype(dtype)


class DlpackOnly:
    """A producer with only the DLPack protocol (like torch/jax/cupy tensors)."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, stream=None):
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


@pytest.mark.parametrize("wrap", [ArrayOnly, DlpackOnly, list])
def test_array_protocols(rng, wrap):
    w = weights(rng, (8, 16))
    ref = netquant.quantize(w, method="hw-kmeans", k=4, backend="cpu")
    arg = w.tolist() if wrap is list else wrap(w)
    got = netquant.quantize(arg, method="hw-kmeans", k=4, backend="cpu")
    assert np.array_equal(got.dequantized, ref.dequantized)


def test_torch_like_tensor_is_detached(rng):
    # Duck-typed torch tensor: requires_grad -> detach() is called; no torch import needed.
    w = weights(rng, (12,))

    class FakeTensor(ArrayOnly):
        requires_grad = True
        detached = False

        def detach(self):
            FakeTensor.detached = True
            return ArrayOnly(self._a)

    got = netquant.quantize(FakeTensor(w), method="hw-kmeans", k=2, backend="cpu")
    assert FakeTensor.detached and got.dequantized.shape == (12,)
