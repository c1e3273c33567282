// nq::quantize per method against oracles: brute-force optimal partitions, Lloyd monotonicity, ECSQ/k-means
// equivalences, uniform cell means, target searches, determinism and edge cases.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <random>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/fixtures.h"
#include "quant/quantizers.h"

namespace nq {
namespace {

using test::params;

std::vector<float> student_t(size_t n, uint64_t seed, double scale = 0.05) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * t(rng));
  return v;
}
std::vector<float> importance(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> g(0.7, 2.0);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(g(rng) + 1e-3);
  return v;
}

// fp64 weighted distortion of a result, recomputed from scratch.
double distortion(const QuantizeResult& r, const std::vector<float>& w, const float* h) {
  double d = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double e = static_cast<double>(r.codebook[r.indices[i]]) - w[i];
    d += (h ? h[i] : 1.0) * e * e;
  }
  return d / static_cast<double>(w.size());
}

// Brute force: the best split of sorted values into at most k contiguous groups (all compositions).
double brute_force_optimum(std::vector<float> w, std::vector<float> h, int k) {
  std::vector<size_t> order(w.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w[a] < w[b]; });
  std::vector<double> ws, hs;
  for (size_t i : order) { ws.push_back(w[i]); hs.push_back(h[i]); }
  const size_t n = ws.size();
  auto cost = [&](size_t a, size_t b) {
    double s0 = 0, s1 = 0;
    for (size_t i = a; i < b; ++i) { s0 += hs[i]; s1 += hs[i] * ws[i]; }
    const double c = s1 / s0;
    double d = 0;
    for (size_t i = a; i < b; ++i) d += hs[i] * (ws[i] - c) * (ws[i] - c);
    return d;
  };
  double best = 1e300;
  // Every subset of the n−1 gaps with at most k−1 cuts.
  for (uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
    if (__builtin_popcount(mask) > k - 1) continue;
    double total = 0;
    size_t start = 0;
    for (size_t g = 0; g + 1 < n; ++g)
      if (mask & (1u << g)) { total += cost(start, g + 1); start = g + 1; }
    total += cost(start, n);
    best = std::min(best, total);
  }
  return best / static_cast<double>(n);
}

TEST(Quantize, ExactEqualsBruteForceAndBeatsLloyd) {
  for (size_t n : {size_t{1}, size_t{3}, size_t{7}, size_t{12}, size_t{14}}) {
    for (int k : {1, 2, 3, 4, 6}) {
      auto w = student_t(n, n * 10 + k);
      auto h = importance(n, n + 3 * k);
      const auto r = quantize(w.data(), h.data(), n, params(Method::kExact, k));
      const double oracle = brute_force_optimum(w, h, k);
      EXPECT_NEAR(distortion(r, w, h.data()), oracle, 1e-6 * oracle + 1e-12) << "n=" << n << " k=" << k;
      EXPECT_LE(static_cast<int>(r.codebook.size()), k);
      for (Init init : {Init::kLinear, Init::kKmeansPP, Init::kQuantile}) {
        auto p = params(Method::kHwKmeans, k);
        p.init = init;
        const auto l = quantize(w.data(), h.data(), n, p);
        EXPECT_LE(r.hw_distortion, l.hw_distortion * (1 + 1e-6) + 1e-15) << "n=" << n << " k=" << k;
      }
    }
  }
}

TEST(Quantize, ExactLargerNeverWorseThanLloydAndHistogramMode) {
  const size_t n = 20000 + 3;
  auto w = student_t(n, 5);
  auto h = importance(n, 6);
  const auto ex = quantize(w.data(), h.data(), n, params(Method::kExact, 16));
  for (Init init : {Init::kLinear, Init::kKmeansPP, Init::kQuantile}) {
    auto p = params(Method::kHwKmeans, 16);
    p.init = init;
    const auto l = quantize(w.data(), h.data(), n, p);
    EXPECT_LE(ex.hw_distortion, l.hw_distortion * (1 + 1e-9));
  }
  // Histogram mode: boundaries restricted to bin edges, so never better than exact and close with fine bins.
  auto p = params(Method::kExact, 16);
  p.exact_histogram_bins = 5000;
  const auto hist = quantize(w.data(), h.data(), n, p);
  EXPECT_GE(hist.hw_distortion, ex.hw_distortion * (1 - 1e-9));
  EXPECT_LE(hist.hw_distortion, ex.hw_distortion * 1.10);
  p.exact_histogram_bins = static_cast<int64_t>(n);  // one bin per value: exact again
  const auto same = quantize(w.data(), h.data(), n, p);
  EXPECT_NEAR(same.hw_distortion, ex.hw_distortion, 1e-12 * ex.hw_distortion);
}

TEST(Quantize, LloydObjectiveNeverIncreases) {
  for (Method m : {Method::kKmeans, Method::kHwKmeans, Method::kEcsq}) {
    const size_t n = 5000 + 7;
    auto w = student_t(n, 11);
    auto h = importance(n, 12);
    auto p = params(m, 33);
    p.init = Init::kKmeansPP;
    p.tol = 0;
    p.lambda = m == Method::kEcsq ? 1e-5 : 0.0;
    const auto r = quantize(w.data(), h.data(), n, p);
    ASSERT_GE(r.history.size(), 2u);
    for (size_t i = 1; i < r.history.size(); ++i)
      EXPECT_LE(r.history[i].objective, r.history[i - 1].objective * (1 + 1e-12)) << method_traits(m).name;
  }
}

TEST(Quantize, HwKmeansWithUnitImportanceEqualsKmeans) {
  const size_t n = 1000 + 3;
  auto w = student_t(n, 21);
  std::vector<float> ones(n, 1.0f);
  for (Init init : {Init::kLinear, Init::kKmeansPP, Init::kQuantile}) {
    auto p = params(Method::kKmeans, 7);
    p.init = init;
    const auto a = quantize(w.data(), nullptr, n, p);
    p.method = Method::kHwKmeans;
    const auto b = quantize(w.data(), ones.data(), n, p);
    EXPECT_EQ(a.codebook, b.codebook);
    EXPECT_EQ(a.indices, b.indices);
  }
}

// --init linear spreads its centres over the values that carry importance. Outliers of importance 0 (a dead unit's
// weights, far out) add nothing to the objective; they join the outer clusters without pulling centres out to
// them, so HW k-means ends with the codebook the weighted values alone give (up to the rounding of sums formed
// around a different median), and the same summed distortion. Checked for one problem and for row scope, whose
// driver (row_lloyd.h, shared with the CUDA rows kernel) states the start rule again. Before the rule, the
// outliers each took a centre and the distortion was several times higher.
// sub_w/sub_h with four far outliers of importance 0 inserted at scattered positions (the first two before
// position 2005, the others after), one of them with importance −0, which validation accepts.
void insert_weightless_outliers(const std::vector<float>& sub_w, const std::vector<float>& sub_h,
                                std::vector<float>& w, std::vector<float>& h) {
  const float outliers[] = {1.5f, -2.25f, 0.9f, -1.1f};
  for (size_t i = 0, o = 0; i < sub_w.size(); ++i) {
    if (i % 1000 == 17 && o < 4) {
      w.push_back(outliers[o]);
      h.push_back(o == 3 ? -0.0f : 0.0f);
      ++o;
    }
    w.push_back(sub_w[i]);
    h.push_back(sub_h[i]);
  }
}

TEST(Quantize, LinearInitSpansOnlyValuesWithImportance) {
  const size_t n = 4000 + 7;
  const std::vector<float> sub_w = student_t(n, 41), sub_h = importance(n, 42);
  std::vector<float> w, h;
  insert_weightless_outliers(sub_w, sub_h, w, h);
  ASSERT_EQ(w.size(), n + 4);
  auto p = params(Method::kHwKmeans, 16);
  p.init = Init::kLinear;
  const auto full = quantize(w.data(), h.data(), w.size(), p);
  const auto sub = quantize(sub_w.data(), sub_h.data(), n, p);
  ASSERT_EQ(full.codebook.size(), sub.codebook.size());
  for (size_t j = 0; j < sub.codebook.size(); ++j) EXPECT_NEAR(full.codebook[j], sub.codebook[j], 1e-6) << j;
  const double full_sum = distortion(full, w, h.data()) * static_cast<double>(w.size());
  const double sub_sum = distortion(sub, sub_w, sub_h.data()) * static_cast<double>(n);
  EXPECT_NEAR(full_sum, sub_sum, 1e-6 * sub_sum);

  // Row scope: two rows, each with its outliers, against quantize() on each row's weighted values.
  const size_t half = (n + 4) / 2;  // row 0 holds the first two outliers, row 1 the others
  const std::vector<int64_t> shape = {2, static_cast<int64_t>(half)};
  TensorSet model, imp;
  model.add(Tensor::from_f32("w", shape, std::vector<float>(w.begin(), w.begin() + 2 * half)));
  imp.add(Tensor::from_f32("w", shape, std::vector<float>(h.begin(), h.begin() + 2 * half)));
  ModelQuantizeParams mp;
  mp.quant = p;
  mp.scope = parse_scope("row");
  const QuantizedModel q = quantize_model(model, &imp, mp);
  ASSERT_EQ(q.codebooks.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    std::vector<float> rw, rh;
    for (size_t i = r * half; i < (r + 1) * half; ++i)
      if (h[i] > 0) rw.push_back(w[i]), rh.push_back(h[i]);
    ASSERT_EQ(rw.size(), half - 2) << r;
    const auto alone = quantize(rw.data(), rh.data(), rw.size(), p);
    ASSERT_EQ(q.codebooks[r].size(), alone.codebook.size()) << r;
    for (size_t j = 0; j < alone.codebook.size(); ++j) EXPECT_NEAR(q.codebooks[r][j], alone.codebook[j], 1e-6) << r;
  }
}

// Uniform cells from --k cover the values that carry importance, for the same reason: the outliers of importance
// 0 land in the outer cells instead of widening every cell. The step is then the one the weighted values alone
// give, and so is the summed weighted distortion (each outlier's error weighs 0); every level of that run is a
// level here (an outer cell holding only outliers adds one of its own). Before, Δ was 2.9 times as wide and the
// weighted distortion 2.3 times as high.
TEST(Quantize, UniformCellsCoverOnlyValuesWithImportance) {
  const size_t n = 4000 + 7;
  const std::vector<float> sub_w = student_t(n, 43), sub_h = importance(n, 44);
  std::vector<float> w, h;
  insert_weightless_outliers(sub_w, sub_h, w, h);
  const auto p = params(Method::kUniform, 7);
  const auto full = quantize(w.data(), h.data(), w.size(), p);
  const auto sub = quantize(sub_w.data(), sub_h.data(), n, p);
  EXPECT_EQ(full.step, sub.step);
  const double full_sum = distortion(full, w, h.data()) * static_cast<double>(w.size());
  const double sub_sum = distortion(sub, sub_w, sub_h.data()) * static_cast<double>(n);
  EXPECT_NEAR(full_sum, sub_sum, 1e-9 * sub_sum);
  for (const float level : sub.codebook)
    EXPECT_TRUE(std::find(full.codebook.begin(), full.codebook.end(), level) != full.codebook.end()) << level;
}

// ECSQ at λ = 0 on (w, h) with k_max = k against HW k-means with k levels, both to their fixed point: the same
// levels, labels (but for two ties) and weighted distortion, and the MSE to `mse_tol`. Returns ECSQ's result.
QuantizeResult expect_ecsq_lambda_zero_equals_hw_kmeans(const std::vector<float>& w, const std::vector<float>& h,
                                                        int k, double mse_tol) {
  const size_t n = w.size();
  auto p = params(Method::kHwKmeans, k);
  p.tol = 0;
  p.max_iter = 500;
  const auto a = quantize(w.data(), h.data(), n, p);
  p.method = Method::kEcsq;
  p.lambda = 0;
  auto b = quantize(w.data(), h.data(), n, p);
  EXPECT_EQ(a.codebook.size(), b.codebook.size());
  for (size_t j = 0; j < std::min(a.codebook.size(), b.codebook.size()); ++j)
    EXPECT_NEAR(a.codebook[j], b.codebook[j], 1e-6);
  size_t same = 0;
  for (size_t i = 0; i < n; ++i) same += a.indices[i] == b.indices[i];
  EXPECT_GE(same, n - 2);
  EXPECT_NEAR(a.hw_distortion, b.hw_distortion, 1e-6 * a.hw_distortion);
  EXPECT_NEAR(a.mse, b.mse, mse_tol * a.mse);
  return b;
}

TEST(Quantize, EcsqLambdaZeroEqualsHwKmeans) {
  const size_t n = 3000 + 1;
  expect_ecsq_lambda_zero_equals_hw_kmeans(student_t(n, 31), importance(n, 32), 8, 1e-6);
}

// Values of zero importance (an OBD Hessian's weights from always-blank pixels) tie at cost 0 for every centre at
// λ = 0. ECSQ there is HW k-means, which labels them by the nearest rule; they used to go to the lowest live centre,
// an extreme level (a LeNet-300's MSE was 100× HW k-means'). Oracle: a brute-force nearest level among the levels
// that hold a value of positive importance (ties to the lower), and HW k-means' own answer on the same data.
TEST(Quantize, EcsqLambdaZeroPutsZeroImportanceAtTheNearestLevel) {
  for (const size_t n : {size_t{5003}, size_t{70001}}) {  // one chunk, and several on the threads
    SCOPED_TRACE("n=" + std::to_string(n));
    auto w = student_t(n, 51);
    auto h = importance(n, 52);
    std::mt19937_64 rng(53);
    for (size_t i = 0; i < n; ++i)
      if (rng() % 4 == 0 || (i >= n / 3 && i < n / 3 + 400)) h[i] = 0.0f;  // a quarter, and a run
    const QuantizeResult e0 = expect_ecsq_lambda_zero_equals_hw_kmeans(w, h, 16, 1e-6);
    const size_t k = e0.codebook.size();
    std::vector<bool> held(k, false);
    for (size_t i = 0; i < n; ++i)
      if (h[i] > 0) held[static_cast<size_t>(e0.indices[i])] = true;
    size_t zero = 0, wrong = 0;
    for (size_t i = 0; i < n; ++i) {
      if (h[i] != 0) continue;
      ++zero;
      int32_t best = -1;
      double best_d = 0;
      for (size_t j = 0; j < k; ++j) {
        const double d = std::abs(static_cast<double>(w[i]) - e0.codebook[j]);
        if (held[j] && (best < 0 || d < best_d)) best = static_cast<int32_t>(j), best_d = d;
      }
      wrong += e0.indices[i] != best;
    }
    ASSERT_GT(zero, n / 5);
    EXPECT_EQ(wrong, 0u) << "of " << zero << " values of zero importance";
  }
}

// At λ > 0 values of zero importance cost only their code length, so ECSQ gives them all the shortest code: the
// commonest level of the weights that matter. They used to take the lowest level instead: ECSQ's first pass has
// every code length log2 k_max, the argmin's ties went to the lowest index, and the lowest level's inflated count
// then made it the shortest code (a LeNet-300 with an OBD Hessian at λ = 1e-12: MSE 3.5e-3 against 1.2e-4 now).
// Oracle: they all share one level, the one the most values hold (the shortest code), and it is the commonest level
// of the values of positive importance too (on these data); on the binned pass (70,001 values) and without it
// (5,003).
TEST(Quantize, EcsqSmallLambdaGivesZeroImportanceTheCommonestLevel) {
  for (const size_t n : {size_t{5003}, size_t{70001}}) {
    auto w = student_t(n, 71);
    auto h = importance(n, 72);
    std::mt19937_64 rng(73);
    for (size_t i = 0; i < n; ++i)
      if (rng() % 4 == 0) h[i] = 0.0f;
    for (const double lambda : {1e-12, 1e-9}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " lambda=" << lambda);
      auto p = params(Method::kEcsq, 16);
      p.lambda = lambda;
      const QuantizeResult r = quantize(w.data(), h.data(), n, p);
      std::vector<size_t> weighted(r.codebook.size(), 0), all(r.codebook.size(), 0);
      for (size_t i = 0; i < n; ++i) {
        ++all[static_cast<size_t>(r.indices[i])];
        if (h[i] > 0) ++weighted[static_cast<size_t>(r.indices[i])];
      }
      const size_t commonest =
          static_cast<size_t>(std::max_element(weighted.begin(), weighted.end()) - weighted.begin());
      EXPECT_EQ(static_cast<size_t>(std::max_element(all.begin(), all.end()) - all.begin()), commonest);
      size_t zero = 0, elsewhere = 0;
      for (size_t i = 0; i < n; ++i) {
        if (h[i] != 0) continue;
        ++zero;
        elsewhere += static_cast<size_t>(r.indices[i]) != commonest;
      }
      ASSERT_GT(zero, n / 5);
      EXPECT_EQ(elsewhere, 0u) << "of " << zero << " values of zero importance; the commonest level is "
                               << r.codebook[commonest] << " of " << r.codebook.size();
    }
  }
}

// A target rate above the λ = 0 rate returns the λ = 0 solution. With a gap of zero-importance values between the
// weighted ones, HW k-means keeps centres there that only they hold ("weightless"); the λ = 0 run must drop them
// before it measures its rate, since the answer it returns has none (a review's case: the search read 3.4 bits for a
// λ = 0 answer of 3.17, and a target of 3.2 returned a λ > 0 answer worse in rate and distortion both).
TEST(Quantize, EcsqTargetAboveTheLambdaZeroRateReturnsThatSolution) {
  const size_t n = 20000;
  std::mt19937_64 rng(81);
  std::uniform_real_distribution<double> gap(-0.1, 0.1), mag(0.5, 1.0), imp(0.5, 2.0);
  std::vector<float> w(n), h(n);
  for (size_t i = 0; i < n; ++i) {
    if (i % 4 == 0) {
      w[i] = static_cast<float>(gap(rng));
      h[i] = 0.0f;
    } else {
      w[i] = static_cast<float>((rng() % 2 ? 1 : -1) * mag(rng));
      h[i] = static_cast<float>(imp(rng));
    }
  }
  auto p = params(Method::kEcsq, 16);
  const QuantizeResult zero = quantize(w.data(), h.data(), n, p);
  ASSERT_EQ(zero.lambda, 0.0);
  const double zero_rate = zero.entropy_bits;
  for (const double above : {1.01, 1.05, 1.2}) {
    SCOPED_TRACE("target " + std::to_string(zero_rate * above));
    p.target_bits = zero_rate * above;
    const QuantizeResult r = quantize(w.data(), h.data(), n, p);
    EXPECT_EQ(r.lambda, 0.0);
    EXPECT_EQ(r.codebook, zero.codebook);
    EXPECT_EQ(r.indices, zero.indices);
  }
}

// exact's DP is free to put a run of zero-importance values between two clusters in either one, and handed such runs
// whole to the upper cluster (LeNet-300 with an OBD Hessian, group:256, k = 64: 7,958 weights off their nearest
// level, MSE 7× HW k-means', 2.6 points of accuracy lost). They now take their nearest used level. Oracles, per
// group: a brute-force nearest level; the group's D·n equal to exact on its weighted values alone (the values of
// importance 0 add nothing to the optimum); and the row driver (group scope) equal to quantize() group by group.
TEST(Quantize, ExactPutsZeroImportanceAtTheNearestUsedLevel) {
  const int64_t groups = 37, g = 64;
  const size_t n = static_cast<size_t>(groups * g);
  const std::vector<float> w = student_t(n, 61);
  std::vector<float> h = importance(n, 62);
  std::mt19937_64 rng(63);
  for (size_t i = 0; i < n; ++i)
    if (rng() % 3 == 0 || (i % 64 >= 20 && i % 64 < 30)) h[i] = 0.0f;
  auto p = params(Method::kExact, 6);
  TensorSet model, imp;
  model.add(Tensor::from_f32("w", {groups, g}, w));
  imp.add(Tensor::from_f32("w", {groups, g}, h));
  ModelQuantizeParams mp;
  mp.quant = p;
  mp.scope = parse_scope("group:64");
  const QuantizedModel q = quantize_model(model, &imp, mp);
  ASSERT_EQ(q.codebooks.size(), static_cast<size_t>(groups));
  size_t zero = 0, wrong = 0;
  for (int64_t grp = 0; grp < groups; ++grp) {
    SCOPED_TRACE("group " + std::to_string(grp));
    const size_t b = static_cast<size_t>(grp * g);
    const std::vector<float>& levels = q.codebooks[static_cast<size_t>(grp)];
    const auto one = quantize(w.data() + b, h.data() + b, static_cast<size_t>(g), p);
    ASSERT_EQ(one.codebook, levels);
    std::vector<bool> used(levels.size(), false);
    for (size_t i = 0; i < static_cast<size_t>(g); ++i) {
      ASSERT_EQ(q.tensors[0].indices[b + i], one.indices[i]) << i;
      used[static_cast<size_t>(one.indices[i])] = true;
    }
    std::vector<float> sw, sh;
    for (size_t i = 0; i < static_cast<size_t>(g); ++i) {
      if (h[b + i] > 0) {
        sw.push_back(w[b + i]), sh.push_back(h[b + i]);
        continue;
      }
      ++zero;
      size_t best = 0;
      auto dist = [&](size_t j) { return std::abs(double(w[b + i]) - levels[j]); };
      for (size_t j = 1; j < levels.size(); ++j)
        if (used[j] && (!used[best] || dist(j) < dist(best))) best = j;
      wrong += static_cast<size_t>(one.indices[i]) != best;
    }
    const auto alone = quantize(sw.data(), sh.data(), sw.size(), p);
    const std::vector<float> gw(w.begin() + static_cast<ptrdiff_t>(b), w.begin() + static_cast<ptrdiff_t>(b + g));
    const double full_sum = distortion(one, gw, h.data() + b) * static_cast<double>(g);
    const double sub_sum = distortion(alone, sw, sh.data()) * static_cast<double>(sw.size());
    EXPECT_NEAR(full_sum, sub_sum, 1e-9 * sub_sum);
  }
  ASSERT_GT(zero, n / 3);
  EXPECT_EQ(wrong, 0u) << "of " << zero << " values of zero importance";
}

// ECSQ starts at the HW k-means centres of its --init start (ecsq_init). At λ = 0 that start is already the
// answer: one pass finds nothing left to move. At λ > 0 the run equals one warm-started from HW k-means' codebook.
TEST(Quantize, EcsqStartsFromTheHwKmeansSolution) {
  const size_t n = 4099;
  auto w = student_t(n, 33);
  auto h = importance(n, 34);
  auto p = params(Method::kHwKmeans, 16);
  const auto km = quantize(w.data(), h.data(), n, p);
  ASSERT_TRUE(km.converged);
  ASSERT_GT(km.iterations, 5);  // the linear start alone is far from the fixed point
  p.method = Method::kEcsq;
  p.lambda = 0;
  const auto e0 = quantize(w.data(), h.data(), n, p);
  EXPECT_LE(e0.iterations, 2);
  ASSERT_EQ(km.codebook.size(), e0.codebook.size());
  for (size_t j = 0; j < km.codebook.size(); ++j) EXPECT_NEAR(km.codebook[j], e0.codebook[j], 1e-6);
  EXPECT_NEAR(km.hw_distortion, e0.hw_distortion, 1e-9 * km.hw_distortion);
  // The start may take n / (k·log2 n) sorted iterations (21 here) per ECSQ pass of --max-iter: an ECSQ limit a
  // tenth of HW k-means' count still starts at its answer.
  auto p_short = p;
  p_short.max_iter = (km.iterations + 9) / 10;
  ASSERT_LT(p_short.max_iter, km.iterations);
  const auto e0_short = quantize(w.data(), h.data(), n, p_short);
  EXPECT_NEAR(km.hw_distortion, e0_short.hw_distortion, 1e-9 * km.hw_distortion);
  for (const double lambda : {1e-6, 1e-5, 1e-4}) {
    p.lambda = lambda;
    p.initial_centers.clear();
    const auto from_default = quantize(w.data(), h.data(), n, p);
    p.initial_centers.assign(km.codebook.begin(), km.codebook.end());
    const auto from_kmeans = quantize(w.data(), h.data(), n, p);
    // The warm start holds the float codebook, so the two may differ by rounding; the runs must not otherwise.
    EXPECT_EQ(from_default.iterations, from_kmeans.iterations) << lambda;
    EXPECT_EQ(from_default.codebook.size(), from_kmeans.codebook.size()) << lambda;
    EXPECT_NEAR(from_default.history.back().objective, from_kmeans.history.back().objective,
                1e-6 * from_kmeans.history.back().objective) << lambda;
  }
}

TEST(Quantize, LargerLambdaNeverRaisesEntropy) {
  const size_t n = 5000 + 3;
  auto w = student_t(n, 41);
  auto h = importance(n, 42);
  double prev = 1e300;
  for (double lambda : {0.0, 1e-7, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2}) {
    auto p = params(Method::kEcsq, 32);
    p.lambda = lambda;
    const auto r = quantize(w.data(), h.data(), n, p);
    EXPECT_LE(r.entropy_bits, prev + 1e-9) << "lambda=" << lambda;
    prev = r.entropy_bits;
    EXPECT_DOUBLE_EQ(r.lambda, lambda);
  }
  EXPECT_LT(prev, 1.0);  // a large λ collapses towards one cluster
}

TEST(Quantize, UniformCentresAreWeightedMeansAndZerosStayExact) {
  const size_t n = 1000 + 3;
  auto w = student_t(n, 51);
  auto h = importance(n, 52);
  for (size_t i = 0; i < n; i += 3) w[i] = 0.0f;  // many exact zeros, a sparse tensor
  float amax = 0;
  for (float v : w) amax = std::max(amax, std::fabs(v));
  const float half_cell = amax / 9.0f;  // k = 9: Δ = max|w| / 4.5
  for (size_t i = 0; i < n; ++i)
    if (std::fabs(w[i]) < 1.01f * half_cell) w[i] = 0.0f;  // the zero cell holds only zeros
  auto p = params(Method::kUniform, 9);
  const auto r = quantize(w.data(), h.data(), n, p);
  ASSERT_GT(r.step, 0);
  EXPECT_LE(static_cast<int>(r.codebook.size()), 9);
  std::vector<double> sh(r.codebook.size()), shw(r.codebook.size());
  for (size_t i = 0; i < n; ++i) {
    sh[r.indices[i]] += h[i];
    shw[r.indices[i]] += static_cast<double>(h[i]) * w[i];
    // The cell: round(w / Δ), clamped to the 9 cells.
    const double m = std::clamp(std::floor(w[i] / r.step + 0.5), -4.0, 4.0);
    const double c = r.codebook[r.indices[i]];
    EXPECT_LE(std::fabs(c - m * r.step), 0.5 * r.step * (1 + 1e-6)) << i;
    if (w[i] == 0.0f) {
      EXPECT_EQ(r.codebook[r.indices[i]], 0.0f);
    }
  }
  for (size_t j = 0; j < r.codebook.size(); ++j)
    EXPECT_NEAR(r.codebook[j], shw[j] / sh[j], 1e-6 * std::fabs(shw[j] / sh[j]) + 1e-9);
}

// Uniform with k levels: the cells −M … M with M = ⌊(k − 1)/2⌋ (0 stays a level, so an even k uses one less), Δ
// putting the largest |w| of positive importance at the outer cell's edge; two outliers of importance 0 far beyond
// it fall into the outer cells. Every value's level is its cell's, counted independently here.
TEST(Quantize, UniformUsesAtMostKCellsAroundZero) {
  const size_t n = 4099;
  auto w = student_t(n, 57), h = importance(n, 58);
  float amax = 0;
  for (float v : w) amax = std::max(amax, std::fabs(v));
  w[17] = 10 * amax;
  w[900] = -10 * amax;
  h[17] = h[900] = 0;
  for (int k : {2, 3, 4, 8, 9, 16, 255}) {
    const auto r = quantize(w.data(), h.data(), n, params(Method::kUniform, k));
    const int64_t M = (k - 1) / 2;
    EXPECT_NEAR(r.step, amax / (M + 0.5), 1e-12 * amax) << "k " << k;
    std::vector<int64_t> cell_of_level(r.codebook.size(), INT64_MIN);
    for (size_t i = 0; i < n; ++i) {
      const int64_t m = std::clamp<int64_t>(static_cast<int64_t>(std::llround(w[i] / r.step)), -M, M);
      int64_t& seen = cell_of_level[static_cast<size_t>(r.indices[i])];
      if (seen == INT64_MIN) seen = m;
      ASSERT_EQ(seen, m) << "k " << k << ": one level holds two cells";
    }
    EXPECT_LE(static_cast<int64_t>(r.codebook.size()), 2 * M + 1) << "k " << k;
  }
}

TEST(Quantize, TargetSearchesLandWithinOnePercent) {
  const size_t n = 5000 + 3;
  auto w = student_t(n, 61);
  auto h = importance(n, 62);
  for (Method m : {Method::kEcsq, Method::kUniform}) {
    for (double bits : {1.0, 2.5}) {
      auto p = params(m, 64);
      p.max_iter = 30;
      p.target_bits = bits;
      const auto r = quantize(w.data(), h.data(), n, p);
      EXPECT_NEAR(r.entropy_bits, bits, 0.01 * bits) << method_traits(m).name;
    }
    auto p = params(m, 64);
    p.max_iter = 30;
    p.target_ratio = 16;  // 2 bits
    const auto r = quantize(w.data(), h.data(), n, p);
    EXPECT_NEAR(r.entropy_bits, 2.0, 0.02);
  }
  auto p = params(Method::kKmeans, 8);
  p.target_bits = 2;
  EXPECT_THROW(quantize(w.data(), nullptr, n, p), Error);
}

TEST(Quantize, DeterministicForSeedAndThreads) {
  const size_t n = 70000 + 7;
  auto w = student_t(n, 71);
  auto h = importance(n, 72);
  for (Method m : {Method::kHwKmeans, Method::kEcsq, Method::kExact}) {
    auto p = params(m, 16);
    p.init = Init::kKmeansPP;
    p.lambda = m == Method::kEcsq ? 1e-5 : 0.0;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const auto a = quantize(w.data(), h.data(), n, p);
    omp_set_num_threads(2);
    const auto b = quantize(w.data(), h.data(), n, p);
    omp_set_num_threads(saved);
    EXPECT_EQ(a.codebook, b.codebook) << method_traits(m).name;
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_EQ(std::memcmp(&a.hw_distortion, &b.hw_distortion, sizeof(double)), 0);
  }
}

TEST(Quantize, EdgeCases) {
  for (const auto& t : method_table()) {
    auto p = params(t.method, 4);
    // N = 1
    float one = 0.37f, hone = 2.0f;
    auto r = quantize(&one, &hone, 1, p);
    ASSERT_EQ(r.indices.size(), 1u) << t.name;
    // All values equal: one level, no error.
    std::vector<float> same(31, -0.25f), hs(31, 1.5f);
    r = quantize(same.data(), hs.data(), same.size(), p);
    ASSERT_EQ(r.indices.size(), 31u) << t.name;
    // Zero importance everywhere: falls back to unweighted, still a valid result.
    auto w = student_t(33, 81);
    std::vector<float> zeros(33, 0.0f);
    r = quantize(w.data(), zeros.data(), w.size(), p);
    ASSERT_EQ(r.indices.size(), 33u) << t.name;
    for (int32_t i : r.indices) ASSERT_LT(static_cast<size_t>(i), r.codebook.size());
  }
  // k >= distinct values: exact representation for the k-means family.
  std::vector<float> w = {0.5f, -1.0f, 0.5f, 2.0f, -1.0f, 0.25f, 2.0f};
  for (Method m : {Method::kKmeans, Method::kHwKmeans, Method::kExact}) {
    for (int k : {4, 5, 1000}) {  // k = distinct and beyond (SortedData::distinct_up_to stops at k + 1)
      const auto r = quantize(w.data(), nullptr, w.size(), params(m, k));
      EXPECT_EQ(r.codebook, (std::vector<float>{-1.0f, 0.25f, 0.5f, 2.0f})) << "k=" << k;
      EXPECT_EQ(r.hw_distortion, 0.0);
    }
    // One level fewer than the distinct values: a real clustering, not the representation.
    const auto r = quantize(w.data(), nullptr, w.size(), params(m, 3));
    EXPECT_LE(r.codebook.size(), 3u);
    EXPECT_GT(r.hw_distortion, 0.0);
  }
  {  // ECSQ starts from every distinct value when k reaches them: at λ = 0 nothing is lost.
    auto p = params(Method::kEcsq, 4);
    p.lambda = 0.0;
    const auto r = quantize(w.data(), nullptr, w.size(), p);
    EXPECT_EQ(r.codebook, (std::vector<float>{-1.0f, 0.25f, 0.5f, 2.0f}));
    EXPECT_EQ(r.hw_distortion, 0.0);
  }
  // Partly zero importance: weightless values still get a level, weighted distortion ignores them.
  auto v = student_t(257, 82);
  auto h = importance(257, 83);
  for (size_t i = 0; i < 257; i += 2) h[i] = 0.0f;
  const auto r = quantize(v.data(), h.data(), v.size(), params(Method::kExact, 5));
  EXPECT_NEAR(distortion(r, v, h.data()), r.hw_distortion, 1e-9 * r.hw_distortion + 1e-15);
}

// The statistics measure the stored float levels, not the fp64 centres they were rounded from. At a Lloyd fixed
// point the two differ only to second order (Σ h·(c − w) = 0 over a cluster), so ordinary data cannot tell them
// apart; clusters of two adjacent floats can: their weighted mean lies inside one ulp, and the level it rounds to
// leaves errors of a whole ulp on one side (e.g. weights 1 and 2 at x and x + ulp: D = ulp² against the centre's
// ⅔ ulp²).
TEST(Quantize, StatisticsMeasureTheStoredLevelsNotTheCentres) {
  std::mt19937_64 rng(613);
  std::uniform_int_distribution<int> copies(1, 5);
  std::gamma_distribution<double> g(0.7, 2.0);
  for (int clusters : {1, 3, 7}) {
    std::vector<float> w, h;
    for (int c = 0; c < clusters; ++c) {
      const float x = 1.0f + 3.0f * static_cast<float>(c) + 0.37f;
      const float up = std::nextafter(x, 100.0f);
      for (float v : {x, up})
        for (int i = copies(rng); i > 0; --i) {
          w.push_back(v);
          h.push_back(static_cast<float>(g(rng) + 0.05));
        }
    }
    std::vector<float> ones(w.size(), 1.0f);
    for (Method m : {Method::kKmeans, Method::kHwKmeans, Method::kExact, Method::kEcsq}) {
      for (double lambda : {0.0, 1e-16}) {
        if (lambda > 0 && m != Method::kEcsq) continue;
        auto p = params(m, clusters);
        p.lambda = lambda;
        const auto r = quantize(w.data(), h.data(), w.size(), p);
        // kmeans clusters without the importances (its hw_distortion weighs by 1, see QuantizeResult).
        const float* weigh = m == Method::kKmeans ? ones.data() : h.data();
        const double d = distortion(r, w, weigh), mse = distortion(r, w, nullptr);
        SCOPED_TRACE(std::string(method_traits(m).name) + " clusters=" + std::to_string(clusters) +
                     " lambda=" + std::to_string(lambda));
        ASSERT_GT(mse, 0.0);  // some level is not one of the values: the case is live
        EXPECT_NEAR(r.hw_distortion, d, 1e-12 * d);
        EXPECT_NEAR(r.mse, mse, 1e-12 * mse);
      }
    }
  }
}

// The float codebook of a driver's centres: equal floats merge into one level (centres apart by less than a float's
// rounding, as ECSQ's cells, which are not intervals, can give), unused centres get none, and the levels ascend
// whatever the centres' order.
TEST(Quantize, RoundingCentresToLevelsMergesEqualFloats) {
  const auto m = quant::round_levels({2.0, 0.5 + 1e-12, -1.0, 0.5, 7.0}, {5, 4, 2, 3, 0});
  EXPECT_EQ(m.codebook, (std::vector<float>{-1.0f, 0.5f, 2.0f}));
  EXPECT_EQ(m.remap, (std::vector<int32_t>{2, 1, 0, 1, -1}));

  // finalize on such centres: the two merged centres' members share one level, whose count is theirs together
  // (entropy of the counts 3 + 4 and 5 over 12 values).
  std::vector<float> w(12), h(12, 1.0f);
  quant::RawResult raw;
  raw.centers = {0.5, 0.5 + 1e-12, 2.0};
  for (size_t i = 0; i < w.size(); ++i) {
    const int32_t j = i < 3 ? 0 : i < 7 ? 1 : 2;
    raw.labels.push_back(j);
    w[i] = j == 2 ? 2.0f : 0.5f;
  }
  quant::Problem prob;
  prob.w = w.data();
  prob.h = h.data();
  prob.n = w.size();
  const QuantizeResult r = quant::finalize(prob, raw);
  EXPECT_EQ(r.codebook, (std::vector<float>{0.5f, 2.0f}));
  const double p7 = 7.0 / 12, p5 = 5.0 / 12;
  EXPECT_NEAR(r.entropy_bits, -(p7 * std::log2(p7) + p5 * std::log2(p5)), 1e-12);
  EXPECT_EQ(r.hw_distortion, 0.0);
}

// ECSQ at λ = 0 gives a weight of importance 0 the nearest level that holds weight, even when the run stops (here
// at --max-iter 1) with a cluster that only such weights fill: that cluster leaves the codebook.
TEST(Quantize, EcsqLambdaZeroStoppedEarlyDropsAClusterOnlyWeightlessValuesFill) {
  const std::vector<float> w = {-1.1f, -0.9f, 0.9f, 1.1f, 100.0f}, h = {1, 1, 1, 1, 0};
  auto p = params(Method::kEcsq, 3);
  p.lambda = 0.0;
  p.max_iter = 1;
  p.initial_centers = {-1.0, 1.0, 100.0};
  const auto r = quantize(w.data(), h.data(), w.size(), p);
  ASSERT_EQ(r.codebook.size(), 2u);
  EXPECT_EQ(r.indices, (std::vector<int32_t>{0, 0, 1, 1, 1}));
  EXPECT_EQ(r.codebook[1], 1.0f);
}

// The validation pass over large inputs (the threaded, vectorised path): every kind of bad entry anywhere is found
// and named by its index, and −0 or 0 importances are accepted.
TEST(Quantize, ValidationFindsEachBadEntryInLargeInputs) {
  const size_t n = 3 * 65536 + 17;
  const std::vector<float> w0 = student_t(n, 91);
  const std::vector<float> h0 = importance(n, 92);
  const auto p = params(Method::kHwKmeans, 4);
  const float inf = std::numeric_limits<float>::infinity();
  // quantize(w, h) must fail with kInvalidArgument naming "<what> <at> ".
  auto expect_named = [&](const std::vector<float>& w, const std::vector<float>& h, const std::string& what,
                          size_t at, float bad) {
    try {
      quantize(w.data(), h.data(), n, p);
      ADD_FAILURE() << what << " " << bad << " at " << at << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(what + " " + std::to_string(at) + " "), std::string::npos) << e.what();
    }
  };
  for (const size_t at : {size_t{0}, size_t{16383}, size_t{70001}, n - 1}) {
    for (const float bad : {NAN, inf, -inf}) {
      std::vector<float> w = w0;
      w[at] = bad;
      expect_named(w, h0, "value", at, bad);
    }
    for (const float bad : {NAN, inf, -1e-30f, -inf}) {
      std::vector<float> h = h0;
      h[at] = bad;
      expect_named(w0, h, "importance", at, bad);
    }
  }
  std::vector<float> h = h0;
  h[5] = -0.0f;
  h[70001] = 0.0f;
  EXPECT_NO_THROW(quantize(w0.data(), h.data(), n, p));
  // All importances zero (−0 included): run unweighted, as with no importance at all.
  std::vector<float> zeros(n, 0.0f);
  zeros[100] = -0.0f;
  const QuantizeResult a = quantize(w0.data(), zeros.data(), n, p);
  const QuantizeResult b = quantize(w0.data(), nullptr, n, p);
  EXPECT_EQ(a.codebook, b.codebook);
  EXPECT_EQ(a.indices, b.indices);
}

TEST(Quantize, ValidationErrors) {
  std::vector<float> w = {0.1f, 0.2f, NAN};
  std::vector<float> h = {1, 1, 1};
  auto expect_code = [](const std::function<void()>& f, ErrorCode code) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
    }
  };
  expect_code([&] { quantize(w.data(), h.data(), 3, params(Method::kHwKmeans, 2)); }, ErrorCode::kInvalidArgument);
  w[2] = 0.3f;
  h[1] = -1;
  expect_code([&] { quantize(w.data(), h.data(), 3, params(Method::kHwKmeans, 2)); }, ErrorCode::kInvalidArgument);
  h[1] = 1;
  expect_code([&] { quantize(w.data(), h.data(), 3, params(Method::kHwKmeans, 0)); }, ErrorCode::kInvalidArgument);
  auto p = params(Method::kEcsq, 4);
  p.lambda = -1;
  expect_code([&] { quantize(w.data(), h.data(), 3, p); }, ErrorCode::kInvalidArgument);
  expect_code([] { parse_method("kmeans2"); }, ErrorCode::kInvalidArgument);
  expect_code([] { parse_scope("group:0"); }, ErrorCode::kInvalidArgument);
  expect_code([] { parse_scope("group:x"); }, ErrorCode::kInvalidArgument);
  expect_code([] { parse_scope("group:99999999999999999999"); }, ErrorCode::kInvalidArgument);  // past int64
  expect_code([] { parse_init("random"); }, ErrorCode::kInvalidArgument);
  expect_code([] { parse_importance_transform("log"); }, ErrorCode::kInvalidArgument);
}

// Knobs a method has no use for, or two rate goals at once, are refused rather than ignored: the library's own check
// (the CLI and Python refuse them first, in their spelling). Each case runs the otherwise valid call, which must
// succeed, then adds the one knob.
TEST(Quantize, KnobsThatWouldBeIgnoredAreRefused) {
  const std::vector<float> w = student_t(301, 5), h = importance(301, 6);
  auto refused = [](const std::function<void()>& call, const char* message) {  // kInvalidArgument saying `message`
    try {
      call();
      ADD_FAILURE() << "accepted: " << message;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  struct Case {
    Method method;
    std::function<void(QuantizeParams&)> add;
    const char* message;
  };
  const std::vector<Case> cases = {
      {Method::kHwKmeans, [](QuantizeParams& p) { p.lambda = 1e-5; }, "lambda applies to ecsq only (method hw-kmeans)"},
      {Method::kUniform, [](QuantizeParams& p) { p.lambda = 1e-5; }, "lambda applies to ecsq only (method uniform)"},
      {Method::kEcsq, [](QuantizeParams& p) { p.lambda = 1e-5, p.target_bits = 2; }, "give one rate goal"},
      {Method::kEcsq, [](QuantizeParams& p) { p.target_ratio = 12, p.target_bits = 2; }, "give one rate goal"},
      {Method::kExact, [](QuantizeParams& p) { p.step = 0.01; }, "step applies to uniform only (method exact)"},
      {Method::kUniform, [](QuantizeParams& p) { p.step = 0.01, p.target_bits = 2; }, "give step or a target rate"},
  };
  for (const Case& c : cases) {
    QuantizeParams p = params(c.method, 8);
    EXPECT_NO_THROW(quantize(w.data(), h.data(), w.size(), p)) << c.message;
    c.add(p);
    refused([&] { quantize(w.data(), h.data(), w.size(), p); }, c.message);
  }
  // The model entry: an importance transform with no importance.
  TensorSet model;
  model.add(Tensor::from_f32("w", {7, 43}, w));
  ModelQuantizeParams mp;
  mp.quant = params(Method::kHwKmeans, 4);
  EXPECT_NO_THROW(quantize_model(model, nullptr, mp));
  mp.importance_transform = ImportanceTransform::kSqrt;
  refused([&] { quantize_model(model, nullptr, mp); }, "importance transform");
  mp.prune = 0.5;
  refused([&] { prune_model(model, nullptr, mp); }, "importance transform");
  // A model-wide target met by one λ: the goals are checked before the search takes them apart.
  mp = ModelQuantizeParams{};
  mp.quant = params(Method::kEcsq, 4);
  mp.scope = parse_scope("row");
  mp.rate_allocation = RateAllocation::kSharedLambda;
  mp.quant.target_bits = 1;
  EXPECT_NO_THROW(quantize_model(model, nullptr, mp));
  mp.quant.lambda = 1e-5;
  refused([&] { quantize_model(model, nullptr, mp); }, "give one rate goal");
}

TEST(Quantize, TraitsTableDrivesParsing) {
  for (const auto& t : method_table()) {
    EXPECT_EQ(parse_method(t.name), t.method);
    EXPECT_STREQ(method_traits(t.method).name, t.name);
  }
  EXPECT_EQ(parse_scope("group:128").group, 128);
  EXPECT_EQ(scope_to_string(parse_scope("group:128")), "group:128");
  for (const char* s : {"global", "tensor", "row"}) EXPECT_EQ(scope_to_string(parse_scope(s)), s);
  for (Init i : {Init::kLinear, Init::kKmeansPP, Init::kQuantile}) EXPECT_EQ(parse_init(init_name(i)), i);
}

}  // namespace
}  // namespace nq

namespace nq {
namespace {

// O(k·n²) textbook DP over the sorted values (no speed-ups): the oracle for mid-size inputs.
double plain_dp_optimum(const std::vector<float>& w, const std::vector<float>& h, int k) {
  std::vector<size_t> order(w.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w[a] < w[b]; });
  const size_t n = w.size();
  std::vector<long double> p0(n + 1), p1(n + 1), p2(n + 1);
  for (size_t i = 0; i < n; ++i) {
    const long double x = w[order[i]], hv = h[order[i]];
    p0[i + 1] = p0[i] + hv; p1[i + 1] = p1[i] + hv * x; p2[i + 1] = p2[i] + hv * x * x;
  }
  auto cost = [&](size_t a, size_t b) {
    const long double s0 = p0[b] - p0[a], s1 = p1[b] - p1[a];
    return static_cast<double>(p2[b] - p2[a] - s1 * s1 / s0);
  };
  std::vector<double> prev(n + 1, 1e300), cur(n + 1);
  for (size_t i = 1; i <= n; ++i) prev[i] = cost(0, i);
  for (int t = 2; t <= k; ++t) {
    std::fill(cur.begin(), cur.end(), 1e300);
    for (size_t i = t; i <= n; ++i)
      for (size_t j = t - 1; j < i; ++j) cur[i] = std::min(cur[i], prev[j] + cost(j, i));
    prev.swap(cur);
  }
  return prev[n] / static_cast<double>(n);
}

TEST(Quantize, ExactEqualsPlainDynamicProgram) {
  for (size_t n : {size_t{31}, size_t{257}, size_t{600}}) {
    for (int k : {2, 5, 16}) {
      auto w = student_t(n, 3 * n + k);
      auto h = importance(n, n + k);
      const double oracle = plain_dp_optimum(w, h, k);
      const auto r = quantize(w.data(), h.data(), n, params(Method::kExact, k));
      // The float codebook moves the optimum by rounding only.
      EXPECT_NEAR(r.hw_distortion, oracle, 1e-5 * oracle) << "n=" << n << " k=" << k;
    }
  }
}

}  // namespace
}  // namespace nq
