"""Turning user inputs (NumPy arrays, PyTorch tensors, anything with ``__array__`` or ``__dlpack__``) into the
arrays the engine reads in place, with errors that name the tensor and the problem."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["as_array", "as_weights", "as_tensor_dict"]


def _detach_cpu(x: Any) -> Any:
    # PyTorch without importing it: a tensor that requires grad must be detached, a GPU tensor moved to the host.
    if hasattr(x, "detach") and callable(x.detach) and hasattr(x, "requires_grad"):
        x = x.detach()
    if getattr(x, "is_cuda", False) and callable(getattr(x, "cpu", None)):
        x = x.cpu()
    return x


def as_array(x: Any, name: str) -> np.ndarray:
    """A NumPy view of ``x`` without copying where the producer allows it (DLPack, then ``__array__``)."""
    if isinstance(x, np.ndarray):
        return x
    x = _detach_cpu(x)
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, BufferError, RuntimeError) as dlpack_error:
            if not hasattr(x, "__array__"):
                raise TypeError(f"tensor '{name}': cannot import it through DLPack ({dlpack_error}); "
                                f"convert it to a float32 NumPy array first") from dlpack_error
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"tensor '{name}': cannot convert {type(x).__name__} to a NumPy array ({e}); "
                        f"bfloat16 tensors need .float() first") from e
    return a


def _check_layout(a: np.ndarray, name: str) -> None:
    if a.dtype.kind == "O":
        raise TypeError(f"tensor '{name}': object arrays are not supported; pass a numeric array")
    if a.dtype.kind in "cmMSUV":
        raise TypeError(f"tensor '{name}': dtype {a.dtype} is not supported")
    if not a.flags.c_contiguous:
        raise ValueError(f"tensor '{name}': the array is not C-contiguous (strides {a.strides}); "
                         f"pass numpy.ascontiguousarray(...) (or tensor.contiguous())")
    if not a.dtype.isnative:
        raise ValueError(f"tensor '{name}': byte order {a.dtype.byteorder!r} is not native; "
                         f"use .astype(array.dtype.newbyteorder('='))")


def as_weights(x: Any, name: str) -> np.ndarray:
    """Values to quantize: float32 or float16 as they are (no copy), float64 converted to float32 (a copy)."""
    a = as_array(x, name)
    _check_layout(a, name)
    if a.dtype.kind != "f":
        raise TypeError(f"tensor '{name}': cannot quantize a {a.dtype} array; expected float32, float16 or "
                        f"float64 (cast with .astype(numpy.float32))")
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    elif a.dtype not in (np.float32, np.float16):
        raise TypeError(f"tensor '{name}': dtype {a.dtype} is not supported; expected float32, float16 or float64")
    return a


def as_tensor_dict(tensors: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    """A name -> array dict (any mapping, e.g. a PyTorch state_dict) with every array checked for layout."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{what}: expected a mapping of names to arrays, got {type(tensors).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: tensor names must be str, got {type(name).__name__}")
        a = as_array(value, name)
        _check_layout(a, name)
        out[name] = a
    return out
