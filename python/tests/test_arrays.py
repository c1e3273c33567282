"""Inputs: NumPy dtype/shape/stride errors name the problem; __array__ / __dlpack__ producers are accepted;
engine errors surface as netquant.NetquantError subclasses with the engine's code and message."""

from __future__ import annotations

import os
import subprocess
import sys

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


# Inputs are read in place: tensor_view wraps the array's own buffer, and _convert passes float32/float16 arrays
# through as they are. Measured as the growth of the process's peak resident memory (VmHWM, reset through
# /proc/self/clear_refs) across one call, in a fresh interpreter. A copy of the input shows as the input's size.
_PEAK_PROBE = r"""
import sys
import os
import subprocess
import sys

import numpy as np
import netquant

def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

def grown_mb(call):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from what is resident now
    before = peak_mb()
    call()
    return peak_mb() - before

n, out = int(sys.argv[1]), sys.argv[2]
for dtype in ("float32", "float64"):
    a = np.random.default_rng(1).laplace(0.0, 0.05, n).astype(dtype)  # written whole: every page resident
    save = grown_mb(lambda: netquant.save_safetensors(out, {"w": a}))
    save_copy = grown_mb(lambda: netquant.save_safetensors(out, {"w": a.copy()}))
    quantize = grown_mb(lambda: netquant.quantize(a, method="uniform", k=4, backend="cpu"))
    print(dtype, save, save_copy, quantize)
    del a
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_inputs_are_read_without_a_copy(tmp_path):
    n = 1 << 23
    mb = 4 * n / 2**20  # a float32 copy of the input
    run = subprocess.run([sys.executable, "-c", _PEAK_PROBE, str(n), str(tmp_path / "w.safetensors")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    rows = {fields[0]: [float(x) for x in fields[1:]] for fields in (line.split() for line in run.stdout.splitlines())}
    for dtype, itemsize in (("float32", 4), ("float64", 8)):
        save, save_copy, _ = rows[dtype]
        # The probe sees a copy: the same save given a copy grows by the copy's size.
        assert save_copy > 0.9 * mb * itemsize / 4, (dtype, rows)
        assert save < 0.25 * mb, (dtype, rows)
    # A float64 input is converted to float32 (one copy the size of a float32 input), and the engine's own work is
    # the same for both: a float32 input that were copied too would leave no difference.
    assert rows["float64"][2] - rows["float32"][2] > 0.75 * mb, rows
