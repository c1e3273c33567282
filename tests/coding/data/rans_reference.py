#!/usr/bin/env python3
"""An independent byte-wise rANS coder, written from the format description in src/coding/rans.h (not from
rans.cpp), that produces the pinned vector of TEST(Rans, MatchesTheReferenceCoder) in tests/coding/test_rans.cpp.

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

if __name__ == "__main__":
    section = encode_section(FREQ, SCALE, SYMBOLS, CHUNK_SYMBOLS)
    print(f"// {len(section)} bytes")
    for i in range(0, len(section), 16):
        print("    " + ", ".join(f"0x{b:02x}" for b in section[i:i + 16]) + ",")
