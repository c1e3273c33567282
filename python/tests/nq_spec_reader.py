"""An independent reader of netquant's `.nq` files (versions 1 and 2), written from README.md alone.

Every rule below cites the README section "### The .nq file (versions 1 and 2)"; nothing here was taken from the
C++ sources.  The reader is pure Python + NumPy:

    f = read_nq(path_or_bytes)      # NqFile: header fields and an ordered dict name -> NqTensor
    f.tensors["w"].values           # float32 (quantized) or the original dtype (raw; bfloat16 widened to float32)
    f.tensors["w"].output_bytes()   # the tensor's bytes as `netquant decompress` writes them (original dtype)
    load(path) -> dict name -> array

Anything that breaks the spec (bad magic, CRC mismatch, a bound, a malformed code, stray bytes...) raises
ValueError (the subclass NqFormatError) naming the tensor where there is one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

MAGIC = b"\x89NQZ\r\n\x1a\n"
TRAILER_MAGIC = b"NQZE"
HEADER_SIZE = 48

METHODS = ["kmeans", "hw-kmeans", "exact", "uniform", "ecsq", "binary", "ternary", "pow2", "int", "wentropy"]
SCOPES = ["global", "tensor", "row", "group"]
# dtype code -> (safetensors name, numpy dtype of the stored bytes (little-endian), size); BF16 is stored as <u2 bits.
DTYPES = {
    0: ("F32", np.dtype("<f4")), 1: ("F16", np.dtype("<f2")), 2: ("BF16", np.dtype("<u2")),
    3: ("F64", np.dtype("<f8")), 4: ("I8", np.dtype("i1")), 5: ("U8", np.dtype("u1")),
    6: ("I16", np.dtype("<i2")), 7: ("I32", np.dtype("<i4")), 8: ("I64", np.dtype("<i8")),
    9: ("BOOL", np.dtype("?")),
}
FLOAT_DTYPES = {0, 1, 2, 3}

RANS_L = 1 << 23          # lower bound of a rANS state
RANS_HI = 1 << 31         # states live in [2^23, 2^31)
MAX_CHUNK = 1 << 20


class NqFormatError(ValueError):
    """A malformed .nq file."""


def _fail(msg: str, tensor: Optional[str] = None) -> None:
    raise NqFormatError(f"tensor '{tensor}': {msg}" if tensor is not None else msg)


# ----------------------------------------------------------------------------------------------------------------
# Byte-level cursor: little-endian integers, LEB128 varints, all bounded by an end offset.
# ----------------------------------------------------------------------------------------------------------------

class Cursor:
    def __init__(self, data: bytes, pos: int, end: int, tensor: Optional[str] = None):
        self.data, self.pos, self.end, self.tensor = data, pos, end, tensor

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            _fail(f"truncated: {what} needs {n} bytes, {self.end - self.pos} left", self.tensor)

    def bytes(self, n: int, what: str) -> bytes:
        self.need(n, what)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, what: str) -> int:
        return self.bytes(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.bytes(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.bytes(8, what))[0]

    def varint(self, what: str) -> int:
        # Unsigned LEB128, at most 10 bytes, no overflow past 2^64 - 1 (README: "All integers are little-endian").
        value, shift = 0, 0
        for i in range(10):
            b = self.u8(what)
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value >> 64:
                    _fail(f"{what}: varint overflows 64 bits", self.tensor)
                return value
            shift += 7
        _fail(f"{what}: varint longer than 10 bytes", self.tensor)

    def f32s(self, n: int, what: str) -> np.ndarray:
        return np.frombuffer(self.bytes(4 * n, what), dtype="<f4").astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Bit-level reading (MSB first), code-length tables, canonical Huffman codes.
# ----------------------------------------------------------------------------------------------------------------

class BitReader:
    """Reads bits most significant first from data[start:end]."""

    def __init__(self, data: bytes, start: int, end: int, tensor: Optional[str]):
        self.data, self.start, self.end, self.tensor = data, start, end, tensor
        self.bit = 0  # bits consumed from start

    def read(self, n: int, what: str) -> int:
        if self.start * 8 + self.bit + n > self.end * 8:
            _fail(f"truncated: {what} runs past its bytes", self.tensor)
        v = 0
        for _ in range(n):
            byte = self.data[self.start + (self.bit >> 3)]
            v = (v << 1) | ((byte >> (7 - (self.bit & 7))) & 1)
            self.bit += 1
        return v

    def exp_golomb(self, what: str) -> int:
        zeros = 0
        while self.read(1, what) == 0:
            zeros += 1
            if zeros > 32:
                _fail(f"{what}: Exp-Golomb prefix too long", self.tensor)
        return ((1 << zeros) | self.read(zeros, what)) - 1

    def finish_byte(self, what: str) -> int:
        """Skips the padding to the next byte boundary (README: written as 0, ignored by readers); returns the
        absolute byte offset after it."""
        pad = (-self.bit) % 8
        if pad:
            self.read(pad, what)
        return self.start + self.bit // 8


def read_code_lengths(cur: Cursor, nsym: int, what: str) -> list[int]:
    """README "Code-length table": 3 bits W-1, then per symbol its length in W bits; a zero length is followed by an
    order-0 Exp-Golomb r-1 and stands for r unused symbols; padding bits follow to the byte. MSB first."""
    br = BitReader(cur.data, cur.pos, cur.end, cur.tensor)
    w = br.read(3, what) + 1
    if w > 5:  # README: "a reader takes any W in 1..5"
        _fail(f"{what}: code-length field of {w} bits (at most 5)", cur.tensor)
    lengths = [0] * nsym
    i = 0
    while i < nsym:
        length = br.read(w, what)
        if length == 0:
            r = br.exp_golomb(what) + 1
            if r > nsym - i:
                _fail(f"{what}: run of {r} unused symbols past the {nsym - i} left", cur.tensor)
            i += r
        else:
            if length > 16:
                _fail(f"{what}: code length {length} > 16", cur.tensor)
            lengths[i] = length
            i += 1
    cur.pos = br.finish_byte(what)
    return lengths


class Huffman:
    """A canonical Huffman code from its lengths (README "Huffman codes")."""

    def __init__(self, lengths: list[int], what: str, tensor: Optional[str]):
        self.what, self.tensor = what, tensor
        self.lengths = list(lengths)
        used = [(l, s) for s, l in enumerate(lengths) if l > 0]
        self.used = len(used)
        self.maxlen = max((l for l, _ in used), default=0)
        if self.used == 1:
            if used[0][0] != 1:
                _fail(f"{what}: a single used symbol must have length 1, not {used[0][0]}", tensor)
        elif self.used > 1:
            kraft = sum(1 << (self.maxlen - l) for l, _ in used)
            if kraft > 1 << self.maxlen:
                _fail(f"{what}: over-subscribed code lengths", tensor)
            if kraft < 1 << self.maxlen:
                _fail(f"{what}: incomplete code lengths", tensor)
        if self.used == 0:
            return
        # Canonical codes as in DEFLATE, then a lookup table over maxlen-bit windows: (symbol << 5) | length,
        # -1 for windows no codeword starts (only the single-symbol code's "1...").
        count = [0] * (self.maxlen + 2)
        for l, _ in used:
            count[l] += 1
        first, code = [0] * (self.maxlen + 2), 0
        for l in range(1, self.maxlen + 1):
            code = (code + count[l - 1]) << 1
            first[l] = code
        table = np.full(1 << self.maxlen, -1, dtype=np.int64)
        for l, s in sorted(used):
            c = first[l]
            first[l] += 1
            lo = c << (self.maxlen - l)
            table[lo:lo + (1 << (self.maxlen - l))] = (s << 5) | l
        self.table = table.tolist()

    def decode(self, data: bytes, start: int, nbits: int, count: int) -> list[int]:
        """Decodes `count` symbols from the nbits bits at byte offset `start`; every bit must be used."""
        return self._run(data, start, nbits, count, None)[0]

    def _windows(self, data: bytes, start: int, nbits: int) -> list[int]:
        nbytes = (nbits + 7) // 8
        b = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start).astype(np.int64)
        b = np.concatenate([b, np.zeros(3, np.int64)])
        return ((b[:-2] << 16) | (b[1:-1] << 8) | b[2:]).tolist()  # 24 bits starting at each byte

    def _run(self, data, start, nbits, count, stop):
        # The padding bits after the last of nbits are ignored (README: written as 0, ignored by readers).
        if self.used == 0:
            if nbits or count:
                _fail(f"{self.what}: a stream coded with an empty code table", self.tensor)
            return [], 0
        win, table, L = self._windows(data, start, nbits), self.table, self.maxlen
        mask = (1 << L) - 1
        out, pos = [], 0
        while count is None or len(out) < count:
            if pos >= nbits:
                _fail(f"{self.what}: the stream needs more bits than its {nbits}", self.tensor)
            e = table[(win[pos >> 3] >> (24 - (pos & 7) - L)) & mask]
            if e < 0:
                _fail(f"{self.what}: invalid codeword", self.tensor)
            pos += e & 31
            if pos > nbits:
                _fail(f"{self.what}: the stream needs more bits than its {nbits}", self.tensor)
            out.append(e >> 5)
            if stop is not None and stop(e >> 5):
                break
        if pos != nbits:
            _fail(f"{self.what}: {nbits - pos} bits of the stream left unused", self.tensor)
        return out, pos


# ----------------------------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class NqTensor:
    name: str
    dtype: str                         # "F32", "F16", "BF16", ...
    shape: tuple
    quantized: bool
    payload_offset: int = 0
    payload_length: int = 0
    payload_crc: int = 0
    problem_size: int = 0              # quantized only
    problem_count: int = 0
    pruned: int = 0
    coder: Optional[str] = None        # "huffman" / "rans" (quantized only)
    codebooks: list = field(default_factory=list)   # list of float32 arrays as stored (global: the shared one)
    indices: Optional[np.ndarray] = None            # int32, flat, -1 = pruned
    values: Optional[np.ndarray] = None             # float32 (quantized) / original dtype (raw; BF16 -> float32)
    raw: Optional[bytes] = None                     # raw tensors: the stored bytes
    # The coded sections' sizes (quantized only), for the paper's accounting: the index code's lengths (None when
    # the shared table or rANS codes the tensor), the index and gap streams' bit counts, the gap code's lengths.
    index_code_lengths: Optional[list] = None
    index_stream_bits: int = 0
    gap_code_lengths: Optional[list] = None
    gap_stream_bits: int = 0

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def output_bytes(self) -> bytes:
        """The tensor's bytes in its original dtype, as `netquant decompress` writes them: raw tensors as stored;
        quantized ones as the float32 codebook value converted with round-to-nearest-even."""
        if not self.quantized:
            return self.raw
        v = self.values.astype(np.float32).ravel()
        if self.dtype == "F32":
            return v.astype("<f4").tobytes()
        if self.dtype == "F16":
            h = v.astype("<f2").view("<u2").copy()
            nan = np.isnan(v)  # README: a NaN becomes the quiet NaN sign | 0x7E00 (its payload dropped)
            h[nan] = (v[nan].view(np.uint32) >> 16 & 0x8000).astype(np.uint16) | 0x7E00
            return h.tobytes()
        if self.dtype == "F64":
            return v.astype("<f8").tobytes()
        if self.dtype == "BF16":
            return f32_to_bf16_bits(v).astype("<u2").tobytes()
        raise AssertionError(self.dtype)


def f32_to_bf16_bits(v: np.ndarray) -> np.ndarray:
    bits = v.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(v)
    rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)  # keep NaNs NaN (quiet)
    return rounded


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


@dataclass
class NqFile:
    version: int
    flags: int
    method: str
    scope: str
    group_size: int
    file_size: int
    data_offset: int
    shared_codebook: Optional[np.ndarray]
    shared_code: Optional[Huffman]
    tensors: dict  # name -> NqTensor, directory order


# ----------------------------------------------------------------------------------------------------------------
# The file
# ----------------------------------------------------------------------------------------------------------------

def read_nq(src) -> NqFile:
    data = bytes(src) if isinstance(src, (bytes, bytearray, memoryview)) else Path(src).read_bytes()
    size = len(data)

    # --- file header (48 bytes) ---
    if size < HEADER_SIZE + 4 + 8:
        _fail(f"file of {size} bytes is shorter than the fixed header, header CRC and trailer")
    if data[:8] != MAGIC:
        _fail("bad magic")
    version, flags, method, scope, reserved1, group, count, reserved2, d_off, declared = struct.unpack_from(
        "<HHBBHQIIQQ", data, 8)
    if declared != size:  # "truncation is caught before anything else is read"
        _fail(f"file size field {declared} != real size {size}")
    if version not in (1, 2):
        _fail(f"unknown version {version}")
    if flags & ~1:
        _fail(f"unknown flags {flags:#x}")
    if method >= len(METHODS):
        _fail(f"unknown method {method}")
    if scope >= len(SCOPES):
        _fail(f"unknown scope {scope}")
    if reserved1 or reserved2:
        _fail("reserved header fields are not 0")
    scope_name = SCOPES[scope]
    if (scope_name == "group") != (group > 0) or group >= 1 << 62:  # README: "G (scope group: 0 < G < 2^62)"
        _fail(f"group size {group} does not fit scope {scope_name}")
    if flags & 1 and scope_name != "global":
        _fail("shared Huffman table flag outside global scope")
    if not (HEADER_SIZE + 4 <= d_off <= size - 8):
        _fail(f"payload offset D={d_off} outside the file")

    # --- header CRC, checked before parsing the directory ---
    (header_crc,) = struct.unpack_from("<I", data, d_off - 4)
    if zlib.crc32(data[:d_off - 4]) != header_crc:
        _fail("header CRC mismatch")
    cur = Cursor(data, HEADER_SIZE, d_off - 4)

    # --- global section ---
    shared_codebook, shared_code = None, None
    if scope_name == "global":
        k = cur.varint("global k")
        if k > 65536:
            _fail(f"global codebook of {k} levels > 65,536")
        shared_codebook = cur.f32s(k, "global codebook")
        if flags & 1:
            a = cur.varint("shared table alphabet")
            if a != k:
                _fail(f"shared table alphabet {a} != k {k}")
            shared_code = Huffman(read_code_lengths(cur, a, "shared code-length table"), "shared code", None)

    # --- directory ---
    if count > (d_off - HEADER_SIZE) // 8:  # a record takes well over 8 bytes
        _fail(f"tensor count {count} cannot fit the directory")
    tensors: dict[str, NqTensor] = {}
    for _ in range(count):
        nlen = cur.varint("name length")
        if nlen > 65535:
            _fail(f"name of {nlen} bytes > 65,535")
        raw_name = cur.bytes(nlen, "name")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            _fail("name is not UTF-8")
        if name in tensors:
            _fail("name appears twice", name)
        cur.tensor = name
        dt = cur.u8("dtype")
        if dt not in DTYPES:
            _fail(f"unknown dtype {dt}", name)
        storage = cur.u8("storage")
        if storage not in (0, 1):
            _fail(f"unknown storage {storage}", name)
        if storage == 0 and dt not in FLOAT_DTYPES:
            _fail("quantized tensor of a non-float dtype", name)
        ndim = cur.u8("ndim")
        if ndim > 32:
            _fail(f"ndim {ndim} > 32", name)
        shape, numel = [], 1
        for _ in range(ndim):
            d = cur.varint("dimension")
            if d >= 1 << 62:
                _fail(f"dimension {d} >= 2^62", name)
            shape.append(d)
            numel *= d
            if numel > 1 << 62:  # README: "their product numel ≤ 2^62" (checked as it grows)
                _fail("element count overflows", name)
        t = NqTensor(name, DTYPES[dt][0], tuple(shape), storage == 0)
        if t.quantized:
            t.problem_size = cur.varint("problem size")
            t.problem_count = cur.varint("problem count")
            t.pruned = cur.varint("pruned count")
            if t.problem_size >= 1 << 62:  # README: "P < 2^62"
                _fail(f"problem size {t.problem_size} >= 2^62", name)
            if numel > 0:  # README: a tensor of no elements is not checked (it has no codebook problem)
                if t.problem_size == 0:
                    _fail("problem size 0", name)
                expected = -(-numel // t.problem_size)
                if t.problem_count != expected:
                    _fail(f"problem count {t.problem_count} != ceil({numel} / {t.problem_size}) = {expected}", name)
                if scope_name == "global" and t.problem_count != 1:  # so P >= numel there
                    _fail(f"global scope with {t.problem_count} problems", name)
            if t.pruned > numel:
                _fail(f"pruned count {t.pruned} > {numel} weights", name)
        t.payload_offset = cur.u64("payload offset")
        t.payload_length = cur.u64("payload length")
        t.payload_crc = cur.u32("payload CRC")
        tensors[name] = t
        cur.tensor = None
    if cur.pos != d_off - 4:
        _fail(f"{d_off - 4 - cur.pos} stray bytes between the directory and the header CRC")

    # --- payloads tile [D, size - 8) in directory order ---
    at = d_off
    for t in tensors.values():
        if t.payload_offset != at:
            _fail(f"payload at {t.payload_offset}, expected {at}", t.name)
        if t.payload_length > size - 8 - at:
            _fail("payload runs past the trailer", t.name)
        at += t.payload_length
    if at != size - 8:
        _fail(f"payloads end at {at}, not at the trailer ({size - 8})")

    nq = NqFile(version, flags, METHODS[method], scope_name, group, size, d_off, shared_codebook, shared_code,
                tensors)
    # --- each payload: CRC, then decode ---
    for t in tensors.values():
        payload = data[t.payload_offset:t.payload_offset + t.payload_length]
        if zlib.crc32(payload) != t.payload_crc:
            _fail("payload CRC mismatch", t.name)
        if t.quantized:
            _decode_quantized(nq, t, data)
        else:
            _decode_raw(t, payload)

    # --- trailer ---
    (file_crc,) = struct.unpack_from("<I", data, size - 8)
    if data[size - 4:] != TRAILER_MAGIC:
        _fail("bad trailer magic")
    if zlib.crc32(data[:size - 8]) != file_crc:
        _fail("file CRC mismatch")
    return nq


def _decode_raw(t: NqTensor, payload: bytes) -> None:
    # README "Raw payload": numel x dtype-size bytes, original dtype, little-endian.
    dt = {v[0]: v[1] for v in DTYPES.values()}[t.dtype]
    if len(payload) != t.numel * dt.itemsize:
        _fail(f"raw payload of {len(payload)} bytes, expected {t.numel * dt.itemsize}", t.name)
    t.raw = payload
    a = np.frombuffer(payload, dtype=dt).reshape(t.shape)
    t.values = bf16_bits_to_f32(a) if t.dtype == "BF16" else a.astype(dt.newbyteorder("="))


def _decode_quantized(nq: NqFile, t: NqTensor, data: bytes) -> None:
    name, numel = t.name, t.numel
    kept = numel - t.pruned
    cur = Cursor(data, t.payload_offset, t.payload_offset + t.payload_length, name)

    # codebooks: varint C (global: 0; else the problem count), then per codebook varint k and k x f32
    c = cur.varint("codebook count")
    expected_c = 0 if nq.scope == "global" else t.problem_count
    if c != expected_c:
        _fail(f"{c} codebooks, expected {expected_c}", name)
    if nq.scope == "global":
        codebooks = [nq.shared_codebook]
    else:
        codebooks = []
        for _ in range(c):
            k = cur.varint("codebook size")
            if k > 65536:
                _fail(f"codebook of {k} levels > 65,536", name)
            codebooks.append(cur.f32s(k, "codebook"))
    t.codebooks = codebooks
    ks = np.array([len(cb) for cb in codebooks], dtype=np.int64)
    largest_k = int(ks.max()) if len(ks) else 0

    # index coder (version 2 only)
    coder = 0
    if nq.version == 2:
        coder = cur.u8("index coder")
        if coder not in (0, 1):
            _fail(f"unknown index coder {coder}", name)
    t.coder = "rans" if coder else "huffman"

    if coder == 0:
        if nq.shared_code is not None:
            code = nq.shared_code
        else:
            a = cur.varint("index alphabet")
            if a != largest_k:
                _fail(f"index alphabet {a} != the largest k {largest_k}", name)
            code = Huffman(read_code_lengths(cur, a, "index code-length table"), "index code", name)
            t.index_code_lengths = code.lengths
        nbits = cur.varint("index stream bits")
        t.index_stream_bits = nbits
        # every coded symbol costs at least one bit, at most 16: bound the count before decoding
        if nbits < kept or nbits > 16 * kept:
            _fail(f"index stream of {nbits} bits for {kept} kept weights", name)
        nbytes = (nbits + 7) // 8
        cur.need(nbytes, "index stream")
        idx = code.decode(data, cur.pos, nbits, kept)
        cur.pos += nbytes
    else:
        idx = _read_rans(cur, kept, largest_k, name)
    idx = np.asarray(idx, dtype=np.int64)

    # positions of kept weights (pruned count > 0)
    if t.pruned > 0:
        kept_pos = _read_positions(cur, numel, kept, name, t)
    else:
        kept_pos = np.arange(numel, dtype=np.int64)
    if cur.pos != cur.end:
        _fail(f"{cur.end - cur.pos} stray bytes after the last field", name)

    # dequantize: index i of weight j refers to codebook floor(j / P) (global: the shared one), and must be < its k
    prob = np.zeros(len(kept_pos), np.int64) if nq.scope == "global" else kept_pos // t.problem_size
    bad = idx >= ks[prob] if len(kept_pos) else np.zeros(0, bool)
    if bad.any():
        j = int(np.argmax(bad))
        _fail(f"index {int(idx[j])} of weight {int(kept_pos[j])} outside its codebook of {int(ks[prob[j]])}", name)
    offsets = np.concatenate([[0], np.cumsum(ks)]).astype(np.int64)
    flat_cb = np.concatenate(codebooks).astype(np.float32) if len(codebooks) else np.zeros(0, np.float32)
    values = np.zeros(numel, dtype=np.float32)  # a pruned weight is exactly +0
    values[kept_pos] = flat_cb[offsets[prob] + idx]
    indices = np.full(numel, -1, dtype=np.int32)
    indices[kept_pos] = idx
    t.indices = indices.reshape(t.shape)
    t.values = values.reshape(t.shape)


def _read_rans(cur: Cursor, kept: int, largest_k: int, name: str) -> list[int]:
    """README "Version 2: rANS index streams"."""
    a = cur.varint("rANS alphabet")
    if a != largest_k:
        _fail(f"rANS alphabet {a} != the largest k {largest_k}", name)
    s_bits = cur.u8("rANS scale")
    if not 1 <= s_bits <= 16:
        _fail(f"rANS scale {s_bits} outside 1..16", name)
    freqs = [cur.varint("rANS frequency") for _ in range(a)]
    if sum(freqs) != 1 << s_bits:
        _fail(f"rANS frequencies sum to {sum(freqs)}, not 2^{s_bits}", name)
    starts = [0] * a
    acc = 0
    for s, f in enumerate(freqs):
        starts[s] = acc
        acc += f
    slot2sym = np.repeat(np.arange(a, dtype=np.int64), freqs).tolist()

    section = cur.varint("rANS section length")
    cur.need(section, "rANS section")
    sec = Cursor(cur.data, cur.pos, cur.pos + section, name)
    cur.pos += section
    n = sec.varint("rANS symbols per chunk")
    if not 1 <= n <= MAX_CHUNK:
        _fail(f"rANS chunk of {n} symbols outside 1..2^20", name)
    nchunks = -(-kept // n)
    if nchunks * 17 > section:  # each chunk takes >= 17 bytes with its length: bound before allocating
        _fail(f"{kept} kept weights cannot fit a rANS section of {section} bytes", name)
    lengths = [sec.varint("rANS chunk length") for _ in range(nchunks)]
    if any(l < 16 for l in lengths):
        _fail("rANS chunk shorter than 16 bytes", name)
    if sum(lengths) != sec.end - sec.pos:
        _fail(f"rANS chunks of {sum(lengths)} bytes do not fill the section's {sec.end - sec.pos}", name)

    mask, data, out = (1 << s_bits) - 1, cur.data, []
    for ci, clen in enumerate(lengths):
        count = min(n, kept - ci * n)
        p, end = sec.pos, sec.pos + clen
        sec.pos = end
        x = list(struct.unpack_from("<4I", data, p))
        p += 16
        if any(not RANS_L <= v < RANS_HI for v in x):
            _fail(f"rANS chunk {ci}: a state outside [2^23, 2^31)", name)
        for i in range(count):
            j = i & 3
            v = x[j]
            slot = v & mask
            s = slot2sym[slot]
            v = freqs[s] * (v >> s_bits) + slot - starts[s]
            while v < RANS_L:
                if p >= end:
                    _fail(f"rANS chunk {ci}: needs more bytes than its {clen}", name)
                v = (v << 8) | data[p]
                p += 1
            x[j] = v
            out.append(s)
        if any(v != RANS_L for v in x):
            _fail(f"rANS chunk {ci}: final states are not 2^23", name)
        if p != end:
            _fail(f"rANS chunk {ci}: {end - p} bytes left unread", name)
    return out


def _read_positions(cur: Cursor, numel: int, kept: int, name: str, t: NqTensor) -> np.ndarray:
    """README "Positions of kept weights": gap symbols of w bits; s < 2^w - 1 skips s pruned weights then one
    kept weight; 2^w - 1 skips 2^w - 1 pruned weights; the last ordinary symbol lands exactly at numel."""
    w = cur.u8("gap width")
    if not 1 <= w <= 16:
        _fail(f"gap width {w} outside 1..16", name)
    code = Huffman(read_code_lengths(cur, 1 << w, "gap code-length table"), "gap code", name)
    nbits = cur.varint("gap stream bits")
    t.gap_code_lengths, t.gap_stream_bits = code.lengths, nbits
    nbytes = (nbits + 7) // 8
    cur.need(nbytes, "gap stream")
    filler = (1 << w) - 1
    state = {"pos": 0, "kept": []}

    def step(s: int) -> bool:  # True when the stream must end here
        if s == filler:
            state["pos"] += filler
            if state["pos"] > numel:
                _fail("gap stream runs past the tensor", name)
            return False
        target = state["pos"] + s
        if target > numel:
            _fail("gap stream runs past the tensor", name)
        if target == numel:
            return True
        state["kept"].append(target)
        state["pos"] = target + 1
        return False

    code._run(cur.data, cur.pos, nbits, None, step)
    cur.pos += nbytes
    positions = np.asarray(state["kept"], dtype=np.int64)
    if len(positions) != kept:
        _fail(f"gap stream gives {len(positions)} kept weights, the directory {kept}", name)
    return positions


def load(src) -> dict:
    """name -> array: float32 for quantized tensors, the original dtype for raw ones (bfloat16 as float32)."""
    return {name: t.values for name, t in read_nq(src).tensors.items()}
