// The per-problem level order of .nq tensors with several codebooks (coding/level_order.h). Oracles: a brute-force
// rank histogram and an unlimited-length Huffman code built here with a heap (the index stream's bits must be
// exactly that code's cost: package-merge's 15-bit limit does not bind on these alphabets), the model written
// (read back bit for bit, codebooks ascending), per-weight dequantized values (unchanged by any reordering), and
// files the previous, ascending writer made (pinned in tests/data/golden/, read back as the model they hold).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "coding/level_order.h"
#include "coding_test_util.h"
#include "netquant/coding.h"

namespace nq {
namespace {

using coding::LevelOrder;

// Rows whose levels have the same skewed distribution, each at a random place in its own codebook: stored
// ascending, the tensor's histogram of indices is flat; by use, it is the skewed one.
QuantizedModel shuffled_rows_model(uint64_t seed, ScopeKind scope, double prune) {
  std::mt19937_64 rng(seed);
  QuantizedModel m;
  m.method = Method::kEcsq;
  m.scope.kind = scope;
  m.scope.group = scope == ScopeKind::kGroup ? 53 : 0;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{29, 37}, {5, 131}, {3, 1}}) {
    QuantizedTensor t;
    t.name = "w" + std::to_string(m.tensors.size());
    t.shape = shape;
    const int64_t n = shape_numel(shape);
    t.problem_size = scope == ScopeKind::kRow ? shape.back() : m.scope.group;
    t.num_problems = (n + t.problem_size - 1) / t.problem_size;
    t.first_codebook = static_cast<int64_t>(m.codebooks.size());
    std::vector<int> k_of;
    for (int64_t c = 0; c < t.num_problems; ++c) {
      const int k = 1 + static_cast<int>(rng() % 9);
      k_of.push_back(k);
      m.codebooks.push_back(nq::testing::random_codebook(rng, k));
    }
    t.indices.resize(static_cast<size_t>(n));
    std::vector<std::vector<int32_t>> place_to_level;
    for (int64_t c = 0; c < t.num_problems; ++c) {
      std::vector<int32_t> perm(static_cast<size_t>(k_of[static_cast<size_t>(c)]));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      place_to_level.push_back(perm);
    }
    for (int64_t i = 0; i < n; ++i) {
      const auto c = static_cast<size_t>(i / t.problem_size);
      if (std::uniform_real_distribution<double>(0, 1)(rng) < prune) {
        t.indices[static_cast<size_t>(i)] = kPrunedIndex;
        continue;
      }
      // Geometric: place 0 most of the time, 1 less, … (capped at the codebook).
      int place = 0;
      while (place + 1 < k_of[c] && (rng() % 3) == 0) ++place;
      t.indices[static_cast<size_t>(i)] = place_to_level[c][static_cast<size_t>(place)];
    }
    m.tensors.push_back(std::move(t));
  }
  return m;
}


// The histogram of places, by the rule itself: each problem's levels by decreasing use, ties to the lower level.
std::vector<uint64_t> brute_force_place_counts(const QuantizedModel& m, const QuantizedTensor& t, bool by_use) {
  std::vector<uint64_t> total;
  for (int64_t c = 0; c < t.num_problems; ++c) {
    const size_t k = m.codebooks[static_cast<size_t>(t.first_codebook + c)].size();
    std::vector<uint64_t> count(k, 0);
    for (int64_t i = c * t.problem_size; i < std::min<int64_t>((c + 1) * t.problem_size, t.indices.size()); ++i)
      if (t.indices[static_cast<size_t>(i)] != kPrunedIndex) ++count[static_cast<size_t>(t.indices[static_cast<size_t>(i)])];
    if (by_use) std::stable_sort(count.begin(), count.end(), std::greater<>());
    if (total.size() < k) total.resize(k, 0);
    for (size_t r = 0; r < k; ++r) total[r] += count[r];
  }
  return total;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "level_order_" + name;
}

TEST(LevelOrder, IndexStreamsCostTheHuffmanCodeOfTheRowsPlacesByUse) {
  for (const ScopeKind scope : {ScopeKind::kRow, ScopeKind::kGroup}) {
    for (const double prune : {0.0, 0.35}) {
      SCOPED_TRACE(scope_to_string({scope, 53}) + " prune " + std::to_string(prune));
      QuantizedModel m = shuffled_rows_model(17, scope, prune);
      m.index_coder = IndexCoder::kHuffman;  // the Huffman code's cost is what is checked
      const std::string path = temp_path("stream.nq");
      write_nq_file(path, m);
      const NqFileInfo info = describe_nq_file(path);
      ASSERT_EQ(info.tensors.size(), m.tensors.size());
      uint64_t by_use = 0, ascending = 0;
      for (size_t ti = 0; ti < m.tensors.size(); ++ti) {
        const QuantizedTensor& t = m.tensors[ti];
        SCOPED_TRACE(t.name);
        const uint64_t want = nq::testing::unlimited_huffman_cost(brute_force_place_counts(m, t, true));
        if (t.num_problems > 1) {
          EXPECT_EQ(info.tensors[ti].index_bits, want);
        } else {  // one codebook: stored as it is
          EXPECT_EQ(info.tensors[ti].index_bits, nq::testing::unlimited_huffman_cost(brute_force_place_counts(m, t, false)));
        }
        by_use += info.tensors[ti].index_bits;
        ascending += nq::testing::unlimited_huffman_cost(brute_force_place_counts(m, t, false));
      }
      // What the order is for: the rows' shuffled levels cost ~log2 k bits stored ascending, ~1.5 by use.
      EXPECT_LT(static_cast<double>(by_use), 0.75 * static_cast<double>(ascending)) << by_use << " vs " << ascending;
      // Read back: the model written, bit for bit (every codebook ascending again, the indices with them).
      nq::testing::expect_same_model(read_nq_file(path), m);
    }
  }
}

TEST(LevelOrder, OrdersByUseTiesToTheLowerLevelUnusedLast) {
  QuantizedModel m;
  m.scope.kind = ScopeKind::kRow;
  m.codebooks = {{0.f, 1.f, 2.f, 3.f, 4.f}, {0.f, 1.f, 2.f}, {5.f}};
  QuantizedTensor t;
  t.shape = {3, 6};
  t.problem_size = 6;
  t.num_problems = 3;
  // Row 0: level 3 ×2, 1 ×2, 4 ×1, pruned ×1 (0 and 2 unused). Row 1: 2 ×3, 0 ×3. Row 2: pruned but one.
  for (int32_t v : {3, 1, kPrunedIndex, 1, 4, 3, 2, 0, 2, 0, 2, 0, kPrunedIndex, 0, kPrunedIndex, kPrunedIndex,
                    kPrunedIndex, kPrunedIndex})
    t.indices.push_back(v);
  const LevelOrder o = coding::order_levels_by_use(t, m.codebooks, 5);
  EXPECT_EQ(o.offset, (std::vector<uint64_t>{0, 5, 8, 9}));
  EXPECT_EQ(o.level_at, (std::vector<uint32_t>{1, 3, 4, 0, 2, /**/ 0, 2, 1, /**/ 0}));
  for (size_t c = 0; c < 3; ++c)
    for (uint64_t r = o.offset[c]; r < o.offset[c + 1]; ++r) EXPECT_EQ(o.rank_of[o.offset[c] + o.level_at[r]], r - o.offset[c]);
  EXPECT_EQ(o.counts, (std::vector<uint64_t>{2 + 3 + 1, 2 + 3, 1, 0, 0}));
  EXPECT_EQ(o.pruned, 6u);
  const std::vector<uint8_t> raw = {3, 1, 0xFF, 1, 4, 3, 2, 0, 2, 0, 2, 0, 0xFF, 0, 0xFF, 0xFF, 0xFF, 0xFF};
  EXPECT_EQ(coding::indices_by_place<uint8_t>(raw.data(), raw.size(), 0xFF, 6, o),
            (std::vector<uint8_t>{1, 0, 0xFF, 0, 2, 1, 1, 0, 1, 0, 1, 0, 0xFF, 0, 0xFF, 0xFF, 0xFF, 0xFF}));
}

// The same rule on codebooks long enough that an unstable sort would reorder ties (past insertion sort's 16): each
// row's levels take one of three counts, so most levels tie; the oracle sorts (count descending, level ascending).
TEST(LevelOrder, ManyTiesKeepTheLowerLevelFirstInLongCodebooks) {
  std::mt19937_64 rng(77);
  for (int k : {17, 40, 200}) {
    QuantizedModel m;
    m.scope.kind = ScopeKind::kRow;
    const int rows = 3;
    QuantizedTensor t;
    std::vector<std::vector<uint64_t>> want_counts(rows, std::vector<uint64_t>(static_cast<size_t>(k), 0));
    std::vector<int32_t> row_values;
    for (int r = 0; r < rows; ++r) {
      m.codebooks.emplace_back(static_cast<size_t>(k), 0.0f);
      for (int j = 0; j < k; ++j) {
        m.codebooks.back()[static_cast<size_t>(j)] = static_cast<float>(j);
        const uint64_t c = rng() % 3;  // 0, 1 or 2 uses
        want_counts[r][static_cast<size_t>(j)] = c;
      }
    }
    // Every row holds the same number of values: pad each with pruned weights up to 2k.
    for (int r = 0; r < rows; ++r) {
      std::vector<int32_t> vals;
      for (int j = 0; j < k; ++j)
        for (uint64_t u = 0; u < want_counts[r][static_cast<size_t>(j)]; ++u) vals.push_back(j);
      while (vals.size() < static_cast<size_t>(2 * k)) vals.push_back(kPrunedIndex);
      std::shuffle(vals.begin(), vals.end(), rng);
      for (int32_t v : vals) t.indices.push_back(v);
    }
    t.shape = {rows, 2 * k};
    t.problem_size = 2 * k;
    t.num_problems = rows;
    const LevelOrder o = coding::order_levels_by_use(t, m.codebooks, static_cast<uint32_t>(k));
    for (int r = 0; r < rows; ++r) {
      std::vector<uint32_t> want(static_cast<size_t>(k));
      for (uint32_t j = 0; j < static_cast<uint32_t>(k); ++j) want[j] = j;
      const auto& cnt = want_counts[r];
      std::sort(want.begin(), want.end(), [&](uint32_t a, uint32_t b) {
        return cnt[a] != cnt[b] ? cnt[a] > cnt[b] : a < b;
      });
      const std::vector<uint32_t> got(o.level_at.begin() + static_cast<long>(o.offset[r]),
                                      o.level_at.begin() + static_cast<long>(o.offset[r + 1]));
      EXPECT_EQ(got, want) << "k " << k << " row " << r;
    }
  }
}

TEST(LevelOrder, ReaderPutsAnyStoredOrderBackAscendingWithTheSameValues) {
  // Codebooks in any order, with ties, signed zeros and NaN: every weight keeps its value's bits, every codebook
  // ends ascending (NaN last), and equal values keep their stored order.
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    QuantizedTensor t;
    t.problem_size = 1 + static_cast<int64_t>(rng() % 40);
    t.num_problems = 1 + static_cast<int64_t>(rng() % 9);
    const int64_t n = (t.num_problems - 1) * t.problem_size + 1 + static_cast<int64_t>(rng() % t.problem_size);
    t.first_codebook = 2;
    std::vector<std::vector<float>> codebooks(2, std::vector<float>{9.f});  // not this tensor's: left alone
    const std::vector<float> pool = {-1.5f, 0.25f, -0.0f, 0.0f, 0.25f, std::nanf(""), 3.0f, -7.0f};
    for (int64_t c = 0; c < t.num_problems; ++c) {
      std::vector<float> cb(1 + rng() % pool.size());
      for (float& v : cb) v = pool[rng() % pool.size()];
      codebooks.push_back(cb);
    }
    t.indices.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = codebooks[static_cast<size_t>(2 + i / t.problem_size)].size();
      t.indices[static_cast<size_t>(i)] = rng() % 5 == 0 ? kPrunedIndex : static_cast<int32_t>(rng() % k);
    }
    auto bits_at = [&](const QuantizedTensor& x, const std::vector<std::vector<float>>& cbs, size_t i) {
      const int32_t idx = x.indices[i];
      if (idx == kPrunedIndex) return uint32_t{0xFFFFFFFF};
      uint32_t b;
      std::memcpy(&b, &cbs[static_cast<size_t>(2 + static_cast<int64_t>(i) / x.problem_size)][static_cast<size_t>(idx)], 4);
      return b;
    };
    QuantizedTensor got = t;
    std::vector<std::vector<float>> got_cbs = codebooks;
    coding::restore_ascending_levels(got, got_cbs);
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) ASSERT_EQ(bits_at(got, got_cbs, i), bits_at(t, codebooks, i)) << i;
    EXPECT_EQ(got_cbs[0], std::vector<float>{9.f});
    for (int64_t c = 0; c < t.num_problems; ++c) {
      const std::vector<float>& before = codebooks[static_cast<size_t>(2 + c)];
      const std::vector<float>& after = got_cbs[static_cast<size_t>(2 + c)];
      ASSERT_EQ(after.size(), before.size());
      for (size_t l = 1; l < after.size(); ++l)
        EXPECT_TRUE(std::isnan(after[l]) || (!std::isnan(after[l - 1]) && after[l - 1] <= after[l])) << c;
      // Equal values keep their stored order: the stable order's signed zeros, read by their bits.
      std::vector<uint32_t> zeros_before, zeros_after;
      for (float v : before)
        if (v == 0) zeros_before.push_back(std::signbit(v));
      for (float v : after)
        if (v == 0) zeros_after.push_back(std::signbit(v));
      EXPECT_EQ(zeros_after, zeros_before);
    }
  }
}

TEST(LevelOrder, FilesOfTheAscendingWriterReadAsTheModelTheyHold) {
  // Written before the order by use (kept from the fuzz seed corpus of the time): rows and groups stored ascending.
  int seed = 2;
  for (const auto& [file, scope] : {std::pair<std::string, ScopeKind>{"rows_stored_ascending.nq", ScopeKind::kRow},
                                    {"groups_stored_ascending.nq", ScopeKind::kGroup}}) {
    SCOPED_TRACE(file);
    nq::testing::ModelSpec spec;
    spec.scope = scope;
    spec.group = 16;
    spec.prune = seed % 2 ? 0.5 : 0.0;  // as write_fuzz_seeds (test_golden.cpp) made them
    spec.with_raw = seed % 2 == 0;
    spec.k = 5;
    QuantizedModel m = nq::testing::random_model(spec, static_cast<uint64_t>(++seed));
    m.tensors.resize(3);
    nq::testing::expect_same_model(read_nq_file(std::string(NQ_SOURCE_DIR) + "/tests/data/golden/" + file), m);
  }
}

}  // namespace
}  // namespace nq
