// NearestThresholds (exact λ = 0 labels by float thresholds) against the brute-force fp64 argmin, on ordinary,
// adversarial (near-coincident, huge-span, underflowing) codebooks and on values next to every threshold.
#include <gtest/gtest.h>

#include <algorithm>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "quant/nearest_thresholds.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {
namespace {

float random_finite_float(std::mt19937_64& rng) {
  for (;;) {
    const uint32_t u = static_cast<uint32_t>(rng());
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isfinite(f)) return f;
  }
}

// Checks every value against the brute-force argmin, one by one and through label_all (over the whole array and
// from an odd offset, so that runs end mid-array), and returns how many took the threshold search.
size_t expect_brute_force(const NearestThresholds& rule, const std::vector<float>& values) {
  size_t searched = 0;
  std::vector<int32_t> all(values.size() + 1, -7);
  rule.label_all(values.data(), values.size(), all.data());
  EXPECT_EQ(all.back(), -7) << "label_all wrote past the end";
  std::vector<int32_t> tail(values.size() > 3 ? values.size() - 3 : 0);
  rule.label_all(values.data() + 3, tail.size(), tail.data());
  size_t wrong = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const float w = values[i];
    const int32_t expected = rule.brute_force(w);
    searched += w <= rule.safe_max();
    EXPECT_EQ(rule.label(w), expected) << "w = " << w << " (" << std::hexfloat << w << ")";
    wrong += all[i] != expected;
    if (i >= 3) wrong += tail[i - 3] != expected;
  }
  EXPECT_EQ(wrong, 0u) << "label_all differs from the brute force (k = " << rule.thresholds().size() + 1 << ")";
  return searched;
}

// Values next to every threshold and centre (±span ulps), plus random bit patterns over the whole float range.
std::vector<float> probe_values(const NearestThresholds& rule, const std::vector<double>& centers, int span,
                                std::mt19937_64& rng) {
  std::vector<float> v;
  auto around = [&](float x) {
    if (!std::isfinite(x)) return;
    float lo = x, hi = x;
    for (int i = 0; i < span; ++i) {
      lo = std::nextafter(lo, -INFINITY);
      hi = std::nextafter(hi, INFINITY);
      if (std::isfinite(lo)) v.push_back(lo);
      if (std::isfinite(hi)) v.push_back(hi);
    }
    v.push_back(x);
  };
  for (const float t : rule.thresholds()) around(t);
  for (const double c : centers) around(static_cast<float>(c));
  around(0.0f);
  around(-0.0f);
  around(rule.safe_max());
  for (int i = 0; i < 20000; ++i) v.push_back(random_finite_float(rng));
  v.push_back(FLT_MAX);
  v.push_back(-FLT_MAX);
  return v;
}

TEST(NearestThresholds, OrdinaryCodebooksMatchBruteForce) {
  std::mt19937_64 rng(7);
  std::student_t_distribution<double> t3(3.0);
  for (const int k : {1, 2, 3, 5, 8, 9, 16, 17, 31, 32, 33, 255, 256}) {
    std::vector<double> c;
    while (static_cast<int>(c.size()) < k) {
      c.push_back(0.02 * t3(rng));
      std::sort(c.begin(), c.end());
      c.erase(std::unique(c.begin(), c.end()), c.end());
    }
    const NearestThresholds rule(c);
    ASSERT_EQ(rule.thresholds().size(), static_cast<size_t>(k - 1));
    std::vector<float> v = probe_values(rule, c, 64, rng);
    for (int i = 0; i < 100000; ++i) v.push_back(static_cast<float>(0.02 * t3(rng)));
    const size_t searched = expect_brute_force(rule, v);
    EXPECT_GT(searched, v.size() / 2) << "k = " << k << ": the threshold search was hardly exercised";
    if (k > 1) {
      EXPECT_GT(rule.safe_max(), 1e6f) << "k = " << k;
    }
  }
}

TEST(NearestThresholds, MidpointTiesGoToTheLowerCentre) {
  // Centres exactly representable with float midpoints: w at the midpoint is a tie, won by the lower index.
  const std::vector<double> c{-1.0, 0.0, 0.5, 2.0};
  const NearestThresholds rule(c);
  EXPECT_EQ(rule.label(-0.5f), 0);
  EXPECT_EQ(rule.label(std::nextafter(-0.5f, 1.0f)), 1);
  EXPECT_EQ(rule.label(0.25f), 1);
  EXPECT_EQ(rule.label(1.25f), 2);
  EXPECT_EQ(rule.label(std::nextafter(1.25f, 2.0f)), 3);
  EXPECT_EQ(rule.label(-0.0f), 1);
  // Far out every squared distance rounds to the same double: a four-way tie, won by index 0 (the rule is not
  // monotone there, which is why such values take the brute-force path).
  EXPECT_EQ(rule.label(1e30f), 0);
  EXPECT_EQ(rule.label(1e6f), 3);
}

// label_all counts thresholds for a whole run of values and fixes up afterwards the ones above safe_max: a single
// such value in a run of ordinary ones, where the count and the brute force disagree, must still be fixed.
TEST(NearestThresholds, LabelAllFixesALoneValueBeyondSafeMax) {
  const std::vector<double> c{0.1, std::nextafter(0.1, 1.0), 0.3};
  const NearestThresholds rule(c);
  ASSERT_LT(rule.safe_max(), 0.11f);  // c_0 + 2^45 ulps of 0.1
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 0.1f);  // every one at or below safe_max
  for (const size_t at : {size_t{0}, size_t{1023}, size_t{1024}, size_t{2500}}) {
    std::vector<float> v(3001);
    for (float& x : v) x = u(rng);
    for (const float x : v) ASSERT_LE(x, rule.safe_max());
    v[at] = 1e30f;  // far beyond safe_max: c_0 and c_1 tie in fp64, and the lower index wins, not the count's 2
    ASSERT_NE(rule.brute_force(v[at]), 2);
    std::vector<int32_t> labels(v.size());
    rule.label_all(v.data(), v.size(), labels.data());
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(labels[i], rule.brute_force(v[i])) << "i = " << i << ", at = " << at;
  }
}

TEST(NearestThresholds, AdversarialCodebooksMatchBruteForce) {
  std::mt19937_64 rng(11);
  std::vector<std::vector<double>> books;
  // Near-coincident centres (one double ulp apart) far from large values: safe_max is small, the values
  // beyond it tie in fp64 and must still go to the lowest index.
  books.push_back({0.1, std::nextafter(0.1, 1.0), 0.3});
  books.push_back({-5.0, 0.1, std::nextafter(0.1, 1.0), std::nextafter(std::nextafter(0.1, 1.0), 1.0), 7.0});
  // Huge spans and magnitudes beyond the float range (a warm start may be any finite double).
  books.push_back({-1e300, -1e30, -1.0, 1e-30, 1e-20, 1e38, 1e300});
  books.push_back({-3e38, -1e-40, 0.0, 1e-45, 3e38});
  // Far-out near-coincident centres: safe_max rounds down to −FLT_MAX, which still takes the table.
  books.push_back({-1e100, std::nextafter(-1e100, 0.0)});
  // Gaps that underflow when squared: no fast path at all.
  books.push_back({0.0, 1e-200, 1.0});
  // Centres that are floats (the usual case after rounding), including both sides of zero.
  books.push_back({-0.25, -0.125, 0.0, 0.125, 0.25});
  for (const auto& c : books) {
    const NearestThresholds rule(c);
    expect_brute_force(rule, probe_values(rule, c, 300, rng));
  }
}

// weighted_floors: wherever a value lies at or above its label's floor (and at or below safe_max), the weighted
// λ = 0 argmin of fl(h·a_j) equals the threshold label for every normal float importance. Probed on and around
// every threshold, where the weighted rule can tie one float past it — most of all where floats are densest,
// at a midpoint of 0.
TEST(NearestThresholds, WeightedFloorsSettleTheWeightedRule) {
  std::mt19937_64 rng(13);
  std::student_t_distribution<double> t3(3.0);
  std::vector<std::vector<double>> books = {
      {-1e-3, 1e-3}, {-0.3, 0.3, 0.7}, {-1.0, 0.0, 0.5, 2.0}, {-0.25, -0.125, 0.0, 0.125, 0.25},
      {-1e-30, 1e-30, 3e-30}, {0.1, std::nextafter(0.1, 1.0), 0.3}, {-3e38, -1e-40, 0.0, 1e-45, 3e38},
      // Found by search: the threshold float itself goes to the lower centre under the importance given below.
      {-0x1.a17d39dae252dp-5, 0x1.a17d39eb6c7ep-5}, {-0x1.a97b7fc379141p-11, 0x1.a97b7ed3f975p-11},
      {-0x1.8994eaa9f9c9bp-3, 0x1.8994eaa1af5a8p-3}};
  for (const int k : {3, 17, 32, 256}) {
    std::vector<double> c;
    while (static_cast<int>(c.size()) < k) {
      c.push_back(0.02 * t3(rng));
      std::sort(c.begin(), c.end());
      c.erase(std::unique(c.begin(), c.end()), c.end());
    }
    books.push_back(c);
  }
  const std::vector<float> importances = {FLT_MIN, 1.5f * FLT_MIN, 1e-30f, 0.37f, 1.0f, 3.1f, 1e30f,
                                          std::nextafter(FLT_MAX, 0.0f), FLT_MAX, 0x1.8147aep+1f, 0x1.733334p-9f,
                                          0x1.b47aep+13f};
  size_t settled = 0, probes = 0, with_floors = 0, unsettled_differ = 0;
  for (const auto& c : books) {
    const NearestThresholds rule(c);
    const std::vector<float> floors = rule.weighted_floors();
    if (floors.empty()) continue;
    ++with_floors;
    ASSERT_EQ(floors.size(), c.size());
    const std::vector<float> t = rule.thresholds();
    for (size_t j = 1; j < c.size(); ++j) EXPECT_FALSE(floors[j] < t[j - 1]) << "a floor below its threshold";
    for (const float w : probe_values(rule, c, 64, rng)) {
      if (!(w <= rule.safe_max())) continue;
      const int32_t label = rule.label(w);
      ++probes;
      const bool above_floor = w >= floors[static_cast<size_t>(label)];
      settled += above_floor;
      for (const float h : importances) {
        int32_t best = 0;
        double bc = assign_cost(w, h, c[0], 0.0, 0.0);
        for (int32_t j = 1; j < static_cast<int32_t>(c.size()); ++j) {
          const double cost = assign_cost(w, h, c[j], 0.0, 0.0);
          if (better(cost, j, bc, best)) { bc = cost; best = j; }
        }
        if (!above_floor) {
          unsettled_differ += best != label;
          continue;
        }
        ASSERT_EQ(best, label) << "w = " << std::hexfloat << w << ", h = " << h << ", floor "
                               << floors[static_cast<size_t>(label)];
      }
    }
  }
  EXPECT_GE(with_floors, 10u);
  // The floors are needed: below them the weighted rule does leave the threshold label (the searched books).
  EXPECT_GE(unsettled_differ, 3u);
  // The floors leave only the float or two at each midpoint to the weighted rule itself.
  EXPECT_GT(settled, probes * 9 / 10) << settled << " of " << probes;
}

// quant_formulas.h nearest_center (the device kernels' rule: a comparison search plus a walk over ties) on the
// same adversarial codebooks, and with equal centres, which the threshold table does not take.
TEST(NearestThresholds, TheDeviceRuleNearestCenterMatchesBruteForce) {
  std::mt19937_64 rng(12);
  std::vector<std::vector<double>> books = {
      {0.1, std::nextafter(0.1, 1.0), 0.3},
      {-5.0, 0.1, std::nextafter(0.1, 1.0), std::nextafter(std::nextafter(0.1, 1.0), 1.0), 7.0},
      {-1e300, -1e30, -1.0, 1e-30, 1e-20, 1e38, 1e300},
      {-3e38, -1e-40, 0.0, 1e-45, 3e38},
      {-1e100, std::nextafter(-1e100, 0.0)},
      {0.0, 1e-200, 1.0},
      {-0.25, -0.125, 0.0, 0.125, 0.25},
      {1.0, 2.0, 2.0, 3.0},
      {0.0, 0.0, 0.0, 1.0},
      {-1.0, -1.0, std::nextafter(-1.0, 0.0), 0.5, 0.5}};
  for (const auto& c : books) {
    std::vector<double> distinct = c;
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    const NearestThresholds rule(distinct);  // for its probe points
    const int k = static_cast<int>(c.size());
    for (const float w : probe_values(rule, c, 200, rng)) {
      int best = 0;
      for (int j = 1; j < k; ++j)
        if (better(assign_cost(w, 1.0, c[j], 0.0, 0.0), j, assign_cost(w, 1.0, c[best], 0.0, 0.0), best)) best = j;
      ASSERT_EQ(nearest_center(w, c.data(), k), best) << "w = " << std::hexfloat << w;
    }
  }
}

TEST(NearestThresholds, AgreesWithTheFusedOpOnRandomData) {
  std::mt19937_64 rng(3);
  std::student_t_distribution<double> t3(3.0);
  for (const size_t n : {size_t{1}, size_t{33}, size_t{4099}, size_t{100003}}) {
    std::vector<float> w(n);
    for (auto& x : w) x = static_cast<float>(0.02 * t3(rng));
    std::vector<double> c{-0.05, -0.01, -0.002, 0.0, 0.003, 0.011, 0.04};
    Problem p;
    p.w = w.data();
    p.n = n;
    p.backend = Backend::kCpu;
    const std::vector<int32_t> fast = nearest_labels(p, c);
    std::vector<int32_t> op(n);
    const std::vector<double> zero(c.size(), 0.0);
    AssignAccum acc;
    cpu::assign_accumulate(w.data(), nullptr, n, c.data(), zero.data(), static_cast<int>(c.size()), 0.0, op.data(),
                           acc);
    EXPECT_EQ(fast, op) << "n = " << n;
  }
}

}  // namespace
}  // namespace nq::quant
