// Streams for the Huffman packer tests (host emulation in tests/coding, device in tests/cuda): skewed symbol
// streams of awkward lengths under limited codes, and BitWriter's bytes for them (the oracle).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "coding/bit_io.h"
#include "coding/huffman.h"

namespace nq::coding::pack_cases {

struct Stream {
  std::vector<int32_t> symbols;
  std::vector<uint8_t> lengths;
  uint64_t bits = 0;
};

// n symbols over an alphabet of `alphabet`, geometric-ish (long codes up to the 15/16-bit limit appear).
inline Stream make_stream(size_t n, uint32_t alphabet, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::geometric_distribution<int> g(alphabet > 1000 ? 0.002 : 0.3);
  Stream s;
  std::vector<uint64_t> counts(alphabet, 0);
  for (size_t i = 0; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(g(rng)) % alphabet);
    s.symbols.push_back(v);
    ++counts[static_cast<size_t>(v)];
  }
  if (n == 0) counts.assign(alphabet, 0);
  s.lengths = huffman_code_lengths(counts);
  s.bits = huffman_stream_bits(counts, s.lengths);
  return s;
}

inline std::vector<uint8_t> bitwriter_bytes(const Stream& s) {
  BitWriter bw(s.bits);
  if (!s.symbols.empty()) HuffmanEncoder(s.lengths).encode(s.symbols.data(), s.symbols.size(), bw);
  return bw.finish();
}

}  // namespace nq::coding::pack_cases
