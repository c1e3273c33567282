// Tests of the fixed-codebook C steps (binary, ternary, pow2, int grids) against brute-force oracles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "netquant/error.h"
#include "quant/fixed_codebooks.h"

namespace nq::quant {
namespace {

const size_t kSizes[] = {1, 2, 3, 7, 31, 100, 257, 1001};

struct Data {
  std::vector<float> w, h;
};

// Gaussian bulk plus a few heavy-tailed values and a non-zero mean, so fits are not symmetric by accident.
Data make_data(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> gauss(0.05f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  Data d;
  for (size_t i = 0; i < n; ++i) {
    float v = gauss(rng);
    if (unit(rng) < 0.05f) v *= 6.0f;
    d.w.push_back(v);
    d.h.push_back(unit(rng) < 0.1f ? 0.0f : 0.05f + 2.0f * unit(rng));  // some zero importances
  }
  return d;
}

double objective(const std::vector<float>& w, const float* h, const std::vector<float>& codebook,
                 const std::vector<int32_t>& idx) {
  long double s = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const long double d = static_cast<long double>(codebook.at(static_cast<size_t>(idx.at(i)))) - w[i];
    s += (h ? h[i] : 1.0L) * d * d;
  }
  return static_cast<double>(s);
}

// Objective of reconstructing every w by its nearest element of `levels` (any order).
double nearest_objective(const std::vector<float>& w, const float* h, const std::vector<double>& levels) {
  long double s = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    long double best = std::numeric_limits<long double>::infinity();
    for (double l : levels) best = std::min(best, std::fabs(static_cast<long double>(l) - w[i]));
    s += (h ? h[i] : 1.0L) * best * best;
  }
  return static_cast<double>(s);
}

void expect_well_formed(const FixedCodebookResult& r, size_t n, bool all_used) {
  ASSERT_EQ(r.indices.size(), n);
  ASSERT_FALSE(r.codebook.empty());
  for (size_t j = 1; j < r.codebook.size(); ++j) EXPECT_LT(r.codebook[j - 1], r.codebook[j]);
  std::vector<int> used(r.codebook.size(), 0);
  for (int32_t i : r.indices) {
    ASSERT_GE(i, 0);
    ASSERT_LT(static_cast<size_t>(i), r.codebook.size());
    used[static_cast<size_t>(i)] = 1;
  }
  if (all_used) {
    for (int u : used) EXPECT_EQ(u, 1) << "compacted codebooks hold only used levels";
  }
}

template <class F>
void for_each_case(F f) {
  uint64_t seed = 11;
  for (size_t n : kSizes) {
    for (int weighted = 0; weighted < 2; ++weighted) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " weighted=" << weighted);
      const Data d = make_data(n, seed++);
      f(d, weighted ? d.h.data() : nullptr);
    }
  }
}

// ---- binary -----------------------------------------------------------------------------------------------

TEST(FixedCodebooks, BinaryMatchesBruteForceOverSignPatterns) {
  for_each_case([](const Data& d, const float* h) {
    const size_t n = d.w.size();
    const auto r = quantize_binary(d.w.data(), h, n);
    expect_well_formed(r, n, false);
    const double ours = objective(d.w, h, r.codebook, r.indices);
    // Oracle: every assignment of the n values to {−a, +a} (n ≤ 12), each with its optimal a ≥ 0;
    // above that the closed form is checked against a dense scan of a with nearest (sign) assignment.
    double best = std::numeric_limits<double>::infinity();
    if (n <= 12) {
      for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        long double num = 0, den = 0;
        for (size_t i = 0; i < n; ++i) {
          const long double hi = h ? h[i] : 1.0L, s = (mask >> i & 1) ? 1 : -1;
          num += hi * s * d.w[i];
          den += hi;
        }
        const long double a = den > 0 ? std::max(num / den, 0.0L) : 0.0L;
        long double obj = 0;
        for (size_t i = 0; i < n; ++i) {
          const long double e = ((mask >> i & 1) ? a : -a) - d.w[i];
          obj += (h ? h[i] : 1.0L) * e * e;
        }
        best = std::min(best, static_cast<double>(obj));
      }
    } else {
      float mx = 0;
      for (float v : d.w) mx = std::max(mx, std::fabs(v));
      for (int g = 1; g <= 4000; ++g) {
        const double a = mx * g / 4000.0;
        best = std::min(best, nearest_objective(d.w, h, {-a, a}));
      }
    }
    EXPECT_LE(ours, best * (1 + 1e-6) + 1e-9);
    if (n <= 12) {
      EXPECT_GE(ours, best * (1 - 1e-6) - 1e-9);
    }
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(r.indices[i], d.w[i] >= 0 ? 1 : 0);
  });
}

TEST(FixedCodebooks, BinaryUnscaledZeroAndFallbacks) {
  const Data d = make_data(31, 5);
  auto r = quantize_binary(d.w.data(), d.h.data(), 31, false);
  EXPECT_EQ(r.codebook, (std::vector<float>{-1.0f, 1.0f}));
  // All-zero importance falls back to the unweighted fit.
  const std::vector<float> zeros(31, 0.0f);
  const auto rz = quantize_binary(d.w.data(), zeros.data(), 31);
  const auto ru = quantize_binary(d.w.data(), nullptr, 31);
  EXPECT_EQ(rz.codebook, ru.codebook);
  // All-zero values collapse to the single level 0; w == 0 takes +a otherwise.
  const auto r0 = quantize_binary(zeros.data(), nullptr, 31);
  EXPECT_EQ(r0.codebook, std::vector<float>{0.0f});
  const std::vector<float> w = {0.0f, -2.0f, 2.0f};
  EXPECT_EQ(quantize_binary(w.data(), nullptr, 3).indices[0], 1);
}

TEST(FixedCodebooks, RejectsBadInput) {
  const std::vector<float> w = {1.0f, NAN, 2.0f}, h = {1.0f, -1.0f, 1.0f}, ok = {1.0f, 2.0f, 3.0f};
  EXPECT_THROW(quantize_binary(ok.data(), nullptr, 0), Error);
  EXPECT_THROW(quantize_binary(w.data(), nullptr, 3), Error);
  EXPECT_THROW(quantize_ternary(ok.data(), h.data(), 3), Error);
  EXPECT_THROW(quantize_pow2(ok.data(), nullptr, 3, 0, 10), Error);
  EXPECT_THROW(quantize_pow2(ok.data(), nullptr, 3, 33, 10), Error);
  EXPECT_THROW(quantize_pow2(ok.data(), nullptr, 3, 4, 0), Error);
  EXPECT_THROW(quantize_int(ok.data(), nullptr, 3, 1, true, 10), Error);
  EXPECT_THROW(quantize_int(ok.data(), nullptr, 3, 17, false, 10), Error);
  try {
    quantize_ternary(ok.data(), nullptr, 0);
    FAIL() << "n == 0 must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

// ---- ternary ----------------------------------------------------------------------------------------------

// pow2 has no zero level: an exact 0 is equally near ±a·2^−(levels−1) and takes the positive one, -0 too.
TEST(FixedCodebooks, Pow2PutsZeroOnTheSmallestPositiveLevel) {
  const std::vector<float> w = {0.8f, -0.4f, 0.0f, 0.1f, -0.0f, -0.9f, 0.0f};
  const auto r = quantize_pow2(w.data(), nullptr, w.size(), 3, 20);
  ASSERT_GT(r.scale, 0.0);
  const float smallest_positive = static_cast<float>(r.scale * 0.25);  // a·2^−2
  for (size_t i : {2u, 4u, 6u}) EXPECT_EQ(r.codebook[static_cast<size_t>(r.indices[i])], smallest_positive) << i;
}

// |w| = a/2 is a tie between 0 and ±a, and goes to 0 (the sparser code). Only a weight of importance 0 can sit
// there at the optimum (a weighted one at a/2 would move a), so the tie needs one: here a = 4 from the two
// weighted values, and the weightless ±2 lie exactly halfway.
TEST(FixedCodebooks, TernaryTieAtHalfTheScaleGoesToZero) {
  const std::vector<float> h = {1, 1, 0, 0};
  for (const auto& [w, want] : std::vector<std::pair<std::vector<float>, std::vector<int32_t>>>{
           {{4, 4, 2, -2}, {2, 2, 1, 1}}, {{-4, 4, -2, 2}, {0, 2, 1, 1}}}) {
    const auto r = quantize_ternary(w.data(), h.data(), w.size());
    ASSERT_EQ(r.codebook, (std::vector<float>{-4, 0, 4}));
    EXPECT_EQ(r.indices, want);
  }
}

TEST(FixedCodebooks, TernaryIsGloballyOptimal) {
  int exhaustive = 0;
  for_each_case([&](const Data& d, const float* h) {
    const size_t n = d.w.size();
    const auto r = quantize_ternary(d.w.data(), h, n);
    expect_well_formed(r, n, false);
    ASSERT_EQ(r.codebook.size(), 3u);
    const double a = r.codebook[2];
    EXPECT_EQ(r.codebook[0], -r.codebook[2]);
    EXPECT_EQ(r.codebook[1], 0.0f);
    // Nearest-level assignment for the returned a.
    for (size_t i = 0; i < n; ++i) {
      const int want = std::fabs(d.w[i]) > a / 2 ? (d.w[i] > 0 ? 2 : 0) : 1;
      EXPECT_EQ(r.indices[i], want) << i;
    }
    const double ours = objective(d.w, h, r.codebook, r.indices);
    // (1) Dense scan of a with nearest-level assignment: ours is no worse, and the scan gets within 1e-3.
    float mx = 0;
    for (float v : d.w) mx = std::max(mx, std::fabs(v));
    double scan = std::numeric_limits<double>::infinity();
    for (int g = 1; g <= 4000; ++g) {
      const double s = mx * g / 4000.0;
      scan = std::min(scan, nearest_objective(d.w, h, {-s, 0.0, s}));
    }
    EXPECT_LE(ours, scan * (1 + 1e-6) + 1e-9);
    EXPECT_LE(scan - ours, 1e-3 * scan + 1e-9);
    // (2) Exhaustive over all 3^n codes with the optimal a for each (n ≤ 7): the exact global optimum.
    if (n <= 7) {
      ++exhaustive;
      size_t total = 1;
      for (size_t i = 0; i < n; ++i) total *= 3;
      double best = std::numeric_limits<double>::infinity();
      for (size_t code = 0; code < total; ++code) {
        std::vector<int> s(n);
        size_t c = code;
        long double num = 0, den = 0;
        for (size_t i = 0; i < n; ++i, c /= 3) {
          s[i] = static_cast<int>(c % 3) - 1;
          if (s[i] != 0) {
            num += (h ? h[i] : 1.0L) * s[i] * d.w[i];
            den += h ? h[i] : 1.0L;
          }
        }
        const long double av = den > 0 ? std::max(num / den, 0.0L) : 0.0L;
        long double obj = 0;
        for (size_t i = 0; i < n; ++i) {
          const long double e = s[i] * av - d.w[i];
          obj += (h ? h[i] : 1.0L) * e * e;
        }
        best = std::min(best, static_cast<double>(obj));
      }
      EXPECT_NEAR(ours, best, 1e-6 * best + 1e-9);
    }
  });
  EXPECT_GT(exhaustive, 0);
}

TEST(FixedCodebooks, TernaryUnweightedUsesTheSqrtCriterion) {
  for (size_t n : kSizes) {
    const Data d = make_data(n, 100 + n);
    std::vector<double> s;
    for (float v : d.w) s.push_back(std::fabs(v));
    std::sort(s.rbegin(), s.rend());
    double sum = 0, best = -1, a = 0;
    for (size_t j = 0; j < n; ++j) {  // [LC]: j* = argmax (Σ_{i≤j} s_i)/√j, a = mean of the top j*
      sum += s[j];
      const double crit = sum / std::sqrt(static_cast<double>(j + 1));
      if (crit > best) {
        best = crit;
        a = sum / static_cast<double>(j + 1);
      }
    }
    const auto r = quantize_ternary(d.w.data(), nullptr, n);
    EXPECT_NEAR(r.codebook[2], a, 1e-6 * a) << n;
  }
}

// ---- powers of two -----------------------------------------------------------------------------------------

TEST(FixedCodebooks, Pow2RoundingRuleIsNearest) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> log_mag(-14.0, 4.0);
  for (int levels : {1, 2, 3, 8}) {
    const int e_min = -(levels - 1);
    std::vector<double> ms = {0.0, 1e-300, 1.0, 0.75, 1.5, 3.0, 0.375, 100.0};
    for (int k = -12; k <= 2; ++k) ms.push_back(1.5 * std::ldexp(1.0, k));  // exact midpoints
    for (int t = 0; t < 2000; ++t) ms.push_back(std::exp2(log_mag(rng)));
    for (double m : ms) {
      const int e = nearest_pow2_exponent(m, e_min, 0);
      ASSERT_GE(e, e_min);
      ASSERT_LE(e, 0);
      double best = std::numeric_limits<double>::infinity();
      int best_e = 0;
      for (int c = e_min; c <= 0; ++c) {  // brute force, ties to the larger magnitude
        const double dist = std::fabs(std::ldexp(1.0, c) - m);
        if (dist <= best) { best = dist; best_e = c; }
      }
      EXPECT_EQ(e, best_e) << "m=" << m << " levels=" << levels;
      // The closed form of [LC] agrees away from exact midpoints.
      if (m > 0 && std::fabs(std::log2(4 * m / 3) - std::round(std::log2(4 * m / 3))) > 1e-9) {
        EXPECT_EQ(e, std::clamp(static_cast<int>(std::floor(std::log2(4 * m / 3))), e_min, 0));
      }
    }
  }
}

double pow2_objective(const std::vector<float>& w, const float* h, double a, int levels) {
  std::vector<double> cb;
  for (int e = 0; e < levels; ++e) {
    cb.push_back(a * std::ldexp(1.0, -e));
    cb.push_back(-a * std::ldexp(1.0, -e));
  }
  return nearest_objective(w, h, cb);
}

TEST(FixedCodebooks, Pow2ScaleFitIsMonotoneAndLocallyOptimal) {
  for (int levels : {1, 3, 6}) {
    for_each_case([&](const Data& d, const float* h) {
      SCOPED_TRACE(levels);
      const size_t n = d.w.size();
      const auto r = quantize_pow2(d.w.data(), h, n, levels, 200);
      expect_well_formed(r, n, true);
      EXPECT_TRUE(r.converged);
      ASSERT_FALSE(r.objective_history.empty());
      for (size_t t = 1; t < r.objective_history.size(); ++t) {
        EXPECT_LE(r.objective_history[t], r.objective_history[t - 1]);
      }
      // The codebook is {±a·2^−e}, every weight takes its nearest element of the full codebook.
      const double a = r.scale;
      for (float c : r.codebook) {
        const double e = -std::log2(std::fabs(c) / a);
        EXPECT_NEAR(e, std::round(e), 1e-5);
        EXPECT_GE(std::round(e), 0);
        EXPECT_LE(std::round(e), levels - 1);
      }
      const double ours = objective(d.w, h, r.codebook, r.indices);
      EXPECT_NEAR(ours, pow2_objective(d.w, h, a, levels), 1e-5 * ours + 1e-9);
      EXPECT_NEAR(ours, r.objective_history.back(), 1e-5 * ours + 1e-9);
      // Local optimality of the scale: ±0.1% (with re-rounding) does not improve.
      for (double f : {0.999, 1.001}) {
        EXPECT_GE(pow2_objective(d.w, h, a * f, levels), ours * (1 - 1e-6) - 1e-9) << f;
      }
      // Global: a dense log scan of the scale finds nothing better (the piece sweep is exact here).
      float mx = 0;
      for (float v : d.w) mx = std::max(mx, std::fabs(v));
      double scan = std::numeric_limits<double>::infinity();
      for (int g = 0; g <= 3000; ++g) {
        scan = std::min(scan, pow2_objective(d.w, h, mx * std::pow(4.0, g / 3000.0 * 2 - 1), levels));
      }
      EXPECT_LE(ours, scan * (1 + 1e-6) + 1e-9);
    });
  }
}

TEST(FixedCodebooks, Pow2WithOneLevelIsBinary) {
  const Data d = make_data(257, 3);
  const auto p = quantize_pow2(d.w.data(), d.h.data(), 257, 1, 50);
  const auto b = quantize_binary(d.w.data(), d.h.data(), 257);
  ASSERT_EQ(p.codebook.size(), 2u);
  EXPECT_NEAR(p.codebook[1], b.codebook[1], 1e-6 * b.codebook[1]);
  EXPECT_EQ(p.indices, b.indices);
}

// ---- integer grids -----------------------------------------------------------------------------------------

double int_sym_objective(const std::vector<float>& w, const float* h, double s, int64_t qmax) {
  long double sum = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double q = std::clamp(std::round(w[i] / s), static_cast<double>(-qmax), static_cast<double>(qmax));
    const long double e = q * s - w[i];
    sum += (h ? h[i] : 1.0L) * e * e;
  }
  return static_cast<double>(sum);
}

// The boundary sweep's best scale against an exhaustive one: every piece between consecutive boundaries gets its
// levels from a point inside it (nearest magnitude, ties to the larger) and its own least-squares scale, clamped
// to the piece; the minimum over all pieces, in fp64, is the global minimum the sweep must reach.
TEST(FixedCodebooks, SweepScalesReachesTheMinimumOverEveryPiece) {
  std::mt19937 rng(31);
  int checked = 0;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::gamma_distribution<float> gd(0.6f, 1.0f);
  for (size_t n : {size_t{1}, size_t{3}, size_t{31}, size_t{257}}) {
    for (int ladder = 0; ladder < 5; ++ladder) {
      // Magnitudes strictly descending: an int grid (qmax … 0), powers of two with 0 and without (pow2's own:
      // zero weights then sit on the smallest), a ternary {1, 0}, and a 12-bit grid (more levels than values
      // for the small n: the sweep's runs are then the values').
      std::vector<double> mags;
      if (ladder == 0) mags = {7, 6, 5, 4, 3, 2, 1, 0};
      if (ladder == 1) mags = {1, 0.5, 0.25, 0.125, 0};
      if (ladder == 2) mags = {1, 0};
      if (ladder == 3) mags = {1, 0.5, 0.25, 0.125, 0.0625};
      if (ladder == 4)
        for (int q = 2047; q >= 0; --q) mags.push_back(q);
      for (bool weighted : {false, true}) {
        if (ladder == 4 && n > 31) continue;  // n·|mags| pieces, each summed over n: kept to seconds
        SCOPED_TRACE("n " + std::to_string(n) + " ladder " + std::to_string(ladder) + (weighted ? " h" : ""));
        std::vector<float> w(n), h(n);
        for (size_t i = 0; i < n; ++i) {
          w[i] = i % 7 == 3 ? 0.0f : nd(rng);
          if (i % 5 == 1 && i > 0) w[i] = -w[i - 1];  // equal magnitudes: boundaries that coincide
          h[i] = i % 6 == 2 ? 0.0f : gd(rng);
        }
        const float* hp = weighted ? h.data() : nullptr;
        auto level_at = [&](double t) {  // the magnitude nearest to t, ties to the larger
          // mags descending: the first one <= t and the one before it are the two candidates.
          const size_t j = static_cast<size_t>(
              std::lower_bound(mags.begin(), mags.end(), t, [](double m, double x) { return m > x; }) - mags.begin());
          if (j == 0) return mags[0];
          if (j == mags.size()) return mags.back();
          return mags[j - 1] - t <= t - mags[j] ? mags[j - 1] : mags[j];
        };
        auto f_exact = [&](double a) {
          double f = 0;
          for (size_t i = 0; i < n; ++i) {
            const double m = std::fabs(static_cast<double>(w[i])), d = a * level_at(m / a) - m;
            f += (hp ? static_cast<double>(h[i]) : 1.0) * d * d;
          }
          return f;
        };
        std::vector<double> bounds = {0.0};
        for (size_t i = 0; i < n; ++i)
          for (size_t l = 0; l + 1 < mags.size(); ++l)
            if (w[i] != 0.0f) bounds.push_back(2.0 * std::fabs(static_cast<double>(w[i])) / (mags[l] + mags[l + 1]));
        std::sort(bounds.begin(), bounds.end());
        bounds.push_back(4.0 * bounds.back() + 1.0);  // past every boundary: the last piece, open above
        double best = std::numeric_limits<double>::infinity();
        for (size_t p = 0; p + 1 < bounds.size(); ++p) {
          const double lo = bounds[p], hi = bounds[p + 1];
          if (!(hi > lo)) continue;
          const double mid = lo + 0.5 * (hi - lo);
          double A = 0, B = 0;
          for (size_t i = 0; i < n; ++i) {
            const double m = std::fabs(static_cast<double>(w[i])), q = level_at(m / mid);
            const double hi_i = hp ? static_cast<double>(h[i]) : 1.0;
            A += hi_i * m * q;
            B += hi_i * q * q;
          }
          if (!(B > 0)) continue;
          const double a = p + 2 == bounds.size() ? std::max(A / B, lo) : std::min(std::max(A / B, lo), hi);
          if (a > 0) best = std::min(best, f_exact(a));
        }
        const std::vector<double> found = detail::sweep_scales(w.data(), hp, n, mags, 4);
        if (!std::isfinite(best)) continue;  // every weight zero or unweighted: no scale matters
        ASSERT_FALSE(found.empty());
        double got = std::numeric_limits<double>::infinity();
        for (double a : found) got = std::min(got, f_exact(a));
        EXPECT_LE(got, best * (1 + 1e-9) + 1e-12) << "the sweep missed the global minimum";
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, (4 * 5 - 1) * 2);
}

TEST(FixedCodebooks, IntSymmetricScaleBeatsDenseScan) {
  for (int bits : {2, 3, 4, 8}) {
    for_each_case([&](const Data& d, const float* h) {
      SCOPED_TRACE(bits);
      const size_t n = d.w.size();
      const int64_t qmax = (int64_t{1} << (bits - 1)) - 1;
      const auto r = quantize_int(d.w.data(), h, n, bits, true, 100);
      expect_well_formed(r, n, true);
      ASSERT_GT(r.scale, 0);
      EXPECT_LE(r.codebook.size(), static_cast<size_t>(2 * qmax + 1));
      for (float c : r.codebook) {  // levels are integer multiples of s within ±qmax
        const double q = c / r.scale;
        EXPECT_NEAR(q, std::round(q), 1e-4);
        EXPECT_LE(std::fabs(std::round(q)), qmax);
      }
      for (size_t t = 1; t < r.objective_history.size(); ++t) {
        EXPECT_LE(r.objective_history[t], r.objective_history[t - 1]);
      }
      const double ours = objective(d.w, h, r.codebook, r.indices);
      EXPECT_NEAR(ours, int_sym_objective(d.w, h, r.scale, qmax), 1e-5 * ours + 1e-9);
      // Brute force: a dense log scan over a much wider bracket than the implementation's.
      float mx = 0;
      for (float v : d.w) mx = std::max(mx, std::fabs(v));
      double scan = std::numeric_limits<double>::infinity();
      const int grid = 6000;
      const double lo = mx * 1e-4 / qmax, hi = 2.0 * mx;
      for (int g = 0; g <= grid; ++g) {
        scan = std::min(scan, int_sym_objective(d.w, h, lo * std::pow(hi / lo, double(g) / grid), qmax));
      }
      // n·qmax is small here, so the implementation's exact piece sweep applies: no tolerance beyond rounding.
      EXPECT_LE(ours, scan * (1 + 1e-7) + 1e-12);
    });
  }
}

TEST(FixedCodebooks, IntSymmetricLargeProblemUsesScanWithinTolerance) {
  // n·(qmax+1) above the sweep limit takes the heuristic scan + golden + refits path.
  const size_t n = 70001;
  const int bits = 8;
  const int64_t qmax = 127;
  ASSERT_GT(double(n) * (qmax + 1), detail::kSweepScalesLimit);
  const Data d = make_data(n, 77);
  for (const float* h : {static_cast<const float*>(nullptr), d.h.data()}) {
    const auto r = quantize_int(d.w.data(), h, n, bits, true, 50);
    expect_well_formed(r, n, true);
    const double ours = objective(d.w, h, r.codebook, r.indices);
    float mx = 0;
    for (float v : d.w) mx = std::max(mx, std::fabs(v));
    double scan = std::numeric_limits<double>::infinity();
    const double lo = mx * 0.05 / qmax, hi = 1.5 * mx / qmax;
    for (int g = 0; g <= 600; ++g) {
      scan = std::min(scan, int_sym_objective(d.w, h, lo * std::pow(hi / lo, double(g) / 600), qmax));
    }
    EXPECT_LE(ours, scan * (1 + 1e-3));
  }
}

TEST(FixedCodebooks, IntAsymmetricImprovesOnMinMaxGrid) {
  for (int bits : {1, 2, 3, 4, 8}) {
    for_each_case([&](const Data& d, const float* h) {
      SCOPED_TRACE(bits);
      const size_t n = d.w.size();
      const auto r = quantize_int(d.w.data(), h, n, bits, false, 100);
      expect_well_formed(r, n, true);
      EXPECT_LE(r.codebook.size(), size_t{1} << bits);
      for (size_t t = 1; t < r.objective_history.size(); ++t) {
        EXPECT_LE(r.objective_history[t], r.objective_history[t - 1]);
      }
      const double ours = objective(d.w, h, r.codebook, r.indices);
      // Oracle: the plain min/max affine grid with nearest rounding.
      const auto [mn, mx] = std::minmax_element(d.w.begin(), d.w.end());
      std::vector<double> grid;
      const int64_t m = (int64_t{1} << bits) - 1;
      for (int64_t q = 0; q <= m; ++q) grid.push_back(*mn + (double(*mx) - *mn) * q / double(m));
      EXPECT_LE(ours, nearest_objective(d.w, h, grid) * (1 + 1e-6) + 1e-9);
      if (n > 1 && r.scale > 0) {  // levels are q·s + z, and every weight sits at its nearest grid level
        std::vector<double> full;
        for (int64_t q = 0; q <= m; ++q) full.push_back(q * r.scale + r.offset);
        EXPECT_NEAR(ours, nearest_objective(d.w, h, full), 1e-5 * ours + 1e-9);
      }
    });
  }
}

TEST(FixedCodebooks, IntConstantInputIsExact) {
  const std::vector<float> w(7, -1.25f);
  const auto a = quantize_int(w.data(), nullptr, 7, 4, false, 10);
  EXPECT_EQ(a.codebook, std::vector<float>{-1.25f});
  const auto s = quantize_int(w.data(), nullptr, 7, 4, true, 10);
  EXPECT_NEAR(objective(w, nullptr, s.codebook, s.indices), 0.0, 1e-9);
}

}  // namespace
}  // namespace nq::quant
