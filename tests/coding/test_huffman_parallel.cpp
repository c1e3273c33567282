// Parallel decoding of one Huffman stream by speculative segments: the oracle is the serial decoder (and the
// symbols that were encoded), over skewed, flat and out-of-phase codes, awkward lengths, every segment size from a
// single gcd step up, one to three threads, and malformed streams, which it must refuse exactly when the serial
// decoder fails.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "coding/huffman.h"
#include "coding/huffman_parallel.h"
#include "coding/positions.h"
#include "netquant/error.h"

using namespace nq;
using namespace nq::coding;

namespace {

struct Stream {
  std::vector<uint8_t> lengths;
  std::vector<uint32_t> symbols;
  std::vector<uint8_t> bytes;
  uint64_t bits = 0;
};

// Symbols drawn from `weights` (a zero weight: unused), coded with the optimal lengths of their own histogram or
// with `forced` lengths when given (those must cover every drawn symbol).
Stream make_stream(const std::vector<double>& weights, size_t n, uint64_t seed, std::vector<uint8_t> forced = {}) {
  std::mt19937_64 rng(seed);
  std::discrete_distribution<uint32_t> pick(weights.begin(), weights.end());
  Stream s;
  s.symbols.resize(n);
  std::vector<uint64_t> counts(weights.size(), 0);
  for (auto& v : s.symbols) ++counts[v = pick(rng)];
  s.lengths = forced.empty() ? huffman_code_lengths(counts) : forced;
  BitWriter w;
  HuffmanEncoder(s.lengths).encode(s.symbols.data(), n, w);
  s.bits = w.bit_count();
  s.bytes = w.finish();
  return s;
}

// Runs the parallel decoder with `threads` threads and `segment_bits`; returns whether it accepted the stream and,
// if so, the symbols.
bool decode_parallel(const Stream& s, int threads, uint64_t segment_bits, std::vector<uint32_t>& out,
                     size_t expect = SIZE_MAX) {
  const HuffmanDecoder dec(s.lengths, "test");
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  out.assign(s.symbols.size() + 8, 0xDEADBEEF);
  size_t placed = SIZE_MAX;
  const bool ok = decode_stream_parallel<uint32_t>(dec, s.bytes.data(), s.bytes.size(), s.bits,
                                                   [&](size_t total) -> uint32_t* {
                                                     placed = total;
                                                     if (expect != SIZE_MAX && total != expect) return nullptr;
                                                     if (total > out.size()) out.resize(total);
                                                     return out.data();
                                                   },
                                                   segment_bits);
  omp_set_num_threads(saved);
  if (ok) out.resize(placed);
  return ok;
}

std::vector<double> gaussian_weights(int k, double sigma) {
  std::vector<double> w(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) w[static_cast<size_t>(i)] = std::exp(-0.5 * std::pow((i - k / 2.0) / sigma, 2));
  return w;
}

}  // namespace

TEST(HuffmanParallel, EqualsTheEncodedSymbolsForEverySegmentSize) {
  // A skewed code (lengths 1..15), a flat one (all length 4: parses at odd offsets never meet unless the
  // segments start on a multiple of the gcd), and one of lengths 3 and 6 only (gcd 3).
  std::vector<uint8_t> three_six(15, 0);
  for (int i = 0; i < 7; ++i) three_six[static_cast<size_t>(i)] = 3;
  for (int i = 7; i < 15; ++i) three_six[static_cast<size_t>(i)] = 6;
  struct Case {
    const char* name;
    std::vector<double> weights;
    std::vector<uint8_t> forced;
  };
  const std::vector<Case> cases = {
      {"skewed k=256", gaussian_weights(256, 3.0), {}},
      {"flat k=16", std::vector<double>(16, 1.0), {}},
      {"lengths 3 and 6", std::vector<double>(15, 1.0), three_six},
      {"two symbols", {1.0, 3.0}, {}},
      {"one symbol", {0.0, 1.0, 0.0}, {}},
  };
  uint64_t seed = 11;
  for (const auto& c : cases) {
    for (size_t n : {size_t{1}, size_t{3}, size_t{31}, size_t{255}, size_t{4099}, size_t{100003}}) {
      const Stream s = make_stream(c.weights, n, ++seed, c.forced);
      std::vector<uint64_t> sizes = {1, 2, 3, 5, 7, 16, 17, 64, 1000, s.bits / 3 + 1, s.bits, s.bits + 5, 0};
      for (uint64_t seg : sizes) {
        for (int threads : {1, 2, 3}) {
          std::vector<uint32_t> out;
          ASSERT_TRUE(decode_parallel(s, threads, seg, out, n))
              << c.name << " n=" << n << " segment " << seg << " threads " << threads;
          ASSERT_EQ(out, s.symbols) << c.name << " n=" << n << " segment " << seg << " threads " << threads;
        }
      }
    }
  }
}

TEST(HuffmanParallel, EncodesTheSerialCodersBytesForEveryChunkSize) {
  uint64_t seed = 101;
  for (const auto& weights : {gaussian_weights(256, 3.0), std::vector<double>(16, 1.0), std::vector<double>{1.0, 3.0},
                              std::vector<double>{0.0, 1.0}}) {
    for (size_t n : {size_t{1}, size_t{3}, size_t{31}, size_t{255}, size_t{4099}, size_t{100003}}) {
      const Stream s = make_stream(weights, n, ++seed);
      const HuffmanEncoder enc(s.lengths);
      // Narrow copies: the writer codes indices at their stored width.
      const std::vector<uint8_t> narrow(s.symbols.begin(), s.symbols.end());
      for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{8}, size_t{9}, size_t{1000}, n / 3 + 1, n,
                           n + 1, size_t{0}}) {
        for (int threads : {1, 2, 3}) {
          const int saved = omp_get_max_threads();
          omp_set_num_threads(threads);
          const auto wide = encode_stream_parallel(enc, s.symbols.data(), n, s.bits, chunk);
          const auto bytes = encode_stream_parallel(enc, narrow.data(), n, s.bits, chunk);
          omp_set_num_threads(saved);
          ASSERT_EQ(wide, s.bytes) << "n=" << n << " chunk " << chunk << " threads " << threads;
          ASSERT_EQ(bytes, s.bytes) << "n=" << n << " chunk " << chunk << " threads " << threads;
        }
      }
    }
  }
}

TEST(HuffmanParallel, RefusesExactlyTheStreamsTheSerialDecoderRejects) {
  // Every way a stream can be wrong for its symbol count: cut short by 1..20 bits, extended by stray bits (zeros,
  // ones, random), a codeword the one-symbol code lacks, random bytes. The serial oracle decodes n symbols and
  // checks that they end exactly at the stream's last bit; the parallel decoder, asked for n symbols, must accept
  // exactly then and give the same symbols.
  std::mt19937_64 rng(77);
  int accepted = 0, refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int kind = trial % 6;
    const size_t n = 1 + rng() % 5000;
    Stream s = make_stream(kind == 5 ? std::vector<double>{0.0, 1.0} : gaussian_weights(1 + static_cast<int>(rng() % 40), 2.0),
                           n, rng());
    if (kind == 0) {
      s.bits -= std::min<uint64_t>(s.bits, 1 + rng() % 20);
    } else if (kind == 1 || kind == 2) {
      const int extra = 1 + static_cast<int>(rng() % 30);
      BitWriter w;
      BitReader r(s.bytes.data(), s.bytes.size(), s.bits);
      for (uint64_t b = 0; b < s.bits; ++b) w.put(r.get(1), 1);
      for (int e = 0; e < extra; ++e) w.put(kind == 1 ? 0u : static_cast<uint32_t>(rng() & 1), 1);
      s.bits = w.bit_count();
      s.bytes = w.finish();
    } else if (kind == 3 || kind == 5) {
      const uint64_t at = rng() % s.bits;  // flip one bit (for the one-symbol code: a '1', the missing codeword)
      s.bytes[at / 8] ^= static_cast<uint8_t>(0x80u >> (at % 8));
    } else {
      for (auto& b : s.bytes) b = static_cast<uint8_t>(rng());
    }
    const HuffmanDecoder dec(s.lengths, "test");
    bool serial_ok = true;
    std::vector<uint32_t> serial(n);
    try {
      BitReader r(s.bytes.data(), s.bytes.size(), s.bits);
      dec.decode(r, serial.data(), n);
      serial_ok = r.consumed_bits() == s.bits;
    } catch (const Error& e) {
      serial_ok = false;
    }
    for (uint64_t seg : {uint64_t{1}, uint64_t{5}, uint64_t{64}, uint64_t{0}}) {
      std::vector<uint32_t> out;
      const bool ok = decode_parallel(s, 2, seg, out, n);
      ASSERT_EQ(ok, serial_ok) << "trial " << trial << " kind " << kind << " segment " << seg;
      if (ok) {
        ASSERT_EQ(out, serial) << "trial " << trial << " segment " << seg;
      }
    }
    (serial_ok ? accepted : refused)++;
  }
  // Both outcomes occur (a flipped bit in a complete code often still parses).
  EXPECT_GT(accepted, 30);
  EXPECT_GT(refused, 100);
}

TEST(HuffmanParallel, GapStreamScatterEqualsTheSerialWalk) {
  // Masks of awkward sizes and densities (with long runs, so fillers occur, and a pruned tail), every stored index
  // width; then the same streams corrupted. The oracle is decode_gaps (the serial walk) with its unused-bits check.
  std::mt19937_64 rng(31);
  int checked = 0, refused = 0;
  for (double p : {0.05, 0.5, 0.9, 0.999}) {
    for (size_t n : {size_t{7}, size_t{100}, size_t{4099}, size_t{200003}}) {
      for (int corrupt = 0; corrupt < 3; ++corrupt) {
        std::vector<uint16_t> idx(n);
        for (auto& v : idx) v = std::uniform_real_distribution<double>(0, 1)(rng) < p ? uint16_t{0xFFFF} : static_cast<uint16_t>(rng() % 300);
        if (n > 10) std::fill(idx.begin() + 2, idx.begin() + static_cast<long>(n / 3), uint16_t{0xFFFF});
        idx[n - 1] = 0xFFFF;
        uint64_t kept = 0;
        std::vector<uint16_t> kept_values;
        for (uint16_t v : idx)
          if (v != 0xFFFF) kept_values.push_back(v);
        kept = kept_values.size();
        if (kept == 0) continue;
        const GapPlan plan = plan_gaps(idx.data(), n, uint16_t{0xFFFF});
        uint64_t bits = plan.stream_bits;
        auto bytes = encode_gaps(idx.data(), n, uint16_t{0xFFFF}, plan);
        if (corrupt == 1) bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
        if (corrupt == 2) bits -= std::min<uint64_t>(bits - 1, 1 + rng() % 9);
        const HuffmanDecoder dec(plan.lengths, "gaps");
        std::vector<uint16_t> serial(n, 0xFFFF);
        bool serial_ok = true;
        try {
          BitReader r(bytes.data(), bytes.size(), bits);
          size_t next = 0;
          decode_gaps(r, dec, plan.width, n, kept, "gaps", [&](uint64_t pos) { serial[pos] = kept_values[next++]; });
          serial_ok = r.consumed_bits() == bits;
        } catch (const Error&) {
          serial_ok = false;
        }
        if (serial_ok) {
          EXPECT_TRUE(corrupt != 0 || serial == idx);
        }
        for (uint64_t seg : {uint64_t{3}, uint64_t{50}, bits / 2 + 1}) {
          for (size_t walk : {size_t{1}, size_t{2}, size_t{17}, size_t{100000}}) {
            std::vector<uint16_t> out(n, 0xFFFF);
            const int saved = omp_get_max_threads();
            omp_set_num_threads(2);
            const bool ok = scatter_kept_parallel(dec, bytes.data(), (bits + 7) / 8, bits, plan.width, n, kept,
                                                  kept_values.data(), out.data(), seg, walk);
            omp_set_num_threads(saved);
            ASSERT_EQ(ok, serial_ok) << "p=" << p << " n=" << n << " corrupt " << corrupt << " segment " << seg;
            if (ok) {
              ASSERT_EQ(out, serial) << "p=" << p << " n=" << n << " segment " << seg << " walk " << walk;
            } else {
              ASSERT_TRUE(std::all_of(out.begin(), out.end(), [](uint16_t v) { return v == 0xFFFF; }));
            }
            ++checked;
          }
        }
        refused += !serial_ok;
      }
    }
  }
  EXPECT_GT(checked, 400);
  EXPECT_GT(refused, 3);
}
