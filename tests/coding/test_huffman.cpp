// Canonical length-limited Huffman: optimality against brute force and unlimited Huffman, Kraft, limits,
// canonical order, round trips over adversarial distributions, truncation safety, stored tables.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "coding/huffman.h"
#include "coding_test_util.h"
#include "netquant/error.h"

using namespace nq;
using namespace nq::coding;

namespace {


// Exhaustive search over every length assignment in 1..limit with Kraft sum <= 1.
uint64_t brute_force_cost(const std::vector<uint64_t>& counts, int limit) {
  std::vector<uint64_t> used;
  for (uint64_t c : counts)
    if (c) used.push_back(c);
  if (used.size() <= 1) return used.empty() ? 0 : used[0];
  uint64_t best = ~uint64_t{0};
  std::vector<int> len(used.size(), 1);
  std::function<void(size_t, uint64_t, uint64_t)> rec = [&](size_t i, uint64_t kraft, uint64_t cost) {
    if (kraft > (uint64_t{1} << limit)) return;
    if (i == used.size()) {
      best = std::min(best, cost);
      return;
    }
    for (int l = 1; l <= limit; ++l) rec(i + 1, kraft + (uint64_t{1} << (limit - l)), cost + used[i] * l);
  };
  rec(0, 0, 0);
  return best;
}

uint64_t kraft_sum16(const std::vector<uint8_t>& lengths) {
  uint64_t k = 0;
  for (uint8_t l : lengths)
    if (l) k += uint64_t{1} << (16 - l);
  return k;
}

std::vector<uint8_t> round_trip(const std::vector<uint32_t>& symbols, const std::vector<uint8_t>& lengths) {
  HuffmanEncoder enc(lengths);
  BitWriter w;
  enc.encode(symbols.data(), symbols.size(), w);
  const uint64_t bits = w.bit_count();
  auto bytes = w.finish();
  EXPECT_EQ(bytes.size(), (bits + 7) / 8);
  HuffmanDecoder dec(lengths, "test");
  BitReader r(bytes.data(), bytes.size(), bits);
  std::vector<uint32_t> out(symbols.size());
  dec.decode(r, out.data(), out.size());
  EXPECT_EQ(r.consumed_bits(), bits);
  EXPECT_EQ(out, symbols);
  return bytes;
}

std::vector<uint32_t> sample(const std::vector<uint64_t>& counts, std::mt19937_64& rng) {
  std::vector<uint32_t> s;
  for (size_t i = 0; i < counts.size(); ++i)
    for (uint64_t c = 0; c < counts[i]; ++c) s.push_back(static_cast<uint32_t>(i));
  std::shuffle(s.begin(), s.end(), rng);
  return s;
}

}  // namespace

TEST(Huffman, OptimalVersusBruteForceSmallAlphabets) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 2 + rng() % 6;  // 2..7 symbols
    std::vector<uint64_t> counts(n);
    for (auto& c : counts) c = (rng() % 4 == 0) ? 0 : 1 + rng() % (trial % 2 ? 1000 : 10);
    if (trial % 5 == 0) counts[0] = 1000000;  // skewed
    size_t used = std::count_if(counts.begin(), counts.end(), [](uint64_t c) { return c > 0; });
    if (used < 2) continue;
    int min_limit = 1;
    while ((size_t{1} << min_limit) < used) ++min_limit;
    for (int limit = min_limit; limit <= 7; ++limit) {
      const auto lengths = huffman_code_lengths(counts, limit);
      EXPECT_EQ(huffman_stream_bits(counts, lengths), brute_force_cost(counts, limit)) << "limit " << limit;
      EXPECT_EQ(kraft_sum16(lengths), uint64_t{1} << 16);
      for (size_t s = 0; s < n; ++s) EXPECT_EQ(lengths[s] == 0, counts[s] == 0);
    }
  }
}

TEST(Huffman, MatchesUnlimitedHuffmanWhenLimitNotBinding) {
  std::mt19937_64 rng(12);
  for (size_t n : {2u, 3u, 7u, 8u, 9u, 16u, 17u, 33u, 256u, 1000u}) {
    std::vector<uint64_t> counts(n);
    for (auto& c : counts) c = 200 + rng() % 5000;  // max/min < 2^6: no code longer than ~log2(n) + 6
    const auto lengths = huffman_code_lengths(counts);
    EXPECT_EQ(huffman_stream_bits(counts, lengths), nq::testing::unlimited_huffman_cost(counts)) << n;
  }
}

TEST(Huffman, FibonacciCountsHitTheLimitAndStayOptimal) {
  // Fibonacci counts make an unlimited Huffman tree a chain: depth n-1.
  std::vector<uint64_t> counts = {1, 1};
  while (counts.size() < 40) counts.push_back(counts[counts.size() - 1] + counts[counts.size() - 2]);
  const auto lengths = huffman_code_lengths(counts);
  EXPECT_EQ(*std::max_element(lengths.begin(), lengths.end()), kDefaultCodeLimit);
  EXPECT_EQ(kraft_sum16(lengths), uint64_t{1} << 16);
  EXPECT_GE(huffman_stream_bits(counts, lengths), nq::testing::unlimited_huffman_cost(counts));
  // Small version checked exhaustively: 7 Fibonacci symbols, limit 4 (unlimited depth would be 6).
  std::vector<uint64_t> small(counts.begin(), counts.begin() + 7);
  for (int limit = 3; limit <= 6; ++limit)
    EXPECT_EQ(huffman_stream_bits(small, huffman_code_lengths(small, limit)), brute_force_cost(small, limit));
  std::mt19937_64 rng(13);
  std::vector<uint64_t> moderate(counts.begin(), counts.begin() + 25);  // ~200k symbols
  round_trip(sample(moderate, rng), huffman_code_lengths(moderate));
}

TEST(Huffman, CanonicalOrder) {
  std::mt19937_64 rng(14);
  std::vector<uint64_t> counts(300);
  for (auto& c : counts) c = rng() % 3 ? 1 + rng() % 100000 / (1 + rng() % 100) : 0;
  const auto lengths = huffman_code_lengths(counts);
  const auto codes = canonical_codes(lengths);
  // Sorted by (length, symbol), the left-justified codes increase strictly: canonical and prefix-free.
  std::vector<size_t> order;
  for (size_t s = 0; s < lengths.size(); ++s)
    if (lengths[s]) order.push_back(s);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] < lengths[b]; });
  EXPECT_EQ(codes[order[0]], 0u);
  for (size_t i = 1; i < order.size(); ++i) {
    const uint32_t prev = codes[order[i - 1]] << (16 - lengths[order[i - 1]]);
    const uint32_t cur = codes[order[i]] << (16 - lengths[order[i]]);
    const uint32_t prev_end = prev + (1u << (16 - lengths[order[i - 1]]));
    EXPECT_EQ(cur, prev_end) << "canonical codes are consecutive";
  }
}

TEST(Huffman, OneAndTwoSymbols) {
  std::vector<uint64_t> one(10, 0);
  one[7] = 12345;
  auto l1 = huffman_code_lengths(one);
  EXPECT_EQ(l1[7], 1);
  EXPECT_EQ(std::count(l1.begin(), l1.end(), 0), 9);
  EXPECT_TRUE(check_code_lengths(l1).empty());
  auto bytes = round_trip(std::vector<uint32_t>(100, 7), l1);
  EXPECT_EQ(bytes.size(), 13u);  // one bit per symbol
  // The unused codeword '1' is rejected.
  const uint8_t ones[2] = {0xff, 0xff};
  HuffmanDecoder dec(l1, "one");
  for (size_t n : {1u, 3u, 4u, 6u}) {  // the table fast path (multiples of 3) and the one-by-one tail
    BitReader r(ones, 2, 16);
    uint32_t out[6];
    EXPECT_THROW(dec.decode(r, out, n), Error) << n;
  }
  const uint8_t mixed[2] = {0x00, 0x01};  // fifteen '0's then a '1'
  BitReader rm(mixed, 2, 16);
  uint32_t out16[16];
  EXPECT_THROW(dec.decode(rm, out16, 16), Error);

  std::vector<uint64_t> two = {0, 5, 0, 1000000};
  auto l2 = huffman_code_lengths(two);
  EXPECT_EQ(l2[1], 1);
  EXPECT_EQ(l2[3], 1);
  std::mt19937_64 rng(15);
  std::vector<uint64_t> small_two = {0, 5, 0, 1000};
  round_trip(sample(small_two, rng), l2);
  EXPECT_TRUE(huffman_code_lengths(std::vector<uint64_t>(5, 0)) == std::vector<uint8_t>(5, 0));
}

TEST(Huffman, RoundTripsRandomAndAdversarial) {
  std::mt19937_64 rng(16);
  // Realistic skew (geometric-ish), one dominant symbol, uniform, every size class.
  for (size_t n : {2u, 3u, 5u, 16u, 31u, 256u, 257u, 4099u}) {
    std::vector<uint64_t> geo(n), dom(n, 1), uni(n);
    for (size_t i = 0; i < n; ++i) {
      geo[i] = 1 + static_cast<uint64_t>(20000.0 * std::pow(0.7, static_cast<double>(i % 40)));
      uni[i] = 3 + rng() % 3;
    }
    dom[n / 2] = 200000;
    for (const auto* counts : {&geo, &dom, &uni}) {
      const auto lengths = huffman_code_lengths(*counts);
      ASSERT_TRUE(check_code_lengths(lengths).empty());
      for (uint8_t l : lengths) EXPECT_LE(l, kDefaultCodeLimit);
      round_trip(sample(*counts, rng), lengths);
    }
  }
}

TEST(Huffman, FullSixteenBitAlphabet) {
  std::mt19937_64 rng(17);
  std::vector<uint64_t> counts(kMaxAlphabet);
  for (auto& c : counts) c = 1 + rng() % 4;
  counts[0] = 1000000;  // forces the limit: 65536 used symbols need 16-bit codes
  const auto lengths = huffman_code_lengths(counts);
  EXPECT_EQ(*std::max_element(lengths.begin(), lengths.end()), kMaxCodeLength);
  EXPECT_EQ(kraft_sum16(lengths), uint64_t{1} << 16);
  counts[0] = 100;
  round_trip(sample(counts, rng), huffman_code_lengths(counts));
  // 2^15 used symbols still fit the default limit.
  std::vector<uint64_t> half(1u << 15, 2);
  half[5] = 1u << 20;
  const auto lh = huffman_code_lengths(half);
  EXPECT_LE(*std::max_element(lh.begin(), lh.end()), kDefaultCodeLimit);
}

TEST(Huffman, TruncationAtEveryByteIsRejectedWithoutOverRead) {
  std::mt19937_64 rng(18);
  std::vector<uint64_t> counts(40);
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = 1 + (1000 >> (i % 12));
  const auto lengths = huffman_code_lengths(counts);
  const auto symbols = sample(counts, rng);
  HuffmanEncoder enc(lengths);
  BitWriter w;
  enc.encode(symbols.data(), symbols.size(), w);
  const uint64_t bits = w.bit_count();
  const auto bytes = w.finish();
  HuffmanDecoder dec(lengths, "trunc");
  std::vector<uint32_t> out(symbols.size());
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    // An exact-size heap copy: ASan flags any read past it.
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    BitReader r(part.data(), part.size(), std::min<uint64_t>(bits, 8 * cut));
    EXPECT_THROW(dec.decode(r, out.data(), out.size()), Error) << "cut at " << cut;
  }
}

TEST(Huffman, RejectsBadCodeLengths) {
  EXPECT_NE(check_code_lengths({1, 1, 1}), "");                    // over-subscribed
  EXPECT_NE(check_code_lengths({1, 2}), "");                       // incomplete
  EXPECT_NE(check_code_lengths({2}), "");                          // one symbol must be length 1
  EXPECT_NE(check_code_lengths({17, 1}), "");                      // too long
  EXPECT_EQ(check_code_lengths({1, 2, 3, 3}), "");
  EXPECT_EQ(check_code_lengths({0, 0}), "");
  EXPECT_THROW(HuffmanDecoder({1, 1, 2}, "x"), Error);
  try {
    HuffmanDecoder({1, 1, 2}, "model.nq: tensor 'w'");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile);
    EXPECT_NE(std::string(e.what()).find("over-subscribed"), std::string::npos);
  }
}

// A zero-run may not run past the alphabet, nor a length field be wider than 5 bits: the table of 7 symbols {1, 0 ×5, 1} read as one of 4 symbols has a
// run of 5 where 3 remain. A run that ends exactly at the alphabet's end is the valid case beside it.
TEST(Huffman, StoredCodeLengthTableBoundsAreChecked) {
  BitWriter w;
  write_code_lengths({1, 0, 0, 0, 0, 0, 1}, w);
  const auto bytes = w.finish();
  BitReader r(bytes.data(), bytes.size(), 8 * bytes.size());
  try {
    read_code_lengths(r, 4, "model.nq: tensor 'w'");
    ADD_FAILURE() << "a zero-run past the alphabet was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile);
    EXPECT_NE(std::string(e.what()).find("past the alphabet"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tensor 'w'"), std::string::npos) << e.what();
  }
  BitReader exact(bytes.data(), bytes.size(), 8 * bytes.size());
  EXPECT_EQ(read_code_lengths(exact, 6, "t"), (std::vector<uint8_t>{1, 0, 0, 0, 0, 0}));
  // The length field is at most 5 bits wide (lengths up to 31 > kMaxCodeLength): a 3-bit width field of 5 (6 bits)
  // is refused as such, before any length is read.
  for (uint32_t width_minus_one : {5u, 7u}) {
    BitWriter wide;
    wide.put(width_minus_one, 3);
    wide.put(1, 8);
    const auto wb = wide.finish();
    BitReader rw(wb.data(), wb.size(), 8 * wb.size());
    try {
      read_code_lengths(rw, 1, "t");
      ADD_FAILURE() << "a " << width_minus_one + 1 << "-bit length field was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("code-length field of " + std::to_string(width_minus_one + 1) + " bits"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(Huffman, StoredCodeLengthTableRoundTrip) {
  std::mt19937_64 rng(19);
  for (size_t n : {0u, 1u, 2u, 16u, 255u, 256u, 4096u, 65536u}) {
    for (int density : {1, 10, 1000}) {
      std::vector<uint64_t> counts(n, 0);
      for (auto& c : counts)
        if (rng() % static_cast<uint64_t>(density) == 0) c = 1 + rng() % 1000;
      const auto lengths = huffman_code_lengths(counts);
      BitWriter w;
      write_code_lengths(lengths, w);
      EXPECT_EQ(w.bit_count(), code_lengths_bits(lengths));
      const auto bytes = w.finish();
      BitReader r(bytes.data(), bytes.size(), 8 * bytes.size());
      EXPECT_EQ(read_code_lengths(r, static_cast<uint32_t>(n), "t"), lengths);
      for (size_t cut = 0; cut + 1 < bytes.size() && cut < 40; ++cut) {
        std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
        BitReader rp(part.data(), part.size(), 8 * part.size());
        EXPECT_THROW(read_code_lengths(rp, static_cast<uint32_t>(n), "t"), Error);
      }
    }
  }
}
