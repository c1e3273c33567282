// Backend parity of the quantizer ops (quant_ops.h) in the spirit of ggml's test-backend-ops: every op × odd sizes
// × k × λ on the CUDA backend against the CPU backend as the oracle — identical labels except exact cost ties,
// objective within 1e-6 relative, sentinels around device outputs, and GPU run-to-run bitwise determinism.
// Skips itself without a device (GTEST_SKIP); NQ_CUDA_PARITY_QUICK=1 trims the sizes (compute-sanitizer runs).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda/cuda_test_support.h"
#include "netquant/backend.h"
#include "netquant/error.h"
#include "netquant/quantize.h"
#include "nn/nn_ops.h"
#include "quant/binned_pass.h"
#include "quant/nearest_thresholds.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/prune_cases.h"
#include "quant/rows_kmeans_cases.h"
#if NQ_HAVE_CUDA
#include "assign_accumulate.cuh"
#endif

namespace nq::quant {
namespace {

using test::cuda_quick;
bool quick() { return cuda_quick(); }

std::vector<size_t> sizes() {
  if (quick()) return {1, 3, 31, 33, 257, 4099};
  return {1, 3, 31, 32, 33, 255, 256, 257, 4099, 1000003};
}

// Heavy-tailed weights (Student t, 3 dof) and positive importances with a few exact zeros; never all-zero.
struct Data {
  std::vector<float> w, h;
};
Data make_data(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 1.0);
  Data d;
  d.w.resize(n);
  d.h.resize(n);
  for (size_t i = 0; i < n; ++i) {
    d.w[i] = static_cast<float>(0.05 * t(rng));
    d.h[i] = (rng() % 97 == 0) ? 0.0f : static_cast<float>(g(rng));
  }
  return d;
}

// k strictly ascending centres over the data's range, code lengths from random probabilities (λ > 0 runs mark
// every 7th cluster dead), plus weights placed exactly on centres and midpoints to exercise ties.
struct Codebook {
  std::vector<double> c, l;
};
Codebook make_codebook(Data& d, int k, bool with_dead, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Codebook cb;
  cb.c.resize(k);
  cb.l.resize(k);
  std::vector<float> s = d.w;
  std::sort(s.begin(), s.end());
  for (int j = 0; j < k; ++j) {
    const size_t q = s.size() > 1 ? static_cast<size_t>((j + 0.5) / k * (s.size() - 1)) : 0;
    cb.c[j] = static_cast<double>(s[q]) + 1e-7 * j;
  }
  std::sort(cb.c.begin(), cb.c.end());
  for (int j = 1; j < k; ++j)
    if (!(cb.c[j] > cb.c[j - 1])) cb.c[j] = std::nextafter(cb.c[j - 1], 1.0) + 1e-6;
  std::uniform_real_distribution<double> u(0.05, 1.0);
  std::vector<double> p(k);
  double tot = 0;
  for (double& v : p) tot += (v = u(rng));
  for (int j = 0; j < k; ++j) cb.l[j] = (with_dead && j % 7 == 3) ? infinity() : -std::log2(p[j] / tot);
  for (size_t j = 0; j + 1 < static_cast<size_t>(k) && 2 * j + 1 < d.w.size() && j < 16; ++j) {
    d.w[2 * j] = static_cast<float>(cb.c[j]);
    d.w[2 * j + 1] = static_cast<float>(0.5 * (cb.c[j] + cb.c[j + 1]));
  }
  return cb;
}

double rel_diff(double a, double b, double scale) {
  return std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), scale, 1e-300});
}

// λ on the scale of the mean distortion per weight, so the rate term moves labels.
double lambda_for(const Data& d) {
  double m = 0, v = 0;
  for (float x : d.w) m += x;
  m /= static_cast<double>(d.w.size());
  for (float x : d.w) v += (x - m) * (x - m);
  return 0.05 * v / static_cast<double>(d.w.size()) + 1e-6;
}

void expect_same_labels(const Data& d, const Codebook& cb, double lambda, const std::vector<int32_t>& a,
                        const std::vector<int32_t>& b, size_t* ties) {
  *ties = 0;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    const double ca = assign_cost(d.w[i], d.h[i], cb.c[a[i]], cb.l[a[i]], lambda);
    const double cc = assign_cost(d.w[i], d.h[i], cb.c[b[i]], cb.l[b[i]], lambda);
    if (ca == cc) ++*ties;
    else if (bad++ < 5) ADD_FAILURE() << "label mismatch at " << i << ": cpu " << a[i] << " cuda " << b[i];
  }
  EXPECT_EQ(bad, 0u);
}

// The CPU op's sums (the oracle) against the device's: the scalars within `scalar_tol` relative, each cluster's
// sums within 1e-9 of that sum's total magnitude over the clusters, and the counts equal unless labels tied.
void expect_sums_close(const AssignAccum& ca, const AssignAccum& ga, int k, size_t ties, double scalar_tol) {
  const double scale = std::max(1e-300, std::fabs(ca.cost));
  EXPECT_LE(rel_diff(ca.cost, ga.cost, 0), scalar_tol);
  EXPECT_LE(rel_diff(ca.distortion, ga.distortion, 1e-12 * scale), scalar_tol);
  EXPECT_LE(rel_diff(ca.sq_error, ga.sq_error, 0), scalar_tol);
  double h_scale = 0, hw_scale = 0, w_scale = 0;
  for (int j = 0; j < k; ++j) {
    h_scale += std::fabs(ca.sum_h[j]);
    hw_scale += std::fabs(ca.sum_hw[j]);
    w_scale += std::fabs(ca.sum_w[j]);
  }
  for (int j = 0; j < k; ++j) {
    if (ties == 0) {
      EXPECT_EQ(ca.count[j], ga.count[j]) << "cluster " << j;
    }
    EXPECT_LE(std::fabs(ca.sum_h[j] - ga.sum_h[j]), 1e-9 * h_scale + 1e-300) << j;
    EXPECT_LE(std::fabs(ca.sum_hw[j] - ga.sum_hw[j]), 1e-9 * hw_scale + 1e-300) << j;
    EXPECT_LE(std::fabs(ca.sum_w[j] - ga.sum_w[j]), 1e-9 * w_scale + 1e-300) << j;
  }
}

// The CPU op and the device op on the same data, the device's labels written between host sentinels (32 each side)
// that must survive; labels equal except exact ties, sums within the ties' effect and scalar_tol.
void expect_guarded_run_matches_cpu(const Data& d, const float* h, size_t n, const Codebook& cb, double lambda,
                                    double scalar_tol, AssignAccum& ca, AssignAccum& ga) {
  const int k = static_cast<int>(cb.c.size());
  const int32_t kGuard = 0x5a5a5a5a;
  std::vector<int32_t> cpu_l(n), gpu_buf(n + 64, kGuard);
  cpu::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, cpu_l.data(), ca);
  cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, gpu_buf.data() + 32, ga);
  for (size_t g = 0; g < 32; ++g) {
    EXPECT_EQ(gpu_buf[g], kGuard) << "before the labels, " << 32 - g;
    EXPECT_EQ(gpu_buf[n + 32 + g], kGuard) << "after the labels, " << g;
  }
  const std::vector<int32_t> gpu_l(gpu_buf.begin() + 32, gpu_buf.begin() + 32 + static_cast<std::ptrdiff_t>(n));
  size_t ties = 0;
  expect_same_labels(d, cb, lambda, cpu_l, gpu_l, &ties);
  expect_sums_close(ca, ga, k, ties, scalar_tol);
}

// Two passes that must agree bit for bit (run to run, or a batched path against op (a) alone).
void expect_same_accum_bits(const AssignAccum& a, const AssignAccum& b) {
  ASSERT_EQ(a.sum_h.size(), b.sum_h.size());
  const size_t k = a.sum_h.size();
  EXPECT_EQ(std::memcmp(a.sum_h.data(), b.sum_h.data(), sizeof(double) * k), 0);
  EXPECT_EQ(std::memcmp(a.sum_hw.data(), b.sum_hw.data(), sizeof(double) * k), 0);
  EXPECT_EQ(std::memcmp(a.sum_w.data(), b.sum_w.data(), sizeof(double) * k), 0);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(std::memcmp(&a.distortion, &b.distortion, sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(&a.sq_error, &b.sq_error, sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(&a.cost, &b.cost, sizeof(double)), 0);
}

// expect_same_accum_bits as a predicate, for threads that report back instead of asserting.
bool same_accum_bits(const AssignAccum& a, const AssignAccum& b) {
  const size_t k = a.sum_h.size();
  return b.sum_h.size() == k && b.sum_hw.size() == k && b.sum_w.size() == k &&
         std::memcmp(a.sum_h.data(), b.sum_h.data(), sizeof(double) * k) == 0 &&
         std::memcmp(a.sum_hw.data(), b.sum_hw.data(), sizeof(double) * k) == 0 &&
         std::memcmp(a.sum_w.data(), b.sum_w.data(), sizeof(double) * k) == 0 && a.count == b.count &&
         std::memcmp(&a.distortion, &b.distortion, sizeof(double)) == 0 &&
         std::memcmp(&a.sq_error, &b.sq_error, sizeof(double)) == 0 &&
         std::memcmp(&a.cost, &b.cost, sizeof(double)) == 0;
}

// The fused op on both backends: identical labels except exact cost ties, total cost within cost_tol relative.
void expect_cuda_assign_matches_cpu(const Data& d, const Codebook& cb, int k, double lambda, double cost_tol) {
  const size_t n = d.w.size();
  std::vector<int32_t> lc(n), lg(n);
  AssignAccum ca, ga;
  cpu::assign_accumulate(d.w.data(), d.h.data(), n, cb.c.data(), cb.l.data(), k, lambda, lc.data(), ca);
  cuda::assign_accumulate(d.w.data(), d.h.data(), n, cb.c.data(), cb.l.data(), k, lambda, lg.data(), ga);
  size_t ties = 0;
  expect_same_labels(d, cb, lambda, lc, lg, &ties);
  EXPECT_LE(rel_diff(ca.cost, ga.cost, 0), cost_tol);
}

TEST(CudaQuantParity, AssignAccumulateMatchesCpu) {
  NQ_REQUIRE_CUDA();
  for (size_t n : sizes())
    for (int k : {2, 16, 256})
      for (bool rate : {false, true})
        for (bool unit_h : {false, true}) {
          if (unit_h && n > 5000) continue;
          SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k << " rate=" << rate << " unit_h=" << unit_h);
          Data d = make_data(n, 1000 * n + k);
          if (unit_h) std::fill(d.h.begin(), d.h.end(), 1.0f);
          const Codebook cb = make_codebook(d, k, rate, 17 + k);
          const double lambda = rate ? lambda_for(d) : 0.0;
          const float* h = unit_h ? nullptr : d.h.data();
          AssignAccum ca, ga;
          expect_guarded_run_matches_cpu(d, h, n, cb, lambda, 1e-6, ca, ga);
          // Labels not requested: the same pass, so every field the same bits.
          AssignAccum gb;
          cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, nullptr, gb);
          expect_same_accum_bits(ga, gb);
        }
}

TEST(CudaQuantParity, UnweightedPassesOverSeveralBlocksMatchCpu) {
  NQ_REQUIRE_CUDA();
  // h == nullptr over several accumulation blocks (one CTA each, their partials folded in block order) against the
  // CPU op: AssignAccumulateMatchesCpu's unweighted cases fit in one block. Unweighted, a cluster's Σh is its count,
  // exactly, on both backends.
  std::vector<size_t> ns = {3 * accum_block_size(1) + 5};
  if (!quick()) ns.push_back(1000003);
  for (const size_t n : ns)
    for (const int k : {2, 16, 256, 1000})
      for (const bool rate : {false, true}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k << " rate=" << rate);
        ASSERT_GE((n + accum_block_size(n) - 1) / accum_block_size(n), 3u);
        Data d = make_data(n, 77 * n + static_cast<uint64_t>(k));
        std::fill(d.h.begin(), d.h.end(), 1.0f);  // what the label check's costs use
        const Codebook cb = make_codebook(d, k, rate, 29 + k);
        const double lambda = rate ? lambda_for(d) : 0.0;
        AssignAccum ca, ga;
        expect_guarded_run_matches_cpu(d, nullptr, n, cb, lambda, 1e-9, ca, ga);
        int64_t members = 0;
        for (int j = 0; j < k; ++j) {
          EXPECT_EQ(ga.sum_h[j], static_cast<double>(ga.count[j])) << "cluster " << j;
          EXPECT_EQ(ca.sum_h[j], static_cast<double>(ca.count[j])) << "cluster " << j;
          members += ga.count[j];
        }
        EXPECT_EQ(members, static_cast<int64_t>(n));
      }
}

TEST(CudaQuantParity, AssignAccumulateExactOnNearCoincidentCentres) {
  NQ_REQUIRE_CUDA();
  // Centres one ulp apart (ECSQ merges only equal means; warm starts can be anything) with values far from
  // them: w − c rounds to the same double for both, which once sent the GPU's nearest search to a far centre.
  std::mt19937_64 rng(21);
  for (int trial = 0; trial < 20; ++trial) {
    const int k = 4 + trial % 13;
    const size_t n = 20011;
    Data d = make_data(n, 500 + trial);
    Codebook cb;
    std::uniform_real_distribution<double> u(-0.2, 0.2);
    while (static_cast<int>(cb.c.size()) < k) {
      const double v = u(rng);
      cb.c.push_back(v);
      if (static_cast<int>(cb.c.size()) < k && rng() % 2) cb.c.push_back(std::nextafter(v, 1.0));
    }
    std::sort(cb.c.begin(), cb.c.end());
    cb.c.erase(std::unique(cb.c.begin(), cb.c.end()), cb.c.end());
    const int kk = static_cast<int>(cb.c.size());
    cb.l.assign(kk, 0.0);
    for (int j = 0; j < kk; ++j) cb.l[j] = (j % 5 == 2 && trial % 2) ? infinity() : 1.0 + 0.5 * (j % 3);
    for (const double lambda : {0.0, lambda_for(d)}) {
      Codebook run = cb;  // λ = 0: every cluster live (the k-means rule); λ > 0 keeps the rates and dead ones
      if (lambda == 0.0) std::fill(run.l.begin(), run.l.end(), 0.0);
      SCOPED_TRACE(testing::Message() << "trial " << trial << " lambda " << lambda);
      expect_cuda_assign_matches_cpu(d, run, kk, lambda, 1e-9);
    }
  }
}

TEST(CudaQuantParity, AssignAccumulateIsBitwiseDeterministic) {
  NQ_REQUIRE_CUDA();
  const size_t n = quick() ? 100003 : 3000017;
  for (int k : {16, 256}) {
    Data d = make_data(n, 99 + k);
    const Codebook cb = make_codebook(d, k, true, 5);
    const double lambda = lambda_for(d);
    AssignAccum a, b;
    std::vector<int32_t> la(n), lb(n);
    cuda::assign_accumulate(d.w.data(), d.h.data(), n, cb.c.data(), cb.l.data(), k, lambda, la.data(), a);
    cuda::assign_accumulate(d.w.data(), d.h.data(), n, cb.c.data(), cb.l.data(), k, lambda, lb.data(), b);
    EXPECT_EQ(la, lb);
    expect_same_accum_bits(a, b);
  }
}

TEST(CudaQuantParity, AssignAccumulateLargeKUsesFallbackShapes) {
  NQ_REQUIRE_CUDA();
  // k large enough that the per-warp shared accumulators shrink, and beyond (global accumulators).
  for (int k : {1000, 5000}) {
    const size_t n = 40009;
    Data d = make_data(n, 3 + k);
    const Codebook cb = make_codebook(d, k, true, 11);
    expect_cuda_assign_matches_cpu(d, cb, k, lambda_for(d), 1e-6);
  }
}

#if NQ_HAVE_CUDA
// Sets the process's fused-pass strategy for its lifetime, then puts the previous one back.
struct FusedStrategyScope {
  cuda::FusedStrategy old = cuda::fused_strategy();
  explicit FusedStrategyScope(cuda::FusedStrategy s) { cuda::set_fused_strategy(s); }
  ~FusedStrategyScope() { cuda::set_fused_strategy(old); }
};

// Values where the λ = 0 threshold labels must hand over to the fp64 argmin, planted at the front of d: each
// midpoint's nearest floats and their neighbours (the floors), the centres themselves, importances of 0, a
// subnormal, FLT_MIN, FLT_MAX and 1e30, and values far above the centres (beyond safe_max when gaps are tiny).
void plant_threshold_edges(Data& d, const Codebook& cb) {
  size_t at = 0;
  auto put = [&](float w, float h) {
    if (at < d.w.size()) d.w[at] = w, d.h[at] = h, ++at;
  };
  const float hs[] = {0.0f, 1e-40f, FLT_MIN, 0.7f, FLT_MAX, 1e30f};
  for (size_t j = 0; j + 1 < cb.c.size(); ++j) {
    const float mid = static_cast<float>(0.5 * (cb.c[j] + cb.c[j + 1]));
    float x = mid;
    for (int u = 0; u < 3; ++u) x = std::nextafter(x, -INFINITY);
    for (int u = 0; u < 7; ++u, x = std::nextafter(x, INFINITY)) put(x, hs[(j + u) % 6]);
    put(static_cast<float>(cb.c[j]), hs[j % 6]);
  }
  for (float far : {1.0f, 1e3f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX}) put(far, 0.5f);
}

// Importances under which a value just above a threshold goes to the lower centre (a rounding tie, so the lower
// index), for the codebooks that test_nearest_thresholds.cpp found by search: the floors' case. Plants the floats
// t_1 − 2 ulps … t_1 + 6 ulps with each importance, from index `from`.
const std::vector<std::vector<double>>& searched_books() {
  static const std::vector<std::vector<double>> books = {{-0x1.a17d39dae252dp-5, 0x1.a17d39eb6c7ep-5},
                                                         {-0x1.a97b7fc379141p-11, 0x1.a97b7ed3f975p-11},
                                                         {-0x1.8994eaa9f9c9bp-3, 0x1.8994eaa1af5a8p-3}};
  return books;
}
void plant_unsettled_threshold(Data& d, const Codebook& cb, size_t from) {
  const float hs[] = {FLT_MIN, 0.37f, 1.0f, 3.1f, 1e30f, FLT_MAX, 0x1.8147aep+1f, 0x1.733334p-9f, 0x1.b47aep+13f};
  float x = quant::NearestThresholds(cb.c).thresholds()[0];
  for (int s = 0; s < 2; ++s) x = std::nextafter(x, -INFINITY);
  size_t at = from;
  for (int s = 0; s < 9; ++s, x = std::nextafter(x, INFINITY))
    for (const float h : hs)
      if (at < d.w.size()) d.w[at] = x, d.h[at] = h, ++at;
}

// Two passes' sums, given the labels: counts equal, and each cluster's Σh, Σhw, Σw and each scalar within `tol` of
// the magnitude of the terms it adds (Σ|h|, Σ|h·w|, Σ|w| over the members). The planted values put ±1e30 and
// ±FLT_MAX among small ones: sums that cancel, which any order of addition leaves differently rounded.
void expect_sums_within_terms(const Data& d, const float* h, const std::vector<int32_t>& labels, int k,
                              const AssignAccum& a, const AssignAccum& b, double tol) {
  std::vector<double> mh(k), mhw(k), mw(k);
  for (size_t i = 0; i < labels.size(); ++i) {
    const double hi = h ? h[i] : 1.0, wi = d.w[i];
    mh[labels[i]] += std::fabs(hi);
    mhw[labels[i]] += std::fabs(hi * wi);
    mw[labels[i]] += std::fabs(wi);
  }
  EXPECT_EQ(a.count, b.count);
  for (int j = 0; j < k; ++j) {
    EXPECT_LE(std::fabs(a.sum_h[j] - b.sum_h[j]), tol * mh[j]) << "cluster " << j;
    EXPECT_LE(std::fabs(a.sum_hw[j] - b.sum_hw[j]), tol * mhw[j]) << "cluster " << j;
    EXPECT_LE(std::fabs(a.sum_w[j] - b.sum_w[j]), tol * mw[j]) << "cluster " << j;
  }
  EXPECT_LE(rel_diff(a.cost, b.cost, 0), tol);
  EXPECT_LE(rel_diff(a.sq_error, b.sq_error, 0), tol);
}

// The fused pass in each of its forms on the same data: the default (per-thread accumulators up to k = 32, λ = 0
// labels by thresholds) against the CPU op; with and without threshold labels (labels and every sum the same
// bits); per-thread against per-warp accumulators (labels and counts equal, sums as close as two orders of
// addition allow).
TEST(CudaQuantParity, FusedPassFormsAgree) {
  NQ_REQUIRE_CUDA();
  std::vector<size_t> ns = {4099, 100003};
  if (!quick()) ns.push_back(1000003);
  const cuda::FusedStrategy kDefault{true, true, 0}, kNoThresholds{true, false, 0}, kGrouped{false, false, 0};
  for (const size_t n : ns)
    for (const int k : {2, 5, 16, 32, 33})
      for (const bool rate : {false, true})
        for (const bool weighted : {true, false})
          for (const int book : {0, 1, 2, 3, 4}) {  // data quantiles; gaps of 1e-12; searched_books()
            if (book > 0 && (rate || k > 16)) continue;
            if (book > 1 && k != 2) continue;
            SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k << " rate=" << rate << " weighted="
                                            << weighted << " book=" << book);
            Data d = make_data(n, 7 * n + static_cast<uint64_t>(k) + 1000 * static_cast<uint64_t>(book));
            Codebook cb = make_codebook(d, k, rate, 41 + k);
            if (book == 1)  // centres 1e-12 apart around 0.01: safe_max ≈ 0.01 + 1e-12·2^45 ≈ 35
              for (int j = 0; j < k; ++j) cb.c[j] = 0.01 + 1e-12 * j;
            if (book > 1) cb.c = searched_books()[static_cast<size_t>(book - 2)];
            plant_threshold_edges(d, cb);
            if (book > 1) plant_unsettled_threshold(d, cb, 2000);
            if (!weighted) std::fill(d.h.begin(), d.h.end(), 1.0f);
            const double lambda = rate ? lambda_for(d) : 0.0;
            const float* h = weighted ? d.h.data() : nullptr;
            AssignAccum ca, g_default, g_plain, g_grouped;
            std::vector<int32_t> l_cpu(n), l_default(n), l_plain(n), l_grouped(n);
            cpu::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, l_cpu.data(), ca);
            {
              const FusedStrategyScope s(kDefault);
              cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, l_default.data(),
                                      g_default);
              AssignAccum again;
              cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, nullptr, again);
              expect_same_accum_bits(g_default, again);
            }
            size_t ties = 0;
            expect_same_labels(d, cb, lambda, l_cpu, l_default, &ties);
            expect_sums_within_terms(d, h, l_cpu, k, ca, g_default, 1e-10);
            if (!weighted)  // every h is 1: Σhw is Σw and Σh the count, to the bit (the per-thread form folds them so)
              for (int j = 0; j < k; ++j) {
                EXPECT_EQ(std::memcmp(&g_default.sum_hw[j], &g_default.sum_w[j], sizeof(double)), 0) << j;
                EXPECT_EQ(g_default.sum_h[j], static_cast<double>(g_default.count[j])) << j;
              }
            {
              const FusedStrategyScope s(kNoThresholds);
              cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, l_plain.data(), g_plain);
            }
            EXPECT_EQ(l_default, l_plain);
            expect_same_accum_bits(g_default, g_plain);
            {
              const FusedStrategyScope s(kGrouped);
              cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, l_grouped.data(),
                                      g_grouped);
            }
            EXPECT_EQ(l_default, l_grouped);
            EXPECT_EQ(g_default.count, g_grouped.count);
            expect_sums_within_terms(d, h, l_default, k, g_grouped, g_default, 1e-10);
            for (const int warps : {1, 5}) {  // the per-thread form in other CTA sizes (a benchmark's knob)
              AssignAccum g_sized;
              std::vector<int32_t> l_sized(n);
              {
                const FusedStrategyScope s({true, true, warps});
                cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, l_sized.data(),
                                        g_sized);
              }
              EXPECT_EQ(l_default, l_sized) << warps << " warps";
              expect_sums_within_terms(d, h, l_default, k, g_sized, g_default, 1e-10);
            }
          }
}
#endif

// Switches the binned pass off for its lifetime (op (d) then passes with op (a) at every size), and back on.
struct BinnedPassOff {
  BinnedPassOff() { set_binned_pass_enabled(false); }
  ~BinnedPassOff() { set_binned_pass_enabled(true); }
};

TEST(CudaQuantParity, ResidentValuesEqualTheHostOpPassAfterPass) {
  NQ_REQUIRE_CUDA();
  // The resident object (uploaded once, labels kept on the device) against the copying host entry: the same
  // kernel on the same data, so sums and labels must agree bit for bit, pass after pass. (With the binned pass
  // off: ResidentValuesBinnedPassAgreesWithTheCpu tests it.)
  const BinnedPassOff off;
  for (size_t n : {size_t{1}, size_t{4099}, size_t{1000003}}) {
    Data d = make_data(n, 31 * n);
    // make_codebook places tie values into d.w, so every codebook is made before the data is uploaded: the
    // resident copy and the copying entry must see the same values.
    const std::vector<int> ks = {2, 16, 256};
    std::vector<Codebook> books;
    for (int k : ks) books.push_back(make_codebook(d, k, k == 16, 7 * k));
    for (bool unit_h : {false, true}) {
      const float* h = unit_h ? nullptr : d.h.data();
      const std::unique_ptr<ResidentValues> values = cuda::make_resident_values(d.w.data(), h, n);
      EXPECT_TRUE(values->take_labels().empty());
      std::vector<int32_t> host_labels(n);
      for (size_t b = 0; b < ks.size(); ++b) {
        const int k = ks[b];
        const Codebook& cb = books[b];
        const double lambda = k == 2 ? 0.0 : lambda_for(d);
        AssignAccum r, o;
        values->assign_accumulate(cb.c.data(), cb.l.data(), k, lambda, r);
        cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, host_labels.data(), o);
        EXPECT_EQ(std::memcmp(r.sum_h.data(), o.sum_h.data(), sizeof(double) * k), 0) << "n=" << n << " k=" << k;
        EXPECT_EQ(std::memcmp(r.sum_hw.data(), o.sum_hw.data(), sizeof(double) * k), 0);
        EXPECT_EQ(r.count, o.count);
        EXPECT_EQ(std::memcmp(&r.cost, &o.cost, sizeof(double)), 0);
      }
      EXPECT_EQ(values->take_labels(), host_labels) << "n=" << n;  // the latest pass (k = 256)
    }
  }
}

TEST(CudaQuantParity, ResidentValuesBinnedPassAgreesWithTheCpu) {
  NQ_REQUIRE_CUDA();
  // From kBinnedMinValues values each pass is the binned pass: the host plans it (BinnedValues::plan), the device
  // gathers the values left from its copy of the binned layout and runs op (a) over them. Two oracles:
  // - the CPU's op (a) on all values: the same counts (both are the fp64 argmin with its tie rules), sums to
  //   rounding, and labels asked for afterwards equal to the CPU's for the latest codebook;
  // - the same split done here by hand (the host plan, the copying device op (a) over the gathered values, finish):
  //   the same bits, pass after pass. A plan that leaves most values, or a codebook with a dead cluster (which
  //   cannot be certified), is a whole pass, whose bits are the copying op (a)'s over all values.
  for (size_t n : {kBinnedMinValues + 3, size_t{1000003}}) {
    if (quick() && n > kBinnedMinValues + 3) continue;
    Data d = make_data(n, 43 * n);
    const std::vector<int> ks = {2, 16, 256};
    std::vector<Codebook> books;
    for (int k : ks) books.push_back(make_codebook(d, k, false, 5 * k));
    books.push_back(make_codebook(d, 16, true, 99));  // with dead clusters
    for (bool unit_h : {false, true}) {
      const float* h = unit_h ? nullptr : d.h.data();
      const std::unique_ptr<ResidentValues> values = cuda::make_resident_values(d.w.data(), h, n);
      const BinnedValues binned(d.w.data(), h, n);
      std::vector<int32_t> cpu_labels(n);
      for (size_t b = 0; b < books.size(); ++b) {
        const Codebook& cb = books[b];
        const int k = static_cast<int>(cb.c.size());
        const bool dead = b + 1 == books.size();
        SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k << " unit_h=" << unit_h << " dead=" << dead);
        const double lambda = k == 2 ? 0.0 : lambda_for(d);
        AssignAccum got, again, cpu, want;
        values->assign_accumulate(cb.c.data(), cb.l.data(), k, lambda, got);
        values->assign_accumulate(cb.c.data(), cb.l.data(), k, lambda, again);
        cpu::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, cpu_labels.data(), cpu);
        expect_sums_close(cpu, got, k, /*ties=*/0, 1e-9);
        const BinnedPlan plan = binned.plan(cb.c.data(), cb.l.data(), k, lambda);
        // A dead cluster defeats the certificate; at k = 256 on these few bins most values lie in the zones
        // between cells, more than half, and a whole pass is cheaper; with k ≤ 16 the split is taken.
        if (dead) {
          EXPECT_TRUE(plan.whole);
        } else if (k <= 16) {
          EXPECT_FALSE(plan.whole);
        }
        if (plan.whole) {
          cuda::assign_accumulate(d.w.data(), h, n, cb.c.data(), cb.l.data(), k, lambda, nullptr, want);
        } else {
          std::vector<float> lw, lh;
          for (const auto& [a, e] : plan.left) {
            lw.insert(lw.end(), binned.values().begin() + a, binned.values().begin() + e);
            lh.insert(lh.end(), binned.importances().begin() + a, binned.importances().begin() + e);
          }
          EXPECT_EQ(lw.size(), plan.left_values);
          EXPECT_LT(lw.size(), n);
          AssignAccum rest;
          cuda::assign_accumulate(lw.data(), lh.data(), lw.size(), cb.c.data(), cb.l.data(), k, lambda, nullptr, rest);
          BinnedValues::finish(plan, rest, want);
        }
        for (const AssignAccum* x : {&got, &again}) {
          EXPECT_EQ(std::memcmp(x->sum_h.data(), want.sum_h.data(), sizeof(double) * k), 0);
          EXPECT_EQ(std::memcmp(x->sum_hw.data(), want.sum_hw.data(), sizeof(double) * k), 0);
          EXPECT_EQ(std::memcmp(x->sum_w.data(), want.sum_w.data(), sizeof(double) * k), 0);
          EXPECT_EQ(x->count, want.count);
          EXPECT_EQ(std::memcmp(&x->distortion, &want.distortion, sizeof(double)), 0);
          EXPECT_EQ(std::memcmp(&x->sq_error, &want.sq_error, sizeof(double)), 0);
          EXPECT_EQ(std::memcmp(&x->cost, &want.cost, sizeof(double)), 0);
        }
        if (b == 1) {  // labels are made on request, for the latest single pass
          EXPECT_EQ(values->take_labels(), cpu_labels);
          EXPECT_TRUE(values->take_labels().empty());
          EXPECT_EQ(values->labels_for(cb.c.data(), cb.l.data(), k, lambda), cpu_labels);  // without its pass
          EXPECT_TRUE(values->take_labels().empty());
        }
      }
      EXPECT_EQ(values->take_labels(), cpu_labels);  // the dead-cluster codebook's, the latest
    }
  }
}

TEST(CudaQuantParity, MultiCodebookPassEqualsSinglePassesBitForBit) {
  NQ_REQUIRE_CUDA();
  // (d') on the device: codebooks batched into one launch (same shape), split across launches (different shapes:
  // k = 3000 leaves its table in global memory), more than one launch's worth (20 > 16); each codebook's sums
  // must be the single pass's bits, and the latest labels must survive.
  for (size_t n : {size_t{1}, size_t{33}, size_t{4099}, size_t{1000003}}) {
    if (quick() && n > 5000) continue;
    Data d = make_data(n, 17 * n);
    std::vector<Codebook> cbs;
    CodebookBatch books;
    for (int m = 0; m < 20; ++m) {  // (make_codebook moves a few values onto centres: upload after)
      const int k = m == 5 ? 3000 : (m % 3 == 0 ? 2 : m % 3 == 1 ? 16 : 256);
      cbs.push_back(make_codebook(d, k, m % 2 == 1, 100 + m));
      books.add(cbs.back().c.data(), cbs.back().l.data(), k, m % 4 == 0 ? 0.0 : lambda_for(d) * (1 + m));
    }
    const std::unique_ptr<ResidentValues> values = cuda::make_resident_values(d.w.data(), d.h.data(), n);
    AssignAccum first;
    values->assign_accumulate(cbs[1].c.data(), cbs[1].l.data(), 16, books.lambda[1], first);
    std::vector<int32_t> labels(n);
    AssignAccum tmp;
    cuda::assign_accumulate(d.w.data(), d.h.data(), n, cbs[1].c.data(), cbs[1].l.data(), 16, books.lambda[1],
                            labels.data(), tmp);
    std::vector<AssignAccum> multi;
    values->assign_accumulate_multi(books, multi);
    ASSERT_EQ(multi.size(), 20u);
    for (int m = 0; m < 20; ++m) {
      AssignAccum one;
      values->assign_accumulate(cbs[m].c.data(), cbs[m].l.data(), books.k(m), books.lambda[m], one);
      SCOPED_TRACE(testing::Message() << "n=" << n << " codebook " << m);
      const size_t k = static_cast<size_t>(books.k(m));
      EXPECT_EQ(std::memcmp(multi[m].sum_h.data(), one.sum_h.data(), sizeof(double) * k), 0);
      EXPECT_EQ(std::memcmp(multi[m].sum_hw.data(), one.sum_hw.data(), sizeof(double) * k), 0);
      EXPECT_EQ(std::memcmp(multi[m].sum_w.data(), one.sum_w.data(), sizeof(double) * k), 0);
      EXPECT_EQ(multi[m].count, one.count);
      EXPECT_EQ(std::memcmp(&multi[m].distortion, &one.distortion, sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(&multi[m].cost, &one.cost, sizeof(double)), 0);
    }
    // The multi call wrote no labels: after the loop the latest single pass is codebook 19's, so redo codebook 1.
    values->assign_accumulate(cbs[1].c.data(), cbs[1].l.data(), 16, books.lambda[1], first);
    values->assign_accumulate_multi(books, multi);
    EXPECT_EQ(values->take_labels(), labels);
  }
}

TEST(CudaQuantParity, QuantizeLambdasOnTheDeviceEqualsQuantizePerLambda) {
  NQ_REQUIRE_CUDA();
  const size_t n = quick() ? 20011 : 1000003;
  const Data d = make_data(n, 99);
  QuantizeParams q;
  q.method = Method::kEcsq;
  q.k = 32;
  q.max_iter = 40;
  q.backend = Backend::kCuda;
  const double base = lambda_for(d);
  const std::vector<double> lambdas = {0.0, base * 0.1, base, base * 10, base * 1000};
  const std::vector<QuantizeResult> all = nq::quantize_lambdas(d.w.data(), d.h.data(), n, q, lambdas);
  for (size_t m = 0; m < lambdas.size(); ++m) {
    QuantizeParams one = q;
    one.lambda = lambdas[m];
    const QuantizeResult r = nq::quantize(d.w.data(), d.h.data(), n, one);
    SCOPED_TRACE(testing::Message() << "lambda " << lambdas[m]);
    EXPECT_EQ(all[m].backend, Backend::kCuda);
    EXPECT_EQ(all[m].codebook, r.codebook);
    EXPECT_EQ(all[m].indices, r.indices);
    EXPECT_EQ(all[m].iterations, r.iterations);
    EXPECT_EQ(std::memcmp(&all[m].hw_distortion, &r.hw_distortion, sizeof(double)), 0);
  }
}

// Op (f): many rows resident together. A tensor of rows of awkward lengths (empty, shorter than one quad of four,
// several accumulation blocks), some rows with all-zero importances (flagged unweighted, as the row driver does),
// tasks that repeat rows under codebooks of every launch shape (k = 3000 keeps its table in global memory), λ = 0
// and > 0, dead clusters, in shuffled order.
struct RowsProblem {
  std::vector<Data> row;                 // each row's values (h = 1 where the row runs unweighted), for the oracles
  std::vector<float> w, h;               // the rows back to back
  std::vector<int64_t> begin{0};
  std::vector<uint8_t> weighted;
  std::vector<int64_t> tasks;            // row of each task
  std::vector<Codebook> cbs;             // codebook of each task
  CodebookBatch books;
  size_t labels_total = 0;               // Σ len(rows[i])
  size_t len(int64_t r) const { return static_cast<size_t>(begin[r + 1] - begin[r]); }
};

// mode 0: per-row flags; 1: weighted == nullptr (every row uses h, zero rows included); 2: h == nullptr.
RowsProblem make_rows_problem(int mode, uint64_t seed) {
  const std::vector<size_t> lengths = quick() ? std::vector<size_t>{0, 1, 33, 4099, 16385}
                                              : std::vector<size_t>{0, 1, 3, 31, 32, 33, 255, 257, 4099, 16385, 40000};
  const std::vector<int> ks = quick() ? std::vector<int>{1, 16, 3000} : std::vector<int>{1, 2, 16, 256, 3000};
  RowsProblem p;
  std::mt19937_64 rng(seed);
  for (size_t r = 0; r < lengths.size(); ++r) {
    Data d = make_data(lengths[r], seed + 31 * r);
    if (d.w.size() >= 2) make_codebook(d, 16, false, seed + r);  // values on centres and midpoints: ties
    const bool zero_h = r % 4 == 2;
    if (zero_h) std::fill(d.h.begin(), d.h.end(), 0.0f);
    p.weighted.push_back(zero_h ? 0 : 1);
    p.w.insert(p.w.end(), d.w.begin(), d.w.end());
    p.h.insert(p.h.end(), d.h.begin(), d.h.end());
    p.begin.push_back(static_cast<int64_t>(p.w.size()));
    const bool uses_h = mode == 1 || (mode == 0 && !zero_h);
    if (!uses_h) std::fill(d.h.begin(), d.h.end(), 1.0f);
    p.row.push_back(std::move(d));
  }
  Data all;
  all.w = p.w;
  const double lam = lambda_for(all);
  std::vector<std::pair<int64_t, std::pair<int, double>>> tasks;
  for (size_t r = 0; r < lengths.size(); ++r)
    for (int k : ks)
      for (int rate = 0; rate < 2; ++rate)
        tasks.push_back({static_cast<int64_t>(r), {k, rate ? lam * static_cast<double>(1 + r % 3) : 0.0}});
  for (int extra = 0; extra < 8; ++extra) tasks.push_back(tasks[rng() % tasks.size()]);  // the same task twice
  std::shuffle(tasks.begin(), tasks.end(), rng);
  for (size_t i = 0; i < tasks.size(); ++i) {
    const int64_t r = tasks[i].first;
    const int k = tasks[i].second.first;
    Data src = p.row[static_cast<size_t>(r)].w.size() >= 2 ? p.row[static_cast<size_t>(r)] : make_data(64, seed + i);
    p.cbs.push_back(make_codebook(src, k, i % 2 == 0, seed + 7 * i));  // (on a copy: the rows stay as uploaded)
    p.books.add(p.cbs.back().c.data(), p.cbs.back().l.data(), k, tasks[i].second.second);
    p.tasks.push_back(r);
    p.labels_total += p.len(r);
  }
  return p;
}

std::unique_ptr<ResidentRows> make_rows_object(const RowsProblem& p, int mode) {
  const int64_t rows = static_cast<int64_t>(p.row.size());
  return cuda::make_resident_rows(p.w.data(), mode == 2 ? nullptr : p.h.data(), p.begin.data(), rows,
                                  mode == 0 ? p.weighted.data() : nullptr);
}

// pass(labels) writing `total` labels, with host sentinels around them; returns the labels.
template <class Pass>
std::vector<int32_t> guarded_labels(size_t total, Pass&& pass) {
  const int32_t kGuard = 0x5a5a5a5a;
  std::vector<int32_t> buf(total + 64, kGuard);
  pass(buf.data() + 32);
  for (size_t g = 0; g < 32; ++g) {
    EXPECT_EQ(buf[g], kGuard);
    EXPECT_EQ(buf[total + 32 + g], kGuard);
  }
  return std::vector<int32_t>(buf.begin() + 32, buf.begin() + 32 + static_cast<std::ptrdiff_t>(total));
}

// One pass of the object over the problem's tasks and codebooks; returns the labels.
std::vector<int32_t> rows_pass(ResidentRows& obj, const RowsProblem& p, std::vector<AssignAccum>& out) {
  return guarded_labels(p.labels_total,
                        [&](int32_t* labels) { obj.assign_accumulate(p.tasks.data(), p.books, labels, out); });
}

// The row as op (a) sees it: h, or nullptr where the row runs unweighted.
const float* row_h(const RowsProblem& p, int64_t r, int mode) {
  const bool uses_h = mode == 1 || (mode == 0 && p.weighted[static_cast<size_t>(r)]);
  return uses_h ? p.h.data() + p.begin[r] : nullptr;
}

// Walks a pass's tasks: check(i, r, n, k, lambda, task_labels) for each, task_labels being its part of `labels`.
template <class Check>
void for_each_task(const RowsProblem& p, const std::vector<int32_t>& labels, Check&& check) {
  size_t at = 0;
  for (size_t i = 0; i < p.tasks.size(); ++i) {
    const int64_t r = p.tasks[i];
    const size_t n = p.len(r);
    const int k = p.books.k(static_cast<int>(i));
    const double lambda = p.books.lambda[i];
    SCOPED_TRACE(testing::Message() << "task " << i << " row " << r << " n=" << n << " k=" << k
                                    << " lambda=" << lambda);
    check(i, r, n, k, lambda,
          std::vector<int32_t>(labels.begin() + static_cast<std::ptrdiff_t>(at),
                               labels.begin() + static_cast<std::ptrdiff_t>(at + n)));
    at += n;
  }
}

TEST(CudaQuantParity, ResidentRowsEqualTheSingleRowOpBitForBit) {
  NQ_REQUIRE_CUDA();
  for (int mode = 0; mode < (quick() ? 1 : 3); ++mode) {
    SCOPED_TRACE(testing::Message() << "mode " << mode);
    const RowsProblem p = make_rows_problem(mode, 40 + mode);
    const std::unique_ptr<ResidentRows> obj = make_rows_object(p, mode);
    std::vector<AssignAccum> out, bare;
    const std::vector<int32_t> labels = rows_pass(*obj, p, out);
    ASSERT_EQ(out.size(), p.tasks.size());
    for_each_task(p, labels, [&](size_t i, int64_t r, size_t n, int k, double lambda, const std::vector<int32_t>& got) {
      AssignAccum want;
      std::vector<int32_t> want_labels(n);
      cuda::assign_accumulate(p.w.data() + p.begin[r], row_h(p, r, mode), n, p.cbs[i].c.data(), p.cbs[i].l.data(), k,
                              lambda, want_labels.data(), want);
      expect_same_accum_bits(out[i], want);
      EXPECT_EQ(want_labels, got);
    });
    // Without labels: the same sums.
    obj->assign_accumulate(p.tasks.data(), p.books, nullptr, bare);
    ASSERT_EQ(bare.size(), out.size());
    for (size_t i = 0; i < out.size(); ++i) expect_same_accum_bits(bare[i], out[i]);
  }
}

TEST(CudaQuantParity, ResidentRowsAreBitwiseDeterministic) {
  NQ_REQUIRE_CUDA();
  const RowsProblem p = make_rows_problem(0, 77);
  const std::unique_ptr<ResidentRows> obj = make_rows_object(p, 0);
  std::vector<AssignAccum> a, b;
  const std::vector<int32_t> la = rows_pass(*obj, p, a);
  const std::vector<int32_t> lb = rows_pass(*obj, p, b);
  EXPECT_EQ(la, lb);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(testing::Message() << "task " << i);
    expect_same_accum_bits(a[i], b[i]);
  }
  // A second object over the same rows: the same bits too.
  std::vector<AssignAccum> c;
  const std::vector<int32_t> lc = rows_pass(*make_rows_object(p, 0), p, c);
  EXPECT_EQ(la, lc);
  for (size_t i = 0; i < a.size(); ++i) expect_same_accum_bits(a[i], c[i]);
}

TEST(CudaQuantParity, ResidentRowsMatchTheCpuOpPerRow) {
  NQ_REQUIRE_CUDA();
  for (int mode = 0; mode < (quick() ? 1 : 3); ++mode) {
    SCOPED_TRACE(testing::Message() << "mode " << mode);
    const RowsProblem p = make_rows_problem(mode, 90 + mode);
    std::vector<AssignAccum> out;
    const std::vector<int32_t> labels = rows_pass(*make_rows_object(p, mode), p, out);
    ASSERT_EQ(out.size(), p.tasks.size());
    for_each_task(p, labels, [&](size_t i, int64_t r, size_t n, int k, double lambda, const std::vector<int32_t>& got) {
      AssignAccum ca;
      std::vector<int32_t> cl(n);
      cpu::assign_accumulate(p.w.data() + p.begin[r], row_h(p, r, mode), n, p.cbs[i].c.data(), p.cbs[i].l.data(), k,
                             lambda, cl.data(), ca);
      size_t ties = 0;
      expect_same_labels(p.row[static_cast<size_t>(r)], p.cbs[i], lambda, cl, got, &ties);
      expect_sums_close(ca, out[i], k, ties, 1e-9);
    });
  }
}

// One codebook shared by every task (the sharded driver's blocks; its table built and uploaded once): the same
// bits and labels as the batch holding that codebook once per task, with and without labels; and its checks.
TEST(CudaQuantParity, ResidentRowsSharedCodebookEqualsTheRepeatedBatch) {
  NQ_REQUIRE_CUDA();
  for (int mode = 0; mode < (quick() ? 1 : 3); ++mode) {
    SCOPED_TRACE(testing::Message() << "mode " << mode);
    RowsProblem p = make_rows_problem(mode, 60 + mode);
    const std::unique_ptr<ResidentRows> obj = make_rows_object(p, mode);
    for (const size_t pick : {size_t{0}, p.cbs.size() / 2, p.cbs.size() - 1}) {
      const Codebook& cb = p.cbs[pick];
      const int k = static_cast<int>(cb.c.size());
      for (const double lambda : {0.0, p.books.lambda[pick] > 0 ? p.books.lambda[pick] : 1e-4}) {
        SCOPED_TRACE(testing::Message() << "codebook " << pick << " k=" << k << " lambda=" << lambda);
        CodebookBatch repeated;
        for (size_t i = 0; i < p.tasks.size(); ++i) repeated.add(cb.c.data(), cb.l.data(), k, lambda);
        std::swap(p.books, repeated);
        std::vector<AssignAccum> want, got, bare;
        const std::vector<int32_t> want_labels = rows_pass(*obj, p, want);
        std::swap(p.books, repeated);
        const std::vector<int32_t> got_labels = guarded_labels(p.labels_total, [&](int32_t* labels) {
          obj->assign_accumulate_shared(p.tasks.data(), p.tasks.size(), cb.c.data(), cb.l.data(), k, lambda, labels,
                                        got);
        });
        EXPECT_EQ(got_labels, want_labels);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) expect_same_accum_bits(got[i], want[i]);
        obj->assign_accumulate_shared(p.tasks.data(), p.tasks.size(), cb.c.data(), cb.l.data(), k, lambda, nullptr,
                                      bare);
        ASSERT_EQ(bare.size(), want.size());
        for (size_t i = 0; i < bare.size(); ++i) expect_same_accum_bits(bare[i], want[i]);
      }
    }
  }
  const RowsProblem p = make_rows_problem(0, 6);
  const std::unique_ptr<ResidentRows> obj = make_rows_object(p, 0);
  std::vector<AssignAccum> out;
  const std::vector<double> desc = {0.5, 0.25}, lens = {1.0, 1.0};
  EXPECT_THROW(obj->assign_accumulate_shared(p.tasks.data(), 2, desc.data(), lens.data(), 2, 0.0, nullptr, out), Error);
  EXPECT_THROW(obj->assign_accumulate_shared(p.tasks.data(), 2, desc.data(), lens.data(), 0, 0.0, nullptr, out), Error);
  obj->assign_accumulate_shared(nullptr, 0, p.cbs[0].c.data(), p.cbs[0].l.data(), 1, 0.0, nullptr, out);
  EXPECT_TRUE(out.empty());
}

TEST(CudaQuantParity, ResidentRowsEdgeCasesAndBadTasks) {
  NQ_REQUIRE_CUDA();
  const RowsProblem p = make_rows_problem(0, 5);
  const std::unique_ptr<ResidentRows> obj = make_rows_object(p, 0);
  std::vector<AssignAccum> out(3);
  obj->assign_accumulate(nullptr, CodebookBatch{}, nullptr, out);  // no tasks
  EXPECT_TRUE(out.empty());
  // An empty row (row 0): op (a)'s n = 0 result, reset accumulators; its codebook is still checked.
  const int64_t empty_row = 0;
  ASSERT_EQ(p.len(empty_row), 0u);
  CodebookBatch one;
  one.add(p.cbs[0].c.data(), p.cbs[0].l.data(), static_cast<int>(p.cbs[0].c.size()), 0.5);
  int32_t guard = -9;
  obj->assign_accumulate(&empty_row, one, &guard, out);
  ASSERT_EQ(out.size(), 1u);
  AssignAccum zero;
  zero.reset(static_cast<int>(p.cbs[0].c.size()));
  expect_same_accum_bits(out[0], zero);
  EXPECT_EQ(guard, -9);
  const std::vector<double> desc = {0.5, 0.25}, lens = {1.0, 1.0};
  CodebookBatch bad;
  bad.add(desc.data(), lens.data(), 2, 0.0);
  EXPECT_THROW(obj->assign_accumulate(&empty_row, bad, nullptr, out), Error);
  // A task naming a row out of range.
  for (const int64_t row : {int64_t{-1}, static_cast<int64_t>(p.row.size())}) {
    try {
      obj->assign_accumulate(&row, one, nullptr, out);
      ADD_FAILURE() << "row " << row << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    }
  }
  // No rows at all.
  const int64_t begin0 = 0;
  const std::unique_ptr<ResidentRows> none = cuda::make_resident_rows(nullptr, nullptr, &begin0, 0, nullptr);
  none->assign_accumulate(nullptr, CodebookBatch{}, nullptr, out);
  EXPECT_TRUE(out.empty());
}

// Op (g): the device's radix selection against the CPU op's histogram cut (itself checked against brute force in
// tests/quant/test_select_pruned.cpp): identical masks, ties included.
TEST(CudaQuantParity, SelectPrunedEqualsTheCpuOp) {
  NQ_REQUIRE_CUDA();
  uint64_t seed = 5;
  // {7, 9001}: a tie-heavy array (prune_cases: a % 3 == 1) over three tiles of 4096, so threshold ties sit in
  // every tile and in every warp's lanes: a tile's tie count that loses some warps' adds (tile_ties_kernel's
  // shared counter reset after them) shifts every later tile's tie ranks. In the other quick shapes the
  // threshold's ties fall (almost) only in the last tile, whose count is never used.
  std::vector<std::vector<size_t>> shapes = {{1}, {5, 0, 3}, {4099, 33, 1000, 257}, {7, 9001}};
  if (!quick()) shapes.push_back({1000003, 4097, 65536});
  for (const auto& sizes : shapes)
    for (const bool weighted : {true, false}) {
      prune_cases::Model m = prune_cases::make_model(sizes, ++seed);
      const int64_t total = static_cast<int64_t>(m.total());
      for (const int64_t count : {int64_t{0}, int64_t{1}, total / 3, total / 2, total - 1, total}) {
        SCOPED_TRACE(testing::Message() << "total " << total << " count " << count << (weighted ? " weighted" : ""));
        cpu::select_pruned(m.arrays(weighted), count);
        const std::vector<std::vector<uint8_t>> want = m.mask;
        cuda::select_pruned(m.arrays(weighted), count);
        EXPECT_EQ(m.mask, want);
      }
    }
  // An importance of −0 scores +0 (the smallest key), not the −0 bit pattern (the largest).
  prune_cases::Model m;
  m.w = {{0.5f, 0.25f, 1.0f, 2.0f}};
  m.h = {{-0.0f, 1.0f, 1.0f, 1.0f}};
  cuda::select_pruned(m.arrays(true), 1);
  EXPECT_EQ(m.mask[0], (std::vector<uint8_t>{1, 0, 0, 0}));
}

TEST(CudaQuantParity, EcsqDriverOnTheDeviceMatchesTheCpuDriver) {
  NQ_REQUIRE_CUDA();
  // The whole ECSQ driver (iterations and the target-rate bisection over resident values) on each backend. The
  // fp64 sums may differ in their last bits between backends, so the runs agree to rounding, not bitwise.
  const size_t n = quick() ? 20011 : 400009;
  Data d = make_data(n, 4242);
  for (const bool target : {false, true}) {
    QuantizeParams q;
    q.method = Method::kEcsq;
    q.k = 32;
    q.max_iter = 30;
    if (target) q.target_bits = 2.5;
    else q.lambda = lambda_for(d);
    q.backend = Backend::kCpu;
    const QuantizeResult rc = nq::quantize(d.w.data(), d.h.data(), n, q);
    q.backend = Backend::kCuda;
    const QuantizeResult rg = nq::quantize(d.w.data(), d.h.data(), n, q);
    SCOPED_TRACE(target ? "target rate" : "fixed lambda");
    EXPECT_EQ(rg.backend, Backend::kCuda);
    EXPECT_EQ(rc.codebook.size(), rg.codebook.size());
    EXPECT_LE(rel_diff(rc.hw_distortion, rg.hw_distortion, 0), 1e-5);
    EXPECT_NEAR(rc.entropy_bits, rg.entropy_bits, 1e-4);
    EXPECT_NEAR(rc.lambda, rg.lambda, 1e-6 * rc.lambda + 1e-300);
    size_t differ = 0;
    for (size_t i = 0; i < n; ++i) differ += rc.indices[i] != rg.indices[i];
    EXPECT_LE(differ, n / 10000 + 2) << "indices differ beyond rounding";
  }
}

#if NQ_HAVE_CUDA
// A device array of the nn memory ops, freed on scope exit (an ASSERT may leave early).
template <class T>
struct DeviceArray {
  T* p;
  explicit DeviceArray(size_t count) : p(nn::cuda::buffer_alloc(static_cast<int64_t>(count), T{})) {}
  ~DeviceArray() { nn::cuda::buffer_free(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
};

TEST(CudaQuantParity, DeviceEntryWritesNoOutOfBoundsLabels) {
  NQ_REQUIRE_CUDA();
  // Labels written into a larger device array with sentinels on both sides, at two offsets: one element past a
  // 16-byte boundary (the scalar stores) and on it (int4 stores of whole quads, scalar stores for the tail quad),
  // for n of every residue mod 4, within one accumulation block and across several; k = 5000 takes the one-warp
  // shape (accumulators in global memory). Labels as the CPU's; the two offsets the same bits (the access width
  // changes no result).
  const int32_t kGuard = -777;
  const size_t g = 256;  // 1 KB of guard on either side; a multiple of 4 elements
  for (const size_t n : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{4098}, size_t{4099}, size_t{49154},
                         size_t{65537}, size_t{65539}})
    for (const int k : {16, 5000}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " k=" << k);
      Data d = make_data(n, 7 * n + static_cast<uint64_t>(k));
      const Codebook cb = make_codebook(d, k, false, 3);  // (moves values onto centres: upload after)
      const DeviceArray<float> dw(n), dh(n);
      const size_t total = n + 2 * g + 1;
      const DeviceArray<int32_t> dl(total);
      nn::cuda::buffer_upload(dw.p, d.w.data(), static_cast<int64_t>(n));
      nn::cuda::buffer_upload(dh.p, d.h.data(), static_cast<int64_t>(n));
      std::vector<int32_t> cpu_l(n);
      AssignAccum cacc;
      cpu::assign_accumulate(d.w.data(), d.h.data(), n, cb.c.data(), cb.l.data(), k, 0.0, cpu_l.data(), cacc);
      std::vector<int32_t> first_labels;
      AssignAccum first;
      for (const size_t offset : {g + 1, g}) {
        SCOPED_TRACE(offset == g ? "aligned (int4 stores)" : "misaligned (scalar stores)");
        int32_t* labels = dl.p + offset;
        if (offset == g) {  // the vector path needs w, h and labels on 16-byte boundaries
          ASSERT_EQ(reinterpret_cast<uintptr_t>(labels) % 16, 0u);
          ASSERT_EQ(reinterpret_cast<uintptr_t>(dw.p) % 16, 0u);
          ASSERT_EQ(reinterpret_cast<uintptr_t>(dh.p) % 16, 0u);
        }
        nn::cuda::buffer_fill(dl.p, static_cast<int64_t>(total), kGuard);
        AssignAccum acc;
        cuda::assign_accumulate_device(dw.p, dh.p, n, cb.c.data(), cb.l.data(), k, 0.0, labels, acc);
        std::vector<int32_t> host(total);
        nn::cuda::buffer_download(host.data(), dl.p, static_cast<int64_t>(total));
        for (size_t i = 0; i < offset; ++i) ASSERT_EQ(host[i], kGuard) << i;
        for (size_t i = offset + n; i < total; ++i) ASSERT_EQ(host[i], kGuard) << i;
        std::vector<int32_t> got(host.begin() + static_cast<std::ptrdiff_t>(offset),
                                 host.begin() + static_cast<std::ptrdiff_t>(offset + n));
        size_t ties = 0;
        expect_same_labels(d, cb, 0.0, cpu_l, got, &ties);
        expect_sums_close(cacc, acc, k, ties, 1e-9);
        if (first_labels.empty()) {
          first_labels = std::move(got);
          first = acc;
        } else {
          EXPECT_EQ(got, first_labels);
          expect_same_accum_bits(acc, first);
        }
      }
    }
}
#endif

TEST(CudaQuantParity, SortPairsMatchesCpuExactly) {
  NQ_REQUIRE_CUDA();
  for (size_t n : sizes()) {
    SCOPED_TRACE(n);
    Data d = make_data(n, 5 * n + 1);
    for (size_t i = 0; i < n; i += 5) d.w[i] = d.w[(i * 7) % n];  // duplicates: stability matters
    for (size_t i = 1; i < n; i += 11) d.w[i] = (i % 2) ? -0.0f : 0.0f;
    for (bool unit_h : {false, true}) {
      const float* h = unit_h ? nullptr : d.h.data();
      std::vector<float> cw(n), ch(n), gw(n + 2, 123.f), gh(n + 2, 123.f);
      cpu::sort_pairs(d.w.data(), h, n, cw.data(), ch.data());
      cuda::sort_pairs(d.w.data(), h, n, gw.data() + 1, gh.data() + 1);
      EXPECT_EQ(gw[0], 123.f);
      EXPECT_EQ(gw[n + 1], 123.f);
      EXPECT_EQ(gh[n + 1], 123.f);
      EXPECT_EQ(std::memcmp(cw.data(), gw.data() + 1, n * sizeof(float)), 0);  // bitwise: −0 before +0
      EXPECT_EQ(std::memcmp(ch.data(), gh.data() + 1, n * sizeof(float)), 0);  // stable: same h order
    }
  }
}

TEST(CudaQuantParity, PrefixSumsMatchCpuAndAreDeterministic) {
  NQ_REQUIRE_CUDA();
  for (size_t n : sizes())
    for (size_t block : {size_t{1}, size_t{7}, size_t{1000}, size_t{4096}}) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " block=" << block);
      Data d = make_data(n, n + block);
      std::vector<float> ws(n), hs(n);
      cpu::sort_pairs(d.w.data(), d.h.data(), n, ws.data(), hs.data());
      const double shift = n ? ws[n / 2] : 0.0;
      const size_t nb = (n + block - 1) / block;
      // Each output with its own sentinel after its nb + 1 entries.
      std::vector<double> c0(nb + 1), c1(nb + 1), c2(nb + 1), g0(nb + 2, 9.0), g1(nb + 2, 9.0), g2(nb + 2, 9.0),
          r0(nb + 1), r1(nb + 1), r2(nb + 1);
      cpu::prefix_sums(ws.data(), hs.data(), n, shift, block, c0.data(), c1.data(), c2.data());
      cuda::prefix_sums(ws.data(), hs.data(), n, shift, block, g0.data(), g1.data(), g2.data());
      cuda::prefix_sums(ws.data(), hs.data(), n, shift, block, r0.data(), r1.data(), r2.data());
      EXPECT_EQ(g0[nb + 1], 9.0);
      EXPECT_EQ(g1[nb + 1], 9.0);
      EXPECT_EQ(g2[nb + 1], 9.0);
      // The first entries are the empty sums, +0 exactly: on the device the three outputs share one allocation,
      // so a write one past ph's (phx's) end lands in phx[0] (phx2[0]).
      const double zero = 0.0;
      EXPECT_EQ(std::memcmp(&g0[0], &zero, sizeof zero), 0) << g0[0];
      EXPECT_EQ(std::memcmp(&g1[0], &zero, sizeof zero), 0) << g1[0];
      EXPECT_EQ(std::memcmp(&g2[0], &zero, sizeof zero), 0) << g2[0];
      double s0 = 0, s1 = 0, s2 = 0;
      for (size_t i = 0; i < n; ++i) {
        const double x = ws[i] - shift;
        s0 += hs[i];
        s1 += std::fabs(hs[i] * x);
        s2 += hs[i] * x * x;
      }
      for (size_t b = 0; b <= nb; ++b) {
        ASSERT_LE(std::fabs(c0[b] - g0[b]), 1e-12 * s0 + 1e-300) << b;
        ASSERT_LE(std::fabs(c1[b] - g1[b]), 1e-12 * s1 + 1e-300) << b;
        ASSERT_LE(std::fabs(c2[b] - g2[b]), 1e-12 * s2 + 1e-300) << b;
      }
      EXPECT_EQ(std::memcmp(g0.data(), r0.data(), (nb + 1) * sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(g1.data(), r1.data(), (nb + 1) * sizeof(double)), 0);
      EXPECT_EQ(std::memcmp(g2.data(), r2.data(), (nb + 1) * sizeof(double)), 0);
      // Short blocks are summed by one thread each in element order, as the CPU sums them, so the first prefix
      // (block 0's sums alone) has the CPU's bits; later prefixes add the blocks by a scan tree, not in order, and
      // agree to rounding only (PrefixSumsEqualTheCpuBitForBitOnExactData checks every entry's bits).
      if (block > 1 && block < 1024 && nb >= 1) {
        EXPECT_EQ(c0[1], g0[1]);
        EXPECT_EQ(c1[1], g1[1]);
        EXPECT_EQ(c2[1], g2[1]);
      }
    }
}

// Values on a 2^-10 grid in [-4, 4) and importances 0..7 (shift on the grid too): every term h, h·x, h·x² and
// every partial sum is exact in fp64 (|Σ h·x²| < 2^29 on a 2^-20 grid for n ≤ 2^20), so any order of additions
// gives the CPU's bits. So every entry, for short blocks (one thread each), long ones (a CTA tree each) and
// block = 1, weighted and not, must be the CPU's bits: a block boundary off by one, a value summed twice or
// dropped, or an entry written into its neighbour or another output shows exactly.
TEST(CudaQuantParity, PrefixSumsEqualTheCpuBitForBitOnExactData) {
  NQ_REQUIRE_CUDA();
  for (const size_t n : sizes())
    for (const size_t block : {size_t{1}, size_t{2}, size_t{7}, size_t{1000}, size_t{1023}, size_t{1024},
                               size_t{4096}})
      for (const bool weighted : {true, false}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " block=" << block << (weighted ? " weighted" : ""));
        ASSERT_LE(n, size_t{1} << 20);  // the exactness bound above
        std::mt19937_64 rng(3 * n + block);
        std::vector<float> w(n), h(n);
        for (size_t i = 0; i < n; ++i) {
          w[i] = static_cast<float>(static_cast<int>(rng() % 8192) - 4096) / 1024.0f;
          h[i] = static_cast<float>(rng() % 8);
        }
        if (n > 2) w[n / 3] = -0.0f;
        std::vector<float> ws(n), hs(n);
        cpu::sort_pairs(w.data(), weighted ? h.data() : nullptr, n, ws.data(), hs.data());
        const float* hp = weighted ? hs.data() : nullptr;
        const double shift = ws[n / 2];
        const size_t nb = (n + block - 1) / block;
        std::vector<double> c0(nb + 1), c1(nb + 1), c2(nb + 1), g0(nb + 2, 9.0), g1(nb + 2, 9.0), g2(nb + 2, 9.0);
        cpu::prefix_sums(ws.data(), hp, n, shift, block, c0.data(), c1.data(), c2.data());
        cuda::prefix_sums(ws.data(), hp, n, shift, block, g0.data(), g1.data(), g2.data());
        EXPECT_EQ(g0[nb + 1], 9.0);
        EXPECT_EQ(g1[nb + 1], 9.0);
        EXPECT_EQ(g2[nb + 1], 9.0);
        size_t bad = 0;
        for (size_t b = 0; b <= nb; ++b) {
          const bool same = std::memcmp(&c0[b], &g0[b], sizeof(double)) == 0 &&
                            std::memcmp(&c1[b], &g1[b], sizeof(double)) == 0 &&
                            std::memcmp(&c2[b], &g2[b], sizeof(double)) == 0;
          if (!same && bad++ < 5)
            ADD_FAILURE() << "entry " << b << " of " << nb << ": cpu (" << c0[b] << ", " << c1[b] << ", " << c2[b]
                          << ") cuda (" << g0[b] << ", " << g1[b] << ", " << g2[b] << ")";
        }
        EXPECT_EQ(bad, 0u);
      }
}

TEST(CudaQuantParity, LabelHistogramMatchesCpu) {
  NQ_REQUIRE_CUDA();
  for (size_t n : sizes())
    for (int k : {2, 16, 256, 20000}) {
      std::mt19937 rng(static_cast<uint32_t>(n + k));
      std::vector<int32_t> labels(n);
      for (auto& v : labels) v = static_cast<int32_t>(rng() % (k + 1)) - 1;  // −1: pruned, skipped
      std::vector<int64_t> c(k), g(k + 1, -5);
      cpu::label_histogram(labels.data(), n, k, c.data());
      cuda::label_histogram(labels.data(), n, k, g.data());
      EXPECT_EQ(g[k], -5);
      EXPECT_TRUE(std::equal(c.begin(), c.end(), g.begin())) << "n=" << n << " k=" << k;
    }
  std::vector<int32_t> bad = {0, 1, 2};
  std::vector<int64_t> counts(2);
  EXPECT_THROW(cuda::label_histogram(bad.data(), bad.size(), 2, counts.data()), Error);
}

// Op (e): the CUDA rows_kmeans runs row_lloyd.h's driver with a thread block as its team; the CPU op (itself
// checked against nq::quantize's driver in tests/quant/test_rows_kmeans.cpp) is the oracle, bit for bit.
void expect_rows_kmeans_matches_cpu(const rows_cases::RowsBatch& b) {
  SCOPED_TRACE(b.name);
  rows_cases::RowsResult want(b), got(b), again(b);
  cpu::rows_kmeans(b.job(), want.out());
  cuda::rows_kmeans(b.job(), got.out());
  EXPECT_EQ(got.center_count, want.center_count);
  EXPECT_EQ(got.iterations, want.iterations);
  EXPECT_EQ(got.converged, want.converged);
  // Bits, slots past each row's centres included (the sentinels must survive).
  ASSERT_EQ(std::memcmp(got.centers.data(), want.centers.data(), got.centers.size() * sizeof(double)), 0);
  ASSERT_EQ(got.labels, want.labels);
  cuda::rows_kmeans(b.job(), again.out());  // run to run
  EXPECT_EQ(std::memcmp(got.centers.data(), again.centers.data(), got.centers.size() * sizeof(double)), 0);
  EXPECT_EQ(got.labels, again.labels);
}

TEST(CudaQuantParity, RowsKmeansEqualsTheCpuOpBitForBit) {
  NQ_REQUIRE_CUDA();
  using row_lloyd::InitRule;
  const std::vector<int> lengths = quick() ? std::vector<int>{1, 3, 33, 257, 4099, 0}
                                           : std::vector<int>{1, 2, 3, 31, 32, 33, 255, 256, 257, 1000, 4099, 0, 4096,
                                                              17, 8192, 64, 1023, 1024, 1025, 2049};
  uint64_t seed = 11;
  for (const int k : {1, 2, 16, 256})
    for (const bool weighted : {true, false})
      for (const InitRule init : {InitRule::kLinear, InitRule::kQuantile})
        for (const bool warm : {false, true})
          expect_rows_kmeans_matches_cpu(rows_cases::make_batch(
              "k=" + std::to_string(k) + (weighted ? " weighted" : "") + " init=" +
                  std::to_string(static_cast<int>(init)) + (warm ? " warm" : ""),
              lengths, k, weighted, init, warm, ++seed));
  // exact: one thread per row, so a launch lasts as long as its longest row's DP (~k·n·log n steps on one thread;
  // a row of 20011 at k = 256 took tens of seconds). Rows past the Lloyd kernel's on-chip limit (8209 > 8192) with
  // k ≤ 16; k = 256 on rows of up to 2049 (still far more values than levels, so the DP runs).
  for (const int k : {1, 2, 16, 256})
    for (const bool weighted : {true, false}) {
      std::vector<int> exact_lengths;
      for (const int len : lengths)
        if (k < 256 || len <= 2049) exact_lengths.push_back(len);
      if (!quick() && k < 256) exact_lengths.push_back(8209);
      rows_cases::RowsBatch b = rows_cases::make_batch("exact k=" + std::to_string(k) + (weighted ? " weighted" : ""),
                                                       exact_lengths, k, weighted, InitRule::kLinear, false, ++seed);
      b.exact = true;
      expect_rows_kmeans_matches_cpu(b);
    }
  for (const int max_iter : {1, 3})
    for (const double tol : {0.0, 1e-2}) {
      rows_cases::RowsBatch b = rows_cases::make_batch("stops", lengths, 16, true, InitRule::kLinear, false, 5);
      b.max_iter = max_iter;
      b.tol = tol;
      expect_rows_kmeans_matches_cpu(b);
    }
}

// Op (e) on the device against nq::quantize's own driver, row by row (rows_kmeans_cases.h host_driver_row, the
// oracle tests/quant/test_rows_kmeans.cpp holds the CPU op to): the same centres, iteration counts, flags and labels,
// bit for bit, and the slots past each row's centres untouched.
void expect_rows_kmeans_matches_host_driver(const rows_cases::RowsBatch& b) {
  SCOPED_TRACE(b.name);
  rows_cases::RowsResult got(b);
  cuda::rows_kmeans(b.job(), got.out());
  const size_t k = static_cast<size_t>(b.k);
  for (int64_t r = 0; r < b.rows(); ++r) {
    SCOPED_TRACE(testing::Message() << "row " << r);
    const RawResult want = rows_cases::host_driver_row(b, r);
    const size_t ri = static_cast<size_t>(r), begin = static_cast<size_t>(b.row_begin[r]);
    ASSERT_EQ(got.center_count[ri], static_cast<int32_t>(want.centers.size()));
    if (!want.centers.empty()) {
      ASSERT_EQ(std::memcmp(got.centers.data() + ri * k, want.centers.data(), want.centers.size() * sizeof(double)), 0);
    }
    for (size_t j = want.centers.size(); j < k; ++j) ASSERT_EQ(got.centers[ri * k + j], -7.0) << "slot " << j;
    EXPECT_EQ(got.iterations[ri], want.iterations);
    EXPECT_EQ(got.converged[ri] != 0, want.converged);
    ASSERT_EQ(want.labels.size(), static_cast<size_t>(b.row_begin[r + 1]) - begin);
    for (size_t i = 0; i < want.labels.size(); ++i) ASSERT_EQ(got.labels[begin + i], want.labels[i]) << "value " << i;
  }
}

TEST(CudaQuantParity, RowsKmeansShortRowsTakeTheSmallKernels) {
  NQ_REQUIRE_CUDA();
  // The kernel (items per thread 4, 8, 16, 32: rows of up to 1024, 2048, 4096, 8192 values) is chosen by a batch's
  // longest row; the other batches' longest rows (4096 … 8192) only ever take the two largest. These take the two
  // smallest, right at and past their limits.
  using row_lloyd::InitRule;
  const std::vector<std::vector<int>> sets = {{1, 2, 3, 31, 32, 33, 255, 256, 257, 1000, 1024, 0},
                                              {17, 1025, 2048, 0}};
  const std::vector<int> ks = quick() ? std::vector<int>{2, 256} : std::vector<int>{1, 2, 16, 256};
  uint64_t seed = 700;
  for (const std::vector<int>& lengths : sets)
    for (const int k : ks)
      for (const bool weighted : {true, false})
        for (const InitRule init : {InitRule::kLinear, InitRule::kQuantile})
          for (const bool warm : {false, true}) {
            if (quick() && (weighted != warm || init != InitRule::kLinear)) continue;
            const rows_cases::RowsBatch b = rows_cases::make_batch(
                "short rows (longest " + std::to_string(*std::max_element(lengths.begin(), lengths.end())) +
                    ") k=" + std::to_string(k) + (weighted ? " weighted" : "") +
                    " init=" + std::to_string(static_cast<int>(init)) + (warm ? " warm" : ""),
                lengths, k, weighted, init, warm, ++seed);
            expect_rows_kmeans_matches_host_driver(b);
            expect_rows_kmeans_matches_cpu(b);
          }
}

TEST(CudaQuantParity, RowsKmeansNearCoincidentAndExtremeValues) {
  NQ_REQUIRE_CUDA();
  // tests/quant/test_rows_kmeans.cpp's extreme rows (values a few ulps apart at 1e-30 and 1e30, outliers at -3e38)
  // on the device: Lloyd under both init rules, and exact.
  for (const row_lloyd::InitRule init : {row_lloyd::InitRule::kLinear, row_lloyd::InitRule::kQuantile}) {
    const rows_cases::RowsBatch b = rows_cases::make_extremes_batch(init);
    expect_rows_kmeans_matches_host_driver(b);
    expect_rows_kmeans_matches_cpu(b);
  }
  rows_cases::RowsBatch b = rows_cases::make_extremes_batch(row_lloyd::InitRule::kLinear);
  b.name += " exact";
  b.exact = true;
  expect_rows_kmeans_matches_host_driver(b);
  expect_rows_kmeans_matches_cpu(b);
}

TEST(CudaQuantParity, RowsKmeansManyRowsAndItsLimits) {
  NQ_REQUIRE_CUDA();
  // Thousands of rows of 4096 (the SqueezeLLM shape), every sixth kind of row in turn.
  const std::vector<int> lengths(quick() ? 12 : 600, 4096);
  expect_rows_kmeans_matches_cpu(
      rows_cases::make_batch("many rows", lengths, 16, true, row_lloyd::InitRule::kLinear, false, 99));
  // Rows past the on-chip limit are refused, not truncated.
  rows_cases::RowsBatch big = rows_cases::make_batch("big", {8193}, 16, true, row_lloyd::InitRule::kLinear, false, 1);
  rows_cases::RowsResult res(big);
  try {
    cuda::rows_kmeans(big.job(), res.out());
    ADD_FAILURE() << "a row of 8193 values was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

// The kernels' opt-in dynamic shared memory size is one setting per kernel, shared by every host thread (quantize_model
// launches from OpenMP workers). Were each call to set it to its own size (kernels/assign_block.cuh set_smem once
// did), a thread could shrink it between another thread's setting and launch, and that launch would fail. Op (a)
// with k = 160, 600 and 256 takes 51, 58 and 78 KB (choose_shape: 8, 2 and 8 warps, each past the 48 KB default);
// four threads cycle through them at once, and every result must be the bits of the same call made alone (itself
// checked against the CPU). Then op (e) the same way: batches whose longest rows pick different kernels and sizes.
TEST(CudaQuantParity, ConcurrentHostThreadsGetTheSingleCallBits) {
  NQ_REQUIRE_CUDA();
  const int threads = 4;
  const std::vector<int> ks = {160, 600, 256};
  const size_t n = 40009;  // three accumulation blocks
  Data d = make_data(n, 4321);
  std::vector<Codebook> cbs;
  for (size_t i = 0; i < ks.size(); ++i)  // every codebook before any pass: make_codebook moves values onto centres
    cbs.push_back(make_codebook(d, ks[i], i != 0, 50 + i));
  const std::vector<double> lambdas = {0.0, lambda_for(d), 3 * lambda_for(d)};
  std::vector<std::vector<int32_t>> want_labels(ks.size(), std::vector<int32_t>(n));
  std::vector<AssignAccum> want(ks.size());
  for (size_t i = 0; i < ks.size(); ++i) {
    SCOPED_TRACE(testing::Message() << "alone, k=" << ks[i]);
    cuda::assign_accumulate(d.w.data(), d.h.data(), n, cbs[i].c.data(), cbs[i].l.data(), ks[i], lambdas[i],
                            want_labels[i].data(), want[i]);
    std::vector<int32_t> cpu_l(n);
    AssignAccum ca;
    cpu::assign_accumulate(d.w.data(), d.h.data(), n, cbs[i].c.data(), cbs[i].l.data(), ks[i], lambdas[i],
                           cpu_l.data(), ca);
    size_t ties = 0;
    expect_same_labels(d, cbs[i], lambdas[i], cpu_l, want_labels[i], &ties);
    expect_sums_close(ca, want[i], ks[i], ties, 1e-9);
  }
  struct Outcome {
    int calls = 0, mismatched = 0;
    std::string error;
  };
  // Runs body(t, rep) for rep < reps from `count` threads started together; a thrown error ends that thread's loop.
  const auto run_threads = [&](int count, int reps, const auto& body) {
    std::vector<Outcome> outcome(static_cast<size_t>(count));
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < count; ++t)
      pool.emplace_back([&, t] {
        Outcome& o = outcome[static_cast<size_t>(t)];
        ready.fetch_add(1);
        while (ready.load() < count) std::this_thread::yield();
        try {
          for (int r = 0; r < reps; ++r, ++o.calls)
            if (!body(t, r)) ++o.mismatched;
        } catch (const std::exception& e) {
          o.error = e.what();
        }
      });
    for (std::thread& th : pool) th.join();
    for (int t = 0; t < count; ++t) {
      const Outcome& o = outcome[static_cast<size_t>(t)];
      EXPECT_EQ(o.error, "") << "thread " << t << " after " << o.calls << " calls";
      EXPECT_EQ(o.mismatched, 0) << "thread " << t << ": results unlike the single call's";
    }
  };
  {
    SCOPED_TRACE("assign_accumulate");
    run_threads(threads, quick() ? 6 : 60, [&](int t, int r) {
      const size_t i = static_cast<size_t>(t + r) % ks.size();
      std::vector<int32_t> labels(n, -9);
      AssignAccum got;
      cuda::assign_accumulate(d.w.data(), d.h.data(), n, cbs[i].c.data(), cbs[i].l.data(), ks[i], lambdas[i],
                              labels.data(), got);
      return labels == want_labels[i] && same_accum_bits(got, want[i]);
    });
  }
  using row_lloyd::InitRule;
  const std::vector<rows_cases::RowsBatch> batches = {
      rows_cases::make_batch("concurrent a", {2048, 17, 1025, 0}, 16, true, InitRule::kLinear, false, 301),
      rows_cases::make_batch("concurrent b", {4096, 3, 2049}, 256, true, InitRule::kQuantile, true, 302),
      rows_cases::make_batch("concurrent c", {8192, 4097, 1}, 16, false, InitRule::kLinear, false, 303)};
  std::vector<rows_cases::RowsResult> expected;
  for (const rows_cases::RowsBatch& b : batches) {  // the CPU op: the device's must be its bits
    expected.emplace_back(b);
    cpu::rows_kmeans(b.job(), expected.back().out());
  }
  const auto same_rows = [](const rows_cases::RowsResult& a, const rows_cases::RowsResult& b) {
    return std::memcmp(a.centers.data(), b.centers.data(), a.centers.size() * sizeof(double)) == 0 &&
           a.center_count == b.center_count && a.labels == b.labels && a.iterations == b.iterations &&
           a.converged == b.converged;
  };
  for (size_t i = 0; i < batches.size(); ++i) {  // alone first
    rows_cases::RowsResult got(batches[i]);
    cuda::rows_kmeans(batches[i].job(), got.out());
    EXPECT_TRUE(same_rows(got, expected[i])) << batches[i].name << " alone";
  }
  {
    SCOPED_TRACE("rows_kmeans");
    run_threads(static_cast<int>(batches.size()), quick() ? 2 : 12, [&](int t, int r) {
      const size_t i = static_cast<size_t>(t + r) % batches.size();
      rows_cases::RowsResult got(batches[i]);
      cuda::rows_kmeans(batches[i].job(), got.out());
      return same_rows(got, expected[i]);
    });
  }
}

}  // namespace
}  // namespace nq::quant
