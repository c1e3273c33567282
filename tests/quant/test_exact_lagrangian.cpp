// The Lagrangian search of the exact DP (src/quant/exact_lagrangian.h) against two oracles: the plain O(m·L²) DP
// on small problems and the layer-by-layer divide-and-conquer DP (exact_row.h) on large ones, also where counts
// tie and the search splices; and quantize() on a tie through the whole driver.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "netquant/quantize.h"
#include "quant/exact_lagrangian.h"
#include "quant/exact_row.h"

namespace nq {
namespace {

using quant::exact_row::ItemSums;
using quant::exact_row::item_cost;

// Items as prefix sums of h, h·x, h·x² (sorted distinct values x with weights h; weights may be zero).
struct Items {
  std::vector<double> p0{0}, p1{0}, p2{0};
  void add(double x, double h) {
    p0.push_back(p0.back() + h);
    p1.push_back(p1.back() + h * x);
    p2.push_back(p2.back() + h * x * x);
  }
  size_t size() const { return p0.size() - 1; }
  ItemSums sums() const { return {p0.data(), p1.data(), p2.data()}; }
};

Items random_items(size_t n, uint64_t seed, double zero_weight_share) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 2.0);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> x(n);
  for (double& v : x) v = 0.05 * t(rng);
  std::sort(x.begin(), x.end());
  x.erase(std::unique(x.begin(), x.end()), x.end());
  Items it;
  for (double v : x) it.add(v, u(rng) < zero_weight_share ? 0.0 : g(rng));
  return it;
}

double partition_cost(const Items& it, std::vector<size_t> starts) {
  starts.push_back(it.size());
  double c = 0;
  for (size_t j = 0; j + 1 < starts.size(); ++j)
    c += item_cost(it.sums(), static_cast<int>(starts[j]), static_cast<int>(starts[j + 1]));
  return c;
}

// m clusters, starts strictly increasing from 0, all inside the items.
void expect_partition(const std::vector<size_t>& starts, size_t items, int m, const std::string& what) {
  ASSERT_EQ(static_cast<int>(starts.size()), m) << what;
  EXPECT_EQ(starts[0], 0u) << what;
  for (size_t j = 1; j < starts.size(); ++j) EXPECT_LT(starts[j - 1], starts[j]) << what;
  EXPECT_LT(starts.back(), items) << what;
}

double plain_dp(const Items& it, int m) {
  const int L = static_cast<int>(it.size());
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> prev(L + 1, inf), cur(L + 1, inf);
  for (int i = 1; i <= L; ++i) prev[i] = item_cost(it.sums(), 0, i);
  for (int t = 2; t <= m; ++t) {
    std::fill(cur.begin(), cur.end(), inf);
    for (int i = t; i <= L; ++i)
      for (int j = t - 1; j < i; ++j) cur[i] = std::min(cur[i], prev[j] + item_cost(it.sums(), j, i));
    prev.swap(cur);
  }
  return prev[L];
}

// The optimum by exact_row.h's divide-and-conquer layers over the same items.
double layered_dp(const Items& it, int m) {
  const int L = static_cast<int>(it.size());
  std::vector<unsigned char> buf(quant::exact_row::scratch_bytes(L, m));
  const quant::exact_row::Scratch s = quant::exact_row::carve_scratch(buf.data(), L, m);
  std::copy(it.p0.begin(), it.p0.end(), s.p0);
  std::copy(it.p1.begin(), it.p1.end(), s.p1);
  std::copy(it.p2.begin(), it.p2.end(), s.p2);
  quant::exact_row::solve(s, L, m);
  return partition_cost(it, std::vector<size_t>(s.starts, s.starts + m));
}

TEST(ExactLagrangian, SmallProblemsReachThePlainDpOptimum) {
  int tried = 0;
  for (size_t n : {3, 4, 7, 16, 31, 33, 100, 257}) {
    for (double zeros : {0.0, 0.1}) {
      const Items it = random_items(n, n * 7 + static_cast<uint64_t>(zeros * 10), zeros);
      for (int m = 2; m < static_cast<int>(it.size()) && m <= 24; m += (m < 6 ? 1 : 5)) {
        ++tried;
        std::vector<size_t> starts;
        const std::string what = "n=" + std::to_string(n) + " m=" + std::to_string(m) + " zeros=" + std::to_string(zeros);
        ASSERT_TRUE(quant::lagrangian_partition(it.sums(), it.size(), m, starts)) << what;
        expect_partition(starts, it.size(), m, what);
        const double oracle = plain_dp(it, m);
        EXPECT_NEAR(partition_cost(it, starts), oracle, 1e-12 * oracle + 1e-18) << what;
      }
    }
  }
  EXPECT_GT(tried, 50);
}

TEST(ExactLagrangian, SplicesCountsThatNoPriceReaches) {
  // Two equal clumps far apart, {0, 1, 2} and {100, 101, 102}: costs by clusters 2 → 4, 3 → 2.5, 4 → 1, 5 → 0.5,
  // 6 → 0. Splitting either clump saves the same, so 3 and 5 clusters are no price's optimum: they come from
  // splicing the clusterings on both sides of the tie.
  Items it;
  for (double x : {0.0, 1.0, 2.0, 100.0, 101.0, 102.0}) it.add(x, 1.0);
  for (int m : {2, 3, 4, 5}) {
    std::vector<size_t> starts;
    quant::LagrangianStats stats;
    ASSERT_TRUE(quant::lagrangian_partition(it.sums(), it.size(), m, starts, &stats)) << m;
    expect_partition(starts, it.size(), m, "m=" + std::to_string(m));
    EXPECT_DOUBLE_EQ(partition_cost(it, starts), plain_dp(it, m)) << m;
    EXPECT_EQ(stats.spliced, m % 2 == 1) << m;
  }
}

TEST(ExactLagrangian, SplicedTiesEqualTheLayeredDp) {
  // 50 identical clumps of 700 consecutive integers, 10^4 apart: most counts tie with their neighbours.
  Items it;
  for (int c = 0; c < 50; ++c)
    for (int i = 0; i < 700; ++i) it.add(10000.0 * c + i - 250000.0, 1.0);
  int spliced = 0;
  for (int m : {51, 75, 101}) {
    std::vector<size_t> starts;
    quant::LagrangianStats stats;
    ASSERT_TRUE(quant::lagrangian_partition(it.sums(), it.size(), m, starts, &stats)) << m;
    expect_partition(starts, it.size(), m, "m=" + std::to_string(m));
    spliced += stats.spliced;
    const double oracle = layered_dp(it, m);
    EXPECT_NEAR(partition_cost(it, starts), oracle, 1e-12 * oracle) << m;
  }
  EXPECT_GE(spliced, 1);
}

TEST(ExactLagrangian, LargeProblemsEqualTheLayeredDp) {
  const Items it = random_items(70001, 5, 0.02);
  for (int m : {2, 3, 17, 64}) {
    std::vector<size_t> starts;
    quant::LagrangianStats stats;
    ASSERT_TRUE(quant::lagrangian_partition(it.sums(), it.size(), m, starts, &stats)) << m;
    expect_partition(starts, it.size(), m, "m=" + std::to_string(m));
    EXPECT_LE(stats.dp_runs, 20) << m;
    const double oracle = layered_dp(it, m);
    EXPECT_NEAR(partition_cost(it, starts), oracle, 1e-12 * oracle) << m;
  }
}

TEST(ExactLagrangian, QuantizeStillFindsTheOptimumOnATie) {
  // Through quantize(): two translated copies of one clump of 40000 distinct values (exact in float), far
  // apart, so 80000 items take the priced search. An odd k splits one copy more than the other, an (almost) tie
  // in price; the optimum is known from one clump alone: cost(k = 2j + 1) = c(j) + c(j + 1), cost(2j) = 2·c(j).
  const size_t half = 40000;
  std::mt19937_64 rng(3);
  std::vector<float> clump(half);
  for (size_t i = 0; i < half; ++i) clump[i] = static_cast<float>(i) / 16.0f;  // exact in float
  std::vector<float> w(2 * half), h(2 * half, 1.0f);
  for (size_t i = 0; i < half; ++i) {
    w[i] = clump[i];
    w[half + i] = clump[i] + 65536.0f;  // exact too
  }
  std::shuffle(w.begin(), w.end(), rng);
  auto clump_cost = [&](int k) {
    QuantizeParams q;
    q.method = Method::kExact;
    q.k = k;
    q.backend = Backend::kCpu;
    return quantize(clump.data(), nullptr, half, q).hw_distortion * static_cast<double>(half);
  };
  for (int k : {3, 4, 7}) {
    QuantizeParams q;
    q.method = Method::kExact;
    q.k = k;
    q.backend = Backend::kCpu;
    const QuantizeResult r = quantize(w.data(), h.data(), w.size(), q);
    const int j = k / 2;
    const double oracle = k % 2 ? clump_cost(j) + clump_cost(j + 1) : 2 * clump_cost(j);
    EXPECT_NEAR(r.hw_distortion * static_cast<double>(w.size()), oracle, 1e-8 * oracle) << "k=" << k;
    EXPECT_EQ(static_cast<int>(r.codebook.size()), k);
  }
}

}  // namespace
}  // namespace nq
