"""netquant: compress neural-network weights by importance-weighted scalar quantization + Huffman coding.

A Python face on the same C++ engine as the ``netquant`` command line: the same inputs, parameters and seed
give bitwise the same results. Arrays go in without copies (float32/float16 C-contiguous NumPy arrays, or
anything with ``__dlpack__``/``__array__`` such as CPU PyTorch tensors) and come out as NumPy arrays that own
the engine's buffers. The GIL is released while the engine quantizes, codes, reads or writes.

Main entry points:

- :func:`quantize` one array -> :class:`Result` (codebook, indices, dequantized values, statistics)
- :func:`quantize_model` a dict of arrays (a state_dict) -> :class:`ModelResult`
- :func:`prune` the weights ``quantize_model(prune=...)`` would prune set to 0 (to retrain a pruned net)
- :func:`sweep` a rate-distortion sweep -> rows like ``netquant sweep``'s CSV
- :func:`compress` / :func:`decompress`, :func:`save` / :func:`load` the ``.nq`` file
- :func:`load_codes` a ``.nq`` file as codes and codebook tables (:class:`Codes`), for lookup-table kernels
- :func:`load_safetensors` / :func:`save_safetensors`

Errors from the engine are :class:`NetquantError` (see :mod:`netquant._errors` for the classes by code).
"""

from __future__ import annotations

import operator
import os
from typing import Any, Mapping, NamedTuple, Sequence, Union

import numpy as np

from . import _core
from ._convert import as_array, as_tensor_dict, as_weights
from ._errors import NetquantError, NetquantIOError, NetquantRuntimeError, NetquantValueError

__version__: str = _core.version()

__all__ = [
    "NetquantError", "NetquantValueError", "NetquantIOError", "NetquantRuntimeError",
    "Result", "ModelResult", "TensorResult",
    "quantize", "quantize_model", "prune", "sweep", "compress", "decompress", "save", "load", "Codes", "load_codes",
    "load_safetensors", "save_safetensors", "safetensors_metadata",
    "methods", "cuda_available", "set_num_threads", "num_threads", "set_progress", "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = Any  # numpy.ndarray, or anything with __dlpack__ / __array__ (e.g. a CPU torch.Tensor)

# Extra engine knobs accepted as keyword arguments by every quantizing function (defaults: the engine's).
_EXTRA_OPTIONS = ("step", "tol", "int_symmetric", "int_bits", "pow2_levels", "exact_histogram_bins",
                  "importance_transform", "skip_1d", "include", "exclude", "batch_weights", "rate_allocation",
                  "target_size", "target_file_ratio", "coder")
# The tensor name filters: patterns (str; None or "" = no filter), of model calls only.
_NAME_FILTERS = ("include", "exclude")

# The engine's integer types, for the whole-number parameters (the rules of the values are the engine's own).
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_WHOLE_OPTIONS = {"int_bits": _INT32, "pow2_levels": _INT32, "exact_histogram_bins": _INT64,
                  "batch_weights": _INT64, "target_size": (0, 2**63 - 1)}  # target_size: as the CLI's --target-size


def _whole(name: str, value: Any, bounds: tuple[int, int]) -> int:
    """An integer parameter as the engine's type holds it. ints and NumPy integers pass, a float only when it is a
    whole number; a bool, a fraction or a value the type cannot hold is refused naming the parameter (else
    pybind11 says only "incompatible function arguments", or a fraction would be cut silently)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got a bool")
    try:
        whole = operator.index(value)
    except TypeError:
        if not (isinstance(value, (float, np.floating)) and float(value).is_integer()):
            raise TypeError(f"{name}: expected an integer, got {value!r}") from None
        whole = int(value)
    lo, hi = bounds
    if not lo <= whole <= hi:
        raise ValueError(f"{name}: {whole} is outside {lo}..{hi}")
    return whole


def _real(name: str, value: Any) -> float:
    """A real-number parameter: anything float() takes as a number (ints, floats, NumPy scalars and 0-d arrays,
    Fraction, Decimal, a one-element torch tensor); text, bools and None are refused naming the parameter
    (float("0.1") would otherwise accept the text, and a bool would pass as 0 or 1)."""
    if isinstance(value, (str, bytes, bytearray, bool, np.bool_)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r} ({e})") from None


def _flag(name: str, value: Any) -> bool:
    """A yes/no parameter: only True/False (a NumPy bool too); "no" would otherwise be truthy."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _text(name: str, value: Any) -> str:
    """A name parameter (method, scope, backend, ...): a str, else refused naming it."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {type(value).__name__} {value!r}")
    return value


def _path(value: Any) -> bytes:
    """A file path for the engine, as the bytes the OS takes (so any name the file system allows, bytes paths
    included). The engine reads it as a C string: one with a NUL byte would name another file, so it is refused
    as Python's own open() refuses it."""
    path = os.fsencode(os.fspath(value))
    if b"\0" in path:
        raise ValueError(f"path: embedded null byte in {os.fsdecode(path)!r}")
    return path


_REAL_OPTIONS = ("step", "tol", "target_file_ratio")
_FLAG_OPTIONS = ("int_symmetric", "skip_1d")
_TEXT_OPTIONS = ("importance_transform", "rate_allocation", "coder")


def _params(method: str, k: int | None, bits: int | None, lam: float, target_bits: float | None,
            target_ratio: float | None, scope: str, prune: float, init: str, max_iter: int, backend: str,
            seed: int, options: Mapping[str, Any]) -> _core.Params:
    p = _core.Params()
    p.method = _text("method", method)
    if bits is not None and k is not None:
        raise ValueError("give either k or bits, not both")
    # As the CLI's --k/--bits: k = 2**bits; method int takes its grid bits from bits (or k), pow2 its exponents
    # per sign from k.
    if bits is not None:
        bits = _whole("bits", bits, _INT32)
        if not 1 <= bits <= 24:
            raise ValueError(f"bits must be in 1..24, got {bits}")
        p.k = 1 << bits
        if method == "int":
            p.int_bits = bits
    elif k is not None:
        k = _whole("k", k, _INT32)
        p.k = k
        if method == "int":
            p.int_bits = k
        elif method == "pow2":
            p.pow2_levels = k
    p.lam = _real("lam", lam)
    p.target_bits = _real("target_bits", target_bits) if target_bits is not None else 0.0
    p.target_ratio = _real("target_ratio", target_ratio) if target_ratio is not None else 0.0
    p.scope = _text("scope", scope)
    p.prune = _real("prune", prune)
    p.init = _text("init", init)
    p.max_iter = _whole("max_iter", max_iter, _INT32)
    p.backend = _text("backend", backend)
    p.seed = _whole("seed", seed, _UINT64)
    for key, value in options.items():
        if key not in _EXTRA_OPTIONS:
            raise TypeError(f"unexpected keyword argument '{key}' (engine options: {', '.join(_EXTRA_OPTIONS)})")
        if key in _NAME_FILTERS:
            value = "" if value is None else _pattern(key, value)
        elif key in _WHOLE_OPTIONS:
            value = _whole(key, value, _WHOLE_OPTIONS[key])
        elif key in _REAL_OPTIONS:
            value = _real(key, value)
        elif key in _FLAG_OPTIONS:
            value = _flag(key, value)
        elif key in _TEXT_OPTIONS:
            value = _text(key, value)
        setattr(p, key, value)
    # One rate goal at a time, as the CLI's "give one of --lambda, --target-bits, ...": a second one would be
    # ignored without a word. (The two spellings of a file budget, together, are the engine's own error.)
    # 0 means "none" for each, as on the command line.
    budget = [key for key in ("target_size", "target_file_ratio") if options.get(key, 0) != 0]
    goals = [name for name, given in (("lam", p.lam != 0), ("target_bits", p.target_bits != 0),
                                      ("target_ratio", p.target_ratio != 0)) if given] + budget[:1]
    if len(goals) > 1:
        raise ValueError(f"give one of lam, target_bits, target_ratio, target_size, target_file_ratio; got "
                         f"{' and '.join(goals)}")
    if p.lam != 0 and p.method != "ecsq":
        raise ValueError(f"lam applies to method ecsq only (method {p.method})")
    if p.step != 0 and p.method != "uniform":
        raise ValueError(f"step applies to method uniform only (method {p.method})")
    if p.step != 0 and goals:
        raise ValueError(f"give step or a target rate, not both (a target searches the step; got {goals[0]})")
    p.validate()
    return p


def _pattern(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a regular expression (str) or None, got {type(value).__name__}")
    return value


def _check_transform(importance: Any, transform: Any) -> None:
    """importance_transform acts on an importance: without one it would be ignored without a word (as the CLI)."""
    if importance is None and transform not in (None, "none"):
        raise ValueError(f"importance_transform={transform!r} transforms an importance; pass one too")


def _importance_dict(importance: Mapping[str, ArrayLike] | None, model: Mapping[str, np.ndarray],
                     transform: Any) -> dict[str, np.ndarray] | None:
    """A model call's importance, checked: float where the model has a float tensor of its name, and present
    when an importance_transform asks for one."""
    _check_transform(importance, transform)
    if importance is None:
        return None
    arrays = as_tensor_dict(importance, "importance")
    float_names = {name for name, a in model.items() if a.dtype.kind == "f"}
    for name, a in arrays.items():  # a TypeError naming the tensor, as quantize() gives for one array
        # Only where the model has a float tensor of that name: the importance of an integer buffer (a state_dict's
        # num_batches_tracked) is never read.
        if name in float_names and a.dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f"importance: tensor '{name}': dtype {a.dtype} is not supported; expected float32, "
                            "float16 or float64")
    return arrays


class Result:
    """The quantization of one array.

    Attributes:
        dequantized: the quantized values, same shape as the input (float32; float16 for float16 input).
        indices: int32 array of the input's shape: each value's level in its codebook; -1 where pruned (value 0).
            ``None`` when the engine left the tensor in float (``skip_1d`` on a 1-D array).
        codebooks: one sorted float32 array of levels per codebook (1 for scope global/tensor; one per row or group).
        problem_size: values sharing one codebook (value ``i`` of the flattened array uses
            ``codebooks[i // problem_size]``).
        stats: the report's statistics: params, pruned, clusters, hw_distortion, mse, entropy_bits_per_weight,
            fixed_bits_per_weight, ratio_fixed, ratio_entropy, huffman_bits_per_weight, ratio_huffman,
            ratio_file, lambda, iterations, converged, seconds.
        method, scope, backend: what ran (backend resolved from "auto").
    """

    __slots__ = ("dequantized", "indices", "codebooks", "problem_size", "stats", "method", "scope", "backend")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.dequantized: np.ndarray = raw["dequantized"]
        self.indices: np.ndarray | None = raw["indices"]
        self.codebooks: list[np.ndarray] = list(raw["codebooks"])
        self.problem_size: int = int(raw["problem_size"])
        self.stats: dict[str, Any] = dict(raw["stats"])
        self.method: str = raw["method"]
        self.scope: str = raw["scope"]
        self.backend: str = raw["backend"]

    @property
    def codebook(self) -> np.ndarray:
        """The single codebook (scope global or tensor). Scopes row/group have several: use ``codebooks``."""
        if len(self.codebooks) != 1:
            raise ValueError(f"scope '{self.scope}' produced {len(self.codebooks)} codebooks; use .codebooks")
        return self.codebooks[0]

    def __repr__(self) -> str:
        s = self.stats
        return (f"<netquant.Result {self.method} scope={self.scope} shape={tuple(self.dequantized.shape)} "
                f"clusters={s['clusters']} entropy={s['entropy_bits_per_weight']:.4g} bits/w "
                f"ratio_huffman={s['ratio_huffman']:.4g}>")


class TensorResult:
    """One tensor of a :class:`ModelResult`: indices (or None if kept in float), its codebooks' position in
    ``ModelResult.codebooks`` (``first_codebook``, ``num_problems``), ``problem_size`` and ``stats``."""

    __slots__ = ("quantized", "indices", "first_codebook", "num_problems", "problem_size", "stats")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.quantized: bool = bool(raw["quantized"])
        self.indices: np.ndarray | None = raw["indices"]
        self.first_codebook: int = int(raw["first_codebook"])
        self.num_problems: int = int(raw["num_problems"])
        self.problem_size: int = int(raw["problem_size"])
        self.stats: dict[str, Any] = dict(raw["stats"])

    def __repr__(self) -> str:
        return f"<netquant.TensorResult quantized={self.quantized} stats={self.stats}>"


class ModelResult:
    """The quantization of a whole model: ``dequantized`` (name -> array, same names, shapes and dtypes as the
    input), ``tensors`` (name -> :class:`TensorResult`), ``codebooks`` (global scope: exactly one, shared),
    ``stats`` (totals over the model), ``method``, ``scope``, ``backend``."""

    __slots__ = ("dequantized", "tensors", "codebooks", "stats", "method", "scope", "backend")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.dequantized: dict[str, np.ndarray] = dict(raw["dequantized"])
        self.tensors: dict[str, TensorResult] = {n: TensorResult(t) for n, t in raw["tensors"].items()}
        self.codebooks: list[np.ndarray] = list(raw["codebooks"])
        self.stats: dict[str, Any] = dict(raw["stats"])
        self.method: str = raw["method"]
        self.scope: str = raw["scope"]
        self.backend: str = raw["backend"]

    def __repr__(self) -> str:
        return f"<netquant.ModelResult {self.method} scope={self.scope} tensors={len(self.tensors)} stats={self.stats}>"


def quantize(w: ArrayLike, importance: ArrayLike | None = None, method: str = "ecsq", k: int | None = None,
             bits: int | None = None, lam: float = 0.0, target_bits: float | None = None,
             target_ratio: float | None = None, scope: str = "global", prune: float = 0.0, init: str = "linear",
             max_iter: int = 100, backend: str = "auto", seed: int = 1234, **options: Any) -> Result:
    """Quantizes one array (any shape) with an optional per-value importance of the same shape.

    Args:
        w: float32 or float16 C-contiguous array (read in place), float64 (converted to a float32 copy), or an
            object with ``__dlpack__``/``__array__`` (a CPU torch tensor; ``requires_grad`` ones are detached).
        importance: h >= 0 per value (Hessian diagonal, Fisher, Adam's v with ``importance_transform="sqrt"``);
            None = all ones. Its shape must equal ``w``'s (:class:`NetquantValueError`, code shape_mismatch).
        method: "ecsq", "hw-kmeans", "kmeans", "exact", "uniform", "binary", "ternary", "pow2", "int",
            "wentropy" (see :func:`methods`).
        k: levels (ecsq: initial centers k_max; int: grid bits; pow2: exponents per sign), as the CLI's --k.
            Default: the engine's (16).
        bits: instead of k: k = 2**bits (method "int": the grid's bits).
        lam: ECSQ's Lagrange multiplier on the entropy in J = D + lam*H.
        target_bits, target_ratio: ecsq/uniform search lam (or the step) to hit this entropy (bits/weight) or
            entropy-coded compression ratio.
        scope: "global" | "tensor" (one codebook), "row" (one per row of a 2-D+ array), "group:G" (G values each).
        prune: fraction of values with the smallest h*w^2 set to exactly 0 first.
        init: "linear" | "kmeans++" | "quantile" (ecsq starts from the HW k-means answer from these centres).
        max_iter: Lloyd/ECSQ iterations.
        backend: "auto" | "cpu" | "cuda".
        seed: for any randomness (kmeans++): same inputs and seed give bitwise-identical results.
        **options: engine knobs: step, tol, int_symmetric, int_bits, pow2_levels, exact_histogram_bins,
            importance_transform ("none" | "sqrt" | "normalize"), skip_1d, batch_weights (row, group and tensor
            scopes: convert and quantize about this many weights at a time, whole tensors, to bound memory;
            0 = automatic; the result does not depend on it), rate_allocation (with a target and many
            codebooks: "per-problem", each reaching the target, or "shared-lambda", ecsq with one lam for all of
            them searched so that the whole reaches the target), target_size (bytes) or target_file_ratio
            (float32 bytes / file bytes): a budget on the .nq file, met by ecsq with one lam for every codebook
            (the largest file within it; ValueError when one level per codebook is already larger), coder (the .nq
            file's index streams: "auto", per tensor Huffman or rANS, whichever is smaller; "huffman", a version-1
            file every netquant reads; "rans"). (The name filters ``include`` and
            ``exclude`` select tensors of a model: :func:`quantize_model`, not one array.)

    Returns:
        :class:`Result`. Runs through the same path as ``netquant quantize`` (a one-tensor model), so its
        ``dequantized`` is bitwise what the CLI writes for the same input, parameters and seed.
    """
    for key in _NAME_FILTERS:
        if key in options:
            raise TypeError(f"quantize() takes no '{key}': it selects tensors of a model by name (quantize_model)")
    values = as_weights(w, "w")
    imp = None if importance is None else as_weights(importance, "importance")
    _check_transform(importance, options.get("importance_transform"))
    p = _params(method, k, bits, lam, target_bits, target_ratio, scope, prune, init, max_iter, backend, seed,
                options)
    return Result(_core.quantize_array(values, imp, p, "w", True))


def quantize_model(tensors: Mapping[str, ArrayLike], importance: Mapping[str, ArrayLike] | None = None,
                   method: str = "ecsq", k: int | None = None, bits: int | None = None, lam: float = 0.0,
                   target_bits: float | None = None, target_ratio: float | None = None, scope: str = "global",
                   prune: float = 0.0, init: str = "linear", max_iter: int = 100, backend: str = "auto",
                   seed: int = 1234, **options: Any) -> ModelResult:
    """Quantizes every tensor of a model (a dict name -> array, e.g. a PyTorch ``state_dict``) together.

    Parameters as in :func:`quantize`; ``importance`` is a dict with the same names and shapes. Tensors of any
    float dtype are read in place (float64 included) and come back dequantized in their own dtype.

    ``include`` / ``exclude`` (keywords, str): quantize only the tensors whose name matches ``include`` and does
    not match ``exclude`` — regular expressions in RE2 syntax matched anywhere in the name (``re.search``-like;
    ``^...$`` for a whole name), e.g. ``exclude="embed|lm_head|norm"`` keeps an LLM's embeddings, LM head and
    norms in float. The others come back unchanged (``TensorResult.quantized`` False) and need no importance
    entry. An invalid pattern, or patterns that leave no tensor to quantize, raise :class:`NetquantValueError`.
    The same keywords work in :func:`save`, :func:`compress`, :func:`sweep` and :func:`prune`.
    """
    model = as_tensor_dict(tensors, "tensors")
    p = _params(method, k, bits, lam, target_bits, target_ratio, scope, prune, init, max_iter, backend, seed,
                options)
    imp = _importance_dict(importance, model, options.get("importance_transform"))
    return ModelResult(_core.quantize_tensors(model, imp, p, True))


def prune(tensors: Mapping[str, ArrayLike], importance: Mapping[str, ArrayLike] | None = None, *,
          fraction: float, skip_1d: bool = False, importance_transform: str = "none",
          backend: str = "auto", include: str | None = None, exclude: str | None = None,
          batch_weights: int = 0) -> dict[str, np.ndarray]:
    """Returns the model with exactly the weights :func:`quantize_model` with ``prune=fraction`` would prune set
    to 0: the fraction of the weights with the smallest h·w² (w² without importance; where it is 0, the smallest
    |w| first). Every other value and
    each array's dtype are kept. Retrain that with its zeros held at 0 (e.g. by masking their gradients), then
    quantize with the same ``prune``: the same weights are pruned again, their h·w² being 0. ``skip_1d``,
    ``include`` and ``exclude`` select the tensors as in :func:`quantize_model`; the others are left whole.
    ``batch_weights``: the selection is converted at once when it has at most this many weights, else tensor by
    tensor after a streamed selection (0 = automatic from the available memory); the result is the same."""
    model = as_tensor_dict(tensors, "tensors")
    p = _core.Params()
    p.prune = _real("fraction", fraction)
    p.skip_1d = _flag("skip_1d", skip_1d)
    p.include = "" if include is None else _pattern("include", include)
    p.exclude = "" if exclude is None else _pattern("exclude", exclude)
    p.importance_transform = _text("importance_transform", importance_transform)
    p.backend = _text("backend", backend)
    p.batch_weights = _whole("batch_weights", batch_weights, _INT64)
    return dict(_core.prune_tensors(model, _importance_dict(importance, model, importance_transform), p))


def save(path: PathLike, tensors: Mapping[str, ArrayLike], importance: Mapping[str, ArrayLike] | None = None,
         **params: Any) -> dict[str, Any]:
    """Quantizes ``tensors`` (parameters as in :func:`quantize_model`) and writes the ``.nq`` file at ``path``
    (atomically: a temporary file renamed at the end). Returns the model's statistics, coding included."""
    name = os.fsdecode(os.fspath(path))
    if not name.lower().endswith(".nq"):
        raise ValueError(f"save writes a .nq file; name it so, got {name!r}")
    model = as_tensor_dict(tensors, "tensors")
    p = _quant_params(params)
    imp = _importance_dict(importance, model, params.get("importance_transform"))
    return dict(_core.write_nq(_path(path), model, imp, p))


def compress(tensors: Mapping[str, ArrayLike], importance: Mapping[str, ArrayLike] | None = None,
             **params: Any) -> bytes:
    """Like :func:`save`, but returns the ``.nq`` file's bytes (the exact bytes :func:`save` writes; no file)."""
    model = as_tensor_dict(tensors, "tensors")
    imp = _importance_dict(importance, model, params.get("importance_transform"))
    data, _stats = _core.compress_nq(model, imp, _quant_params(params))
    return data


def load(path: PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.nq`` file and returns the dequantized tensors (name -> array, their original shapes and
    dtypes; bfloat16 comes back as float32, which NumPy lacks)."""
    return dict(_core.read_nq(_path(path)))


class Codes(NamedTuple):
    """A quantized tensor as lookup-table kernels read it: weight ``i`` (in C order) is
    ``codebook[i // problem_size, codes.flat[i]]``, bit for bit the value :func:`load` gives.

    ``codes`` has the tensor's shape (uint8 when the columns fit 0…255, else int16, else int32); ``codebook`` is
    ``[problems, columns]`` in the tensor's dtype (bfloat16 as float32): each row one codebook's levels (ascending
    when the tensor has several codebooks, as stored otherwise), padded with +0 to the longest, then, when a weight
    is pruned, one +0 column, ``pruned_code``, that the pruned weights use (``None`` when none is).
    ``problem_size`` is the weights per codebook: the tensor's size (global and tensor scopes), its row length, or
    the group size (the tensor's size when that is smaller).
    """

    codes: np.ndarray
    codebook: np.ndarray
    problem_size: int
    pruned_code: int | None

    def dequantize(self) -> np.ndarray:
        """The tensor's values, looked up: ``codebook[i // problem_size, codes.flat[i]]``."""
        flat = self.codes.reshape(-1).astype(np.intp)
        if flat.size == 0:
            return np.zeros(self.codes.shape, dtype=self.codebook.dtype)
        rows = np.arange(flat.size, dtype=np.intp) // self.problem_size
        return self.codebook[rows, flat].reshape(self.codes.shape)


def load_codes(source: PathLike | bytes | bytearray | memoryview) -> dict[str, Codes | np.ndarray]:
    """Reads a ``.nq`` file (a path, or the file's bytes as :func:`compress` returns them) in the codes layout
    (``netquant decompress --codes`` writes the same as safetensors): name -> :class:`Codes` for each quantized
    tensor, name -> array (as :func:`load` gives it) for each tensor kept in float, in the file's order."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        arrays, metadata = _core.read_nq_codes(bytes(source))
    else:
        arrays, metadata = _core.read_nq_codes(os.fsdecode(_path(source)))  # str: bytes here are the file's data
    out: dict[str, Codes | np.ndarray] = {}
    for name, array in arrays.items():
        if name.endswith(".codebook") and isinstance(out.get(name[:-len(".codebook")]), Codes):
            continue  # the table of the Codes just made (a tensor's codes come before its codebook)
        if name.endswith(".codes") and name[:-len(".codes")] + ".problem_size" in metadata:
            tensor = name[:-len(".codes")]
            pruned = metadata.get(tensor + ".pruned_code")
            out[tensor] = Codes(array, arrays[tensor + ".codebook"], int(metadata[tensor + ".problem_size"]),
                                None if pruned is None else int(pruned))
        else:
            out[name] = array
    return out


def decompress(data: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    """:func:`load` for the bytes of a ``.nq`` file (e.g. from :func:`compress`), parsed in memory."""
    if not isinstance(data, bytes):
        data = bytes(data)
    return dict(_core.decompress_nq(data))


def _quant_params(params: Mapping[str, Any]) -> _core.Params:
    known = dict(method="ecsq", k=None, bits=None, lam=0.0, target_bits=None, target_ratio=None, scope="global",
                 prune=0.0, init="linear", max_iter=100, backend="auto", seed=1234)
    options = {}
    for key, value in params.items():
        if key in known:
            known[key] = value
        else:
            options[key] = value
    return _params(options=options, **known)


def _int_list(name: str, value: str | int | Sequence[int]) -> list[int]:
    if isinstance(value, str):
        return list(_core.parse_int_list(value))
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return [_whole(name, value, _INT32)]
    return [_whole(name, v, _INT32) for v in value]


def sweep(tensors: Mapping[str, ArrayLike], importance: Mapping[str, ArrayLike] | None = None,
          method: str | Sequence[str] = "ecsq", lambdas: str | Sequence[float] | None = None,
          ks: str | Sequence[int] | None = None, bits: str | Sequence[int] | None = None, k: int = 32,
          scope: str = "global", prune: float = 0.0, init: str = "linear", max_iter: int = 100,
          backend: str = "auto", seed: int = 1234, csv_path: PathLike | None = None,
          **options: Any) -> list[dict[str, Any]]:
    """A rate-distortion sweep, point for point what ``netquant sweep`` computes (``nq::run_sweep``).

    Args:
        method: one method or several (a list or a comma-separated string); one curve each.
        lambdas: ECSQ's λ values: a list, or "LO:HI:N" (log-spaced); default: the engine's automatic range
            (16 points), as the CLI.
        ks: k per point for the k-methods (a list or "2,4,8" / "2:16"; pow2: exponents per sign); overrides
            ``bits``.
        bits: k = 2**b per point; default "1:8" (pow2: ``ks`` 1..8 exponents per sign instead). Method int
            takes its grid bits from ``bits``, else ``ks``, else "2:8".
        k: ECSQ's initial centers (the CLI's --k-max).
        csv_path: also write the CSV the CLI writes with ``-o`` (byte-identical).
        Other parameters and ``**options`` as in :func:`quantize`, and the name filters ``include`` /
        ``exclude`` as in :func:`quantize_model` (recorded in every row).

    Returns:
        One dict per point with the CSV's columns: index, method, scope, knob_name, knob, lambda, params, pruned,
        clusters, hw_distortion, mse, entropy_bits_per_weight, huffman_bits_per_weight, fixed_bits_per_weight,
        ratio_fixed, ratio_entropy, ratio_huffman, ratio_file, accuracy, loss, accuracy_finetuned,
        loss_finetuned, accuracy_validation, accuracy_finetuned_validation (None: not evaluated), duplicate (the
        same solution as the previous point), include, exclude (the name filters, "" when not given).
    """
    if any(options.get(key, 0) != 0 for key in ("target_size", "target_file_ratio")):
        raise ValueError("sweep takes no target_size or target_file_ratio: its points are given; quantize_model, "
                         "save and compress meet a file budget")
    model = as_tensor_dict(tensors, "tensors")
    imp = _importance_dict(importance, model, options.get("importance_transform"))
    names = [m for m in (method.split(",") if isinstance(method, str) else list(method)) if m]
    if not names:
        raise ValueError("method: empty list")
    traits = {t["name"]: t for t in _core.method_table()}
    points: list[tuple[_core.Params, str, float]] = []
    for name in names:
        base = _params(name, k, None, 0.0, None, None, scope, prune, init, max_iter, backend, seed, options)
        t = traits.get(name)
        if t is None:
            raise ValueError(f"method '{name}': use the engine's name, one of {', '.join(traits)}")
        if t["has_lambda"]:
            if lambdas is None:
                lo, hi = _core.auto_lambda_range(model, imp, base)
                values = list(_core.log_space(lo, hi, 16))
            elif isinstance(lambdas, str):
                values = list(_core.parse_lambda_list(lambdas))
            else:
                values = [_real("lambdas", v) for v in lambdas]
                if not values:
                    raise ValueError("lambdas: empty list")
            for lam in values:
                p = _params(name, k, None, lam, None, None, scope, prune, init, max_iter, backend, seed, options)
                points.append((p, "lambda", float(lam)))
        elif name == "int":
            for b in _int_list("bits" if bits is not None else "ks",
                               bits if bits is not None else ks if ks is not None else "2:8"):  # as the CLI
                p = _params(name, k, None, 0.0, None, None, scope, prune, init, max_iter, backend, seed, options)
                p.int_bits = b
                points.append((p, "bits", float(b)))
        elif t["takes_k"]:
            if ks is not None:
                k_values = _int_list("ks", ks)
            elif name == "pow2" and bits is None:
                k_values = list(range(1, 9))  # exponents per sign (at most 32), as the CLI: 2**b would leave them
            else:
                k_values = []
                for b in _int_list("bits", "1:8" if bits is None else bits):
                    if not 1 <= b <= 16:
                        raise ValueError(f"bits: {b} is outside 1..16")
                    k_values.append(1 << b)
            for kv in k_values:
                if kv < 1:
                    raise ValueError(f"k: {kv} must be >= 1")
                p = _params(name, kv, None, 0.0, None, None, scope, prune, init, max_iter, backend, seed, options)
                points.append((p, "k", float(kv)))
        else:
            points.append((base, "fixed", 0.0))
    if lambdas is not None and not any(knob == "lambda" for _, knob, _ in points):
        raise ValueError(f"lambdas: apply to ecsq, which method {method!r} does not include")  # as the CLI
    if csv_path is not None:
        _check_csv_name(csv_path)  # before the work, which a bad name would otherwise throw away
    rows, csv = _core.run_sweep(model, imp, points)
    if csv_path is not None:
        _write_csv(csv_path, csv)
    return list(rows)


def _check_csv_name(path: PathLike) -> None:
    """A CSV never lands on a name a model or a data set goes by (as the CLI's reports)."""
    if _core.named_like_model_or_data(_path(path)):
        raise ValueError(f"csv_path: writes text, and {os.fsdecode(os.fspath(path))!r} is named like a model or a "
                         "data set; name it for what it holds (.csv)")


def _write_csv(path: PathLike, text: str) -> None:
    """A regular file (or a new one) is written atomically by the engine: a failed write leaves no partial file
    and the old one whole. Through a symbolic link the target is written; a device or a pipe (/dev/stdout) is
    written directly, as it cannot be renamed over."""
    target = os.path.realpath(_path(path))
    if os.path.exists(target) and not os.path.isfile(target):
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return
    _core.write_file_atomic(target, text)


def load_safetensors(path: PathLike, mmap: bool = False) -> dict[str, np.ndarray]:
    """Reads a safetensors file: name -> array in its stored dtype (BF16 -> float32, which NumPy lacks).

    ``path`` may also be a sharded checkpoint's index (``model.safetensors.index.json``) or a model directory
    holding one (or holding one ``.safetensors`` file): the shards are read as one model, checked against the
    index, in shard-name order.

    ``mmap=True`` returns read-only arrays that view the memory-mapped file (no copy; they keep the map alive);
    the default returns writable arrays.
    """
    return dict(_core.read_safetensors(_path(path), not mmap))


def safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The ``__metadata__`` string map of a safetensors file (of a sharded checkpoint: the entries every shard
    agrees on)."""
    return dict(_core.read_safetensors_metadata(_path(path)))


def save_safetensors(path: PathLike, tensors: Mapping[str, ArrayLike], metadata: Mapping[str, str] | None = None) -> None:
    """Writes tensors in their own dtypes (float32/16/64, int8/16/32/64, uint8, bool) as a safetensors file,
    atomically. Arrays must be C-contiguous; torch tensors are accepted as in :func:`quantize`."""
    arrays = as_tensor_dict(tensors, "tensors")
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata: keys and values must be str, got {key!r}: {value!r}")
    _core.write_safetensors(_path(path), arrays, meta)


def methods() -> list[dict[str, Any]]:
    """The engine's method table: name, summary, uses_importance, has_lambda, takes_k, supports_target."""
    return list(_core.method_table())


def cuda_available() -> bool:
    """True when this build has CUDA and a device answers (backend="auto" then uses it)."""
    return bool(_core.cuda_available())


def set_num_threads(threads: int) -> None:
    """CPU threads for the engine's parallel loops (0 = all hardware threads)."""
    _core.set_num_threads(_whole("threads", threads, _INT32))


def set_progress(enabled: bool) -> None:
    """Progress of long work on stderr (on by default): a bar on a terminal; elsewhere (a notebook, a log) a line
    every 30 s of work that runs longer. ``False`` turns both off, as the CLI's ``--quiet``."""
    _core.set_progress(_flag("enabled", enabled))


def num_threads() -> int:
    """CPU threads the engine uses."""
    return int(_core.num_threads())
