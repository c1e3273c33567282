// Huffman bit packing as a data-parallel scatter (the GPU encoder): each symbol's bit offset is an exclusive
// scan of the code lengths, and its codeword lands in at most two 32-bit words of the stream. OR-ing the pieces
// into zeroed words gives exactly BitWriter's MSB-first bytes (the bits of different symbols never overlap, and
// OR commutes, so the result does not depend on the order the pieces arrive in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define NQ_CODING_HD __host__ __device__
#else
#define NQ_CODING_HD
#endif

namespace nq::coding {

// The two word masks of a codeword (len ≤ 16 bits, value `code`) at stream bit offset `bit`: first goes into word
// bit / 32, second (possibly 0) into the next one. Words hold bits MSB-first: stream bit p is bit 31 − p % 32
// of word p / 32 (stored big-endian, see to_stream_order).
struct CodeMasks {
  uint32_t first, second;
};
NQ_CODING_HD inline CodeMasks code_masks(uint64_t bit, uint32_t code, int len) {
  const int s = static_cast<int>(bit & 31u);
  const int end = s + len;  // ≤ 31 + 16
  if (end <= 32) return {code << (32 - end), 0u};
  return {code >> (end - 32), code << (64 - end)};
}

// A word as the stream's four bytes in memory order (big-endian), from its numeric value.
NQ_CODING_HD inline uint32_t to_stream_order(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0x0000ff00u) | ((v << 8) & 0x00ff0000u) | (v << 24);
}

}  // namespace nq::coding

namespace nq::cuda {

// The Huffman stream of symbols[0, n) under `table` (HuffmanEncoder::table(): (length << 16) | code per symbol),
// total_bits long: the bytes BitWriter::finish() returns after HuffmanEncoder::encode, computed on the device
// (host pointers; copies in and out). kInternal when a symbol is outside the table or has no code; kUnavailable
// in a build without CUDA.
std::vector<uint8_t> huffman_pack(const int32_t* symbols, size_t n, const std::vector<uint32_t>& table,
                                  uint64_t total_bits);

}  // namespace nq::cuda
