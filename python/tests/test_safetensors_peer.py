"""Hugging Face's `safetensors` (the format's reference implementation) as the peer of netquant's reader and
writer (skipped without it: `pip install safetensors`).

Files written by one are read by the other, CLI outputs included; hand-made malformed headers are judged alike; and
a seeded differential fuzz mutates a valid file (bytes anywhere, or the header's fields re-encoded as valid JSON)
and requires the two readers to agree on every mutant: both refuse it, or both read the same tensors. The only
disagreements allowed are the documented ones, each checked by its reason.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import netquant
from conftest import run_cli, write_raw_safetensors

st_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed: the peer checks are skipped")
safetensors = pytest.importorskip("safetensors")

# Dtypes the format has and netquant does not read (README, "Model and data files").
NETQUANT_UNREAD = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2"}


def arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "a.weight": rng.standard_normal((37, 53)).astype(np.float32),
        "b.weight": rng.standard_normal((5, 3, 7)).astype(np.float16),
        "c.bias": rng.standard_normal(1),
        "d.scalar": np.array(1.5, dtype=np.float32),
        "e.empty": np.zeros((0, 4), dtype=np.float32),
        "f.i64": np.arange(-3, 7, dtype=np.int64),
        "g.i32": np.arange(-5, 6, dtype=np.int32).reshape(11, 1),
        "h.i16": np.arange(3, dtype=np.int16),
        "i.i8": np.arange(-5, 5, dtype=np.int8),
        "j.u8": np.arange(7, dtype=np.uint8),
        "k.bool": np.array([True, False, True]),
    }


def same_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return sorted(a) == sorted(b) and all(
        a[n].dtype == b[n].dtype and a[n].shape == b[n].shape and np.array_equal(a[n], b[n], equal_nan=True) for n in a)


def test_reference_writes_netquant_reads(rng, tmp_path):
    tensors = arrays(rng)
    st_numpy.save_file(tensors, tmp_path / "hf.safetensors", metadata={"format": "pt", "note": "x"})
    assert same_tensors(netquant.load_safetensors(tmp_path / "hf.safetensors"), tensors)
    assert netquant.safetensors_metadata(tmp_path / "hf.safetensors") == {"format": "pt", "note": "x"}


def test_netquant_writes_reference_reads(rng, tmp_path):
    tensors = arrays(rng)
    netquant.save_safetensors(tmp_path / "nq.safetensors", tensors, metadata={"m": "1"})
    assert same_tensors(st_numpy.load_file(tmp_path / "nq.safetensors"), tensors)
    with safetensors.safe_open(tmp_path / "nq.safetensors", "np") as f:
        assert f.metadata() == {"m": "1"}


def test_cli_outputs_load_in_the_reference(cli, rng, tmp_path):
    model = {"fc1.weight": (rng.standard_normal((30, 78)) * 0.05).astype(np.float32),
             "fc1.bias": rng.standard_normal(30).astype(np.float16),
             "fc2.weight": rng.standard_normal((10, 30)).astype(np.float32)}
    st_numpy.save_file(model, tmp_path / "m.safetensors")

    def run(*args: str) -> None:
        run_cli(cli, *args, "-q")

    run("quantize", str(tmp_path / "m.safetensors"), "--method", "ecsq", "--k", "16", "--target-bits", "3", "-o",
        str(tmp_path / "m.nq"))
    run("decompress", str(tmp_path / "m.nq"), "-o", str(tmp_path / "d.safetensors"))
    assert same_tensors(st_numpy.load_file(tmp_path / "d.safetensors"), netquant.load(tmp_path / "m.nq"))
    run("quantize", str(tmp_path / "m.safetensors"), "--method", "hw-kmeans", "--k", "4", "-o",
        str(tmp_path / "q.safetensors"))
    q = st_numpy.load_file(tmp_path / "q.safetensors")
    assert {n: a.dtype for n, a in q.items()} == {n: a.dtype for n, a in model.items()}
    assert len(np.unique(q["fc1.weight"])) <= 4
    run("prune", str(tmp_path / "m.safetensors"), "--prune", "0.5", "-o", str(tmp_path / "p.safetensors"))
    pruned = st_numpy.load_file(tmp_path / "p.safetensors")
    assert same_tensors(pruned, netquant.load_safetensors(tmp_path / "p.safetensors"))
    zeros = sum(int(np.sum(a == 0)) for a in pruned.values())
    assert zeros == sum(a.size for a in model.values()) // 2  # one global cut by w^2


def read_both(path) -> tuple[dict | str, dict | str]:
    """Each reader's tensors, or its error message."""
    try:
        reference = st_numpy.load_file(path)
    except Exception as e:  # the reference raises several types (SafetensorError, TypeError from numpy, ...)
        reference = str(e)
    try:
        ours = netquant.load_safetensors(path)
    except netquant.NetquantError as e:  # anything else (or a crash) fails the test
        ours = str(e)
    return reference, ours


F32 = np.arange(4, dtype=np.float32).tobytes()
HEADERS = {  # name: (header, data, pad, both accept)
    "gap between tensors": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, F32, True, False),
    "overlapping tensors": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, F32, True, False),
    "trailing data": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32, True, False),
    "NUL padding": (json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode() + b"\0\0\0",
                    F32, False, False),
    "metadata value not a string": ({"__metadata__": {"a": 1}, "a": {"dtype": "F32", "shape": [4],
                                                                     "data_offsets": [0, 16]}}, F32, True, False),
    "negative shape": ({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, F32, True, False),
    "shape not matching the bytes": ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, F32, True, False),
    "offsets past the data": ({"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}}, F32, True, False),
    "unpadded header": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, F32, False, True),
    "unknown tensor field": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "x": 1}}, F32, True, True),
    "tensors out of offset order": ({"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
                                     "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F32, True, True),
    "no tensors": ({}, b"", True, True),
    "zero-length tensor": ({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                            "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, F32, True, True),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_hand_made_headers_judged_alike(tmp_path, case):
    header, data, pad, accepted = HEADERS[case]
    write_raw_safetensors(tmp_path / "x.safetensors", header, data, pad)
    reference, ours = read_both(tmp_path / "x.safetensors")
    if accepted:
        assert isinstance(reference, dict) and isinstance(ours, dict) and same_tensors(reference, ours), (reference, ours)
    else:
        assert isinstance(reference, str) and isinstance(ours, str), (reference, ours)
        assert "x.safetensors" in ours, f"netquant's error does not name the file: {ours}"


def test_duplicate_keys_are_the_one_deliberate_difference(tmp_path):
    """JSON allows a key twice and the reference keeps the last; netquant refuses such a header (which tensor the
    writer meant is not knowable)."""
    entry = '{"dtype":"F32","shape":[4],"data_offsets":[0,16]}'
    write_raw_safetensors(tmp_path / "x.safetensors", ('{"a":' + entry + ',"a":' + entry + "}").encode(), F32)
    reference, ours = read_both(tmp_path / "x.safetensors")
    assert isinstance(reference, dict)
    assert isinstance(ours, str) and "duplicate key 'a'" in ours


def allowed_disagreement(header_bytes: bytes, reference, ours) -> bool:
    """A mutant the two may judge differently: a dtype netquant does not read (netquant refuses, naming it), or
    BF16, which the reference's NumPy front end cannot hold (it refuses, netquant reads it)."""
    if isinstance(ours, str) and isinstance(reference, dict):
        return any(f"dtype {d} is not supported" in ours for d in NETQUANT_UNREAD)
    if isinstance(reference, str) and isinstance(ours, dict):
        return "bfloat16" in reference and b'"BF16"' in header_bytes
    return False


def fuzz(tmp_path, seed: int, mutate) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    tensors = {"fc1.weight": rng.standard_normal((3, 5)).astype(np.float32), "b": np.arange(6).reshape(2, 3),
               "c": rng.standard_normal(7).astype(np.float16), "z": np.zeros((0, 2), np.float32)}
    st_numpy.save_file(tensors, tmp_path / "base.safetensors", metadata={"k": "v"})
    base = (tmp_path / "base.safetensors").read_bytes()
    outcomes = {"both refuse": 0, "both read": 0, "allowed difference": 0}
    for trial in range(1000):
        mutant = mutate(rng, base)
        path = tmp_path / "m.safetensors"
        path.write_bytes(mutant)
        reference, ours = read_both(path)
        if isinstance(reference, str) and isinstance(ours, str):
            outcomes["both refuse"] += 1
        elif isinstance(reference, dict) and isinstance(ours, dict):
            assert same_tensors(reference, ours), f"trial {trial}: both read the mutant, but not the same tensors"
            outcomes["both read"] += 1
        else:
            header = mutant[8:8 + struct.unpack("<Q", mutant[:8])[0]] if len(mutant) >= 8 else b""
            assert allowed_disagreement(header, reference, ours), f"trial {trial}: reference {reference!r:.200}, netquant {ours!r:.200}"
            outcomes["allowed difference"] += 1
    return outcomes


def mutate_bytes(rng: np.random.Generator, base: bytes) -> bytes:
    """1-3 byte edits, mostly inside the header: a random byte, a JSON-ish character, or a deletion."""
    b = bytearray(base)
    header_len = struct.unpack("<Q", base[:8])[0]
    for _ in range(rng.integers(1, 4)):
        pos = int(8 + rng.integers(0, header_len)) if rng.random() < 0.7 else int(rng.integers(0, len(b)))
        pos = min(pos, len(b) - 1)
        kind = rng.integers(0, 3)
        if kind == 0:
            b[pos] = int(rng.integers(0, 256))
        elif kind == 1:
            b[pos] = int(rng.choice(list(b'0123456789,:[]{}"-. eE')))
        else:
            del b[pos]
    return bytes(b)


DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16", "U32", "U64", "F8_E4M3", "X"]


def mutate_fields(rng: np.random.Generator, base: bytes) -> bytes:
    """The header re-encoded as valid JSON with 1-2 field edits: an offset, a shape entry or a dtype changed, a dim
    added, the data cut or extended, the metadata replaced, offsets dropped or drawn at random."""
    header_len = struct.unpack("<Q", base[:8])[0]
    header, data = json.loads(base[8:8 + header_len]), bytearray(base[8 + header_len:])
    names = [n for n in header if n != "__metadata__"]
    for _ in range(rng.integers(1, 3)):
        entry, edit = header[names[rng.integers(0, len(names))]], rng.integers(0, 9)
        if edit == 0 and "data_offsets" in entry:
            entry["data_offsets"][rng.integers(0, 2)] += int(rng.choice([-8, -4, -2, -1, 1, 2, 4, 8]))
        elif edit == 1 and entry["shape"]:
            entry["shape"][rng.integers(0, len(entry["shape"]))] += int(rng.choice([-1, 1, 2]))
        elif edit == 2:
            entry["dtype"] = str(rng.choice(DTYPES))
        elif edit == 3:
            entry["shape"] = entry["shape"] + [1]
        elif edit == 4:
            data = data[:len(data) - int(rng.integers(1, 9))]
        elif edit == 5:
            data += bytes(int(rng.integers(1, 9)))
        elif edit == 6:
            header["__metadata__"] = {"k": str(rng.choice(["v", ""]))} if rng.random() < 0.5 else {}
        elif edit == 7:
            entry.pop("data_offsets", None)
        elif edit == 8:
            entry["data_offsets"] = [int(x) for x in sorted(rng.integers(0, len(data) + 1, 2))]
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8) if rng.random() < 0.9 else b""
    return struct.pack("<Q", len(h)) + h + bytes(data)


def test_differential_fuzz_of_bytes(tmp_path):
    outcomes = fuzz(tmp_path, 1, mutate_bytes)
    assert outcomes["both read"] > 20 and outcomes["both refuse"] > 500, outcomes  # both kinds really happen


def test_differential_fuzz_of_header_fields(tmp_path):
    outcomes = fuzz(tmp_path, 2, mutate_fields)
    assert outcomes["both read"] > 100 and outcomes["both refuse"] > 300 and outcomes["allowed difference"] > 0, outcomes
