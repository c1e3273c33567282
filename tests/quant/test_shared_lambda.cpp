// A model-wide target rate met by one λ over every codebook (RateAllocation::kSharedLambda). Oracles: the same model
// quantized at that λ with no target (bit for bit: the search returns a model it made, not an approximation), the
// target itself (the model's entropy per kept weight, recomputed here from the indices), the per-problem allocation
// at the same rate (the shared slope must spend the bits better where importances differ), and a brute-force
// walk of the bracket rule for the candidates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/fixtures.h"
#include "quant/same_result.h"
#include "quant/shared_lambda_search.h"

namespace nq {
namespace {

using quant::RatePoint;
using test::expect_same_model;

// Tensors of awkward sizes whose importances differ by orders of magnitude (as layers' Hessians do), so that an
// even split of the bits is far from the best one.
using Fixture = test::ScaledModel;
Fixture make_fixture(uint64_t seed) {
  return test::scaled_model({{"hot", {7, 129}}, {"warm", {31, 33}}, {"cold", {13, 71}}, {"bias", {57}}},
                           {{"hot", 100.0f}, {"warm", 1.0f}, {"cold", 0.01f}, {"bias", 3.0f}},
                           seed);
}

ModelQuantizeParams shared_params(const std::string& scope, double target_bits, double prune) {
  ModelQuantizeParams p;
  p.quant = test::params(Method::kEcsq, 16);
  p.quant.target_bits = target_bits;
  p.scope = parse_scope(scope);
  p.prune = prune;
  p.rate_allocation = RateAllocation::kSharedLambda;
  return p;
}

// The model's entropy per kept weight from its indices alone: Σ over problems of kept·H, over the kept weights.
double rate_from_indices(const QuantizedModel& m) {
  double bits = 0, kept = 0;
  for (const QuantizedTensor& qt : m.tensors) {
    if (!qt.quantized) continue;
    const int64_t n = static_cast<int64_t>(qt.indices.size());
    for (int64_t pr = 0; pr < qt.num_problems; ++pr) {
      std::map<int32_t, double> counts;
      const int64_t b = pr * qt.problem_size, e = std::min(n, b + qt.problem_size);
      for (int64_t i = b; i < e; ++i)
        if (qt.indices[static_cast<size_t>(i)] != kPrunedIndex) counts[qt.indices[static_cast<size_t>(i)]] += 1;
      double total = 0;
      for (const auto& [level, c] : counts) total += c;
      for (const auto& [level, c] : counts) bits -= c * std::log2(c / total);
      kept += total;
    }
  }
  return kept > 0 ? bits / kept : 0;
}

TEST(SharedLambda, IsTheModelAtItsLambdaAndMeetsTheTarget) {
  const Fixture f = make_fixture(11);
  for (const char* scope : {"row", "tensor", "group:50"}) {
    for (const double prune : {0.0, 0.3}) {
      for (const double target : {1.0, 2.5}) {
        SCOPED_TRACE(std::string(scope) + " prune " + std::to_string(prune) + " target " + std::to_string(target));
        const ModelQuantizeParams p = shared_params(scope, target, prune);
        const QuantizedModel got = quantize_model(f.model, &f.importance, p);
        const double lambda = got.total.lambda;
        ASSERT_GT(lambda, 0);
        for (const QuantizedTensor& qt : got.tensors) EXPECT_EQ(qt.stats.lambda, lambda) << qt.name;  // one λ
        const double rate = rate_from_indices(got);
        EXPECT_NEAR(quant::model_rate_bits(got), rate, 1e-9 * target);
        // Tensor scope has four codebooks, so the model's rate moves in steps; rows and groups fill them in.
        EXPECT_NEAR(rate, target, (std::string(scope) == "tensor" ? 0.03 : 0.005) * target);

        ModelQuantizeParams at = p;  // the oracle: that λ, no target, no search
        at.quant.target_bits = 0;
        at.quant.lambda = lambda;
        at.rate_allocation = RateAllocation::kPerProblem;
        expect_same_model(got, quantize_model(f.model, &f.importance, at), "the model at its lambda");
      }
    }
  }
}

TEST(SharedLambda, SpendsTheBitsWhereTheyLowerTheDistortion) {
  // At the rate the per-problem allocation reaches, one slope for every codebook must give a lower distortion:
  // the unimportant "cold" weights give their bits to the "hot" ones. (Rows of the 1-D bias hold one value each,
  // so per problem the model falls short of the target; the shared search is given the rate it did reach.)
  const Fixture f = make_fixture(23);
  for (const char* scope : {"row", "tensor"}) {
    for (const int k : {16, 64}) {
      SCOPED_TRACE(std::string(scope) + " k " + std::to_string(k));
      ModelQuantizeParams p = shared_params(scope, 2.0, 0.0);
      p.quant.k = k;
      p.rate_allocation = RateAllocation::kPerProblem;
      const QuantizedModel even = quantize_model(f.model, &f.importance, p);
      const double r_even = rate_from_indices(even);
      p.quant.target_bits = r_even;
      p.rate_allocation = RateAllocation::kSharedLambda;
      const QuantizedModel shared = quantize_model(f.model, &f.importance, p);
      const double r_shared = rate_from_indices(shared);
      EXPECT_LE(r_shared, r_even * 1.005);
      // By high-rate theory the gain is the ratio of the arithmetic to the geometric mean of the problems'
      // h·σ² (here ~30×); k = 16 caps the hot rows at 4 bits and holds it far lower (measured: row 0.36×, tensor
      // 0.69× at k = 16; 0.033× and 0.082× at k = 64).
      EXPECT_LT(shared.total.hw_distortion, (k == 16 ? 0.8 : 0.2) * even.total.hw_distortion)
          << "shared " << shared.total.hw_distortion << " at " << r_shared << " bits, per problem "
          << even.total.hw_distortion << " at " << r_even;
      // Where the bits went: more to the important tensor than to the unimportant one.
      EXPECT_GT(shared.tensors[0].stats.entropy_bits_per_weight, shared.tensors[2].stats.entropy_bits_per_weight);
    }
  }
}

TEST(SharedLambda, StreamsInWavesToTheSameModel) {
  const Fixture f = make_fixture(31);
  ModelQuantizeParams p = shared_params("row", 1.7, 0.2);
  const QuantizedModel once = quantize_model(f.model, &f.importance, p);
  p.batch_weights = 200;  // a tensor per wave
  expect_same_model(quantize_model(f.model, &f.importance, p), once, "waves");
}

TEST(SharedLambda, TargetBeyondTheLambdaZeroRateGivesThatModel) {
  const Fixture f = make_fixture(41);
  ModelQuantizeParams p = shared_params("row", 9.0, 0.0);  // 16 levels give at most 4 bits
  const QuantizedModel got = quantize_model(f.model, &f.importance, p);
  p.quant.target_bits = 0;
  p.rate_allocation = RateAllocation::kPerProblem;
  expect_same_model(got, quantize_model(f.model, &f.importance, p), "lambda 0");
  EXPECT_EQ(got.total.lambda, 0);
}

TEST(SharedLambda, GlobalScopeIsThePerProblemSearch) {
  const Fixture f = make_fixture(43);
  ModelQuantizeParams p = shared_params("global", 2.0, 0.1);
  const QuantizedModel got = quantize_model(f.model, &f.importance, p);
  p.rate_allocation = RateAllocation::kPerProblem;
  expect_same_model(got, quantize_model(f.model, &f.importance, p), "one codebook");
}

TEST(SharedLambda, RejectsWhatItCannotDo) {
  const Fixture f = make_fixture(47);
  // Each refusal is kInvalidArgument and says what is missing.
  auto expect_refused = [&](const ModelQuantizeParams& p, const std::string& says) {
    SCOPED_TRACE(says);
    try {
      quantize_model(f.model, &f.importance, p);
      FAIL() << "ran";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  ModelQuantizeParams p = shared_params("row", 2.0, 0.0);
  p.quant.method = Method::kUniform;  // a step per problem, no λ to share
  expect_refused(p, "ecsq");
  expect_refused(shared_params("row", 0.0, 0.0), "target");  // nothing to search for
  EXPECT_THROW(parse_rate_allocation("shared"), Error);
  EXPECT_EQ(parse_rate_allocation(rate_allocation_name(RateAllocation::kSharedLambda)), RateAllocation::kSharedLambda);
  EXPECT_EQ(parse_rate_allocation(rate_allocation_name(RateAllocation::kPerProblem)), RateAllocation::kPerProblem);
}

// The bracket rule against its definition, on random (λ, rate) sets that need not be monotone: the candidates lie
// strictly between the largest λ below the least λ at or under the target and that λ, evenly spaced in log λ by
// 1/(2·(per_round + 1)) of the bracket, with one within a spacing of the crossing interpolated in log λ; or beyond
// every point on the side where the target lies.
TEST(SharedLambda, CandidatesBracketTheLeastLambdaThatReachesTheTarget) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 2000; ++trial) {
    const double target = 0.5 + 3 * u(rng);
    std::vector<RatePoint> pts{{0.0, target + 0.1 + u(rng)}};
    const int n = 1 + static_cast<int>(u(rng) * 12);
    for (int i = 0; i < n; ++i) pts.push_back({std::exp(-20 + 25 * u(rng)), 5 * u(rng)});
    if (trial % 5 == 0)  // a bracket already closed to rounding
      pts.push_back({pts.back().lambda * (1 + 1e-12), target - 0.01});
    std::sort(pts.begin(), pts.end(), [](const RatePoint& a, const RatePoint& b) { return a.lambda < b.lambda; });
    const int per_round = 1 + static_cast<int>(u(rng) * 8);
    const std::vector<double> next = quant::next_lambda_candidates(pts, target, per_round);
    // Brute force: the least λ whose rate is at or below the target, and the largest λ below it.
    double least = -1;
    for (const RatePoint& q : pts)
      if (q.rate <= target && (least < 0 || q.lambda < least)) least = q.lambda;
    double below = 0, rate_least = 0, rate_below = 0;
    for (const RatePoint& q : pts) {
      if (q.lambda < least && q.lambda >= below) {
        below = q.lambda;
        rate_below = q.rate;
      }
      if (q.lambda == least) rate_least = q.rate;
    }
    double top = 0;
    for (const RatePoint& q : pts) top = std::max(top, q.lambda);
    SCOPED_TRACE("trial " + std::to_string(trial));
    if (least < 0) {
      ASSERT_EQ(next.size(), static_cast<size_t>(per_round));
      for (const double l : next) EXPECT_GT(l, top);
    } else if (below == 0) {
      ASSERT_EQ(next.size(), static_cast<size_t>(per_round));
      for (const double l : next) {
        EXPECT_LT(l, least);
        EXPECT_GT(l, 0);
      }
    } else if (std::log(least / below) <= 1e-9) {
      EXPECT_TRUE(next.empty());
    } else {
      ASSERT_FALSE(next.empty());
      const double width = std::log(least / below), spacing = width / (2.0 * (per_round + 1));
      for (size_t i = 0; i < next.size(); ++i) {
        EXPECT_GT(next[i], below);
        EXPECT_LT(next[i], least);
        if (i > 0) {
          EXPECT_NEAR(std::log(next[i] / next[i - 1]), spacing, 1e-6 * width);
        }
      }
      if (width > 1e-3) {  // (a bracket near the 1e-9 floor rounds its points together)
        EXPECT_EQ(next.size(), static_cast<size_t>(per_round));
      }
      const double crossing = std::log(below) + width * (rate_below - target) / (rate_below - rate_least);
      double nearest = std::numeric_limits<double>::infinity();
      for (const double l : next) nearest = std::min(nearest, std::fabs(std::log(l) - crossing));
      EXPECT_LE(nearest, spacing * (1 + 1e-6));
    }
    // Sorted ascending in every case, no duplicates of points already tried.
    EXPECT_TRUE(std::is_sorted(next.begin(), next.end()));
    for (const double l : next)
      for (const RatePoint& q : pts) EXPECT_NE(l, q.lambda);
  }
}

}  // namespace
}  // namespace nq
