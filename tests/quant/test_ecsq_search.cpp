// EcsqSearch (ECSQ's λ search as a state machine fed one pass at a time, which the per-problem driver and the
// row driver both run) against the plain loop it replaced, kept here as the oracle: runs of ECSQ iterations from
// one start, for a fixed λ, or for a target rate λ = 0, then λ grown ×4 (at most 40 tries) until the rate is met,
// then bisection on log λ (at most 50 steps, stopping within 0.5% of the rate or below 1e-9 in log λ), keeping the
// run closest to the rate. Everything must match bit for bit — centres, labels (the best run's, which need not be
// the last run), λ, iteration counts and histories — and each pass must be the same pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "netquant/quantize.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "quant/same_result.h"

namespace nq::quant {
namespace {

using test::same_bits;

// The loop as it was: one run to its end, its labels taken from its last pass.
RawResult reference_iterate(const AssignPass& pass, size_t n, const std::vector<double>& init, double lambda,
                            const QuantizeParams& q, int& passes) {
  EcsqRun run(init, lambda, n, q);
  AssignAccum acc;
  while (!run.done()) {
    pass.run(run.centers().data(), run.code_len().data(), static_cast<int>(run.centers().size()), lambda, acc);
    ++passes;
    run.step(acc);
  }
  RawResult out = run.take_result();
  out.labels = pass.take_labels();
  return out;
}

struct Reference {
  RawResult result;
  int passes = 0;
  double last_lambda = 0;  // λ of the last run (to see that the best is not always the last)
  bool grew_out = false;   // all 40 growth tries failed
};

Reference reference_search(const AssignPass& pass, size_t n, const std::vector<double>& init, double d0,
                           const QuantizeParams& q) {
  Reference ref;
  auto run_at = [&](double lambda) {
    ref.last_lambda = lambda;
    return reference_iterate(pass, n, init, lambda, q, ref.passes);
  };
  const double rate = target_rate_bits(q);
  if (rate <= 0) {
    ref.result = run_at(q.lambda);
    return ref;
  }
  RawResult r0 = run_at(0.0);
  const double h0 = r0.history.back().entropy;
  if (rate >= h0) {
    ref.result = std::move(r0);
    return ref;
  }
  if (!(d0 > 0)) d0 = 1e-30;
  double lo = std::log(d0 * 1e-9), hi = std::log(d0);
  int i = 0;
  for (; i < 40; ++i) {
    RawResult r = run_at(std::exp(hi));
    if (r.history.back().entropy <= rate) break;
    hi += std::log(4.0);
  }
  ref.grew_out = i == 40;
  RawResult best = std::move(r0);
  double best_err = std::fabs(h0 - rate);
  for (int it = 0; it < 50 && best_err > 0.005 * rate; ++it) {
    const double mid = 0.5 * (lo + hi);
    RawResult r = run_at(std::exp(mid));
    const double hbits = r.history.back().entropy;
    const double err = std::fabs(hbits - rate);
    if (err < best_err) { best_err = err; best = std::move(r); }
    if (hbits > rate) lo = mid; else hi = mid;
    if (hi - lo < 1e-9) break;
  }
  ref.result = std::move(best);
  return ref;
}

TEST(EcsqSearch, EqualsThePlainSearchLoop) {
  std::mt19937_64 rng(2024);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.6, 1.0);
  int cases = 0, best_not_last = 0, grew_out = 0, targets = 0;
  for (const size_t n : {size_t{1}, size_t{2}, size_t{7}, size_t{64}, size_t{333}, size_t{4099}})
    for (const int k : {1, 3, 16, 64})
      for (const int max_iter : {1, 3, 50})
        for (const double bits : {0.0, 0.05, 0.7, 1.9, 3.5, 9.0}) {
          std::vector<float> w(n), h(n);
          for (size_t i = 0; i < n; ++i) {
            w[i] = static_cast<float>(0.05 * t(rng));
            h[i] = i % 9 == 0 ? 0.0f : static_cast<float>(g(rng));
          }
          Problem p;
          p.w = w.data();
          p.h = h.data();
          p.n = n;
          QuantizeParams q;
          q.method = Method::kEcsq;
          q.k = k;
          q.max_iter = max_iter;
          q.lambda = bits == 0.0 ? 3e-5 : 0.0;
          q.target_bits = bits;
          const SortedData s(p);
          const SortedData::Sums all = s.range(0, s.size());
          const double d0 = interval_scatter(all.s0, all.s1, all.s2) / static_cast<double>(n);
          const std::vector<double> init = ecsq_init(s, q);

          const Reference want = reference_search(local_pass(p), n, init, d0, q);
          int passes = 0;
          AssignPass counted = local_pass(p);
          const auto run = counted.run;
          counted.run = [&](const double* c, const double* l, int kk, double lambda, AssignAccum& out) {
            ++passes;
            run(c, l, kk, lambda, out);
          };
          const RawResult got = ecsq_search(counted, n, n, init, d0, q);

          SCOPED_TRACE("n " + std::to_string(n) + " k " + std::to_string(k) + " max_iter " +
                       std::to_string(max_iter) + " target " + std::to_string(bits));
          ++cases;
          targets += bits > 0;
          best_not_last += !same_bits(want.result.lambda, want.last_lambda);
          grew_out += want.grew_out;
          EXPECT_EQ(passes, want.passes);
          ASSERT_EQ(got.centers.size(), want.result.centers.size());
          for (size_t j = 0; j < got.centers.size(); ++j) ASSERT_TRUE(same_bits(got.centers[j], want.result.centers[j]));
          ASSERT_EQ(got.labels, want.result.labels);
          EXPECT_TRUE(same_bits(got.lambda, want.result.lambda)) << got.lambda << " vs " << want.result.lambda;
          EXPECT_EQ(got.iterations, want.result.iterations);
          EXPECT_EQ(got.converged, want.result.converged);
          ASSERT_EQ(got.history.size(), want.result.history.size());
          for (size_t i = 0; i < got.history.size(); ++i) {
            EXPECT_TRUE(same_bits(got.history[i].objective, want.result.history[i].objective));
            EXPECT_TRUE(same_bits(got.history[i].entropy, want.result.history[i].entropy));
          }
        }
  // The cases reach every branch that matters: target searches whose best run is not their last (labels must
  // then come from an earlier run), and searches whose λ growth ran out (at --max-iter 1 the one pass, from equal
  // code lengths, is the nearest assignment whatever λ, so a rate below it is never met).
  EXPECT_GT(targets, 100);
  EXPECT_GT(best_not_last, 10) << "of " << cases;
  EXPECT_GT(grew_out, 2) << "of " << cases;
}


// A problem with no more distinct values than k_max starts at its exact representation, one value per cluster:
// every code has the same length, so no weight moves whatever λ, and before the merge move ECSQ stopped there
// (H = log2 n, D = 0) for any λ and missed any target rate (row scope with short rows, group:G with G ≤ k).
// Oracles with h ≡ 1 (cells are then intervals): the optimal J over all interval partitions by an O(n²) DP, which
// no result may beat, and the stuck J, which every result must beat whenever merging the closest two values pays
// (gap² < 4λ). With importances: J never above the stuck one, and the rate falling to 0 for a λ that dwarfs D0.
TEST(EcsqSearch, FewerValuesThanCentresStillTradeRateForDistortion) {
  std::mt19937_64 rng(77);
  std::normal_distribution<double> normal(0.0, 0.05);
  std::gamma_distribution<double> g(0.7, 2.0);
  for (const size_t n : {size_t{5}, size_t{17}, size_t{33}, size_t{64}}) {
    for (const bool weighted : {false, true}) {
      std::vector<float> w(n), h(n, 1.0f);
      for (size_t i = 0; i < n; ++i) {
        w[i] = static_cast<float>(normal(rng));
        if (weighted) h[i] = static_cast<float>(g(rng) + 1e-3);
      }
      std::vector<double> sorted(w.begin(), w.end());
      std::sort(sorted.begin(), sorted.end());
      ASSERT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());  // distinct values
      double min_gap2 = std::numeric_limits<double>::infinity();
      for (size_t i = 1; i < n; ++i) min_gap2 = std::min(min_gap2, (sorted[i] - sorted[i - 1]) * (sorted[i] - sorted[i - 1]));
      const double nd = static_cast<double>(n);
      for (const double lambda : {1e-7, 1e-5, 1e-4, 1e-3, 1e-2, 1.0}) {
        SCOPED_TRACE("n " + std::to_string(n) + (weighted ? " weighted" : "") + " lambda " + std::to_string(lambda));
        QuantizeParams q;
        q.method = Method::kEcsq;
        q.k = 64;
        q.lambda = lambda;
        q.backend = Backend::kCpu;
        const QuantizeResult r = quantize(w.data(), h.data(), n, q);
        const double j = r.hw_distortion + lambda * r.entropy_bits;
        const double stuck = lambda * std::log2(nd);
        EXPECT_LE(j, stuck * (1 + 1e-12));
        if (!weighted && min_gap2 < 4 * lambda * (1 - 1e-9)) {
          EXPECT_LT(j, stuck * (1 - 1e-9)) << "H " << r.entropy_bits;
        }
        if (lambda == 1.0) {
          EXPECT_EQ(r.codebook.size(), 1u);  // λ far above the weighted variance: one cluster
        }
        if (!weighted) {
          // min over interval partitions of Σ_clusters [SSE/n − λ (c/n) log2(c/n)], by DP over prefix sums.
          std::vector<double> s1(n + 1, 0), s2(n + 1, 0);
          for (size_t i = 0; i < n; ++i) {
            s1[i + 1] = s1[i] + sorted[i];
            s2[i + 1] = s2[i] + sorted[i] * sorted[i];
          }
          std::vector<double> best(n + 1, std::numeric_limits<double>::infinity());
          best[0] = 0;
          for (size_t e = 1; e <= n; ++e)
            for (size_t b = 0; b < e; ++b) {
              const double c = static_cast<double>(e - b), sum = s1[e] - s1[b];
              const double sse = std::max(0.0, s2[e] - s2[b] - sum * sum / c);
              best[e] = std::min(best[e], best[b] + sse / nd - lambda * (c / nd) * std::log2(c / nd));
            }
          EXPECT_GE(j, best[n] * (1 - 1e-9) - 1e-18) << "below the optimum: J is misread";
        }
      }
      // The per-problem target search now reaches rates below log2 n on such a problem (five values have too few
      // partitions to come within 10% of any rate).
      if (n < 17) continue;
      QuantizeParams q;
      q.method = Method::kEcsq;
      q.k = 64;
      q.backend = Backend::kCpu;
      q.target_bits = 0.5 * std::log2(nd);
      const QuantizeResult r = quantize(w.data(), h.data(), n, q);
      EXPECT_NEAR(r.entropy_bits, q.target_bits, 0.1 * q.target_bits) << "n " << n;
    }
  }
}

}  // namespace
}  // namespace nq::quant
