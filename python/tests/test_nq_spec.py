"""The README's .nq specification is enough to read the files: an independent reader (nq_spec_reader.py, written
from README.md only) decodes files made by `netquant quantize` to exactly the bytes `netquant decompress` writes.

Also: a file hand-made from the spec (no encoder of netquant's) reads as intended, and damaged files are refused.
"""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import importance, run_cli, weights, write_raw_safetensors
import nq_spec_reader as nqr

# ----------------------------------------------------------------------------------------------------------------
# safetensors by hand: 8-byte LE header length, JSON header, data
# ----------------------------------------------------------------------------------------------------------------

ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I8": "i1", "U8": "u1", "I16": "<i2",
             "I32": "<i4", "I64": "<i8", "BOOL": "?"}


def bf16_bits(a: np.ndarray) -> np.ndarray:
    return nqr.f32_to_bf16_bits(a.astype(np.float32))


def write_safetensors(path: Path, tensors: dict) -> None:
    """tensors: name -> numpy array, or (\"BF16\", uint16 bit array)."""
    header, blobs, at = {}, [], 0
    for name, a in tensors.items():
        if isinstance(a, tuple):
            dtype, a = a
        else:
            dtype = {np.dtype(v).type: k for k, v in ST_DTYPES.items() if k != "BF16"}[a.dtype.type]
        b = np.ascontiguousarray(a).astype(np.dtype(ST_DTYPES[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    write_raw_safetensors(path, header, b"".join(blobs))


def read_safetensors(path: Path) -> dict:
    """name -> (dtype string, shape tuple, raw bytes)."""
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {name: (e["dtype"], tuple(e["shape"]), data[base + e["data_offsets"][0]:base + e["data_offsets"][1]])
            for name, e in header.items()}


# ----------------------------------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------------------------------

run = run_cli


def quantize_and_check(cli, tmp_path, model: dict, args, imp: dict | None = None, tag="m") -> nqr.NqFile:
    """Writes model (and importance), quantizes to .nq with args, decompresses with the CLI, reads the .nq with the
    spec reader and checks every tensor's dtype, shape and bytes against the CLI's output."""
    src, nq, out = tmp_path / f"{tag}.safetensors", tmp_path / f"{tag}.nq", tmp_path / f"{tag}.out.safetensors"
    write_safetensors(src, model)
    extra = []
    if imp is not None:
        write_safetensors(tmp_path / f"{tag}.imp.safetensors", imp)
        extra = ["--importance", tmp_path / f"{tag}.imp.safetensors"]
    run(cli, "quantize", src, "-o", nq, "--backend", "cpu", "--quiet", *extra, *args)
    run(cli, "decompress", nq, "-o", out, "--quiet")
    expected = read_safetensors(out)
    f = nqr.read_nq(nq)
    assert set(f.tensors) == set(model)
    assert set(expected) == set(f.tensors)
    for name, t in f.tensors.items():
        dtype, shape, raw = expected[name]
        assert t.dtype == dtype and t.shape == shape, (name, t.dtype, dtype, t.shape, shape)
        assert t.output_bytes() == raw, f"{name}: values differ from `netquant decompress`"
        if t.quantized and dtype == "F32":
            assert np.array_equal(t.values.view(np.uint32), np.frombuffer(raw, "<u4").reshape(shape)), name
    # the file's version follows its coders (README: version 2 iff a tensor has a rANS stream)
    assert f.version == (2 if any(t.coder == "rans" for t in f.tensors.values()) else 1)
    return f


def coders(f: nqr.NqFile) -> set:
    return {t.coder for t in f.tensors.values() if t.quantized}


def small_model(rng, sizes=((16, 24), (8, 3, 3, 3), (10,))):
    return {f"t{i}.weight" if len(s) > 1 else f"t{i}.bias": weights(rng, s) for i, s in enumerate(sizes)}


# ----------------------------------------------------------------------------------------------------------------
# Scopes x methods x coders
# ----------------------------------------------------------------------------------------------------------------

SCOPES = ["global", "tensor", "row", "group:7"]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_hw_kmeans_scopes_coders(cli, rng, tmp_path, scope, coder):
    model = small_model(rng)
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "8", "--scope", scope,
                                                  "--coder", coder], imp)
    assert f.scope == scope.split(":")[0] and f.method == "hw-kmeans"
    assert f.version == (1 if coder == "huffman" else 2) and coders(f) == {coder}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("coder", ["huffman", "rans", "auto"])
def test_ecsq_low_rate(cli, rng, tmp_path, scope, coder):
    # A large λ: most rows end at one or two levels, well under a bit per weight.
    model = {"a.weight": weights(rng, (32, 40)), "b.weight": weights(rng, (12, 30))}
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    f = quantize_and_check(cli, tmp_path, model, ["--method", "ecsq", "--k", "16", "--lambda", "3e-3",
                                                  "--scope", scope, "--coder", coder], imp)
    if coder != "huffman":
        assert "rans" in coders(f), "at a low rate rANS should win"


@pytest.mark.parametrize("method,extra,scope", [
    ("uniform", ["--k", "9"], "tensor"), ("uniform", ["--k", "9"], "group:13"), ("binary", [], "row"),
    ("ternary", [], "group:13"), ("pow2", ["--k", "3"], "tensor"), ("pow2", ["--k", "3"], "row"),
    ("int", ["--bits", "4"], "group:13"), ("kmeans", ["--k", "5"], "tensor"), ("exact", ["--k", "6"], "row"),
    ("wentropy", ["--k", "4"], "group:13"), ("ecsq", ["--k", "32", "--target-bits", "0.4"], "tensor"),
    ("ecsq", ["--k", "32", "--target-bits", "0.4"], "group:13")])
def test_methods(cli, rng, tmp_path, method, extra, scope):
    model = small_model(rng, ((20, 17), (257,)))
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    f = quantize_and_check(cli, tmp_path, model, ["--method", method, "--scope", scope, *extra], imp)
    assert f.method == method


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_prune(cli, rng, tmp_path, scope, coder):
    model = small_model(rng, ((24, 33), (5, 7), (300,)))
    f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "6", "--scope", scope,
                                                  "--prune", "0.6", "--coder", coder])
    assert sum(t.pruned for t in f.tensors.values()) > 0
    for t in f.tensors.values():
        assert int((t.indices < 0).sum()) == t.pruned and np.all(t.values[t.indices < 0] == 0)


@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_heavy_prune_long_gaps(cli, rng, tmp_path, coder):
    # 99% pruned: gaps longer than the narrow widths, so fillers appear; also a tensor pruned almost whole.
    model = {"big.weight": weights(rng, (64, 70)), "tiny.weight": weights(rng, (3, 1))}
    quantize_and_check(cli, tmp_path, model, ["--method", "uniform", "--k", "5", "--scope", "tensor",
                                              "--prune", "0.99", "--coder", coder])


# ----------------------------------------------------------------------------------------------------------------
# Raw tensors, dtypes
# ----------------------------------------------------------------------------------------------------------------

def test_raw_and_dtypes(cli, rng, tmp_path):
    model = {"w32.weight": weights(rng, (9, 11)),
             "w16.weight": weights(rng, (6, 10)).astype(np.float16),
             "wbf.weight": ("BF16", bf16_bits(weights(rng, (7, 5)))),
             "w64.weight": weights(rng, (4, 6)).astype(np.float64),
             "b32.bias": weights(rng, (9,)),                       # kept raw by --skip-1d
             "b16.bias": weights(rng, (6,)).astype(np.float16),
             "bbf.bias": ("BF16", bf16_bits(weights(rng, (5,)))),
             "steps": np.array([3, -1, 7], dtype=np.int64),          # non-float: kept as it is
             "ids": np.arange(5, dtype=np.int32).reshape(5, 1),
             "mask": np.array([[True, False], [False, True]]),
             "u": np.array([1, 255], dtype=np.uint8), "s": np.array([-2, 9], dtype=np.int16)}
    for coder in ("huffman", "rans"):
        f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "4", "--scope", "row",
                                                      "--skip-1d", "--coder", coder], tag=coder)
        q = {n for n, t in f.tensors.items() if t.quantized}
        assert q == {"w32.weight", "w16.weight", "wbf.weight", "w64.weight"}
        assert f.tensors["b16.bias"].dtype == "F16" and f.tensors["wbf.weight"].dtype == "BF16"
        assert f.tensors["steps"].values.tolist() == [3, -1, 7]
        assert np.array_equal(f.tensors["b32.bias"].values, model["b32.bias"])


def test_exclude_keeps_raw_global(cli, rng, tmp_path):
    model = {"embed.weight": weights(rng, (20, 4)), "a.weight": weights(rng, (10, 10)),
             "b.weight": weights(rng, (3, 3))}
    f = quantize_and_check(cli, tmp_path, model, ["--method", "kmeans", "--k", "4", "--exclude", "embed"])
    assert not f.tensors["embed.weight"].quantized and f.tensors["a.weight"].quantized


# ----------------------------------------------------------------------------------------------------------------
# Degenerate and awkward cases
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_one_level(cli, rng, tmp_path, scope, coder):
    # k = 1: a single used symbol (Huffman length-1 code "0"; rANS frequency 2^S, a chunk of only the states).
    model = small_model(rng, ((6, 5), (1,), (3,)))
    f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "1", "--scope", scope,
                                                  "--coder", coder])
    for t in f.tensors.values():
        assert all(len(cb) <= 1 for cb in t.codebooks)


@pytest.mark.parametrize("sizes", [((1,),), ((4099,), (257,), (3,), (1,), (1, 1, 1), (257, 1))])
@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_awkward_sizes(cli, rng, tmp_path, sizes, coder):
    model = {f"x{i}": weights(rng, s) for i, s in enumerate(sizes)}
    for scope in ("global", "tensor", "group:64"):
        quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "5", "--scope", scope,
                                                  "--coder", coder], tag=scope.replace(":", ""))


def test_row_scope_1d(cli, rng, tmp_path):
    # 1-D tensors in row scope: rows of one value, each its own level.
    model = {"v": weights(rng, (13,)), "m": weights(rng, (4, 257))}
    quantize_and_check(cli, tmp_path, model, ["--method", "ecsq", "--k", "8", "--scope", "row", "--prune", "0.2"])


def test_many_small_tensors_shared_table(cli, rng, tmp_path):
    # Global scope with many small tensors: the writer may choose the shared Huffman table (flag bit 0).
    model = {f"l{i}.weight": weights(rng, (2, 3)) for i in range(40)}
    f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "4", "--coder", "huffman"])
    assert f.flags == 1 and f.shared_code is not None
    # ... and with one large low-rate tensor under `auto`: version 2, a rANS tensor beside the shared Huffman table
    model = {f"l{i}.weight": weights(rng, (2, 3)) for i in range(20)}
    model["big.weight"] = weights(rng, (40, 100))
    g = quantize_and_check(cli, tmp_path, model, ["--method", "ecsq", "--k", "8", "--lambda", "1e-3",
                                                  "--coder", "auto"], tag="auto")
    assert g.version == 2 and g.flags == 1 and coders(g) == {"huffman", "rans"}


def test_large_k_two_byte_alphabet(cli, rng, tmp_path):
    # exact with k = 300 > 256 levels: code lengths beyond 8 bits, long code-length tables.
    model = {"w": weights(rng, (40, 50))}
    for coder in ("huffman", "rans"):
        quantize_and_check(cli, tmp_path, model, ["--method", "exact", "--k", "300", "--scope", "tensor",
                                                  "--coder", coder], tag=coder)


def test_rans_multiple_chunks(cli, rng, tmp_path):
    # More than 2^18 indices: the writer's rANS chunks hold 2^18, so this tensor has two chunks.
    model = {"w": weights(rng, (300, 900))}
    f = quantize_and_check(cli, tmp_path, model, ["--method", "uniform", "--k", "7", "--scope", "tensor",
                                                  "--coder", "rans"])
    assert f.tensors["w"].coder == "rans"


# ----------------------------------------------------------------------------------------------------------------
# Damage
# ----------------------------------------------------------------------------------------------------------------

def test_damaged_files_are_refused(cli, rng, tmp_path):
    # A flipped bit anywhere is caught; in a payload by that payload's CRC, in the trailer's CRC by the file CRC,
    # in the trailer magic by the magic. `netquant decompress` refuses the same files (exit 2).
    model = {"a.weight": weights(rng, (16, 20)), "b.bias": weights(rng, (16,))}
    for coder in ("huffman", "rans"):
        f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "4", "--scope", "row",
                                                      "--prune", "0.3", "--skip-1d", "--coder", coder], tag=coder)
        good = (tmp_path / f"{coder}.nq").read_bytes()
        size = len(good)
        positions = sorted({0, 9, 13, 20, 40, 47, 50, f.data_offset - 1, size // 2, size - 9, size - 5, size - 1}
                           | set(rng.integers(0, size, 30).tolist()))
        for pos in positions:
            bad = bytearray(good)
            bad[pos] ^= 0x01
            expect = ("payload CRC" if f.data_offset <= pos < size - 8 else "file CRC" if pos >= size - 8 and
                      pos < size - 4 else "trailer magic" if pos >= size - 4 else None)
            with pytest.raises(ValueError, match=expect):
                nqr.read_nq(bytes(bad))
        for cut in (0, 10, 47, size - 9, size - 1):
            with pytest.raises(ValueError):
                nqr.read_nq(good[:cut])
        with pytest.raises(ValueError, match="file size"):
            nqr.read_nq(good + b"\0")
        bad = bytearray(good)
        bad[(f.data_offset + size - 8) // 2] ^= 0x40
        (tmp_path / "bad.nq").write_bytes(bytes(bad))
        proc = subprocess.run([cli, "decompress", tmp_path / "bad.nq", "-o", tmp_path / "bad.safetensors", "--quiet"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and not (tmp_path / "bad.safetensors").exists()


# ----------------------------------------------------------------------------------------------------------------
# A file hand-made from the spec (no netquant involved): the reader decodes what the spec says it holds.
# ----------------------------------------------------------------------------------------------------------------

def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


class Bits:
    def __init__(self):
        self.bits: list[int] = []

    def put(self, value: int, n: int):
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def eg(self, n: int):  # order-0 Exp-Golomb
        m = n + 1
        self.put(0, m.bit_length() - 1)
        self.put(m, m.bit_length())

    def to_bytes(self, pad: int = 0) -> bytes:
        b = self.bits + [pad] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, b[i:i + 8])), 2) for i in range(0, len(b), 8))


def code_length_table(lengths: list[int], pad: int = 0, w: int | None = None) -> bytes:
    w = w or max(max(lengths), 1).bit_length()
    bw = Bits()
    bw.put(w - 1, 3)
    i = 0
    while i < len(lengths):
        if lengths[i]:
            bw.put(lengths[i], w)
            i += 1
        else:
            r = 1
            while i + r < len(lengths) and lengths[i + r] == 0:
                r += 1
            bw.put(0, w)
            bw.eg(r - 1)
            i += r
    return bw.to_bytes(pad)


def canonical(lengths: list[int]) -> dict:
    codes, code, prev = {}, 0, 0
    for l, s in sorted((l, s) for s, l in enumerate(lengths) if l):
        code <<= l - prev
        codes[s], code, prev = (code, l), code + 1, l
    return codes


def huffman_stream(lengths, symbols, pad: int = 0) -> bytes:
    codes, bw = canonical(lengths), Bits()
    for s in symbols:
        bw.put(*codes[s])
    return varint(len(bw.bits)) + bw.to_bytes(pad)


def rans_chunk(symbols, freqs, s_bits) -> bytes:
    starts = np.concatenate([[0], np.cumsum(freqs)]).tolist()
    x, emitted = [1 << 23] * 4, []
    for i in range(len(symbols) - 1, -1, -1):
        s, j = symbols[i], i & 3
        f = freqs[s]
        while x[j] >= (1 << (31 - s_bits)) * f:
            emitted.append(x[j] & 0xFF)
            x[j] >>= 8
        x[j] = (x[j] // f) * (1 << s_bits) + x[j] % f + starts[s]
    return struct.pack("<4I", *x) + bytes(reversed(emitted))


def hand_made(q_lengths=(1, 2, 2), q_tail=b"", gaps=(0, 1, 0, 1, 0, 1, 0, 0), r_extra=b"", r_state0_plus=0, pad=0,
              q_table_w=None, r_level0_bits=None):
    """A version-2 file made from the spec alone, with knobs to break it (the CRCs are always right) and `pad`, the
    value of every padding bit (the README: written as 0, ignored by readers):
    "q": tensor scope, F32 2x5, 3 of 10 weights pruned, Huffman-coded indices and positions;
    "r": F16 7 weights, rANS in chunks of 4; "raw": I16 kept raw."""
    cb_q = np.array([0.5, -1.25, 2.0], np.float32)
    idx_q = [0, 1, 0, 2, 0, 1, 0]
    # gap width 2: symbols 0..2 skip that many pruned weights then keep one (3 would be the filler); kept 0, 2, 3,
    # 5, 6, 8, 9, and the last 0 lands at 10, one past the end. Lengths [1, 1, 0, 0]: a complete code.
    gap_lengths = [1, 1, 0, 0]
    gap_codes, gb = canonical(gap_lengths), Bits()
    for g in gaps:
        gb.put(*gap_codes[g])
    payload_q = (varint(1) + varint(3) + cb_q.tobytes() + bytes([0])      # codebooks; coder 0 = Huffman
                 + varint(3) + code_length_table(list(q_lengths), pad, q_table_w)
                 + huffman_stream(list(q_lengths), idx_q, pad)
                 + bytes([2]) + code_length_table(gap_lengths, pad) + varint(len(gb.bits)) + gb.to_bytes(pad) + q_tail)
    cb_r = np.array([1.0, 3.0], np.float32)
    if r_level0_bits is not None:  # level 0 of "r" (an F16 tensor) as these float32 bits, e.g. a NaN
        cb_r[:1] = np.array([r_level0_bits], np.uint32).view(np.float32)
    idx_r = [1, 1, 0, 1, 1, 1, 1]
    freqs, s_bits = [1, 3], 2
    chunks = [rans_chunk(idx_r[:4], freqs, s_bits), rans_chunk(idx_r[4:], freqs, s_bits) + r_extra]
    if r_state0_plus:
        chunks[0] = struct.pack("<I", struct.unpack_from("<I", chunks[0])[0] + r_state0_plus) + chunks[0][4:]
    rest = varint(4) + b"".join(varint(len(c)) for c in chunks) + b"".join(chunks)
    payload_r = (varint(1) + varint(2) + cb_r.tobytes() + bytes([1]) + varint(2) + bytes([s_bits])
                 + b"".join(varint(f) for f in freqs) + varint(len(rest)) + rest)
    raw = np.array([[1, -2, 300]], dtype="<i2")

    def rec(name, dtype, storage, shape, quant=b""):
        return lambda at, payload: (varint(len(name)) + name.encode() + bytes([dtype, storage, len(shape)])
                                    + b"".join(varint(d) for d in shape) + quant
                                    + struct.pack("<QQI", at, len(payload), zlib.crc32(payload)))
    parts = [(rec("q", 0, 0, (2, 5), varint(10) + varint(1) + varint(3)), payload_q),   # P, problems, pruned
             (rec("r", 1, 0, (7,), varint(7) + varint(1) + varint(0)), payload_r),
             (rec("raw", 6, 1, (1, 3)), raw.tobytes())]
    # directory records have fixed-width offsets: size them with a dry run, then lay the payloads out after them
    head_len = 48 + sum(len(fn(0, p)) for fn, p in parts) + 4
    recs, body, at = b"", b"", head_len
    for fn, p in parts:
        recs += fn(at, p)
        body += p
        at += len(p)
    # header: version 2, flags 0, method 1 (hw-kmeans), scope 1 (tensor), group 0, T = 3, D, file size
    head = nqr.MAGIC + struct.pack("<HHBBHQIIQQ", 2, 0, 1, 1, 0, 0, 3, 0, head_len, at + 8) + recs
    head += struct.pack("<I", zlib.crc32(head))
    out = head + body
    expected = {"q": np.array([0.5, 0, -1.25, 0.5, 0, 2.0, 0.5, 0, -1.25, 0.5], np.float32).reshape(2, 5),
                "r": cb_r[idx_r], "raw": raw}
    return out + struct.pack("<I", zlib.crc32(out)) + b"NQZE", expected


def test_hand_made_file():
    data, expected = hand_made()
    f = nqr.read_nq(data)
    assert f.version == 2 and f.scope == "tensor" and list(f.tensors) == ["q", "r", "raw"]
    q, r = f.tensors["q"], f.tensors["r"]
    assert q.shape == (2, 5) and q.coder == "huffman" and q.pruned == 3
    assert np.array_equal(q.values, expected["q"]) and str(q.values[0, 1]) == "0.0"  # pruned: +0
    assert r.coder == "rans" and np.array_equal(r.values, expected["r"])
    assert r.output_bytes() == expected["r"].astype("<f2").tobytes()
    assert f.tensors["raw"].output_bytes() == expected["raw"].tobytes()
    # flip every byte in turn: each is caught
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(ValueError):
            nqr.read_nq(bytes(bad))


@pytest.mark.parametrize("knobs,message", [
    (dict(q_lengths=(1, 2, 3)), "incomplete"),                 # Kraft sum 7/8
    (dict(q_lengths=(1, 1, 2)), "over-subscribed"),            # Kraft sum 5/4
    (dict(q_tail=b"\0"), "stray bytes"),                       # nothing may follow the last field
    (dict(gaps=(0, 1, 0, 1, 0, 1, 0)), "more bits"),            # no symbol landing one past the end
    (dict(gaps=(0, 1, 0, 1, 0, 1, 0, 0, 0)), "unused"),         # a symbol after the end
    (dict(r_extra=b"\0"), "left unread"),                      # a rANS chunk with a byte too many
    (dict(r_state0_plus=4), "final states"),                   # state 0 decodes to 2^23 + 3, not 2^23
])
def test_hand_made_structure_errors(knobs, message):
    data, _ = hand_made(**knobs)
    with pytest.raises(ValueError, match=message):
        nqr.read_nq(data)


def test_hand_made_file_reads_in_netquant(cli, tmp_path):
    # The other direction: a file written from the spec alone is one that `netquant decompress` reads, to the
    # values the spec reader gives.
    data, expected = hand_made()
    (tmp_path / "hand.nq").write_bytes(data)
    run(cli, "decompress", tmp_path / "hand.nq", "-o", tmp_path / "hand.safetensors", "--quiet")
    out = read_safetensors(tmp_path / "hand.safetensors")
    f = nqr.read_nq(data)
    assert set(out) == set(f.tensors)
    for name, t in f.tensors.items():
        assert out[name] == (t.dtype, t.shape, t.output_bytes()), name
    assert out["q"][2] == expected["q"].tobytes()


def test_padding_bits_are_ignored(cli, tmp_path):
    # Padding bits set to 1 in the code-length tables, the index stream and the gap codes: a different file, the
    # same model, for both readers (README: padding is written as 0 and ignored by readers).
    zero, expected = hand_made()
    ones, _ = hand_made(pad=1)
    assert ones != zero and len(ones) == len(zero)
    a, b = nqr.read_nq(zero), nqr.read_nq(ones)
    for name in a.tensors:
        assert a.tensors[name].output_bytes() == b.tensors[name].output_bytes(), name
    for tag, data in (("zero", zero), ("ones", ones)):
        (tmp_path / f"{tag}.nq").write_bytes(data)
        run(cli, "decompress", tmp_path / f"{tag}.nq", "-o", tmp_path / f"{tag}.safetensors", "--quiet")
    assert read_safetensors(tmp_path / "zero.safetensors") == read_safetensors(tmp_path / "ones.safetensors")
    assert read_safetensors(tmp_path / "ones.safetensors")["q"][2] == expected["q"].tobytes()


@pytest.mark.parametrize("bits", [0x7F800001, 0xFFC00001, 0x7FFFFFFF, 0x7FC00000])
def test_nan_levels_convert_as_the_readme_says(cli, tmp_path, bits):
    # README, "Decompression": a NaN level becomes f16's quiet NaN sign | 0x7E00 (numpy would keep payload bits).
    data, _ = hand_made(r_level0_bits=bits)
    (tmp_path / "nan.nq").write_bytes(data)
    run(cli, "decompress", tmp_path / "nan.nq", "-o", tmp_path / "nan.safetensors", "--quiet")
    out = read_safetensors(tmp_path / "nan.safetensors")["r"][2]
    want = nqr.read_nq(data).tensors["r"].output_bytes()
    assert out == want
    assert np.frombuffer(out, "<u2")[2] == ((bits >> 16) & 0x8000) | 0x7E00  # index 0 of "r" is its third weight


def test_code_length_field_wider_than_five_bits_is_refused_by_both(cli, tmp_path):
    # README: "a reader takes any W in 1..5 that holds the lengths"; 5 (wider than needed) reads, 6 does not.
    ok, _ = hand_made(q_table_w=5)
    bad, _ = hand_made(q_table_w=6)
    nqr.read_nq(ok)
    with pytest.raises(ValueError, match="at most 5"):
        nqr.read_nq(bad)
    for tag, data, rc in (("ok", ok, 0), ("bad", bad, 2)):
        (tmp_path / f"{tag}.nq").write_bytes(data)
        proc = subprocess.run([cli, "decompress", str(tmp_path / f"{tag}.nq"), "-o", str(tmp_path / f"{tag}.safetensors"),
                               "--quiet"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == rc, proc.stderr


# ----------------------------------------------------------------------------------------------------------------
# The paper's accounting, recounted from the file's own sections
# ----------------------------------------------------------------------------------------------------------------

def paper_bits(f: nqr.NqFile, t: nqr.NqTensor) -> dict:
    """The terms of Choi et al.'s count for one Huffman-coded tensor, read off the file (README "Accounting"): the
    index stream (Σ_j n_j·b_j, recounted from the decoded indices), one codeword per table entry (Σ_j b_j), 32 bits
    per codebook level, the gap stream and its table's codewords."""
    shared = t.index_code_lengths is None
    lengths = f.shared_code.lengths if shared else t.index_code_lengths
    kept = t.indices.reshape(-1)
    kept = kept[kept >= 0]
    stream = int(np.asarray(lengths, dtype=np.int64)[kept].sum())
    assert stream == t.index_stream_bits, f"{t.name}: the stream's stored bit count is Σ n_j·b_j"
    return {"stream": stream,
            "table": sum(lengths),
            "shared_table": shared,
            "codebooks": 32 * sum(len(cb) for cb in t.codebooks),
            "gap_stream": t.gap_stream_bits,
            "positions": t.gap_stream_bits + (sum(t.gap_code_lengths) if t.gap_code_lengths else 0)}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("prune", ["0", "0.7"])
def test_paper_ratio_is_the_files_sections(cli, rng, tmp_path, scope, prune):
    # Several tensors (the global scope's shared table), awkward sizes, and pruning (the positions' terms).
    model = small_model(rng, ((24, 33), (5, 7), (300,), (3, 3, 5, 7)))
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    report = tmp_path / "report.json"
    f = quantize_and_check(cli, tmp_path, model, ["--method", "hw-kmeans", "--k", "6", "--scope", scope,
                                                  "--prune", prune, "--coder", "huffman", "--report", report], imp)
    stats = json.loads(report.read_text())
    by_name = {t["name"]: t for t in stats["tensors"]}
    total_bits, total_params, shared_table_bits = 0, 0, 0
    for name, t in f.tensors.items():
        assert t.quantized and t.coder == "huffman"
        b = paper_bits(f, t)
        if prune != "0":
            assert t.pruned > 0 and b["positions"] > 0
        else:
            assert b["positions"] == 0
        n = t.numel
        tensor_bits = b["stream"] + b["table"] + b["codebooks"] + b["positions"]
        s = by_name[name]
        assert s["ratio_huffman"] == pytest.approx(32 * n / tensor_bits, rel=1e-12), name
        # README: (Huffman index + gap stream bits) / weights, no table.
        assert s["huffman_bits_per_weight"] == pytest.approx((b["stream"] + b["gap_stream"]) / n, rel=1e-12), name
        # The total counts a shared codebook and a shared table once.
        total_bits += b["stream"] + b["positions"] + (0 if b["shared_table"] else b["table"])
        total_bits += 0 if f.scope == "global" else b["codebooks"]
        if b["shared_table"]:
            shared_table_bits = b["table"]
        total_params += n
    if f.scope == "global":
        total_bits += 32 * len(f.shared_codebook)
    total_bits += shared_table_bits
    assert stats["total"]["ratio_huffman"] == pytest.approx(32 * total_params / total_bits, rel=1e-12)
