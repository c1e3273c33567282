#!/usr/bin/env python3
"""An independent byte-wise rANS coder, written from the format description in src/coding/rans.h (not from
rans.cpp), that produces the pinned vector of TEST(Rans, MatchesTheReferenceCoder) in tests/coding/test_rans.cpp.

Format: the state x lives in [L, 256*L), L = 2^23. A chunk is coded from its last symbol to its first, starting in
state L; before coding a symbol of frequency f the encoder emits x's low byte while x >= ((L >> scale) << 8) * f,
then x = (x // f) * 2^scale + x % f + start. The chunk's bytes are the final state (4 bytes, little-endian), then
the emitted bytes in the order the decoder reads them (the reverse of emission). A section is
[varint chunk_symbols][varint bytes of each chunk][the chunks], varints LEB128.

Run: python3 tests/coding/data/rans_reference.py   (prints the section as a C++ initializer)
"""

L = 1 << 23


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
    x, emitted = L, []
    for s in reversed(symbols):
        f = freq[s]
        while x >= ((L >> scale) << 8) * f:
            emitted.append(x & 0xFF)
            x >>= 8
        x = (x // f) * (1 << scale) + x % f + start[s]
    assert L <= x < 256 * L
    return x.to_bytes(4, "little") + bytes(reversed(emitted))


def decode_chunk(freq, scale, data, count):
    start, mask = starts_of(freq), (1 << scale) - 1
    x, p, out = int.from_bytes(data[:4], "little"), 4, []
    for _ in range(count):
        slot = x & mask
        s = next(i for i in range(len(freq)) if start[i] <= slot < start[i] + freq[i])
        x = freq[s] * (x >> scale) + slot - start[s]
        while x < L:
            x = (x << 8) | data[p]
            p += 1
        out.append(s)
    assert x == L and p == len(data)
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

if __name__ == "__main__":
    section = encode_section(FREQ, SCALE, SYMBOLS, CHUNK_SYMBOLS)
    print(f"// {len(section)} bytes")
    for i in range(0, len(section), 16):
        print("    " + ", ".join(f"0x{b:02x}" for b in section[i:i + 16]) + ",")
