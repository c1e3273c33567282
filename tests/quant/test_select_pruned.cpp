// Op (g) select_pruned on the CPU against brute force: the `count` smallest h·w² scores (|w| first where h·w² is 0)
// over several arrays in flat order, ties at the threshold to the earliest positions, with exact ties everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "netquant/error.h"
#include "quant/prune_cases.h"
#include "quant/radix_select.h"

namespace nq::quant {
namespace {

TEST(SelectPruned, MatchesBruteForceWithTies) {
  uint64_t seed = 1;
  for (const auto& sizes : std::vector<std::vector<size_t>>{{1}, {5, 0, 3}, {4099, 33, 1000, 257}, {70001, 31}})
    for (const bool weighted : {true, false}) {
      prune_cases::Model m = prune_cases::make_model(sizes, ++seed);
      const int64_t total = static_cast<int64_t>(m.total());
      for (const int64_t count : {int64_t{0}, int64_t{1}, total / 3, total / 2, total - 1, total}) {
        SCOPED_TRACE("arrays " + std::to_string(sizes.size()) + " total " + std::to_string(total) + " count " +
                     std::to_string(count) + (weighted ? " weighted" : ""));
        cpu::select_pruned(m.arrays(weighted), count);
        EXPECT_EQ(m.mask, prune_cases::brute_force(m, weighted, count));
      }
    }
}

// The device's threshold rule (radix_select.h) with host histograms: the k-th smallest key and its tie rank,
// against sorting, on the same tie-heavy scores.
TEST(SelectPruned, RadixSelectionFindsTheKthKey) {
  for (const bool weighted : {true, false}) {
    const prune_cases::Model m = prune_cases::make_model({4099, 33, 1000, 257, 70001}, weighted ? 8 : 9);
    std::vector<uint64_t> keys;
    for (size_t t = 0; t < m.w.size(); ++t)
      for (size_t i = 0; i < m.w[t].size(); ++i) {
        const double s = prune_score(m.w[t][i], weighted ? m.h[t][i] : 1.0);
        uint64_t bits;
        std::memcpy(&bits, &s, 8);
        keys.push_back(bits);
      }
    std::vector<uint64_t> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    for (const uint64_t k : {uint64_t{1}, uint64_t{2}, uint64_t{777}, keys.size() / 2, keys.size() - 1, keys.size()}) {
      const RadixSelection sel = radix_select(k, [&](uint64_t prefix, uint64_t mask, int shift, uint64_t* hist) {
        std::fill(hist, hist + 256, uint64_t{0});
        for (const uint64_t key : keys)
          if ((key & mask) == prefix) ++hist[(key >> shift) & 255];
      });
      EXPECT_EQ(sel.key, sorted[k - 1]) << "k = " << k;
      const uint64_t below =
          static_cast<uint64_t>(std::lower_bound(sorted.begin(), sorted.end(), sel.key) - sorted.begin());
      EXPECT_EQ(sel.rank, k - below) << "k = " << k;
    }
  }
}

TEST(SelectPruned, NegativeZeroImportanceScoresAsZero) {
  // (−0)·w·w is −0 in IEEE arithmetic; as raw bits that would be the largest key of the device's selection. It
  // must score as an importance of +0: |w|'s float bits, below 2^31.
  for (const float w : {0.5f, -0.5f, 3e38f, -1e-45f, 0.0f, -0.0f}) {
    const double s = prune_score(w, -0.0), plus = prune_score(w, 0.0);
    uint64_t bits, plus_bits;
    std::memcpy(&bits, &s, 8);
    std::memcpy(&plus_bits, &plus, 8);
    EXPECT_EQ(bits, plus_bits) << w;
    uint32_t magnitude;
    const float a = std::fabs(w);
    std::memcpy(&magnitude, &a, 4);
    EXPECT_EQ(bits, magnitude) << w;
  }
  prune_cases::Model m;
  m.w = {{0.5f, 0.25f, 1.0f, 2.0f}};
  m.h = {{-0.0f, 1.0f, 1.0f, 1.0f}};
  cpu::select_pruned(m.arrays(true), 1);
  EXPECT_EQ(m.mask[0], (std::vector<uint8_t>{1, 0, 0, 0}));
}

// Weights whose h·w² is 0 (importance 0) are pruned first, the smallest magnitudes first, then by h·w². With an
// importance of all zeros in one array, that array is pruned by magnitude (it used to go in file order, so the
// first array went whole), and before any weight of the other array. Oracle: sorting by hand.
TEST(SelectPruned, ZeroImportanceGoesBySmallestMagnitude) {
  prune_cases::Model m = prune_cases::make_model({5003, 4099}, 99);
  std::fill(m.h[0].begin(), m.h[0].end(), 0.0f);
  for (float& h : m.h[1]) h = std::max(h, 0.5f);
  for (float& w : m.w[1]) w = w == 0.0f ? 0.02f : w;  // (an exact zero has score 0 whatever its importance)
  std::vector<float> magnitudes;
  for (const float w : m.w[0]) magnitudes.push_back(std::fabs(w));
  std::sort(magnitudes.begin(), magnitudes.end());
  for (const int64_t count : {int64_t{1}, int64_t{100}, int64_t{2500}, int64_t{5003}, int64_t{6000}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    cpu::select_pruned(m.arrays(true), count);
    const int64_t in_first = std::min<int64_t>(count, 5003);
    int64_t pruned = 0;
    for (size_t i = 0; i < m.w[0].size(); ++i) {
      pruned += m.mask[0][i];
      // Every weight strictly below the count-th magnitude is pruned, none strictly above it.
      const float cut = magnitudes[static_cast<size_t>(in_first - 1)];
      if (std::fabs(m.w[0][i]) < cut) { EXPECT_EQ(m.mask[0][i], 1) << i; }
      if (std::fabs(m.w[0][i]) > cut) { EXPECT_EQ(m.mask[0][i], 0) << i; }
    }
    EXPECT_EQ(pruned, in_first);
    EXPECT_EQ(m.mask, prune_cases::brute_force(m, true, count));
  }
}

TEST(SelectPruned, RejectsImpossibleCounts) {
  prune_cases::Model m = prune_cases::make_model({10, 5}, 3);
  EXPECT_THROW(cpu::select_pruned(m.arrays(true), 16), Error);
  EXPECT_THROW(cpu::select_pruned(m.arrays(true), -1), Error);
}

}  // namespace
}  // namespace nq::quant
