#!/usr/bin/env python3
"""An independent byte-wise rANS coder, written from the format description in src/coding/rans.h (not from
rans.cpp), that produces the pinned vector of TEST(Rans, MatchesTheReferenceCoder) in tests/coding/test_rans.cpp, and
the sizes and FNV-1a hashes of TEST(Rans, LongSectionsMatchTheReferenceCoder) (symbols drawn by an LCG both sides
share), which run long enough for the coder's grouped loops and its one-symbol loop to meet every tail.

Format: a chunk has STATES = 4 interleaved states; symbol i of a chunk goes through state i mod 4. Each state x lives
in [L, 256*L), L = 2^23. A chunk is coded from its last symbol to its first, every state starting at L; before coding
a symbol of frequency f with state x the encoder emits x's low byte while x >= ((L >> scale) << 8) * f, then
x = (x // f) * 2^scale + x % f + start. The chunk's bytes are the final states (state 0 first, 4 bytes each,
little-endian), then the emitted bytes in the order the decoder reads them (the reverse of emission). A section is
[varint chunk_symbols][varint bytes of each chunk][the chunks], varints LEB128.

Run: python3 tests/coding/data/rans_reference.py   (prints the section as a C++ initializer)
"""

L = 1 << 23
STATES = 4


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def starts_of(freq):
    start, at = [], 0
    for f in freq:
        start.append(at)
        at += f
    return start


def encode_chunk(freq, scale, symbols):
    start = starts_of(freq)
    x, emitted = [L] * STATES, []
    for i in reversed(range(len(symbols))):
        s, k = symbols[i], i % STATES
        f = freq[s]
        while x[k] >= ((L >> scale) << 8) * f:
            emitted.append(x[k] & 0xFF)
            x[k] >>= 8
        x[k] = (x[k] // f) * (1 << scale) + x[k] % f + start[s]
    assert all(L <= v < 256 * L for v in x)
    return b"".join(v.to_bytes(4, "little") for v in x) + bytes(reversed(emitted))


def decode_chunk(freq, scale, data, count):
    start, mask = starts_of(freq), (1 << scale) - 1
    x = [int.from_bytes(data[4 * k:4 * k + 4], "little") for k in range(STATES)]
    p, out = 4 * STATES, []
    for i in range(count):
        k = i % STATES
        slot = x[k] & mask
        s = next(j for j in range(len(freq)) if start[j] <= slot < start[j] + freq[j])
        x[k] = freq[s] * (x[k] >> scale) + slot - start[s]
        while x[k] < L:
            x[k] = (x[k] << 8) | data[p]
            p += 1
        out.append(s)
    assert all(v == L for v in x) and p == len(data)
    return out


def encode_section(freq, scale, symbols, chunk_symbols):
    assert sum(freq) == 1 << scale
    chunks = [encode_chunk(freq, scale, symbols[b:b + chunk_symbols])
              for b in range(0, len(symbols), chunk_symbols)]
    for b, chunk in zip(range(0, len(symbols), chunk_symbols), chunks):
        assert decode_chunk(freq, scale, chunk, len(symbols[b:b + chunk_symbols])) == symbols[b:b + chunk_symbols]
    return varint(chunk_symbols) + b"".join(varint(len(c)) for c in chunks) + b"".join(chunks)


# The pinned case: scale 12 with a zero-frequency symbol (2) and a frequency-1 symbol (7, which makes the encoder
# emit two bytes at once), 40 symbols in chunks of 16 (16 + 16 + 8).
SCALE = 12
FREQ = [2000, 1200, 0, 600, 250, 40, 5, 1]
SYMBOLS = [0, 1, 0, 3, 0, 0, 7, 1, 4, 0, 0, 1, 5, 0, 3, 0,
           1, 0, 0, 6, 0, 4, 1, 0, 0, 3, 0, 7, 7, 0, 1, 0,
           0, 5, 0, 0, 1, 3, 0, 6]
CHUNK_SYMBOLS = 16


def lcg_symbols(freq, scale, n, seed):
    """n symbols drawn with the table's own probabilities: a 64-bit LCG, its bits 33.. as a slot."""
    start, x, out = starts_of(freq), seed, []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        slot = (x >> 33) & ((1 << scale) - 1)
        out.append(next(j for j in range(len(freq)) if start[j] <= slot < start[j] + freq[j]))
    return out


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


# The long cases: (name, scale, freq, n, chunk_symbols, seed). The first codes at about 1.8 bits per symbol, the
# second at about 0.17 (below the coder's grouped-loop threshold), the third at about 8.0 bits with frequency-1
# symbols at scale 16 (two bytes per step); none has a multiple of 4 symbols per chunk.
LONG_CASES = [
    ("1.8 bits", 12, FREQ, 5003, 1001, 11),
    ("0.17 bits", 12, [4000, 90, 5, 1], 20011, 4099, 12),
    ("8.0 bits", 16, [256 - 1] * 255 + [1] * 255 + [65536 - 255 * 256], 3001, 1499, 13),
]

if __name__ == "__main__":
    section = encode_section(FREQ, SCALE, SYMBOLS, CHUNK_SYMBOLS)
    print(f"// {len(section)} bytes")
    for i in range(0, len(section), 16):
        print("    " + ", ".join(f"0x{b:02x}" for b in section[i:i + 16]) + ",")
    for name, scale, freq, n, chunk, seed in LONG_CASES:
        assert sum(freq) == 1 << scale, name
        sec = encode_section(freq, scale, lcg_symbols(freq, scale, n, seed), chunk)
        print(f"// {name}: {len(sec)} bytes, FNV-1a 0x{fnv1a64(sec):016x}")
