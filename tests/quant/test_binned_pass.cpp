// The binned ECSQ pass (binned_pass.h) against op (a), the fused pass whose labels are the brute-force fp64
// argmin: the same counts (so the same labels, barring exact ties), sums equal to rounding, on seeded data of
// awkward sizes, with zero importances, without importances, and on codebooks made to defeat the certificate.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "quant/binned_pass.h"
#include "quant/quant_ops.h"

namespace nq::quant {
namespace {

struct Data {
  std::vector<float> w, h;
};

Data heavy_tailed(size_t n, uint64_t seed, double zero_fraction) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 2.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Data d;
  for (size_t i = 0; i < n; ++i) {
    d.w.push_back(static_cast<float>(0.05 * t(rng)));
    d.h.push_back(u(rng) < zero_fraction ? 0.0f : static_cast<float>(g(rng) + 1e-6));
  }
  return d;
}

// Centres spread over the values' range with a peaked code-length profile, as an ECSQ iteration has them.
void codebook(int k, std::vector<double>& c, std::vector<double>& l) {
  c.resize(static_cast<size_t>(k));
  l.resize(static_cast<size_t>(k));
  for (int j = 0; j < k; ++j) {
    c[j] = k == 1 ? 0.01 : -0.2 + 0.4 * j / (k - 1);
    l[j] = 1.0 + 0.3 * std::abs(j - k / 2);
  }
}

// Compares the binned pass with op (a) on the same codebook; returns how many values went one by one.
size_t expect_same_as_fused(const Data& d, bool weighted, const std::vector<double>& c, const std::vector<double>& l,
                            double lambda, size_t bins) {
  const size_t n = d.w.size();
  const int k = static_cast<int>(c.size());
  const float* h = weighted ? d.h.data() : nullptr;
  AssignAccum want, got;
  cpu::assign_accumulate(d.w.data(), h, n, c.data(), l.data(), k, lambda, nullptr, want);
  const BinnedValues binned(d.w.data(), h, n, bins);
  EXPECT_EQ(binned.size(), n);
  size_t ones = 0;
  binned.assign_accumulate(c.data(), l.data(), k, lambda, got, &ones);
  // Rounding scales: the magnitudes of the terms summed (a cluster's Σw may cancel far below them).
  double total_h = 0, total_hw = 0, total_w = 0;
  for (size_t i = 0; i < n; ++i) {
    const double hi = h ? h[i] : 1.0;
    total_h += hi;
    total_hw += hi * std::fabs(d.w[i]);
    total_w += std::fabs(d.w[i]);
  }
  for (int j = 0; j < k; ++j) {
    EXPECT_EQ(got.count[j], want.count[j]) << "cluster " << j;
    EXPECT_NEAR(got.sum_h[j], want.sum_h[j], 1e-10 * total_h + 1e-300) << "cluster " << j;
    EXPECT_NEAR(got.sum_hw[j], want.sum_hw[j], 1e-10 * total_hw + 1e-300) << "cluster " << j;
    EXPECT_NEAR(got.sum_w[j], want.sum_w[j], 1e-10 * total_w + 1e-300) << "cluster " << j;
  }
  EXPECT_NEAR(got.distortion, want.distortion, 1e-9 * want.distortion + 1e-300);
  EXPECT_NEAR(got.sq_error, want.sq_error, 1e-9 * want.sq_error + 1e-300);
  EXPECT_NEAR(got.cost, want.cost, 1e-9 * want.cost + 1e-300);
  EXPECT_LE(ones, n);
  return ones;
}

TEST(BinnedPass, EqualsTheFusedPassOnAwkwardSizes) {
  for (const size_t n : {size_t{1}, size_t{3}, size_t{31}, size_t{257}, size_t{4099}, size_t{100003}}) {
    const Data d = heavy_tailed(n, 7 + n, 0.05);
    for (const int k : {1, 2, 16, 256}) {
      std::vector<double> c, l;
      codebook(k, c, l);
      for (const double lambda : {0.0, 1e-5, 1e-3}) {
        for (const bool weighted : {true, false}) {
          for (const size_t bins : {size_t{0}, size_t{1}, size_t{7}, size_t{64}}) {
            SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k << " lambda=" << lambda
                                            << " weighted=" << weighted << " bins=" << bins);
            expect_same_as_fused(d, weighted, c, l, lambda, bins);
          }
        }
      }
    }
  }
}

// The point of the pass: on heavy-tailed weights with their importances, few values are labelled one by one.
TEST(BinnedPass, LabelsFewValuesOneByOne) {
  const Data d = heavy_tailed(200003, 11, 0.0);
  std::vector<double> c, l;
  codebook(32, c, l);
  for (const double lambda : {0.0, 1e-5, 1e-4}) {
    const size_t ones = expect_same_as_fused(d, true, c, l, lambda, 64);
    EXPECT_LT(ones, d.w.size() / 10) << "lambda=" << lambda;
  }
}

// Codebooks the certificate cannot vouch for: centres one ulp apart with equal code lengths (every value near
// them nearly ties), values equal to centres and to each other, and a dead cluster (infinite code length: the
// pass is then op (a) over every value, in place).
TEST(BinnedPass, NearTiesAndDeadClusters) {
  Data d = heavy_tailed(20011, 13, 0.1);
  const std::vector<double> c = {-0.1, -0.02, 0.0, std::nextafter(0.0, 1.0), 0.015, std::nextafter(0.015f, 1.0f), 0.3};
  const std::vector<double> l = {3.0, 2.0, 1.5, 1.5, 2.0, 2.0, 4.0};
  for (size_t i = 0; i < d.w.size(); i += 5) d.w[i] = static_cast<float>(c[i % c.size()]);  // on the centres
  for (size_t i = 1; i < d.w.size(); i += 7) d.w[i] = 0.015f;                                // many equal values
  for (const double lambda : {0.0, 1e-6, 1e-4}) {
    SCOPED_TRACE(lambda);
    expect_same_as_fused(d, true, c, l, lambda, 16);
    std::vector<double> dead = l;
    dead[4] = std::numeric_limits<double>::infinity();
    EXPECT_EQ(expect_same_as_fused(d, true, c, dead, lambda, 16), d.w.size());
  }
}

// Importances over the whole float range, denormals included: t = λ/h overflows to +inf in some bins and costs
// overflow in others; the certificate must refuse what it cannot vouch for, and the result stay op (a)'s.
TEST(BinnedPass, ExtremeImportances) {
  Data d = heavy_tailed(30011, 19, 0.02);
  std::mt19937_64 rng(23);
  std::uniform_real_distribution<double> e(-44.0, 37.0);
  for (float& v : d.h)
    if (v > 0) v = static_cast<float>(std::pow(10.0, e(rng)));
  d.h[5] = std::numeric_limits<float>::denorm_min();
  d.h[6] = std::numeric_limits<float>::max();
  std::vector<double> c, l;
  codebook(16, c, l);
  for (const double lambda : {0.0, 1e-6, 1e3})
    for (const size_t bins : {size_t{0}, size_t{16}, size_t{64}, size_t{1000} /* more than the 256 allowed */}) {
      SCOPED_TRACE(testing::Message() << "lambda=" << lambda << " bins=" << bins);
      expect_same_as_fused(d, true, c, l, lambda, bins);
    }
}

// Code lengths that fall away from the middle, the outermost cluster free (l = 0): at λ > 0 a far cluster can
// beat a near one, so the certificate's outward scan may stop only where its bound (the least code length from
// there outwards) says so.
TEST(BinnedPass, FarClustersWithShortCodes) {
  const Data d = heavy_tailed(50021, 29, 0.01);
  std::vector<double> c, l;
  codebook(16, c, l);
  for (int j = 0; j < 16; ++j) l[j] = 4.0 - 0.4 * std::abs(j - 8);
  l[0] = 0.0;
  for (const double lambda : {1e-6, 1e-4, 1e-3})
    for (const size_t bins : {size_t{0}, size_t{16}}) {
      SCOPED_TRACE(testing::Message() << "lambda=" << lambda << " bins=" << bins);
      expect_same_as_fused(d, true, c, l, lambda, bins);
    }
}

// The set-up runs in fixed chunks and the pass in fixed bins: the same bits for any thread count, with zero
// importances mixed in (their group is gathered in parallel too) and a sample of mostly zeros for the bin edges.
TEST(BinnedPass, SameBitsForAnyThreadCount) {
  for (const double zeros : {0.02, 0.97}) {
    const Data d = heavy_tailed(300007, 31, zeros);
    std::vector<double> c, l;
    codebook(32, c, l);
    const int saved = omp_get_max_threads();
    AssignAccum r[2];
    size_t bins[2];
    for (int t = 0; t < 2; ++t) {
      omp_set_num_threads(t == 0 ? 1 : 3);
      const BinnedValues binned(d.w.data(), d.h.data(), d.w.size(), 16);
      binned.assign_accumulate(c.data(), l.data(), 32, 1e-5, r[t]);
      bins[t] = binned.bins();
    }
    omp_set_num_threads(saved);
    EXPECT_EQ(bins[0], bins[1]);
    EXPECT_GT(bins[0], 8u) << "zeros=" << zeros;
    EXPECT_EQ(r[0].count, r[1].count);
    EXPECT_EQ(std::memcmp(r[0].sum_hw.data(), r[1].sum_hw.data(), sizeof(double) * 32), 0) << "zeros=" << zeros;
    EXPECT_EQ(std::memcmp(r[0].sum_w.data(), r[1].sum_w.data(), sizeof(double) * 32), 0) << "zeros=" << zeros;
    EXPECT_EQ(std::memcmp(&r[0].cost, &r[1].cost, sizeof(double)), 0) << "zeros=" << zeros;
    EXPECT_EQ(std::memcmp(&r[0].sq_error, &r[1].sq_error, sizeof(double)), 0) << "zeros=" << zeros;
    expect_same_as_fused(d, true, c, l, 1e-5, 16);
  }
}

// Built from op (b1)'s sorted copy (a stable scatter into the bins, no sort of its own), the object is the one built
// from the values alone: the same layout bit for bit and the same pass sums, on values with many exact ties and
// ±0 (where only stability fixes the order), with and without importances and zeros among them.
TEST(BinnedPass, FromASortedCopyIsTheSameObject) {
  for (const size_t n : {size_t{70001}, size_t{300007}}) {
    for (const double zeros : {0.0, 0.3, 1.0}) {
      Data d = heavy_tailed(n, 41 + n, zeros);
      for (size_t i = 0; i < n; i += 3) d.w[i] = std::round(d.w[i] * 200.0f) / 200.0f;  // ties, and ±0
      for (size_t i = 1; i < n; i += 7) d.w[i] = (i % 2) ? -0.0f : 0.0f;
      for (size_t i = 2; i < n; i += 5) d.h[i] = d.h[i - 1];  // equal importances across bin edges
      for (const bool weighted : {true, false}) {
        const float* h = weighted ? d.h.data() : nullptr;
        std::vector<float> ws(n), hs(n);
        cpu::sort_pairs(d.w.data(), h, n, ws.data(), hs.data());
        for (const size_t bins : {size_t{0}, size_t{7}, size_t{16}}) {
          SCOPED_TRACE("n=" + std::to_string(n) + " zeros=" + std::to_string(zeros) +
                       " weighted=" + std::to_string(weighted) + " bins=" + std::to_string(bins));
          const BinnedValues own(d.w.data(), h, n, bins);
          const BinnedValues scattered(d.w.data(), h, n, bins, SortedView{ws.data(), hs.data()});
          ASSERT_EQ(own.bins(), scattered.bins());
          ASSERT_EQ(own.size(), scattered.size());
          ASSERT_EQ(own.values().size(), scattered.values().size());
          EXPECT_EQ(std::memcmp(own.values().data(), scattered.values().data(), sizeof(float) * own.values().size()), 0);
          EXPECT_EQ(std::memcmp(own.importances().data(), scattered.importances().data(),
                                sizeof(float) * own.importances().size()),
                    0);
          std::vector<double> c, l;
          for (const int k : {3, 32}) {
            codebook(k, c, l);
            for (const double lambda : {0.0, 1e-4}) {
              AssignAccum a, b;
              own.assign_accumulate(c.data(), l.data(), k, lambda, a);
              scattered.assign_accumulate(c.data(), l.data(), k, lambda, b);
              EXPECT_EQ(a.count, b.count);
              EXPECT_EQ(std::memcmp(a.sum_h.data(), b.sum_h.data(), sizeof(double) * k), 0);
              EXPECT_EQ(std::memcmp(a.sum_hw.data(), b.sum_hw.data(), sizeof(double) * k), 0);
              EXPECT_EQ(std::memcmp(a.sum_w.data(), b.sum_w.data(), sizeof(double) * k), 0);
              EXPECT_EQ(std::memcmp(&a.cost, &b.cost, sizeof(double)), 0);
              EXPECT_EQ(std::memcmp(&a.sq_error, &b.sq_error, sizeof(double)), 0);
            }
          }
        }
      }
    }
  }
}

// Values of importance 0 cost λ·l_j wherever they lie, so the clusters of the least rate tie for them, and each
// goes to the nearest of those: at λ = 0 every live cluster, at λ > 0 those of equal code lengths (ECSQ's first
// pass has them all equal). The pass must hand them to op (a) then, and take them all at once when one cluster has
// the least rate. Checked against op (a) and against a brute-force nearest tied centre.
TEST(BinnedPass, ZeroImportancesTakeTheNearestOfTheTiedClusters) {
  const Data d = heavy_tailed(100003, 23, 0.2);
  const int k = 24;
  std::vector<double> c, peaked;
  codebook(k, c, peaked);
  std::vector<double> flat(k, std::log2(k)), two_least = peaked;
  two_least[3] = two_least[k / 2];  // ties with the shortest code, far from it
  for (const double lambda : {0.0, 1e-5, 1e-3}) {
    for (const auto* l : {&flat, &two_least, &peaked}) {
      SCOPED_TRACE(testing::Message() << "lambda=" << lambda << " codes=" << (l == &flat ? "flat" : l == &peaked ?
                                                                              "peaked" : "two least"));
      const size_t ones = expect_same_as_fused(d, true, c, *l, lambda, 16);
      // Which centres tie for a value of importance 0, and where the nearest of them takes each such value.
      std::vector<int> tied;
      for (int j = 0; j < k; ++j)
        if (lambda * (*l)[j] == lambda * *std::min_element(l->begin(), l->end())) tied.push_back(j);
      std::vector<int64_t> count(k, 0);
      size_t zeros = 0;
      for (size_t i = 0; i < d.w.size(); ++i) {
        if (d.h[i] != 0.0f) continue;
        ++zeros;
        int best = tied[0];
        for (const int j : tied)
          if (std::fabs(d.w[i] - c[j]) < std::fabs(d.w[i] - c[best])) best = j;
        ++count[best];
      }
      // Of importance 0 only: the pass's counts must hold these (the rest of a count is of positive importance).
      std::vector<int32_t> labels(d.w.size());
      AssignAccum all;
      cpu::assign_accumulate(d.w.data(), d.h.data(), d.w.size(), c.data(), l->data(), k, lambda, labels.data(), all);
      std::vector<int64_t> got(k, 0);
      for (size_t i = 0; i < d.w.size(); ++i)
        if (d.h[i] == 0.0f) ++got[labels[i]];
      EXPECT_EQ(got, count);
      // One tied cluster takes them at once: op (a) gets only values of positive importance (fewer than these).
      if (tied.size() == 1) EXPECT_LT(ones, zeros);
      else EXPECT_GE(ones, zeros);
    }
  }
}

TEST(BinnedPass, AllImportancesZero) {
  Data d = heavy_tailed(1001, 17, 1.0);
  std::vector<double> c, l;
  codebook(16, c, l);
  for (const double lambda : {0.0, 1e-4}) expect_same_as_fused(d, true, c, l, lambda, 0);
}

}  // namespace
}  // namespace nq::quant
