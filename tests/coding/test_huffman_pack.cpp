// The GPU packer's placement rule (huffman_pack.h code_masks / to_stream_order), run on the host: OR-ing every
// codeword's masks into zeroed words, in scrambled order, must give BitWriter's bytes exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

#include "coding/huffman_pack.h"
#include "coding/huffman_pack_cases.h"

namespace nq::coding {
namespace {

std::vector<uint8_t> pack_on_host(const pack_cases::Stream& s, uint64_t seed) {
  const HuffmanEncoder encoder(s.lengths);
  const std::vector<uint32_t>& table = encoder.table();
  std::vector<uint64_t> offset(s.symbols.size());
  uint64_t bit = 0;
  for (size_t i = 0; i < s.symbols.size(); ++i) {
    offset[i] = bit;
    bit += table[static_cast<size_t>(s.symbols[i])] >> 16;
  }
  EXPECT_EQ(bit, s.bits);
  std::vector<uint32_t> words(static_cast<size_t>(bit / 32) + 2, 0u);
  std::vector<size_t> order(s.symbols.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));  // the device's arrival order is arbitrary
  for (const size_t i : order) {
    const uint32_t e = table[static_cast<size_t>(s.symbols[i])];
    const CodeMasks m = code_masks(offset[i], e & 0xffffu, static_cast<int>(e >> 16));
    words[offset[i] / 32] |= to_stream_order(m.first);
    words[offset[i] / 32 + 1] |= to_stream_order(m.second);
  }
  std::vector<uint8_t> out(static_cast<size_t>((bit + 7) / 8));
  if (!out.empty()) std::memcpy(out.data(), words.data(), out.size());  // an empty vector's data may be null
  return out;
}

TEST(HuffmanPack, PlacementRuleGivesBitWriterBytes) {
  uint64_t seed = 1;
  for (const size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{31}, size_t{33}, size_t{4095},
                         size_t{4096}, size_t{4097}, size_t{100003}})
    for (const uint32_t alphabet : {1u, 2u, 17u, 256u, 40000u}) {
      const pack_cases::Stream s = pack_cases::make_stream(n, alphabet, ++seed);
      EXPECT_EQ(pack_on_host(s, seed), pack_cases::bitwriter_bytes(s)) << "n=" << n << " alphabet=" << alphabet;
    }
}

TEST(HuffmanPack, MasksSplitAcrossWordsExactly) {
  // Every offset within a word and every length: the two masks hold exactly the code's bits, MSB-first.
  for (int len = 1; len <= 16; ++len)
    for (uint64_t bit = 0; bit < 64; ++bit) {
      const uint32_t code = (0xA5C3u >> (16 - len)) | 1u;
      const CodeMasks m = code_masks(bit, code & ((1u << len) - 1u), len);
      const uint64_t joined = (static_cast<uint64_t>(m.first) << 32) | m.second;
      const int s = static_cast<int>(bit % 32);
      EXPECT_EQ(joined, static_cast<uint64_t>(code & ((1u << len) - 1u)) << (64 - s - len)) << len << " " << bit;
    }
}

}  // namespace
}  // namespace nq::coding
