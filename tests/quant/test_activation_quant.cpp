// Log-domain weighted-entropy activation quantizer (Park et al. 2017): levels, S and the (fsr, step) search against
// brute force on raw samples; the linear-grid baseline's rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "netquant/activation_quant.h"
#include "netquant/error.h"

namespace nq {
namespace {

// ReLU-like samples: a share of exact zeros, the rest log-normal (awkward count).
std::vector<float> relu_samples(size_t n, uint64_t seed, double zero_share = 0.3) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> ln(-1.0, 1.3);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<float> x(n);
  for (float& v : x) v = u(rng) < zero_share ? 0.0f : float(ln(rng));
  return x;
}

// Oracle: the level index of x by nearest level in the log domain, from the definition (no bins).
int oracle_index(float x, int bits, int fsr, int step) {
  if (!(x > 0)) return -1;
  const int levels = (1 << bits) - 1;
  const double lx = std::log2(double(x));
  if (lx < (fsr - 0.5 * step) / 16.0) return -1;  // below the geometric midpoint under r_0
  int best = 0;
  for (int n = 1; n < levels; ++n)
    if (std::abs(lx - (fsr + n * step) / 16.0) < std::abs(lx - (fsr + best * step) / 16.0)) best = n;
  return best;
}

// Oracle S = −Σ I_n P_n ln P_n computed per sample (importance = the value).
double oracle_s(const std::vector<float>& x, int bits, int fsr, int step) {
  std::map<int, std::pair<double, double>> clusters;  // index -> (count, Σx)
  for (float v : x) {
    auto& c = clusters[oracle_index(v, bits, fsr, step)];
    c.first += 1;
    c.second += v > 0 ? v : 0;
  }
  double s = 0;
  for (const auto& [n, c] : clusters) {
    const double p = c.first / double(x.size());
    s -= (c.second / c.first) * p * std::log(p);
  }
  return s;
}

TEST(ActivationQuant, LevelsMatchNearestInLogDomain) {
  const std::vector<float> x = relu_samples(1013, 3);
  for (int bits : {1, 2, 3, 4}) {
    for (int fsr : {-40, -17, 0, 9}) {
      for (int step : {1, 3, 8, 13}) {
        const LogQuantizer q{bits, fsr, step};
        for (int n = 0; n < q.num_levels(); ++n) EXPECT_DOUBLE_EQ(q.level(n), std::pow(2.0, (fsr + n * step) / 16.0));
        for (float v : x) {
          const int want = oracle_index(v, bits, fsr, step);
          ASSERT_EQ(q.index(v), want) << "x " << v << " bits " << bits << " fsr " << fsr << " step " << step;
          EXPECT_FLOAT_EQ(q.quantize(v), want < 0 ? 0.0f : float(std::pow(2.0, (fsr + want * step) / 16.0)));
        }
      }
    }
  }
}

TEST(ActivationQuant, HistogramWeightedEntropyEqualsPerSample) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    const std::vector<float> x = relu_samples(257 + 100 * seed, seed, 0.1 * double(seed));
    LogHistogram h;
    h.add(x.data(), x.size() / 2);  // in two parts: accumulation must widen the range either way
    h.add(x.data() + x.size() / 2, x.size() - x.size() / 2);
    EXPECT_DOUBLE_EQ(h.total(), double(x.size()));
    for (int bits : {2, 3, 4})
      for (int fsr : {-60, -21, -5, 4})
        for (int step : {2, 5, 16}) {
          const double want = oracle_s(x, bits, fsr, step);
          EXPECT_NEAR(log_quantizer_weighted_entropy({bits, fsr, step}, h), want, 1e-10 * (1 + want))
              << "bits " << bits << " fsr " << fsr << " step " << step;
        }
  }
}

TEST(ActivationQuant, SearchFindsTheBestGridPoint) {
  for (uint64_t seed : {5u, 6u}) {
    const std::vector<float> x = relu_samples(301, seed);
    LogHistogram h;
    h.add(x.data(), x.size());
    for (int bits : {2, 3}) {
      LogQuantizerSearch search;
      search.max_step = 12;
      const LogQuantizer q = fit_log_quantizer(h, bits, search);
      const double got = oracle_s(x, bits, q.fsr, q.step);
      // Brute force on the raw samples over a much wider fsr range than the search's own.
      double best = -1;
      for (int step = 1; step <= search.max_step; ++step)
        for (int fsr = -160; fsr <= 100; ++fsr) best = std::max(best, oracle_s(x, bits, fsr, step));
      EXPECT_NEAR(got, best, 1e-10 * best) << "bits " << bits << " fsr " << q.fsr << " step " << q.step;
      EXPECT_GT(got, oracle_s(x, bits, q.fsr + 40, q.step));  // not a flat objective
    }
  }
}

// The search skips the stretch of fsr where the grid's partition of the data repeats with period `step`. Oracle:
// every fsr of the full range, as the search did before (its cost grew with 4^bits: 16 bits took hours).
TEST(ActivationQuant, SearchSkipsOnlyRepeatsAndIsFastAtSixteenBits) {
  auto floor_div = [](int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); };
  for (uint64_t seed : {7u, 8u}) {
    const std::vector<float> x = relu_samples(997, seed, 0.2);
    LogHistogram h;
    h.add(x.data(), x.size());
    int64_t lo = -1, hi = -1;
    for (size_t i = 0; i < h.counts.size(); ++i)
      if (h.counts[i] > 0) hi = int64_t(i), lo = lo < 0 ? int64_t(i) : lo;
    const int64_t b_lo = h.first_bin + lo, b_hi = h.first_bin + hi;
    for (int bits : {1, 2, 5, 8, 10}) {
      LogQuantizerSearch search;
      search.max_step = 9;
      const int64_t levels = (int64_t(1) << bits) - 1;
      LogQuantizer want{bits, 0, 1};
      double want_s = -INFINITY;
      for (int step = 1; step <= search.max_step; ++step)
        for (int64_t fsr = floor_div(b_lo - (2 * levels - 3) * step, 2) - 1; fsr <= floor_div(b_hi + step, 2) + 1;
             ++fsr) {
          const double v = log_quantizer_weighted_entropy({bits, int(fsr), step}, h);
          if (v > want_s) want_s = v, want = {bits, int(fsr), step};
        }
      // The invariant the skip rests on: where no bin reaches the top level's clamp or the zero level, the value
      // repeats with period step (bit for bit: the same clusters summed in the same order).
      int64_t repeats = 0;
      for (int step = 1; step <= search.max_step; ++step)
        for (int64_t fsr = floor_div(b_lo - (2 * levels - 3) * step, 2); fsr <= floor_div(b_hi + step, 2); ++fsr) {
          auto free = [&](int64_t f) { return 2 * f + (2 * levels - 3) * step > b_hi && 2 * f - step <= b_lo; };
          if (!free(fsr) || !free(fsr - step)) continue;
          ++repeats;
          ASSERT_EQ(log_quantizer_weighted_entropy({bits, int(fsr), step}, h),
                    log_quantizer_weighted_entropy({bits, int(fsr - step), step}, h))
              << "bits " << bits << " fsr " << fsr << " step " << step;
        }
      if (bits >= 5) { EXPECT_GT(repeats, 0) << "bits " << bits; }
      const LogQuantizer got = fit_log_quantizer(h, bits, search);
      EXPECT_EQ(got.fsr, want.fsr) << "bits " << bits;
      EXPECT_EQ(got.step, want.step) << "bits " << bits;
      EXPECT_EQ(log_quantizer_weighted_entropy(got, h), want_s) << "bits " << bits;
    }
    // 16 bits, the default search: the result must still be at least as good as every 10-bit grid point nested
    // in it (a 16-bit grid with the same fsr and step has the 10-bit one's levels and more).
    const LogQuantizer q16 = fit_log_quantizer(h, 16);
    const LogQuantizer q10 = fit_log_quantizer(h, 10);
    EXPECT_GE(log_quantizer_weighted_entropy(q16, h), log_quantizer_weighted_entropy({16, q10.fsr, q10.step}, h));
  }
}

TEST(ActivationQuant, DegenerateAndInvalidInputs) {
  LogHistogram h;
  const std::vector<float> zeros(7, 0.0f);
  h.add(zeros.data(), zeros.size());
  const LogQuantizer q = fit_log_quantizer(h, 3);
  EXPECT_EQ(q.quantize(0.0f), 0.0f);
  EXPECT_EQ(log_quantizer_weighted_entropy(q, h), 0.0);  // one cluster with importance 0
  const float bad = std::nanf("");
  EXPECT_THROW(h.add(&bad, 1), Error);
  EXPECT_THROW(fit_log_quantizer(h, 0), Error);
  EXPECT_THROW(log_quantizer_weighted_entropy({3, 0, 0}, h), Error);
}

TEST(ActivationQuant, LinearGridRoundsToNearestAndClips) {
  const std::vector<float> x = relu_samples(523, 9, 0.2);
  LogHistogram h;
  h.add(x.data(), x.size());
  for (int bits : {2, 3, 4}) {
    const LinearQuantizer q = fit_linear_quantizer(h, bits);
    ASSERT_GT(q.delta, 0);
    const int top = (1 << bits) - 1;
    for (float v : x) {
      // Brute force over the 2^b levels {0, Δ, ..., top·Δ}.
      double best = 0;
      for (int n = 0; n <= top; ++n)
        if (std::abs(n * q.delta - v) < std::abs(best - v)) best = n * q.delta;
      EXPECT_NEAR(q.quantize(v), best, 1e-6 * (1 + best));
    }
    // The fitted clip beats clipping at the maximum (outliers of the log-normal tail).
    double err_fit = 0, err_max = 0;
    const float vmax = *std::max_element(x.begin(), x.end());
    const LinearQuantizer at_max{bits, double(vmax) / top};
    for (float v : x) {
      err_fit += std::pow(q.quantize(v) - v, 2);
      err_max += std::pow(at_max.quantize(v) - v, 2);
    }
    EXPECT_LT(err_fit, err_max);
  }
}

}  // namespace
}  // namespace nq
