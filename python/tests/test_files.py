"""Files: .nq round trips (save/load, compress/decompress) reproduce quantize_model's dequantized weights;
safetensors round trips keep dtypes, shapes, values and metadata; bad files raise NetquantError."""

from __future__ import annotations

import numpy as np
import pytest

import netquant
from conftest import importance, weights, write_raw_safetensors


def small_model(rng):
    return {"conv.weight": weights(rng, (8, 3, 3, 3)), "conv.bias": weights(rng, (8,)),
            "fc.weight": weights(rng, (10, 72)), "fc.bias": weights(rng, (10,))}


@pytest.mark.parametrize("params", [dict(method="hw-kmeans", k=16), dict(method="ecsq", k=32, lam=1e-5),
                                    dict(method="uniform", k=9, prune=0.3), dict(method="kmeans", bits=2,
                                                                                scope="row")])
def test_nq_round_trip(rng, tmp_path, params):
    model = small_model(rng)
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    expected = netquant.quantize_model(model, imp, backend="cpu", **params)
    stats = netquant.save(tmp_path / "m.nq", model, imp, backend="cpu", **params)
    assert stats["ratio_file"] > 1.0 and stats["params"] == expected.stats["params"]
    back = netquant.load(tmp_path / "m.nq")
    assert list(back) == list(model)
    for name in model:
        assert back[name].dtype == model[name].dtype and back[name].shape == model[name].shape
        assert np.array_equal(back[name], expected.dequantized[name]), name
    blob = netquant.compress(model, imp, backend="cpu", **params)
    assert blob == (tmp_path / "m.nq").read_bytes(), "compress() == the bytes save() writes"
    again = netquant.decompress(blob)
    assert all(np.array_equal(again[n], back[n]) for n in model)
    assert len(blob) < sum(a.nbytes for a in model.values())


@pytest.mark.parametrize("params", [dict(method="uniform", k=9, prune=0.3), dict(method="ecsq", k=32, lam=1e-5,
                                                                                scope="row"),
                                    dict(method="int", bits=8, scope="group:5", prune=0.1),
                                    dict(method="exact", k=300, scope="tensor")])
def test_load_codes_looks_up_the_values(rng, tmp_path, params):
    # The oracle: load(), the dequantized values; each Codes looked up by hand (not by its own dequantize) must give
    # them bit for bit, the pruned weights (exactly 0) on the pruned column only.
    model = small_model(rng)
    model["fc.weight"] = model["fc.weight"].astype(np.float16)
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    netquant.save(tmp_path / "m.nq", model, imp, backend="cpu", skip_1d=True, **params)
    values = netquant.load(tmp_path / "m.nq")
    codes = netquant.load_codes(tmp_path / "m.nq")
    assert list(codes) == list(model)
    in_memory = netquant.load_codes(netquant.compress(model, imp, backend="cpu", skip_1d=True, **params))
    for name, c in codes.items():  # the file's bytes give the same as its path
        m = in_memory[name]
        assert type(m) is type(c), name
        assert all(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
                   for a, b in (zip(c[:2], m[:2]) if isinstance(c, netquant.Codes) else [(c, m)])), name
        assert not isinstance(c, netquant.Codes) or c[2:] == m[2:], name
    if params.get("k") == 300:  # fc.weight's 720 weights in 300 levels: two-byte codes
        assert codes["fc.weight"].codes.dtype == np.int16 and codes["fc.weight"].codebook.shape == (1, 300)
    for name, v in values.items():
        c = codes[name]
        if name.endswith(".bias"):
            assert isinstance(c, np.ndarray) and np.array_equal(c.view(np.uint8), v.view(np.uint8)), name
            continue
        assert isinstance(c, netquant.Codes) and c.codes.shape == v.shape and c.codebook.dtype == v.dtype, name
        assert c.codes.dtype == (np.uint8 if c.codebook.shape[1] <= 256 else np.int16), name
        flat = c.codes.ravel().astype(np.int64)
        looked_up = np.array([c.codebook[i // c.problem_size, flat[i]] for i in range(flat.size)], dtype=v.dtype)
        assert np.array_equal(looked_up.view(np.uint8), v.ravel().view(np.uint8)), name
        assert np.array_equal(c.dequantize().view(np.uint8), v.view(np.uint8)), name
        if c.pruned_code is None:
            assert params.get("prune", 0) == 0, name
        else:
            assert c.pruned_code == c.codebook.shape[1] - 1 and not c.codebook[:, -1].any(), name
            assert (flat == c.pruned_code).sum() > 0 and np.all(v.ravel()[flat == c.pruned_code] == 0), name
        expected_size = {"global": v.size, "tensor": v.size, "row": v.size // v.shape[0]}
        scope = params.get("scope", "global")
        group = min(int(scope[6:]), v.size) if scope.startswith("group:") else None
        assert c.problem_size == (group if group else expected_size[scope]), name


def test_coder_picks_the_index_streams(rng, tmp_path):
    # Well under a bit of entropy per weight, where Huffman pays its one-bit floor: the oracle is the file's own
    # header (version 1 = Huffman only, 2 = rANS streams), decoding to the same weights, and the sizes.
    model = {"a": weights(rng, (64, 300)), "b": weights(rng, (40, 200))}
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    args = dict(method="ecsq", k=16, scope="row", target_bits=0.4, backend="cpu")
    blobs = {c: netquant.compress(model, imp, **args, coder=c) for c in ("huffman", "rans", "auto")}
    assert blobs["huffman"][8] == 1 and blobs["rans"][8] == 2 and blobs["auto"][8] == 2
    assert len(blobs["auto"]) <= len(blobs["rans"]) < 0.8 * len(blobs["huffman"])
    back = {c: netquant.decompress(b) for c, b in blobs.items()}
    for name in model:
        assert np.array_equal(back["rans"][name], back["huffman"][name])
        assert np.array_equal(back["auto"][name], back["huffman"][name])
    # save() writes what compress() returns, and its ratio_file counts that file.
    stats = netquant.save(tmp_path / "r.nq", model, imp, **args, coder="rans")
    assert (tmp_path / "r.nq").read_bytes() == blobs["rans"]
    n = sum(a.size for a in model.values())
    assert stats["ratio_file"] == pytest.approx(4 * n / len(blobs["rans"]), rel=1e-12)
    with pytest.raises(netquant.NetquantValueError, match="unknown index coder"):
        netquant.compress(model, imp, **args, coder="zstd")


def test_nq_float16_model(rng, tmp_path):
    model = {"w": weights(rng, (64, 8)).astype(np.float16)}
    netquant.save(tmp_path / "h.nq", model, method="hw-kmeans", k=4, backend="cpu")
    back = netquant.load(tmp_path / "h.nq")
    assert back["w"].dtype == np.float16 and back["w"].shape == (64, 8)
    assert len(np.unique(back["w"])) <= 4


def test_bad_nq_files(tmp_path):
    with pytest.raises(netquant.NetquantIOError) as e:
        netquant.load(tmp_path / "missing.nq")
    assert e.value.code == "io" and isinstance(e.value, OSError)
    bad = tmp_path / "bad.nq"
    bad.write_bytes(b"NQ" + bytes(range(40)))
    with pytest.raises(netquant.NetquantValueError) as e:
        netquant.load(bad)
    assert e.value.code == "bad_file"
    with pytest.raises(netquant.NetquantValueError):
        netquant.decompress(b"")


def test_safetensors_round_trip(rng, tmp_path):
    tensors = {"f32": weights(rng, (3, 4)), "f16": weights(rng, (5,)).astype(np.float16),
               "f64": rng.standard_normal((2, 2, 2)), "i64": np.arange(7, dtype=np.int64),
               "i8": np.array([-3, 4], dtype=np.int8), "u8": np.array([250], dtype=np.uint8),
               "flag": np.array([True, False]), "scalar": np.array(1.5, dtype=np.float32),
               "empty": np.zeros((0, 3), dtype=np.float32)}
    path = tmp_path / "t.safetensors"
    netquant.save_safetensors(path, tensors, metadata={"format": "pt", "note": "netquant"})
    back = netquant.load_safetensors(path)
    assert list(back) == sorted(tensors) or set(back) == set(tensors)
    for n, a in tensors.items():
        assert back[n].dtype == a.dtype and back[n].shape == a.shape, n
        assert np.array_equal(back[n], a), n
        assert back[n].flags.writeable
    assert netquant.safetensors_metadata(path) == {"format": "pt", "note": "netquant"}
    mapped = netquant.load_safetensors(path, mmap=True)
    assert np.array_equal(mapped["f32"], tensors["f32"]) and not mapped["f32"].flags.writeable
    with pytest.raises(ValueError):
        mapped["f32"][0, 0] = 1.0


def test_bad_safetensors(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(netquant.NetquantValueError) as e:
        netquant.load_safetensors(p)
    assert e.value.code == "bad_file"


def test_sharded_checkpoint(rng, tmp_path):
    # A Hugging Face style checkpoint written with plain json and save_safetensors: the oracle is the tensors
    # themselves, read back in shard-name order; the directory reads the same; a stale index is a bad file.
    import json
    tensors = {f"layers.{i}.weight": weights(rng, (7 + i, 13)) for i in range(5)}
    tensors["embed.weight"] = weights(rng, (31, 13)).astype(np.float16)
    shard_of = {name: 1 + i % 2 for i, name in enumerate(tensors)}
    for s in (1, 2):
        part = {n: a for n, a in tensors.items() if shard_of[n] == s}
        netquant.save_safetensors(tmp_path / f"model-0000{s}-of-00002.safetensors", part, metadata={"format": "pt"})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
                                 "weight_map": {n: f"model-0000{s}-of-00002.safetensors"
                                                for n, s in shard_of.items()}}))
    for path in (index, tmp_path):
        back = netquant.load_safetensors(path)
        assert list(back) == [n for s in (1, 2) for n in tensors if shard_of[n] == s]
        for n, a in tensors.items():
            assert back[n].dtype == a.dtype and np.array_equal(back[n], a), n
        assert netquant.safetensors_metadata(path) == {"format": "pt"}
    index.write_text(json.dumps({"weight_map": {n: "model-00001-of-00002.safetensors" for n in tensors}}))
    with pytest.raises(netquant.NetquantValueError) as e:
        netquant.load_safetensors(index)
    # Shard 1 lacks the tensors now mapped to it (they are in shard 2, which the index no longer names).
    assert e.value.code == "bad_file" and "does not hold it" in str(e.value)
    assert "model-00001-of-00002.safetensors" in str(e.value)


def test_bytes_like_file_data(rng):
    # decompress() and load_codes() take the file's bytes as bytearray or memoryview too (not as a path).
    model = {"w": weights(rng, (12, 10))}
    blob = netquant.compress(model, method="hw-kmeans", k=4, backend="cpu")
    want = netquant.decompress(blob)["w"]
    codes = netquant.load_codes(blob)["w"]
    for data in (bytearray(blob), memoryview(blob)):
        assert netquant.decompress(data)["w"].tobytes() == want.tobytes()
        got = netquant.load_codes(data)["w"]
        assert got.codes.tobytes() == codes.codes.tobytes() and got.codebook.tobytes() == codes.codebook.tobytes()


def test_bfloat16_reads_as_float32(tmp_path):
    # NumPy has no bfloat16: a BF16 tensor comes back as float32 holding exactly its values (the upper 16 bits).
    values = np.array([1.0, -2.5, 3.140625, 0.0, 1e-3], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")
    want = (bits.astype(np.uint32) << 16).view(np.float32)
    path = tmp_path / "bf16.safetensors"
    write_raw_safetensors(path, {"x": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}, bits.tobytes())
    for mmap in (False, True):
        back = netquant.load_safetensors(path, mmap=mmap)["x"]
        assert back.dtype == np.float32 and back.tobytes() == want.tobytes(), mmap


def test_unsupported_dtype_is_a_runtime_error(tmp_path):
    # A valid safetensors file in a dtype netquant cannot hold: code unsupported, a RuntimeError (not a bad file).
    path = tmp_path / "u16.safetensors"
    write_raw_safetensors(path, {"x": {"dtype": "U16", "shape": [2], "data_offsets": [0, 4]}}, bytes(4))
    with pytest.raises(netquant.NetquantRuntimeError) as e:
        netquant.load_safetensors(path)
    assert e.value.code == "unsupported" and isinstance(e.value, RuntimeError)
    assert not isinstance(e.value, ValueError)


def test_model_outputs_are_writable_and_never_the_input(rng, tmp_path):
    # Every returned array may be written to, and writing it never writes the caller's arrays.
    model = {"w": weights(rng, (8, 16)), "b": weights(rng, (16,))}
    before = {n: a.copy() for n, a in model.items()}
    netquant.save(tmp_path / "m.nq", model, k=4, skip_1d=True, backend="cpu")
    outputs = [netquant.quantize_model(model, k=4, skip_1d=True, backend="cpu").dequantized,
               netquant.prune(model, fraction=0.5, skip_1d=True, backend="cpu"),
               netquant.decompress(netquant.compress(model, k=4, skip_1d=True, backend="cpu")),
               netquant.load(tmp_path / "m.nq")]
    for out in outputs:
        for name, a in out.items():
            assert a.flags.writeable, name
            a[...] = 7  # "b" is kept whole in each: a copy of the input's values, not the input's buffer
    assert all(model[n].tobytes() == before[n].tobytes() for n in model)
