// Static rANS (src/coding/rans.h) against oracles: exact round trips over every symbol width, awkward lengths and
// chunkings; the coded size against the ideal length of the table (a bound derived below) and the empirical
// entropy; the estimate against the coded size; the normalised frequencies against brute force and an exact
// greedy; table I/O and its rejections; corrupt and truncated sections, which must fail with kBadFile (or decode,
// counted); a vector pinned from an independent Python coder written from the format description.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "coding/byte_stream.h"
#include "coding/rans.h"
#include "netquant/error.h"

using namespace nq;
using namespace nq::coding;

namespace {

// ---- data ------------------------------------------------------------------------------------------------------

enum class Dist { kOneSymbol, kTwoSkewed, kGeometric64, kUniform256, kSparse65536 };
constexpr Dist kAllDists[] = {Dist::kOneSymbol, Dist::kTwoSkewed, Dist::kGeometric64, Dist::kUniform256,
                              Dist::kSparse65536};

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::kOneSymbol: return "one symbol";
    case Dist::kTwoSkewed: return "two symbols, p = 0.999";
    case Dist::kGeometric64: return "geometric over 64";
    case Dist::kUniform256: return "uniform over 256";
    case Dist::kSparse65536: return "a few hundred of 65536";
  }
  return "?";
}

// The alphabet the table is built over (counts.size()): symbols that never occur get frequency 0.
uint32_t alphabet_of(Dist d) {
  switch (d) {
    case Dist::kGeometric64: return 64;
    case Dist::kSparse65536: return 65536;
    default: return 256;
  }
}

// n symbols of distribution d. The used symbols sit away from 0 where it matters, so that a start of 0 (the first
// symbol) is not the only case exercised, and the sparse alphabet includes both of its ends.
std::vector<uint32_t> draw(Dist d, uint64_t n, std::mt19937_64& rng) {
  std::vector<uint32_t> s(static_cast<size_t>(n));
  switch (d) {
    case Dist::kOneSymbol:
      std::fill(s.begin(), s.end(), 200u);
      break;
    case Dist::kTwoSkewed: {
      std::bernoulli_distribution rare(0.001);
      for (auto& v : s) v = rare(rng) ? 3u : 250u;
      break;
    }
    case Dist::kGeometric64: {
      std::vector<double> w(64);
      for (size_t k = 0; k < w.size(); ++k) w[k] = std::pow(0.85, static_cast<double>(k));
      std::discrete_distribution<uint32_t> pick(w.begin(), w.end());
      for (auto& v : s) v = pick(rng);
      break;
    }
    case Dist::kUniform256:
      for (auto& v : s) v = static_cast<uint32_t>(rng() % 256);
      break;
    case Dist::kSparse65536: {
      // 300 distinct symbols with Zipf weights; the same 300 for every n (a fixed seed), 0 and 65535 among them.
      std::mt19937_64 pick_symbols(65536);
      std::vector<uint32_t> used = {0, 65535};
      while (used.size() < 300) {
        const auto v = static_cast<uint32_t>(pick_symbols() % 65536);
        if (std::find(used.begin(), used.end(), v) == used.end()) used.push_back(v);
      }
      std::vector<double> w(used.size());
      for (size_t k = 0; k < w.size(); ++k) w[k] = 1.0 / static_cast<double>(k + 1);
      std::discrete_distribution<size_t> pick(w.begin(), w.end());
      for (auto& v : s) v = used[pick(rng)];
      break;
    }
  }
  return s;
}

std::vector<uint64_t> counts_of(const std::vector<uint32_t>& symbols, uint32_t alphabet) {
  std::vector<uint64_t> counts(alphabet, 0);
  for (uint32_t v : symbols) ++counts[v];
  return counts;
}

// ---- lengths ---------------------------------------------------------------------------------------------------

// Σ count·log2(n/count): the empirical entropy, in bits.
double entropy_bits(const std::vector<uint64_t>& counts) {
  double n = 0, bits = 0;
  for (uint64_t c : counts) n += static_cast<double>(c);
  for (uint64_t c : counts)
    if (c) bits += static_cast<double>(c) * std::log2(n / static_cast<double>(c));
  return bits;
}

// Σ count·log2(2^scale/freq): the ideal stream length of a table, in bits.
double ideal_bits(const std::vector<uint64_t>& counts, const std::vector<uint32_t>& freq, int scale) {
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) bits += static_cast<double>(counts[s]) * (scale - std::log2(static_cast<double>(freq[s])));
  return bits;
}

// What the byte-wise coder may spend beyond the ideal length, in bits: Σ count·log2(1 + (2^scale − freq)/L).
// Why: coding x = q·f + r gives x' = 2^scale·q + r + start = x·2^scale/f + r·(1 − 2^scale/f) + start, at most
// x·2^scale/f + (2^scale − f); and after renormalisation x ≥ (L/2^scale)·f, so x·2^scale/f ≥ L. Emitting a byte
// only shrinks 8·bytes + log2(x), and each final state is ≥ L = 2^23, its start; so a chunk's emitted bytes (all but
// its states, 4 bytes each) are at most (ideal + this) / 8.
double coder_slack_bits(const std::vector<uint64_t>& counts, const RansTable& t) {
  const double slots = std::ldexp(1.0, t.scale_bits);
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) bits += static_cast<double>(counts[s]) * std::log2(1 + (slots - t.freq[s]) / kRansLow);
  return bits;
}

uint64_t table_bytes(const RansTable& t) {
  uint64_t bytes = 1;
  for (uint32_t f : t.freq) bytes += varint_size(f);
  return bytes;
}

// ---- the section's layout, parsed here (not by rans.cpp) -------------------------------------------------------

struct Layout {
  uint64_t chunk_symbols = 0;
  std::vector<uint64_t> chunk_bytes;
  size_t head_bytes = 0;  // the varints before the first chunk
};

Layout parse_layout(const std::vector<uint8_t>& section, uint64_t n) {
  ByteReader r(section.data(), section.size(), "test layout");
  Layout l;
  l.chunk_symbols = r.varint("chunk symbols");
  const uint64_t chunks = n / l.chunk_symbols + (n % l.chunk_symbols != 0);
  for (uint64_t c = 0; c < chunks; ++c) l.chunk_bytes.push_back(r.varint("chunk bytes"));
  l.head_bytes = r.pos();
  return l;
}

std::vector<uint8_t> write_section(uint64_t chunk_symbols, const std::vector<uint64_t>& chunk_bytes,
                                   const uint8_t* payload, size_t payload_size) {
  ByteWriter w;
  w.varint(chunk_symbols);
  for (uint64_t b : chunk_bytes) w.varint(b);
  w.raw(payload, payload_size);
  return std::move(w.bytes());
}

// The layout rans_encode must write: chunk_symbols, ⌈n/chunk_symbols⌉ chunk sizes tiling the rest exactly, each
// chunk starting with a state in [L, 256·L).
void expect_layout(const std::vector<uint8_t>& section, uint64_t n, uint64_t chunk_symbols) {
  const Layout l = parse_layout(section, n);
  ASSERT_EQ(l.chunk_symbols, chunk_symbols);
  ASSERT_EQ(l.chunk_bytes.size(), (n + chunk_symbols - 1) / chunk_symbols);
  uint64_t at = l.head_bytes;
  for (uint64_t b : l.chunk_bytes) {
    ASSERT_GE(b, kRansMinChunkBytes);
    ASSERT_LE(at + b, section.size());
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x |= static_cast<uint32_t>(section[at + static_cast<size_t>(i)]) << (8 * i);
    EXPECT_GE(x, kRansLow);
    EXPECT_LT(x, kRansLow << 8);
    at += b;
  }
  EXPECT_EQ(at, section.size());
}

// The table's invariants: a non-zero frequency exactly for the counted symbols, Σ = 2^scale, starts = prefix sums.
void expect_valid_table(const RansTable& t, const std::vector<uint64_t>& counts) {
  ASSERT_GE(t.scale_bits, 1);
  ASSERT_LE(t.scale_bits, kRansMaxScaleBits);
  ASSERT_EQ(t.freq.size(), counts.size());
  ASSERT_EQ(t.start.size(), counts.size());
  uint64_t sum = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    ASSERT_EQ(t.freq[s] > 0, counts[s] > 0) << "symbol " << s;
    ASSERT_EQ(t.start[s], sum) << "symbol " << s;
    sum += t.freq[s];
  }
  ASSERT_EQ(sum, uint64_t{1} << t.scale_bits);
}

// ---- errors ----------------------------------------------------------------------------------------------------

// f() must throw nq::Error with kBadFile; returns its message.
template <class F>
std::string bad_file_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an nq::Error: " << e.what();
    return {};
  }
  ADD_FAILURE() << "accepted";
  return {};
}

// Decodes a possibly corrupt section from a copy of exactly its bytes (so that an over-read leaves the allocation,
// which a sanitizer build reports): true if it decoded, false on kBadFile; any other outcome fails the test.
template <class Sym>
bool decodes(const RansTable& t, const uint8_t* data, size_t size, uint64_t n, std::vector<Sym>& out) {
  const std::vector<uint8_t> copy(data, data + size);
  out.assign(static_cast<size_t>(n), Sym{});
  try {
    rans_decode(t, copy.empty() ? nullptr : copy.data(), copy.size(), out.data(), n, "corrupt");
    return true;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile) << e.what();
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
    return false;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an nq::Error: " << e.what();
    return false;
  }
}

// Sets the OpenMP thread count, restoring the one it found. The corruption tests run thousands of decodes of a
// few small chunks; as many OpenMP regions on a loaded 2-core machine took from 10 to 45 s, on one thread 0.2 s.
class OmpThreads {
 public:
  OmpThreads() : saved_(omp_get_max_threads()) {}
  ~OmpThreads() { omp_set_num_threads(saved_); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;
  void set(int threads) const { omp_set_num_threads(threads); }
  int saved() const { return saved_; }

 private:
  int saved_;
};

// ---- round trip ------------------------------------------------------------------------------------------------

template <class Sym>
void expect_round_trip(const RansTable& table, const std::vector<uint32_t>& symbols, uint64_t chunk_symbols) {
  const std::vector<Sym> in(symbols.begin(), symbols.end());
  const uint64_t n = in.size();
  const std::vector<uint8_t> section = rans_encode(table, in.data(), n, chunk_symbols);
  expect_layout(section, n, chunk_symbols);
  // Every slot starts off its expected symbol, so one the decoder skips shows.
  std::vector<Sym> out(in.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Sym>(in[i] + 1);
  rans_decode(table, section.data(), section.size(), out.data(), n, "round trip");
  ASSERT_TRUE(out == in);
}

}  // namespace

TEST(Rans, RoundTripsEveryWidthAndChunking) {
  const uint64_t sizes[] = {1, 3, 31, 255, 65535, 65536, 65537, 200003};
  const uint64_t chunkings[] = {1, 7, 65536, kRansMaxChunkSymbols};
  std::mt19937_64 rng(20240611);
  for (Dist d : kAllDists) {
    for (uint64_t n : sizes) {
      const std::vector<uint32_t> symbols = draw(d, n, rng);
      const std::vector<uint64_t> counts = counts_of(symbols, alphabet_of(d));
      const RansTable table = rans_table_for(counts);
      SCOPED_TRACE(std::string(dist_name(d)) + ", n = " + std::to_string(n) + ", scale " +
                   std::to_string(table.scale_bits));
      expect_valid_table(table, counts);
      for (uint64_t cs : chunkings) {
        SCOPED_TRACE("chunks of " + std::to_string(cs));
        if (alphabet_of(d) <= 256) expect_round_trip<uint8_t>(table, symbols, cs);
        expect_round_trip<uint16_t>(table, symbols, cs);
        expect_round_trip<int32_t>(table, symbols, cs);
      }
    }
  }
  // No symbols: the section is the chunk size alone.
  const RansTable table = rans_table_for({1, 2});
  const std::vector<uint8_t> empty = rans_encode<uint8_t>(table, nullptr, 0, 16);
  EXPECT_EQ(empty, std::vector<uint8_t>{16});
  rans_decode<uint8_t>(table, empty.data(), empty.size(), nullptr, 0, "empty");
}

TEST(Rans, SectionSizeIsWithinTheIdealLength) {
  const uint64_t sizes[] = {1, 3, 31, 255, 65535, 65536, 65537, 200003};
  const uint64_t chunkings[] = {1, 7, 65536, kRansMaxChunkSymbols};
  std::mt19937_64 rng(7);
  double worst_slack_bytes = -1e300, worst_entropy_excess = -1e300;
  for (Dist d : kAllDists) {
    for (uint64_t n : sizes) {
      const std::vector<uint32_t> symbols = draw(d, n, rng);
      const std::vector<uint64_t> counts = counts_of(symbols, alphabet_of(d));
      const RansTable table = rans_table_for(counts);
      const std::vector<uint16_t> in(symbols.begin(), symbols.end());
      const double ideal = ideal_bits(counts, table.freq, table.scale_bits);
      const double slack = coder_slack_bits(counts, table);
      const double entropy = entropy_bits(counts);
      for (uint64_t cs : chunkings) {
        SCOPED_TRACE(std::string(dist_name(d)) + ", n = " + std::to_string(n) + ", chunks of " + std::to_string(cs));
        const std::vector<uint8_t> section = rans_encode(table, in.data(), n, cs);
        const Layout l = parse_layout(section, n);
        const double chunks = static_cast<double>(l.chunk_bytes.size());
        // Everything but the states and the head is the emitted stream: at most (ideal + slack)/8 (derivation at
        // coder_slack_bits).
        const double stream = static_cast<double>(section.size() - l.head_bytes) - kRansMinChunkBytes * chunks;
        EXPECT_LE(stream, (ideal + slack) / 8 + 1e-6) << "ideal " << ideal / 8 << " slack " << slack / 8;
        worst_slack_bytes = std::max(worst_slack_bytes, stream - ideal / 8);
        // So the section is at most ideal/8 + chunks·(states + size varint) + the varint of chunk_symbols + slack/8,
        // the slack being under 2^-7 bits a symbol at scale 16 and far less at the tables rans_table_for picks.
        // The ideal length of the table is never below the entropy (Gibbs); for large n it is within 1% of it.
        EXPECT_GE(ideal, entropy * (1 - 1e-12) - 1e-9);
        if (n >= 65535) {
          const double overhead = static_cast<double>(l.head_bytes) + kRansMinChunkBytes * chunks;
          const double excess = static_cast<double>(section.size()) - overhead - entropy / 8;
          worst_entropy_excess = std::max(worst_entropy_excess, excess / std::max(1.0, entropy / 8));
          EXPECT_LE(static_cast<double>(section.size()), overhead + 1.01 * entropy / 8 + 4);
          // From below: a chunk's final state holds at most 8 bits more than the start L, so the stream is at
          // least (ideal − 8·chunks)/8, less the bits the byte-wise coder can lose (bounded like the slack).
          EXPECT_GE(static_cast<double>(section.size()), l.head_bytes + 3 * chunks + 0.99 * entropy / 8);
        }
      }
    }
  }
  std::printf("[ rANS    ] stream at most %.2f bytes beyond ideal/8; n >= 65535: at most %.4f%% over the entropy\n",
              worst_slack_bytes, 100 * worst_entropy_excess);
}

// The estimate charges each chunk its states and a size varint of the average chunk, and the stream its
// ideal length; a real chunk keeps up to 8 bits of the stream in each final state (so it is up to a byte a state
// shorter), and its size varint can differ from the average's. Allowed: a byte a state and one more a chunk, + 16.
TEST(Rans, EstimateMatchesTheCodedSize) {
  const uint64_t sizes[] = {1, 31, 255, 65535, 65537, 200003};
  const uint64_t chunkings[] = {1, 7, 4096, 65536, kRansMaxChunkSymbols};
  std::mt19937_64 rng(8);
  double worst_per_chunk = 0;
  int64_t worst_few_chunks = 0;  // over sections of at most 4 chunks
  for (Dist d : kAllDists) {
    for (uint64_t n : sizes) {
      const std::vector<uint32_t> symbols = draw(d, n, rng);
      const std::vector<uint64_t> counts = counts_of(symbols, alphabet_of(d));
      const RansTable table = rans_table_for(counts);
      const std::vector<int32_t> in(symbols.begin(), symbols.end());
      for (uint64_t cs : chunkings) {
        SCOPED_TRACE(std::string(dist_name(d)) + ", n = " + std::to_string(n) + ", chunks of " + std::to_string(cs));
        const uint64_t est = rans_estimated_section_bytes(table, counts, cs);
        // The estimate is table + varint(section) + section: take off the table and the length prefix (the one
        // v with varint_size(est − table − v) = v).
        const uint64_t without_table = est - table_bytes(table);
        uint64_t est_section = 0;
        for (uint64_t v = 1; v < without_table && est_section == 0; ++v)
          if (varint_size(without_table - v) == v) est_section = without_table - v;
        ASSERT_GT(est_section, 0u);
        const uint64_t chunks = (n + cs - 1) / cs;
        const std::vector<uint8_t> section = rans_encode(table, in.data(), n, cs);
        const int64_t diff = static_cast<int64_t>(section.size()) - static_cast<int64_t>(est_section);
        worst_per_chunk = std::max(worst_per_chunk, std::abs(static_cast<double>(diff)) / static_cast<double>(chunks));
        if (chunks <= 4) worst_few_chunks = std::max<int64_t>(worst_few_chunks, std::abs(diff));
        EXPECT_LE(std::abs(diff), static_cast<int64_t>(chunks * (kRansStates + 1) + 16)) << "coded " << section.size()
                                                                         << ", estimated " << est_section;
      }
    }
  }
  std::printf("[ rANS    ] |coded - estimated| section: at most %.2f bytes a chunk; %lld bytes with <= 4 chunks\n",
              worst_per_chunk, static_cast<long long>(worst_few_chunks));
}

namespace {

// The least Σ count·log2(2^scale/f) over integer vectors with lo[k] ≤ f[k] ≤ hi[k] and Σ f = 2^scale (one entry
// per counted symbol), by enumeration: the last frequency is what is left, so each leaf costs O(1).
double brute_force_min_bits(const std::vector<uint64_t>& used, int scale, const std::vector<int64_t>& lo,
                            const std::vector<int64_t>& hi) {
  const int64_t slots = int64_t{1} << scale;
  std::vector<double> log2_of(static_cast<size_t>(slots) + 1, 0);
  for (int64_t f = 1; f <= slots; ++f) log2_of[static_cast<size_t>(f)] = std::log2(static_cast<double>(f));
  std::vector<int64_t> lo_after(used.size() + 1, 0);  // Σ lo of the symbols after k
  for (size_t k = used.size(); k-- > 0;) lo_after[k] = lo_after[k + 1] + lo[k];
  double best = -std::numeric_limits<double>::infinity();  // the most Σ count·log2 f
  std::function<void(size_t, int64_t, double)> rec = [&](size_t k, int64_t left, double sum) {
    if (k + 1 == used.size()) {
      if (left >= lo[k] && left <= hi[k])
        best = std::max(best, sum + static_cast<double>(used[k]) * log2_of[static_cast<size_t>(left)]);
      return;
    }
    for (int64_t f = lo[k]; f <= std::min(hi[k], left - lo_after[k + 1]); ++f)
      rec(k + 1, left - f, sum + static_cast<double>(used[k]) * log2_of[static_cast<size_t>(f)]);
  };
  rec(0, slots, 0.0);
  double total = 0;
  for (uint64_t c : used) total += static_cast<double>(c);
  return total * scale - best;
}

// An optimal frequency vector (lo = 1, hi = 2^scale) by the exact greedy for separable concave maximisation
// (Gross; Fox 1966): every counted symbol at 1, then each remaining unit to the largest marginal gain
// count·log2((f+1)/f).
std::vector<uint32_t> optimal_frequencies(const std::vector<uint64_t>& counts, int scale) {
  const uint64_t slots = uint64_t{1} << scale;
  std::vector<uint32_t> f(counts.size(), 0);
  std::priority_queue<std::pair<double, size_t>> heap;
  uint64_t sum = 0;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) {
      f[s] = 1;
      ++sum;
      heap.emplace(static_cast<double>(counts[s]), s);  // c·log2(2/1)
    }
  for (; sum < slots; ++sum) {
    const size_t s = heap.top().second;
    heap.pop();
    ++f[s];
    heap.emplace(static_cast<double>(counts[s]) * std::log2((f[s] + 1.0) / f[s]), s);
  }
  return f;
}

// How many leaves the unrestricted enumeration visits: C(2^scale − 1, used − 1).
double compositions(int scale, size_t used) {
  double c = 1;
  for (size_t k = 1; k < used; ++k) c = c * (std::ldexp(1.0, scale) - static_cast<double>(k)) / static_cast<double>(k);
  return c;
}

std::string list(const std::vector<uint64_t>& v) {
  std::string s;
  for (uint64_t x : v) s += (s.empty() ? "" : " ") + std::to_string(x);
  return s;
}

// Relative tolerance of the comparisons: sums of logs rounded in a different order.
constexpr double kBitsTolerance = 1e-9;

}  // namespace

// rans_table_for's normalisation is exact: at the scale it picks, no frequency vector (each counted symbol ≥ 1, sum
// 2^scale) has a shorter ideal code. Two oracles: brute force over every vector for small alphabets and scales,
// and the exact greedy of separable concave maximisation (Gross; Fox 1966) for up to 300 symbols. The known cases
// first are where an earlier version (floored shares, then only adding or only removing units) missed the optimum.
TEST(Rans, FrequenciesAgainstBruteForceAtTheChosenScale) {
  std::mt19937_64 rng(31);
  int brute_forced = 0;
  std::vector<int> scales_seen(kRansMaxScaleBits + 1, 0);
  const std::vector<std::vector<uint64_t>> known = {
      {965, 53, 2}, {391, 2, 6, 1}, {1, 1, 3, 214}, {0, 160, 2, 984, 467}};
  for (size_t trial = 0; trial < known.size() + 4000; ++trial) {
    // 2–4 counted symbols among up to 6, counts up to 10^(1..6); often rare symbols next to frequent ones (the
    // clamped-at-1 cases).
    std::vector<uint64_t> counts;
    if (trial < known.size()) {
      counts = known[trial];
    } else {
      counts.assign(2 + rng() % 5, 0);
      const size_t n_used = std::min<size_t>(counts.size(), 2 + rng() % 3);
      const auto range = static_cast<uint64_t>(std::pow(10.0, 1 + static_cast<double>(rng() % 6)));
      for (size_t k = 0; k < n_used; ++k) counts[k] = rng() % 3 == 0 ? 1 + rng() % 6 : 1 + rng() % range;
      std::shuffle(counts.begin(), counts.end(), rng);
    }
    const auto n_used =
        static_cast<size_t>(std::count_if(counts.begin(), counts.end(), [](uint64_t c) { return c > 0; }));
    const RansTable t = rans_table_for(counts);
    expect_valid_table(t, counts);
    ++scales_seen[static_cast<size_t>(t.scale_bits)];
    if (compositions(t.scale_bits, n_used) > 1e6) continue;  // too many vectors to enumerate
    ++brute_forced;
    std::vector<uint64_t> used;
    for (uint64_t c : counts)
      if (c) used.push_back(c);
    const int64_t slots = int64_t{1} << t.scale_bits;
    const std::vector<int64_t> ones(used.size(), 1), all(used.size(), slots);
    const double got = ideal_bits(counts, t.freq, t.scale_bits);
    const double best = brute_force_min_bits(used, t.scale_bits, ones, all);
    const double tol = kBitsTolerance * std::max(1.0, best);
    ASSERT_NEAR(best, ideal_bits(counts, optimal_frequencies(counts, t.scale_bits), t.scale_bits), tol)
        << "the two oracles disagree";
    EXPECT_LE(got, best + tol) << "counts " << list(counts) << " at scale " << t.scale_bits;
  }
  std::string seen;
  for (size_t s = 0; s < scales_seen.size(); ++s)
    if (scales_seen[s]) seen += " " + std::to_string(s) + ":" + std::to_string(scales_seen[s]);
  std::printf("[ rANS    ] %d tables brute-forced; scales chosen:%s\n", brute_forced, seen.c_str());
  EXPECT_GE(brute_forced, 2500);  // the enumeration must actually have run
}

TEST(Rans, FrequenciesAgainstTheExactGreedyForLargeAlphabets) {
  // Up to 300 symbols, at the scale each table picks, against the exact greedy.
  std::mt19937_64 rng(32);
  for (int trial = 0; trial < 400; ++trial) {
    const size_t alphabet = 3 + rng() % 300;
    std::vector<uint64_t> counts(alphabet, 0);
    const auto range = static_cast<uint64_t>(std::pow(10.0, 1 + static_cast<double>(rng() % 7)));
    const int shape = trial % 4;
    for (size_t s = 0; s < alphabet; ++s) {
      if (rng() % 4 == 0) continue;
      switch (shape) {
        case 0: counts[s] = 1 + rng() % range; break;  // flat
        case 1:                                          // geometric
          counts[s] = 1 + static_cast<uint64_t>(static_cast<double>(range) * std::pow(0.7, static_cast<double>(s)));
          break;
        case 2: counts[s] = s % 17 == 0 ? range : 1 + rng() % 3; break;  // a few spikes over rare symbols
        default: counts[s] = 1; break;                                   // all rare
      }
    }
    counts[rng() % alphabet] += 1;  // at least one counted symbol
    const RansTable t = rans_table_for(counts);
    expect_valid_table(t, counts);
    const double got = ideal_bits(counts, t.freq, t.scale_bits);
    const double best = ideal_bits(counts, optimal_frequencies(counts, t.scale_bits), t.scale_bits);
    const double tol = kBitsTolerance * std::max(1.0, best);
    EXPECT_NEAR(got, best, tol) << "trial " << trial << " (" << alphabet << " symbols, shape " << shape
                                << ") at scale " << t.scale_bits;
  }
}

TEST(Rans, TableRoundTripsAndRejectsMalformed) {
  std::mt19937_64 rng(41);
  // Round trips: tables of random counts over alphabets from 1 to 65536 symbols, followed by other bytes that the
  // reader must leave alone.
  for (uint32_t alphabet : {1u, 2u, 3u, 64u, 255u, 256u, 257u, 4099u, 65536u}) {
    for (int rep = 0; rep < 3; ++rep) {
      std::vector<uint64_t> counts(alphabet, 0);
      for (auto& c : counts)
        if (rng() % 3) c = 1 + rng() % (rep == 0 ? 3 : rep == 1 ? 1000 : 1000000);
      counts[rng() % alphabet] += 1;
      const RansTable t = rans_table_for(counts);
      ByteWriter w;
      rans_write_table(w, t);
      EXPECT_EQ(w.size(), table_bytes(t));
      w.u32(0xDEADBEEF);
      ByteReader r(w.bytes().data(), w.size(), "table");
      const RansTable back = rans_read_table(r, alphabet, "table");
      EXPECT_EQ(back.scale_bits, t.scale_bits);
      EXPECT_EQ(back.freq, t.freq);
      EXPECT_EQ(back.start, t.start);
      EXPECT_EQ(r.remaining(), 4u);
    }
  }

  // Hand-made tables; `what` names the tensor, the ByteReader's own name is different, so the message shows which
  // one a check reports.
  const std::string what = "tensor \"fc1.weight\"";
  auto read = [&](const std::vector<uint8_t>& bytes, uint32_t alphabet) {
    return bad_file_message([&] {
      ByteReader r(bytes.data(), bytes.size(), "reader");
      rans_read_table(r, alphabet, what);
    });
  };
  auto table = [](int scale, const std::vector<uint64_t>& freq) {
    ByteWriter w;
    w.u8(static_cast<uint8_t>(scale));
    for (uint64_t f : freq) w.varint(f);
    return std::move(w.bytes());
  };
  auto expect_names = [&](const std::string& message, const char* says) {
    EXPECT_NE(message.find(what), std::string::npos) << message;
    EXPECT_NE(message.find(says), std::string::npos) << message;
  };
  expect_names(read(table(0, {1, 0}), 2), "scale of 0 bits");
  expect_names(read(table(17, {1u << 16, 1u << 16}), 2), "scale of 17 bits");
  expect_names(read(table(255, {1, 1}), 2), "scale of 255 bits");
  expect_names(read(table(4, {5, 10}), 2), "sum to 15, not 2^4");                     // short of 2^scale
  expect_names(read(table(4, {10, 10}), 2), "sum past 2^4");                          // over
  expect_names(read(table(16, {65535, 2}), 2), "sum past 2^16");                      // over by one
  expect_names(read(table(16, {uint64_t{1} << 63, uint64_t{1} << 63}), 2), "sum past");  // would wrap 64 bits
  expect_names(read(table(16, {~uint64_t{0}, 1}), 2), "sum past");
  expect_names(read(table(3, {0, 0, 0, 0}), 4), "sum to 0");
  expect_names(read(table(1, {}), 0), "sum to 0");  // an empty alphabet cannot sum to 2^scale

  // Every truncation of a valid table whose frequencies take 1 to 3 varint bytes fails. Where the table's own check
  // fires (fewer bytes left than symbols: "truncated rANS table") the message names `what`; where a varint runs out
  // inside the bytes, the ByteReader's failure names the reader ("reader" here) and not `what`.
  RansTable t;
  t.scale_bits = 16;
  t.freq = {40000, 0, 20000, 5000, 500, 36};
  ByteWriter w;
  rans_write_table(w, t);
  ASSERT_EQ(w.size(), 13u);
  int names_what = 0, names_reader = 0;
  for (size_t len = 0; len < w.size(); ++len) {
    const std::vector<uint8_t> cut(w.bytes().begin(), w.bytes().begin() + static_cast<std::ptrdiff_t>(len));
    const std::string message = read(cut, 6);
    if (message.find(what) != std::string::npos) ++names_what;
    else if (message.find("reader") != std::string::npos) ++names_reader;
    else ADD_FAILURE() << "length " << len << ": " << message;
  }
  EXPECT_EQ(names_what + names_reader, 13);
  std::printf("[ rANS    ] 13 truncated tables: %d messages name what, %d only the reader\n", names_what,
              names_reader);
}

TEST(Rans, CorruptSectionsFailCleanly) {
  std::mt19937_64 rng(51);
  const OmpThreads threads;
  int flips = 0, flips_decoded = 0, edits = 0, edits_decoded = 0;
  for (Dist d : {Dist::kGeometric64, Dist::kUniform256, Dist::kTwoSkewed}) {
    const uint64_t n = 3001, cs = 512;  // six chunks, the last short
    const std::vector<uint32_t> symbols = draw(d, n, rng);
    const RansTable table = rans_table_for(counts_of(symbols, alphabet_of(d)));
    const std::vector<uint16_t> in(symbols.begin(), symbols.end());
    const std::vector<uint8_t> section = rans_encode(table, in.data(), n, cs);
    const Layout layout = parse_layout(section, n);
    SCOPED_TRACE(std::string(dist_name(d)) + ", " + std::to_string(section.size()) + " bytes");
    std::vector<uint16_t> out;
    ASSERT_TRUE(decodes(table, section.data(), section.size(), n, out));
    ASSERT_EQ(out, in);

    // Every truncation, and a byte more: the chunk sizes no longer tile the section.
    for (size_t len = 0; len < section.size(); ++len)
      EXPECT_FALSE(decodes(table, section.data(), len, n, out)) << "truncated to " << len;
    std::vector<uint8_t> longer = section;
    longer.push_back(0);
    EXPECT_FALSE(decodes(table, longer.data(), longer.size(), n, out));
    // The wrong symbol count: the last chunk decodes one symbol too many or too few.
    EXPECT_FALSE(decodes(table, section.data(), section.size(), n + 1, out));
    EXPECT_FALSE(decodes(table, section.data(), section.size(), n - 1, out));

    // Random corruption: a byte XORed with a random non-zero value, or one bit flipped. rANS has no redundancy
    // but the final states and the byte count, so some corruption decodes: most often a changed byte moves a slot
    // from one symbol to another of the same frequency (common in a tail of frequency-1 symbols), which leaves the
    // state as it was; rarely a state's chain diverges and meets itself again a few symbols on (seen: 60 → 33 and
    // 33 → 60 four symbols apart, state 1 both times). Either way a decode that ends in the start states having
    // read every byte spent the same bits on the changed symbols, to within a byte: that is what is checked of
    // every success (the file's CRC is what catches these).
    // The first 200 of each on the default thread count, so that errors thrown on the threads are covered.
    for (int trial = 0; trial < 3000; ++trial) {
      threads.set(trial < 200 ? threads.saved() : 1);
      std::vector<uint8_t> bad = section;
      const size_t at = rng() % bad.size();
      bad[at] ^= trial % 2 ? static_cast<uint8_t>(1 + rng() % 255) : static_cast<uint8_t>(1u << (rng() % 8));
      ++flips;
      if (!decodes(table, bad.data(), bad.size(), n, out)) continue;
      ++flips_decoded;
      size_t changed = 0;
      double bits_in = 0, bits_out = 0;  // the changed symbols' ideal lengths, as coded and as decoded
      for (size_t i = 0; i < in.size(); ++i)
        if (out[i] != in[i]) {
          ++changed;
          bits_in += table.scale_bits - std::log2(static_cast<double>(table.freq[in[i]]));
          bits_out += table.scale_bits - std::log2(static_cast<double>(table.freq[out[i]]));
        }
      EXPECT_GT(changed, 0u) << "a corrupt section decoded to the original symbols (byte " << at << ")";
      EXPECT_NEAR(bits_in, bits_out, 8.0) << "byte " << at << ": " << changed << " symbols changed";
    }

    // Chunk-size edits that keep the layout consistent (one chunk longer, the next as much shorter), so only the
    // decoder's end-of-chunk checks can catch them; and edits that break the tiling, and other chunk sizes.
    const uint8_t* payload = section.data() + layout.head_bytes;
    const size_t payload_size = section.size() - layout.head_bytes;
    for (size_t c = 0; c + 1 < layout.chunk_bytes.size(); ++c) {
      for (int64_t move = -6; move <= 6; ++move) {
        if (move == 0) continue;
        std::vector<uint64_t> sizes = layout.chunk_bytes;
        sizes[c] = static_cast<uint64_t>(static_cast<int64_t>(sizes[c]) + move);
        sizes[c + 1] = static_cast<uint64_t>(static_cast<int64_t>(sizes[c + 1]) - move);
        const std::vector<uint8_t> bad = write_section(cs, sizes, payload, payload_size);
        ++edits;
        edits_decoded += decodes(table, bad.data(), bad.size(), n, out);
        sizes = layout.chunk_bytes;
        sizes[c] = static_cast<uint64_t>(static_cast<int64_t>(sizes[c]) + move);  // no longer tiles
        const std::vector<uint8_t> untiled = write_section(cs, sizes, payload, payload_size);
        EXPECT_FALSE(decodes(table, untiled.data(), untiled.size(), n, out)) << "chunk " << c << " by " << move;
      }
    }
    for (uint64_t other : {uint64_t{0}, uint64_t{1}, cs - 1, cs + 1, cs + 80, 2 * cs, cs / 2, kRansMaxChunkSymbols,
                           kRansMaxChunkSymbols + 1, ~uint64_t{0}}) {
      const std::vector<uint8_t> bad = write_section(other, layout.chunk_bytes, payload, payload_size);
      ++edits;
      edits_decoded += decodes(table, bad.data(), bad.size(), n, out);
    }
  }
  std::printf("[ rANS    ] corrupt sections that decoded: %d of %d byte flips, %d of %d layout edits\n",
              flips_decoded, flips, edits_decoded, edits);
  EXPECT_LE(flips_decoded, flips / 100);  // observed: 17 of 9000, 16 of them in the geometric tail
  // A chunk size moved or a different chunk length makes a chunk end early, late or off state L; none decode.
  EXPECT_EQ(edits_decoded, 0);
}

TEST(Rans, OneSymbolSectionsCarryNoInformation) {
  // With one symbol of frequency 2^scale the states never move: a chunk is its states, each L, and nothing else,
  // whatever its length, so a different chunk size that keeps the chunk count decodes; only the layout and the
  // states are checkable.
  const RansTable table = rans_table_for({0, 0, 5});
  const std::vector<uint8_t> in(1000, 2);
  const std::vector<uint8_t> section = rans_encode(table, in.data(), in.size(), 300);
  std::vector<uint8_t> expect = {0xac, 0x02};  // 300 symbols a chunk: four chunks
  for (int c = 0; c < 4; ++c) expect.push_back(static_cast<uint8_t>(kRansMinChunkBytes));
  for (int c = 0; c < 4 * kRansStates; ++c) expect.insert(expect.end(), {0, 0, 0x80, 0});  // L = 2^23
  EXPECT_EQ(section, expect);
  std::vector<uint8_t> out;
  std::vector<uint8_t> bad = section;
  bad[0] = 0xad;  // 301 symbols a chunk: still four chunks
  EXPECT_TRUE(decodes(table, bad.data(), bad.size(), in.size(), out));
  bad = section;
  bad[6] = 1;  // chunk 0's state is L + 1
  EXPECT_FALSE(decodes(table, bad.data(), bad.size(), in.size(), out));
}

TEST(Rans, CheckSectionBoundsTheChunkCountBeforeAllocating) {
  // A section of R bytes after the chunk size holds at most R/(1 + 4·states) chunks (a size byte and the states); one
  // more must be refused by that bound (its message), before anything of the chunk count's size is allocated. A
  // count of 2^40 chunks or more would throw std::bad_alloc or std::length_error from an allocation instead.
  for (uint64_t cs : {uint64_t{1}, uint64_t{2}, uint64_t{7}, uint64_t{65536}, kRansMaxChunkSymbols}) {
    for (size_t rest : {size_t{0}, size_t{4}, size_t{16}, size_t{17}, size_t{33}, size_t{34}, size_t{1000}}) {
      ByteWriter w;
      w.varint(cs);
      for (size_t i = 0; i < rest; ++i) w.u8(4);
      const std::vector<uint8_t>& s = w.bytes();
      const uint64_t fits = rest / (1 + kRansMinChunkBytes);  // chunks the bound lets through
      SCOPED_TRACE("chunks of " + std::to_string(cs) + ", " + std::to_string(rest) + " bytes");
      if (fits > 0) {
        // At the bound the layout is parsed (and fails later, or passes): never the bound's message.
        try {
          rans_check_section(s.data(), s.size(), fits * cs, "at bound");
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), ErrorCode::kBadFile);
          EXPECT_EQ(std::string(e.what()).find("bytes can hold"), std::string::npos) << e.what();
        }
      }
      // Counts past the bound, up to those where ⌈n/cs⌉ computed as (n + cs − 1)/cs would wrap around 2^64.
      for (uint64_t n : {fits * cs + 1, (fits + 1) * cs, uint64_t{1} << 40, uint64_t{1} << 62,
                         ~uint64_t{0} - cs + 1, ~uint64_t{0} - cs + 2, ~uint64_t{0} - 1, ~uint64_t{0}}) {
        const uint64_t chunks = n / cs + (n % cs != 0);
        if (chunks <= fits) continue;
        const std::string m = bad_file_message([&] { rans_check_section(s.data(), s.size(), n, "huge"); });
        EXPECT_NE(m.find("bytes can hold"), std::string::npos) << "n = " << n << ": " << m;
        EXPECT_NE(m.find("huge"), std::string::npos) << m;
      }
    }
  }
}

TEST(Rans, MatchesTheReferenceCoder) {
  // tests/coding/data/rans_reference.py: a coder written from rans.h's description of the format, not from
  // rans.cpp. Scale 12 with a zero-frequency symbol (2) and a frequency-1 symbol (7, whose coding emits two bytes
  // at once), 40 symbols in chunks of 16 (16 + 16 + 8).
  RansTable table;
  table.scale_bits = 12;
  table.freq = {2000, 1200, 0, 600, 250, 40, 5, 1};
  table.start = {0, 2000, 3200, 3200, 3800, 4050, 4090, 4095};
  const std::vector<uint8_t> symbols = {0, 1, 0, 3, 0, 0, 7, 1, 4, 0, 0, 1, 5, 0, 3, 0, 1, 0, 0, 6,
                                        0, 4, 1, 0, 0, 3, 0, 7, 7, 0, 1, 0, 0, 5, 0, 0, 1, 3, 0, 6};
  const std::vector<uint8_t> reference = {
      0x10, 0x13, 0x14, 0x12, 0xf5, 0x74, 0xbe, 0x0d, 0xe0, 0xa7, 0xa8, 0x0e, 0x8f, 0x11, 0xe5, 0x00,
      0xe8, 0xdc, 0x71, 0x51, 0xff, 0x68, 0xda, 0xff, 0xfa, 0x88, 0x72, 0x7f, 0x87, 0xea, 0x00, 0x80,
      0xe7, 0x6e, 0x18, 0xfb, 0x0f, 0x5f, 0x6b, 0x72, 0x0f, 0x60, 0x00, 0x70, 0xc6, 0x7e, 0x03, 0xee,
      0x8f, 0x5d, 0x01, 0xd0, 0xd4, 0x18, 0x02, 0x9d, 0xe4, 0x46, 0x03, 0x88, 0x00,
  };
  EXPECT_EQ(rans_encode(table, symbols.data(), symbols.size(), 16), reference);
  std::vector<uint8_t> out(symbols.size());
  rans_decode(table, reference.data(), reference.size(), out.data(), out.size(), "reference");
  EXPECT_EQ(out, symbols);
  // The same table through the table I/O, which fills the starts itself.
  ByteWriter w;
  rans_write_table(w, table);
  ByteReader r(w.bytes().data(), w.size(), "reference table");
  EXPECT_EQ(rans_read_table(r, 8, "reference table").start, table.start);
}

// Long sections from the same reference coder (tests/coding/data/rans_reference.py, LONG_CASES): the symbols come
// from an LCG both sides share, and the reference pins each section's size and FNV-1a hash. They are long enough
// for the coder's grouped loops (four states' steps at a time) and its one-symbol loop (tables below half a bit per
// symbol) to run, with chunks that are not whole groups and chunk ends where fewer than a group's bytes are left.
TEST(Rans, LongSectionsMatchTheReferenceCoder) {
  struct Case {
    const char* name;
    int scale;
    std::vector<uint32_t> freq;
    uint64_t n, chunk_symbols, seed;
    size_t bytes;
    uint64_t fnv;
  };
  std::vector<uint32_t> wide(255, 255);
  wide.insert(wide.end(), 255, 1);
  wide.push_back(65536 - 255 * 256);
  const Case cases[] = {
      {"1.8 bits", 12, {2000, 1200, 0, 600, 250, 40, 5, 1}, 5003, 1001, 11, 1175, 0xf9f026a376fcadaeull},
      {"0.17 bits", 12, {4000, 90, 5, 1}, 20011, 4099, 12, 490, 0xe7c13e490d7d5667ull},
      {"8.0 bits", 16, wide, 3001, 1499, 13, 3074, 0x4a200fbda9b1fc1eull},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RansTable table;
    table.scale_bits = c.scale;
    table.freq = c.freq;
    uint32_t at = 0;
    for (uint32_t f : c.freq) {
      table.start.push_back(at);
      at += f;
    }
    ASSERT_EQ(at, uint32_t{1} << c.scale);
    std::vector<uint16_t> symbols(static_cast<size_t>(c.n));
    uint64_t x = c.seed;
    for (auto& s : symbols) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const uint32_t slot = static_cast<uint32_t>(x >> 33) & (at - 1);
      s = static_cast<uint16_t>(std::upper_bound(table.start.begin(), table.start.end(), slot) -
                                table.start.begin() - 1);
    }
    const std::vector<uint8_t> section = rans_encode(table, symbols.data(), c.n, c.chunk_symbols);
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t b : section) h = (h ^ b) * 0x100000001b3ull;
    EXPECT_EQ(section.size(), c.bytes);
    EXPECT_EQ(h, c.fnv);
    std::vector<uint16_t> out(symbols.size());
    rans_decode(table, section.data(), section.size(), out.data(), c.n, c.name);
    EXPECT_EQ(out, symbols);
  }
}
