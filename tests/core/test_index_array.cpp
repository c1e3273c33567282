// IndexArray against a std::vector<int32_t> oracle: the same values through every operation (assign, set, the
// writable reference, push_back, resize, widening), with the width the narrowest that holds the largest index —
// 254 and 65,534 are the edges, since each width's all-ones pattern stands for kPrunedIndex — and equality
// across widths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "core/index_scan.h"
#include "netquant/error.h"
#include "netquant/index_array.h"

namespace nq {
namespace {

void expect_same(const IndexArray& a, const std::vector<int32_t>& want) {
  ASSERT_EQ(a.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(a[i], want[i]) << "at " << i;
  EXPECT_EQ(a.to_vector(), want);
  EXPECT_TRUE(a == want);
  EXPECT_EQ(a.count(kPrunedIndex), std::count(want.begin(), want.end(), kPrunedIndex));
  EXPECT_EQ(std::vector<int32_t>(a.begin(), a.end()), want);  // the iterator
}

int width_of(int32_t top) { return top <= 254 ? 1 : top <= 65534 ? 2 : 4; }

TEST(IndexArray, WidthIsTheNarrowestThatHoldsTheLargestIndex) {
  for (const int32_t top : {0, 1, 253, 254, 255, 256, 65533, 65534, 65535, 65536, 1 << 24, INT32_MAX}) {
    SCOPED_TRACE(top);
    std::vector<int32_t> v = {0, kPrunedIndex, top, top / 3, kPrunedIndex};
    const IndexArray a(v);
    EXPECT_EQ(a.width(), width_of(top));
    expect_same(a, v);
    EXPECT_EQ(a.bytes(), v.size() * static_cast<size_t>(a.width()));
    // The same values reached by widening step by step from one byte.
    IndexArray b(v.size(), 0);
    EXPECT_EQ(b.width(), 1);
    for (size_t i = 0; i < v.size(); ++i) b[i] = v[i];
    EXPECT_EQ(b.width(), width_of(top));
    expect_same(b, v);
    EXPECT_TRUE(a == b);
  }
}

// -1 is the pruned mark; any other negative value is a caller's bug, refused by every way in (it would otherwise
// be stored as an all-ones pattern, i.e. read back as pruned or as a huge index) and leaving the array as it was.
TEST(IndexArray, NegativeIndicesOtherThanThePrunedMarkAreRefused) {
  for (const int32_t bad : {-2, -255, INT32_MIN}) {
    SCOPED_TRACE(bad);
    IndexArray a(std::vector<int32_t>{3, kPrunedIndex, 7});
    const auto refused = [](const auto& call) {
      try {
        call();
        ADD_FAILURE() << "accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("is negative"), std::string::npos) << e.what();
      }
    };
    refused([&] { a.push_back(bad); });
    refused([&] { a.assign(4, bad); });
    refused([&] { IndexArray b(std::vector<int32_t>{0, bad}); });
    expect_same(a, {3, kPrunedIndex, 7});
  }
}

TEST(IndexArray, RandomOperationsMatchAVector) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 60; ++round) {
    std::vector<int32_t> want;
    IndexArray a;
    const int32_t tops[] = {3, 254, 255, 70000};
    const int32_t top = tops[round % 4];
    std::uniform_int_distribution<int32_t> value(-1, top);
    for (int op = 0; op < 400; ++op) {
      switch (rng() % 5) {
        case 0: {
          const int32_t v = value(rng);
          a.push_back(v);
          want.push_back(v);
          break;
        }
        case 1:
          if (!want.empty()) {
            const size_t i = rng() % want.size();
            const int32_t v = value(rng);
            a[i] = v;
            want[i] = v;
          }
          break;
        case 2: {
          const size_t n = rng() % 50;
          a.resize(n);
          want.resize(n, 0);
          break;
        }
        case 3:
          if (!want.empty()) {  // set() after hold_index, as the parallel scatter does
            const size_t i = rng() % want.size();
            const int32_t v = value(rng);
            a.hold_index(std::max(v, 0));
            a.set(i, v);
            want[i] = v;
          }
          break;
        default:
          break;
      }
      ASSERT_NO_FATAL_FAILURE(expect_same(a, want)) << "round " << round << " op " << op;
    }
  }
}

TEST(IndexArray, EqualityIgnoresWidthAndAssignResets) {
  IndexArray narrow{1, kPrunedIndex, 2};
  IndexArray wide{1, kPrunedIndex, 2, 300};
  EXPECT_EQ(narrow.width(), 1);
  EXPECT_EQ(wide.width(), 2);
  EXPECT_FALSE(narrow == wide);
  narrow.push_back(300);
  EXPECT_TRUE(narrow == wide);
  wide.hold_index(1 << 20);
  EXPECT_EQ(wide.width(), 4);
  EXPECT_TRUE(narrow == wide);
  wide[3] = 299;
  EXPECT_FALSE(narrow == wide);
  wide.assign(5, kPrunedIndex);
  EXPECT_EQ(wide.width(), 1);
  expect_same(wide, std::vector<int32_t>(5, kPrunedIndex));
  EXPECT_THROW(IndexArray(std::vector<int32_t>{0, -2}), Error);
  EXPECT_THROW(wide.push_back(-5), Error);
}

// The scans the .nq writer and reader validate indices with, at the codebook's edge: index k (one past the
// codebook) is outside, and count_indices flags it instead of counting it (its one-byte path once counted it into
// counts[k]).
template <class Index>
void check_index_scans_at_the_codebook_edge() {
  const Index mark = static_cast<Index>(~Index{0});  // the width's pruned mark (all ones)
  const size_t k = 5;
  // In range: 0..k-1 and the mark.
  const std::vector<Index> ok = {0, 4, mark, 3, 4, mark, 1};
  EXPECT_EQ(first_index_outside(ok.data(), 0, ok.size(), mark, k), ok.size());
  std::vector<uint64_t> counts(k + 1, 0);  // one spare bin: a count of index k must not land in it
  bool bad = false;
  EXPECT_EQ(count_indices(ok.data(), 0, ok.size(), mark, k, counts.data(), bad), 2u);
  EXPECT_FALSE(bad);
  EXPECT_EQ(counts, (std::vector<uint64_t>{1, 1, 0, 1, 2, 0}));
  // Exactly k (just past the codebook) is outside, found at its place, and flagged, not counted.
  const std::vector<Index> edge = {0, mark, 4, static_cast<Index>(k), 2};
  EXPECT_EQ(first_index_outside(edge.data(), 0, edge.size(), mark, k), 3u);
  EXPECT_EQ(first_index_outside(edge.data(), 0, 3, mark, k), 3u);  // the range ends before it: none
  std::fill(counts.begin(), counts.end(), 0);
  bad = false;
  EXPECT_EQ(count_indices(edge.data(), 0, edge.size(), mark, k, counts.data(), bad), 1u);
  EXPECT_TRUE(bad);
  EXPECT_EQ(counts[k], 0u) << "index k counted past the codebook";
}

TEST(IndexScan, AnIndexEqualToTheCodebookSizeIsOutsideAtEveryWidth) {
  check_index_scans_at_the_codebook_edge<uint8_t>();
  check_index_scans_at_the_codebook_edge<uint16_t>();
  check_index_scans_at_the_codebook_edge<int32_t>();
}

}  // namespace
}  // namespace nq
