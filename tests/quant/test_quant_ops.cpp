// The quantizer ops (quant_ops.h) against brute-force fp64 oracles: fused assign+accumulate, sort, prefix sums.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <limits>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>

#include "netquant/quantize.h"
#include "quant/binned_pass.h"
#include "quant/count_positions_wide.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/window_argmin_wide.h"

namespace nq::quant {
namespace {

std::vector<float> student_t(size_t n, uint64_t seed, double scale = 0.05) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * t(rng));
  return v;
}

// The brute-force fp64 argmin of assign_cost over every centre, ties to the lowest index, except for a weight
// of importance 0, whose ties go to the nearest of the tied centres (then the lowest index): the oracle.
int32_t brute_force_label(float w, float h, const std::vector<double>& c, const std::vector<double>& l,
                          double lambda) {
  int32_t best = -1;
  double bc = infinity();
  for (int32_t j = 0; j < static_cast<int32_t>(c.size()); ++j) {
    const double cost = assign_cost(w, h, c[j], l[j], lambda);
    if (best < 0 || better(cost, j, bc, best)) { bc = cost; best = j; }
  }
  if (h != 0.0f) return best;
  auto squared_distance = [&](int32_t j) {
    const double d = static_cast<double>(w) - c[j];
    return d * d;
  };
  for (int32_t j = 0; j < static_cast<int32_t>(c.size()); ++j)
    if (assign_cost(w, h, c[j], l[j], lambda) == bc && squared_distance(j) < squared_distance(best)) best = j;
  return best;
}

TEST(QuantOps, FusedAssignMatchesBruteForce) {
  std::mt19937_64 rng(7);
  for (int k : {1, 2, 3, 7, 33}) {
    for (double lambda : {0.0, 1e-4, 0.01, 1.0}) {
      const size_t n = 1003;
      std::vector<float> w = student_t(n, 100 + k);
      std::vector<double> c(k), l(k);
      for (int j = 0; j < k; ++j) c[j] = 0.2 * (j - k / 2.0) / std::max(1, k) + 1e-3 * j;
      std::sort(c.begin(), c.end());
      std::uniform_real_distribution<double> u(0.1, 6.0);
      for (int j = 0; j < k; ++j) l[j] = (j % 5 == 3 && k > 1) ? infinity() : (j % 3 == 0 ? 2.0 : u(rng));
      // Values exactly at centres and midpoints exercise the ties.
      for (int j = 0; j + 1 < k && j < 20; ++j) {
        w[j] = static_cast<float>(c[j]);
        w[20 + j] = static_cast<float>(0.5 * (c[j] + c[j + 1]));
      }
      std::vector<float> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = (i % 17 == 0) ? 0.0f : static_cast<float>(u(rng));
      std::vector<int32_t> labels(n);
      AssignAccum acc;
      cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, labels.data(), acc);
      std::vector<double> sh(k, 0.0), shw(k, 0.0);
      double dist = 0;
      for (size_t i = 0; i < n; ++i) {
        const int32_t best = brute_force_label(w[i], h[i], c, l, lambda);
        ASSERT_EQ(labels[i], best) << "k=" << k << " lambda=" << lambda << " i=" << i;
        sh[best] += h[i];
        shw[best] += static_cast<double>(h[i]) * w[i];
        const double d = static_cast<double>(w[i]) - c[best];
        dist += h[i] * d * d;
      }
      for (int j = 0; j < k; ++j) {
        EXPECT_NEAR(acc.sum_h[j], sh[j], 1e-9 * (1 + sh[j]));
        EXPECT_NEAR(acc.sum_hw[j], shw[j], 1e-9 * (1 + std::fabs(shw[j])));
      }
      EXPECT_NEAR(acc.distortion, dist, 1e-9 * dist + 1e-15);
    }
  }
}

// Labels of every search path — the 8-lane window (λ > 0, or λ = 0 with dead clusters), positions by counting
// (k ≤ 64) and by the bucket table (k > 64) — against the brute-force argmin, with importances that take the
// scalar fallbacks (0, subnormal, +inf) next to ordinary and extreme ones, equal code lengths (so values at
// midpoints tie) and dead clusters next to live ones.
TEST(QuantOps, FusedAssignLabelsMatchBruteForceOnEveryPath) {
  std::mt19937_64 rng(17);
  const std::vector<float> importances = {0.0f,  1e-40f, FLT_MIN, 0.3f, 1.0f, 7.5f, 1e20f, FLT_MAX,
                                          std::numeric_limits<float>::infinity()};
  for (int k : {2, 5, 8, 33, 64, 65, 200}) {
    for (double lambda : {0.0, 1e-6, 1e-3, 1.0}) {
      for (bool dead : {false, true}) {
        std::vector<double> c(k), l(k, 2.0);
        for (int j = 0; j < k; ++j) c[j] = 0.3 * (j - k / 2.0) / k + 1e-4 * (j % 3);
        std::sort(c.begin(), c.end());
        c.erase(std::unique(c.begin(), c.end()), c.end());
        const int kk = static_cast<int>(c.size());
        l.resize(kk);
        std::uniform_real_distribution<double> u(0.5, 4.0);
        for (int j = 0; j < kk; ++j) l[j] = j % 4 == 1 ? 2.0 : u(rng);
        if (dead)
          for (int j = 1; j < kk; j += 3) l[j] = infinity();
        std::vector<float> w = student_t(2000 + 7 * k, 31 + k);
        for (int j = 0; j < kk; ++j) {
          w.push_back(static_cast<float>(c[j]));
          if (j + 1 < kk) w.push_back(static_cast<float>(0.5 * (c[j] + c[j + 1])));
        }
        w.push_back(1e30f);
        w.push_back(-1e30f);
        std::vector<float> h(w.size());
        for (size_t i = 0; i < h.size(); ++i) h[i] = importances[(i * 5 + i / 9) % importances.size()];
        std::vector<int32_t> labels(w.size());
        AssignAccum acc;
        cpu::assign_accumulate(w.data(), h.data(), w.size(), c.data(), l.data(), kk, lambda, labels.data(), acc);
        for (size_t i = 0; i < w.size(); ++i) {
          ASSERT_EQ(labels[i], brute_force_label(w[i], h[i], c, l, lambda))
              << "k=" << kk << " lambda=" << lambda << " dead=" << dead << " i=" << i
              << " w=" << std::hexfloat << w[i] << " h=" << h[i];
        }
      }
    }
  }
}

// λ = 0 with every cluster live takes the three-candidate nearest path: hammer it with the cases where rounding
// makes costs tie — centres one ulp apart (so c_{p−2} can tie with c_{p−1}), values on centres and midpoints,
// tiny and huge importances — against the brute-force fp64 argmin with ties to the lowest index.
TEST(QuantOps, NearestPathMatchesBruteForceOnRoundingTies) {
  std::mt19937_64 rng(99);
  std::vector<double> c;
  for (double base : {-0.3, -0.01, 0.0, 1e-7, 0.02, 0.5}) {
    double v = base;
    for (int r = 0; r < 3; ++r) {  // runs of centres one ulp apart
      c.push_back(v);
      v = std::nextafter(v, 1.0);
    }
  }
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  const int k = static_cast<int>(c.size());
  const std::vector<double> l(k, 0.0);
  std::vector<float> w;
  std::vector<float> h;
  std::uniform_real_distribution<double> u(-0.4, 0.6);
  for (int j = 0; j < k; ++j) {
    w.push_back(static_cast<float>(c[j]));
    if (j + 1 < k) w.push_back(static_cast<float>(0.5 * (c[j] + c[j + 1])));
  }
  while (w.size() < 5003) w.push_back(static_cast<float>(u(rng)));
  for (size_t i = 0; i < w.size(); ++i) h.push_back(i % 3 == 0 ? 1e-30f : (i % 3 == 1 ? 1.0f : 3e30f));
  std::vector<int32_t> labels(w.size());
  AssignAccum acc;
  cpu::assign_accumulate(w.data(), h.data(), w.size(), c.data(), l.data(), k, 0.0, labels.data(), acc);
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(labels[i], brute_force_label(w[i], h[i], c, l, 0.0)) << "i=" << i << " w=" << w[i] << " h=" << h[i];
  }
}

// λ = 0 passes long enough for the threshold labels (n ≥ 256·k): values on and a few floats around every
// midpoint and centre, importances from the smallest float through 0, subnormals and FLT_MAX to +inf, centres
// whose midpoints sit at 0 (where floats are densest and the weighted rule can tie one float past the
// threshold), all against the brute-force fp64 argmin with ties to the lowest index.
TEST(QuantOps, ThresholdLabelsMatchBruteForceAroundEveryMidpoint) {
  std::mt19937_64 rng(2026);
  const std::vector<std::vector<double>> books = {
      {-1e-3, 1e-3},
      {-0.3, -0.1, 0.1, 0.3, 0.7},
      {-0.25, -0.125, 0.0, 0.125, 0.25},
      {-0.07, -0.031, -0.0102, -0.0011, 0.0009, 0.0099, 0.03, 0.071, 0.2},
      {-1e-30, 1e-30, 3e-30},
      // Found by search: the threshold float itself goes to the lower centre under these importances (below).
      {-0x1.a17d39dae252dp-5, 0x1.a17d39eb6c7ep-5},
      {-0x1.a97b7fc379141p-11, 0x1.a97b7ed3f975p-11},
      {-0x1.8994eaa9f9c9bp-3, 0x1.8994eaa1af5a8p-3}};
  const std::vector<float> importances = {FLT_MIN, 1.5f * FLT_MIN, 1e-30f, 0.37f, 1.0f, 3.1f, 1e30f, FLT_MAX,
                                          0.0f, FLT_MIN / 4, std::numeric_limits<float>::infinity(),
                                          0x1.8147aep+1f, 0x1.733334p-9f, 0x1.b47aep+13f};
  std::uniform_real_distribution<double> u(-0.4, 0.8);
  for (const auto& c : books) {
    const int k = static_cast<int>(c.size());
    std::vector<float> marks;
    for (int j = 0; j < k; ++j) {
      marks.push_back(static_cast<float>(c[j]));
      if (j + 1 < k) marks.push_back(static_cast<float>(0.5 * (c[j] + c[j + 1])));
    }
    marks.push_back(0.0f);
    marks.push_back(0x1.08a2b4p-34f);  // the searched books' threshold floats
    marks.push_back(-0x1.deff3ep-37f);
    marks.push_back(-0x1.094de4p-33f);
    std::vector<float> w;
    for (float m : marks) {
      float lo = m, hi = m;
      w.push_back(m);
      for (int s = 0; s < 40; ++s) {
        lo = std::nextafter(lo, -1.0f);
        hi = std::nextafter(hi, 1.0f);
        w.push_back(lo);
        w.push_back(hi);
      }
    }
    while (w.size() < 256 * static_cast<size_t>(k) + 1001) w.push_back(static_cast<float>(u(rng)));
    // Each probe once with every importance.
    const size_t probes = w.size();
    for (size_t r = 1; r < importances.size(); ++r) w.insert(w.end(), w.begin(), w.begin() + probes);
    std::vector<float> h(w.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = importances[i / probes];
    const std::vector<double> l(k, 1.0);
    std::vector<int32_t> labels(w.size());
    AssignAccum acc;
    cpu::assign_accumulate(w.data(), h.data(), w.size(), c.data(), l.data(), k, 0.0, labels.data(), acc);
    for (size_t i = 0; i < w.size(); ++i) {
      ASSERT_EQ(labels[i], brute_force_label(w[i], h[i], c, l, 0.0))
          << "k=" << k << " i=" << i << " w=" << std::hexfloat << w[i] << " h=" << h[i];
    }
  }
}

// A codebook of k ascending centres with a peaked code-length profile (short codes in the middle, so that at
// large λ a far, cheap centre wins values of small importance), every third one dead when asked.
void peaked_codebook(int k, bool dead, std::vector<double>& c, std::vector<double>& l) {
  c.resize(static_cast<size_t>(k));
  l.resize(static_cast<size_t>(k));
  for (int j = 0; j < k; ++j) {
    c[j] = -0.1 + 0.2 * (j + 0.1 * (j % 3)) / std::max(1, k);
    l[j] = 1.0 + 0.25 * std::abs(j - k / 2);
  }
  if (dead && k > 2)
    for (int j = 1; j < k; j += 3) l[j] = infinity();
}

// Values for the window searches: Student-t weights with centres, midpoints and non-finite values planted, and
// importances from gamma(0.7) (many small: far winners) mixed with 0, subnormal, FLT_MAX and +inf.
void window_inputs(size_t n, const std::vector<double>& c, uint64_t seed, std::vector<float>& w,
                   std::vector<float>& h) {
  w = student_t(n, seed, 0.03);
  std::mt19937_64 rng(seed + 1);
  std::gamma_distribution<double> g(0.7, 2.0);
  h.resize(n);
  const float special[] = {0.0f, 1e-40f, FLT_MAX, std::numeric_limits<float>::infinity(), 1e-6f};
  for (size_t i = 0; i < n; ++i) h[i] = i % 23 == 5 ? special[(i / 23) % 5] : static_cast<float>(g(rng) + 1e-4);
  for (size_t j = 0; j < c.size() && 2 * j + 1 < n / 2; ++j) {
    w[2 * j] = static_cast<float>(c[j]);
    if (j + 1 < c.size()) w[2 * j + 1] = static_cast<float>(0.5 * (c[j] + c[j + 1]));
  }
  if (n > 40) {
    w[n - 3] = std::numeric_limits<float>::quiet_NaN();
    w[n - 7] = std::numeric_limits<float>::infinity();
    w[n - 11] = -1e30f;
  }
}

// The AVX-512 window search itself (window_argmin_wide.h) on awkward lengths (the padded tail) and k ≤ 64 (one,
// two and four register pairs per table): every label it gives is the brute-force argmin, every value it hands
// back carries −1 − p, it hands back only what it must (a value that is not finite, an importance outside
// (0, +inf), or every cost +inf), and its count of hand-backs is right (the caller fixes up nothing when it is 0).
TEST(QuantOps, WideWindowLabelsMatchBruteForce) {
  if (!cpu::wide_window_available()) GTEST_SKIP() << "this CPU has no AVX-512F: the scalar window search runs";
  for (int k : {1, 2, 3, 8, 16, 17, 31, 32, 33, 47, 64}) {
    for (double lambda : {1e-6, 1e-4, 1e-3, 0.05, 1e308}) {
      for (bool dead : {false, true}) {
        std::vector<double> c, l;
        peaked_codebook(k, dead, c, l);
        if (lambda > 1e300)  // every l_j ≥ 2: λ·l_j overflows, every cost is +inf
          for (double& x : l) x *= 2;
        std::vector<double> rl(k), rbl(k), rbr(k);
        double lmin = infinity();
        for (int j = 0; j < k; ++j) {
          rl[j] = l[j] < infinity() ? lambda * l[j] : infinity();
          lmin = std::min(lmin, l[j]);
          rbl[j] = lambda * lmin;
        }
        lmin = infinity();
        for (int j = k - 1; j >= 0; --j) {
          lmin = std::min(lmin, l[j]);
          rbr[j] = lambda * lmin;
        }
        for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{1003}}) {
          std::vector<float> w, h;
          window_inputs(n, c, 1000 + k + n, w, h);
          std::vector<int32_t> lab(n), p(n);
          for (size_t i = 0; i < n; ++i) {
            int32_t q = 0;
            while (q < k && static_cast<double>(w[i]) > c[q]) ++q;
            p[i] = lab[i] = q;
          }
          const cpu::WideWindowTables tables{c.data(), rl.data(), rbl.data(), rbr.data(), k};
          const size_t back = cpu::wide_window_labels(w.data(), h.data(), n, tables, lab.data());
          size_t negatives = 0;
          for (size_t i = 0; i < n; ++i) {
            const int32_t oracle = brute_force_label(w[i], h[i], c, l, lambda);
            const bool decidable = std::isfinite(w[i]) && h[i] > 0.0f && std::isfinite(h[i]) &&
                                   assign_cost(w[i], h[i], c[oracle], l[oracle], lambda) < infinity();
            if (lab[i] < 0) {
              ++negatives;
              ASSERT_FALSE(decidable) << "k=" << k << " lambda=" << lambda << " i=" << i << " handed back";
              ASSERT_EQ(lab[i], -1 - p[i]) << "i=" << i;
            } else {
              ASSERT_EQ(lab[i], oracle)
                  << "k=" << k << " lambda=" << lambda << " dead=" << dead << " n=" << n << " i=" << i
                  << " w=" << std::hexfloat << w[i] << " h=" << h[i];
            }
          }
          EXPECT_EQ(back, negatives);
        }
      }
    }
  }
}

// The AVX-512 positions (a binary search by permutes) against counting every entry, on tables as the pass pads
// them (non-decreasing, −inf below the float range, +inf padding, repeated entries) and values on, beside and
// between the entries, ±0, ±inf and NaN, at run lengths around the sixteen-value step.
TEST(QuantOps, WideCountPositionsEqualCountingEveryEntry) {
  if (!cpu::wide_window_available()) GTEST_SKIP() << "this CPU has no AVX-512F: the counting loop runs";
  std::mt19937_64 rng(91);
  std::normal_distribution<float> g(0.0f, 0.1f);
  const float inf = std::numeric_limits<float>::infinity();
  for (int size : {16, 32, 64}) {
    for (int k : {1, 2, size / 2 + 1, size - 1, size}) {
      std::vector<float> below(static_cast<size_t>(size), inf);
      for (int j = 0; j < k; ++j) below[static_cast<size_t>(j)] = g(rng);
      std::sort(below.begin(), below.begin() + k);
      if (k > 2) below[1] = below[0];                  // a repeated entry
      if (k > 3) below[0] = -inf;                      // a centre under the float range
      std::vector<float> w;
      for (int j = 0; j < k; ++j) {
        const float b = below[static_cast<size_t>(j)];
        for (const float v : {b, std::nextafter(b, inf), std::nextafter(b, -inf)}) w.push_back(v);
      }
      for (const float v : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), FLT_MAX, -FLT_MAX})
        w.push_back(v);
      while (w.size() < 1000 + 3) w.push_back(g(rng));
      std::shuffle(w.begin(), w.end(), rng);
      for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, w.size()}) {
        std::vector<int32_t> got(n + 1, -7);  // one sentinel past the end
        cpu::wide_count_positions(w.data(), n, below.data(), size, got.data());
        for (size_t i = 0; i < n; ++i) {
          int32_t want = 0;
          for (int j = 0; j < size; ++j) want += w[i] > below[static_cast<size_t>(j)] ? 1 : 0;
          ASSERT_EQ(got[i], want) << "size=" << size << " k=" << k << " n=" << n << " w=" << w[i];
        }
        EXPECT_EQ(got[n], -7) << "size=" << size << " n=" << n << ": written past the end";
      }
    }
  }
}

// The whole pass with the AVX-512 window search and with the scalar one: the same labels (the brute-force
// argmin) and the same sums, bit for bit.
TEST(QuantOps, FusedAssignWideAndScalarWindowsAgreeBitForBit) {
  if (!cpu::wide_window_available()) GTEST_SKIP() << "this CPU has no AVX-512F: the scalar window search runs";
  for (int k : {2, 5, 16, 32, 64}) {
    for (double lambda : {1e-5, 1e-3, 0.05, 1e308}) {
      std::vector<double> c, l;
      peaked_codebook(k, k == 16, c, l);
      if (lambda > 1e300)  // every l_j ≥ 2: λ·l_j overflows, every cost is +inf (the scalar search decides)
        for (double& x : l) x *= 2;
      std::vector<float> w, h;
      window_inputs(100003, c, 77 + k, w, h);
      const size_t n = w.size();
      std::vector<int32_t> wide_labels(n), scalar_labels(n);
      AssignAccum wide, scalar;
      cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, wide_labels.data(), wide);
      cpu::set_wide_window_enabled(false);
      cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, scalar_labels.data(), scalar);
      cpu::set_wide_window_enabled(true);
      for (size_t i = 0; i < n; i += 7)
        ASSERT_EQ(wide_labels[i], brute_force_label(w[i], h[i], c, l, lambda)) << "k=" << k << " i=" << i;
      ASSERT_EQ(wide_labels, scalar_labels) << "k=" << k << " lambda=" << lambda;
      EXPECT_EQ(std::memcmp(wide.sum_h.data(), scalar.sum_h.data(), k * sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(wide.sum_hw.data(), scalar.sum_hw.data(), k * sizeof(double)), 0);
      EXPECT_EQ(wide.count, scalar.count);
      EXPECT_EQ(std::memcmp(&wide.distortion, &scalar.distortion, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&wide.cost, &scalar.cost, sizeof(double)), 0);
    }
  }
}

TEST(QuantOps, FusedAssignDeterministicAcrossThreads) {
  const size_t n = 200003;
  auto w = student_t(n, 3);
  auto h = student_t(n, 4);
  for (auto& x : h) x = std::fabs(x);
  std::vector<double> c = {-0.1, -0.03, 0.0, 0.02, 0.09}, l = {3, 2, 1, 2, 3};
  AssignAccum a, b;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), 5, 1e-4, nullptr, a);
  omp_set_num_threads(3);
  cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), 5, 1e-4, nullptr, b);
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(a.sum_hw.data(), b.sum_hw.data(), 5 * sizeof(double)), 0);
  EXPECT_EQ(a.distortion, b.distortion);
}

// Caller-chosen segments (the sharded driver's op): every segment's sums equal a plain element-order fp64 loop
// over it with brute-force labels, bit for bit (same operations in the same order), empty segments give zeros,
// and fixed blocks of accum_block_size(n) folded in order reproduce assign_accumulate exactly.
TEST(QuantOps, SegmentedAssignMatchesSequentialSumsPerSegment) {
  const size_t n = 70001;
  const auto w = student_t(n, 11);
  auto h = student_t(n, 12);
  for (auto& x : h) x = std::fabs(x);
  const std::vector<double> c = {-0.2, -0.05, -0.01, 0.0, 0.015, 0.06, 0.3}, l = {4, 3, 2, 1, 2, 3, 5};
  const int k = static_cast<int>(c.size());
  std::mt19937_64 rng(5);
  std::vector<size_t> ends;
  for (size_t at = 0; at < n;) {
    const size_t len = rng() % 4 == 0 ? 0 : (rng() % 3 == 0 ? 16384 : 1 + rng() % 9000);  // equal runs too
    at = std::min(n, at + len);
    ends.push_back(at);
  }
  for (double lambda : {0.0, 3e-4}) {
    std::vector<int32_t> labels(n);
    std::vector<AssignAccum> parts;
    cpu::assign_accumulate_segments(w.data(), h.data(), ends.data(), ends.size(), c.data(), l.data(), k, lambda,
                                    labels.data(), parts);
    ASSERT_EQ(parts.size(), ends.size());
    size_t i = 0;
    for (size_t s = 0; s < ends.size(); ++s) {
      std::vector<double> sh(k, 0.0), shw(k, 0.0), sw(k, 0.0);
      std::vector<int64_t> cnt(k, 0);
      double dist = 0, sq = 0, cost_sum = 0;
      for (; i < ends[s]; ++i) {
        const int32_t best = brute_force_label(w[i], h[i], c, l, lambda);
        ASSERT_EQ(labels[i], best) << "i=" << i;
        sh[best] += static_cast<double>(h[i]);
        shw[best] += static_cast<double>(h[i]) * w[i];
        sw[best] += static_cast<double>(w[i]);
        ++cnt[best];
        const double d = static_cast<double>(w[i]) - c[best];
        dist += static_cast<double>(h[i]) * (d * d);
        sq += d * d;
        cost_sum += assign_cost(w[i], h[i], c[best], l[best], lambda);
      }
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(parts[s].sum_h[j], sh[j]) << "segment " << s;
        ASSERT_EQ(parts[s].sum_hw[j], shw[j]) << "segment " << s;
        ASSERT_EQ(parts[s].sum_w[j], sw[j]) << "segment " << s;
        ASSERT_EQ(parts[s].count[j], cnt[j]) << "segment " << s;
      }
      ASSERT_EQ(parts[s].distortion, dist) << "segment " << s;
      ASSERT_EQ(parts[s].sq_error, sq) << "segment " << s;
      ASSERT_EQ(parts[s].cost, cost_sum) << "segment " << s;
    }
    // Fixed blocks folded in order == the fused op.
    const size_t block = accum_block_size(n);
    std::vector<size_t> blocks;
    for (size_t at = block; at < n + block; at += block) blocks.push_back(std::min(n, at));
    cpu::assign_accumulate_segments(w.data(), h.data(), blocks.data(), blocks.size(), c.data(), l.data(), k, lambda,
                                    nullptr, parts);
    AssignAccum folded, fused;
    folded.reset(k);
    for (const auto& p : parts) folded.add(p);
    cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, nullptr, fused);
    EXPECT_EQ(std::memcmp(folded.sum_h.data(), fused.sum_h.data(), k * sizeof(double)), 0);
    EXPECT_EQ(std::memcmp(folded.sum_hw.data(), fused.sum_hw.data(), k * sizeof(double)), 0);
    EXPECT_EQ(std::memcmp(folded.sum_w.data(), fused.sum_w.data(), k * sizeof(double)), 0);
    EXPECT_EQ(folded.count, fused.count);
    EXPECT_EQ(folded.cost, fused.cost);
    EXPECT_EQ(folded.sq_error, fused.sq_error);
  }
}

TEST(QuantOps, SortPairsMatchesStableSort) {
  // Oracle: std::stable_sort by (w, −0 before +0). Shapes that take every path of the op: heavy tails (thousands
  // of small top-digit buckets), one sign in a narrow range (the top digit counted again lower; in-bucket sorts
  // of one 10-bit pass or none), a single repeated value (one bucket, nothing to sort), a few distinct values
  // (buckets sorted by insertion), and buckets too big for one thread (the threaded in-bucket passes). Rows of
  // 4095 and 4096 take the 11-bit digits, with and without h (all, one or none of their passes moving items).
  // 300007 with 3 threads gives slices of 65536 and more per thread and an odd team size; h = nullptr means h = 1.
  const int saved_threads = omp_get_max_threads();
  enum Shape { kHeavyTails, kNarrow, kVeryNarrow, kConstant, kFewValues, kOneBigBucket };
  std::mt19937_64 rng(11);
  for (Shape shape : {kHeavyTails, kNarrow, kVeryNarrow, kConstant, kFewValues, kOneBigBucket}) {
    for (size_t n :
         {size_t{1}, size_t{7}, size_t{4095}, size_t{4096}, size_t{5001}, size_t{70003}, size_t{300007}}) {
      omp_set_num_threads(n > 100000 ? 3 : saved_threads);
      auto w = student_t(n, n + shape);
      for (size_t i = 0; i < n; ++i) {
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        switch (shape) {
          case kHeavyTails: break;
          case kNarrow: w[i] = static_cast<float>(1.0 + 0.1 * u); break;            // keys share 12 bits
          case kVeryNarrow: w[i] = static_cast<float>(3.0 + 1e-5 * u); break;      // keys share ~25 bits
          case kConstant: w[i] = -0.75f; break;
          case kFewValues: w[i] = static_cast<float>(static_cast<int>(u * 40) - 20) * 0.125f; break;
          case kOneBigBucket: w[i] = i % 16 ? static_cast<float>(0.5 + 0.001 * u) : w[i]; break;
        }
      }
      if (shape == kHeavyTails) {
        for (size_t i = 0; i < n; i += 11) w[i] = (i % 2) ? -0.0f : 0.0f;
        for (size_t i = 5; i < n; i += 13) w[i] = w[i / 2];
      }
      std::vector<float> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(i);
      const bool no_h = n % 2 == 0 || shape == kConstant;
      std::vector<float> ws(n), hs(n);
      cpu::sort_pairs(w.data(), no_h ? nullptr : h.data(), n, ws.data(), hs.data());
      std::vector<size_t> order(n);
      for (size_t i = 0; i < n; ++i) order[i] = i;
      auto key = [&](size_t i) {  // −0 before +0, like the op
        return std::make_pair(w[i], std::signbit(w[i]) ? 0 : 1);
      };
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(std::memcmp(&ws[i], &w[order[i]], 4), 0) << "shape=" << shape << " n=" << n << " i=" << i;
        ASSERT_EQ(hs[i], no_h ? 1.0f : h[order[i]]) << "shape=" << shape << " n=" << n << " i=" << i;
      }
    }
  }
  omp_set_num_threads(saved_threads);
}

TEST(QuantOps, SortPairsSortsLargeBucketsOnePerThread) {
  // Buckets above 2^16 items but under a quarter of a thread's share are sorted one per thread, each in its own
  // scratch. 12 clusters of values, each inside one top-digit bucket (width 2^-3 of its octave), hold ~83,000
  // items apiece at n = 10^6 + 3; on 2 threads that is under the 125,000 bound, so all 12 take that path; on 8 it
  // is over the bound, so they take the threaded one. Oracle: std::stable_sort by (w, −0 before +0).
  const int saved_threads = omp_get_max_threads();
  const double centres[] = {1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0};
  const size_t n = 1000003;
  std::mt19937_64 rng(23);
  std::vector<float> w(n), h(n);
  for (size_t i = 0; i < n; ++i) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    w[i] = static_cast<float>(centres[rng() % 12] + u / 32);
    h[i] = static_cast<float>(i);
  }
  for (size_t i = 0; i < n; i += 7) w[i] = w[(i * 5) % n];  // repeated keys: stability is visible
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w[a] < w[b]; });
  for (int threads : {2, 8}) {
    omp_set_num_threads(threads);
    std::vector<float> ws(n, std::nanf("")), hs(n, std::nanf(""));
    cpu::sort_pairs(w.data(), h.data(), n, ws.data(), hs.data());
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(ws[i], w[order[i]]) << "threads=" << threads << " i=" << i;
      ASSERT_EQ(hs[i], h[order[i]]) << "threads=" << threads << " i=" << i;
    }
  }
  omp_set_num_threads(saved_threads);
}

TEST(QuantOps, SmallProblemsRunOnTheHostUnderCuda) {
  EXPECT_EQ(problem_backend(Backend::kCuda, 1), Backend::kCpu);
  EXPECT_EQ(problem_backend(Backend::kCuda, kCudaMinProblem - 1), Backend::kCpu);
  EXPECT_EQ(problem_backend(Backend::kCuda, kCudaMinProblem), Backend::kCuda);
  EXPECT_EQ(problem_backend(Backend::kCpu, size_t{1} << 30), Backend::kCpu);
  // Through the public entry: a CPU request is never moved, and the result says where it ran.
  const auto w = student_t(100, 9);
  QuantizeParams q;
  q.method = Method::kKmeans;
  q.k = 4;
  q.backend = Backend::kCpu;
  EXPECT_EQ(nq::quantize(w.data(), nullptr, w.size(), q).backend, Backend::kCpu);
}

// Op (d) on the CPU: with the binned pass switched off each pass is op (a), bit for bit; with it on (the default
// at this size) the counts are op (a)'s and the sums agree to rounding. Either way the labels are the latest
// pass's, exactly.
void expect_pass_equal(const AssignAccum& got, const AssignAccum& want, bool bitwise) {
  EXPECT_EQ(got.count, want.count);
  if (bitwise) {
    EXPECT_EQ(got.sum_h, want.sum_h);
    EXPECT_EQ(got.sum_hw, want.sum_hw);
    EXPECT_EQ(got.sum_w, want.sum_w);
    EXPECT_EQ(got.distortion, want.distortion);
    EXPECT_EQ(got.cost, want.cost);
    return;
  }
  ASSERT_EQ(got.sum_h.size(), want.sum_h.size());
  for (size_t j = 0; j < want.sum_h.size(); ++j) {
    EXPECT_NEAR(got.sum_h[j], want.sum_h[j], 1e-11 * std::fabs(want.sum_h[j]));
    EXPECT_NEAR(got.sum_hw[j], want.sum_hw[j], 1e-9 * std::fabs(want.sum_hw[j]));
    EXPECT_NEAR(got.sum_w[j], want.sum_w[j], 1e-9 * std::fabs(want.sum_w[j]));
  }
  EXPECT_NEAR(got.distortion, want.distortion, 1e-10 * want.distortion);
  EXPECT_NEAR(got.cost, want.cost, 1e-10 * want.cost);
}

TEST(QuantOps, ResidentValuesPassesEqualTheOpAndKeepTheLatestLabels) {
  const size_t n = 70001;
  ASSERT_GE(n, kBinnedMinValues);
  const auto w = student_t(n, 5);
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>(0.1 + (i % 17));
  for (const bool binned : {false, true}) {
    SCOPED_TRACE(binned ? "binned pass" : "op (a)");
    set_binned_pass_enabled(binned);
    const std::unique_ptr<ResidentValues> values = ops_make_resident_values(Backend::kCpu, w.data(), h.data(), n);
    EXPECT_TRUE(values->take_labels().empty());  // no pass yet
    const std::vector<double> c1{-0.1, -0.02, 0.0, 0.03, 0.2}, l1{3.0, 1.5, 1.0, 1.5, 3.0};
    const std::vector<double> c2{-0.05, 0.01, 0.07}, l2{1.0, 1.0, 2.0};
    AssignAccum r1, r2, o1, o2;
    std::vector<int32_t> lab1(n), lab2(n);
    values->assign_accumulate(c1.data(), l1.data(), 5, 1e-4, r1);
    values->assign_accumulate(c2.data(), l2.data(), 3, 1e-4, r2);
    ops_assign_accumulate(Backend::kCpu, w.data(), h.data(), n, c1.data(), l1.data(), 5, 1e-4, lab1.data(), o1);
    ops_assign_accumulate(Backend::kCpu, w.data(), h.data(), n, c2.data(), l2.data(), 3, 1e-4, lab2.data(), o2);
    expect_pass_equal(r1, o1, !binned);
    expect_pass_equal(r2, o2, !binned);
    EXPECT_EQ(values->take_labels(), lab2);  // the latest pass's labels
    EXPECT_NE(lab1, lab2);

    // (d') Several codebooks in one call: each equals its own pass, and the latest labels are left alone.
    values->assign_accumulate(c1.data(), l1.data(), 5, 1e-4, r1);
    CodebookBatch books;
    books.add(c2.data(), l2.data(), 3, 1e-4);
    books.add(c1.data(), l1.data(), 5, 0.0);
    books.add(c2.data(), l2.data(), 3, 0.5);
    std::vector<AssignAccum> multi;
    values->assign_accumulate_multi(books, multi);
    ASSERT_EQ(multi.size(), 3u);
    for (int m = 0; m < 3; ++m) {
      const size_t o = static_cast<size_t>(books.offsets[static_cast<size_t>(m)]);
      AssignAccum one, alone;
      ops_assign_accumulate(Backend::kCpu, w.data(), h.data(), n, books.centers.data() + o, books.code_len.data() + o,
                            books.k(m), books.lambda[static_cast<size_t>(m)], nullptr, one);
      expect_pass_equal(multi[m], one, !binned);
      values->assign_accumulate(books.centers.data() + o, books.code_len.data() + o, books.k(m),
                                books.lambda[static_cast<size_t>(m)], alone);
      expect_pass_equal(multi[m], alone, true);  // the several-codebook form is the single pass, bit for bit
      values->assign_accumulate(c1.data(), l1.data(), 5, 1e-4, r1);
    }
    EXPECT_EQ(values->take_labels(), lab1);

    // labels_for: the labels a pass with that codebook leaves, and nothing left to take after them.
    values->assign_accumulate(c1.data(), l1.data(), 5, 1e-4, r1);
    EXPECT_EQ(values->labels_for(c2.data(), l2.data(), 3, 1e-4), lab2);
    EXPECT_TRUE(values->take_labels().empty());
    EXPECT_EQ(values->labels_for(c1.data(), l1.data(), 5, 1e-4), lab1);
  }
  set_binned_pass_enabled(true);
}

TEST(QuantOps, PrefixSumsMatchLongDouble) {
  for (size_t block : {size_t{1}, size_t{3}, size_t{64}}) {
    const size_t n = 1000 + 3;
    auto w = student_t(n, 9);
    std::sort(w.begin(), w.end());
    std::vector<float> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = 0.5f + static_cast<float>(i % 7);
    const size_t nb = (n + block - 1) / block;
    std::vector<double> a(nb + 1), b(nb + 1), c(nb + 1);
    cpu::prefix_sums(w.data(), h.data(), n, 0.01, block, a.data(), b.data(), c.data());
    for (size_t q = 0; q <= nb; ++q) {
      long double s0 = 0, s1 = 0, s2 = 0;
      for (size_t i = 0; i < std::min(n, q * block); ++i) {
        const long double x = static_cast<long double>(w[i]) - 0.01L;
        s0 += h[i]; s1 += h[i] * x; s2 += h[i] * x * x;
      }
      EXPECT_NEAR(a[q], static_cast<double>(s0), 1e-9 * (1 + static_cast<double>(s0)));
      EXPECT_NEAR(b[q], static_cast<double>(s1), 1e-12 * (1 + static_cast<double>(s0)));
      EXPECT_NEAR(c[q], static_cast<double>(s2), 1e-12 * (1 + static_cast<double>(s0)));
    }
  }
}

TEST(QuantOps, HistogramAndEntropy) {
  std::vector<int32_t> labels = {0, 2, 2, -1, 1, 2, 0, 3};
  std::vector<int64_t> counts(4);
  cpu::label_histogram(labels.data(), labels.size(), 4, counts.data());
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 1, 3, 1}));
  const double p[4] = {2 / 7.0, 1 / 7.0, 3 / 7.0, 1 / 7.0};
  double hbits = 0;
  for (double x : p) hbits -= x * std::log2(x);
  EXPECT_NEAR(histogram_entropy(counts.data(), 4), hbits, 1e-12);
}

}  // namespace
}  // namespace nq::quant
