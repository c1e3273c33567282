// One λ for every problem of a model, searched to meet a model-wide target rate. Each problem j minimises
// D_j + λ·H_j; summed with the problems' sizes that is the model's D + λ·(its bits), so one λ is the Lagrangian
// allocation of the model's bits over its rows, groups or tensors. The model's rate is a step function of λ, and
// ECSQ's iterations need not make it monotone, so the search keeps every (λ, rate) it has tried, brackets the
// least λ that reaches the target, and returns the nearest model it has seen.
#include "quant/shared_lambda_search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "core/memory_info.h"
#include "netquant/error.h"
#include "netquant/progress.h"
#include "quant/quantizers.h"

namespace nq::quant {

namespace {

// Candidates per round: a round's models come from one quantize_model_lambdas call (one start per problem shared by
// all of them). Fixed, so the search's path is the same on any machine; only how many of a round's models are held
// at once depends on the memory.
constexpr int kPerRound = 8;
// The first round spans 2^24 around the estimate, and a round beyond the points moves 2^24 further.
constexpr double kSpanLog2 = 24.0;
constexpr int kMaxRounds = 40;
constexpr double kRateTolerance = 0.005;  // as the per-problem search: within 0.5% of the target

// How many of a round's models to make at once: each holds its indices until it is judged, and the best one stays.
size_t models_at_once(const TensorSet& model, int levels) {
  double weights = 0;
  for (const Tensor& t : model) weights += static_cast<double>(t.numel());
  const double per_model = std::max(1.0, weights * IndexArray::width_for(std::max(0, levels - 1)));
  const uint64_t available = available_memory_bytes();
  const double budget = available > 0 ? std::max(256e6, 0.25 * static_cast<double>(available)) : 2e9;
  return static_cast<size_t>(std::clamp(std::floor(budget / per_model) - 1.0, 1.0, double{kPerRound}));
}

double quantized_weights(const QuantizedModel& m) {
  double n = 0;
  for (const QuantizedTensor& qt : m.tensors)
    if (qt.quantized) n += static_cast<double>(qt.indices.size());
  return n;
}

// Quantized weights that pruning left (the same for every λ: pruning comes first).
double kept_weights(const QuantizedModel& m) { return quantized_weights(m) - static_cast<double>(m.total.pruned); }

std::string lambda_text(double lambda) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", lambda);
  return buf;
}

}  // namespace

double model_rate_bits(const QuantizedModel& m) {
  const double kept = kept_weights(m);
  return kept > 0 ? m.total.entropy_bits_per_weight * quantized_weights(m) / kept : 0.0;
}

void check_rate_allocation(const ModelQuantizeParams& params) {
  if (params.rate_allocation != RateAllocation::kSharedLambda) return;
  NQ_CHECK(params.quant.method == Method::kEcsq, ErrorCode::kInvalidArgument,
           "rate allocation shared-lambda is for method ecsq (one λ over every codebook), got "
               << method_traits(params.quant.method).name);
  NQ_CHECK(target_rate_bits(params.quant) > 0, ErrorCode::kInvalidArgument,
           "rate allocation shared-lambda needs a target rate (--target-bits or --target-ratio)");
}

bool wants_shared_lambda(const ModelQuantizeParams& params) {
  check_rate_allocation(params);
  return params.rate_allocation == RateAllocation::kSharedLambda && params.scope.kind != ScopeKind::kGlobal;
}

std::vector<double> next_lambda_candidates(const std::vector<RatePoint>& points, double target, int per_round) {
  NQ_ASSERT(!points.empty() && points.front().lambda == 0 && per_round >= 1);
  auto at_or_below = [&](const RatePoint& p) { return p.rate <= target; };
  const auto hi = std::find_if(points.begin(), points.end(), at_or_below);
  std::vector<double> next;
  const double step = kSpanLog2 / per_round;
  if (hi == points.end()) {  // every λ tried is above the target: further up
    for (int i = 1; i <= per_round; ++i) next.push_back(points.back().lambda * std::exp2(step * i));
    return next;
  }
  NQ_ASSERT(hi != points.begin());  // λ = 0 is above the target (else the search has ended)
  const double lo = std::prev(hi)->lambda, up = hi->lambda;
  if (lo == 0) {  // only λ = 0 below: further down
    for (int i = per_round; i >= 1; --i) next.push_back(up * std::exp2(-step * i));
    return next;
  }
  const double width = std::log(up / lo);
  if (!(width > 1e-9)) return next;
  // The rate is close to linear in log λ over a bracket (high-rate theory: dR/d log λ ≈ −1/(2 ln 2)), so the
  // candidates crowd around the crossing interpolated between the bracket's ends, a (2·(per_round + 1))th of the
  // bracket apart: when the interpolation is good the next bracket is that narrow, and when it is not the crowd
  // still cuts off a third of the bracket or more. The crowd is moved inside the bracket whole.
  const double f = (std::prev(hi)->rate - target) / (std::prev(hi)->rate - hi->rate);  // in (0, 1]
  const double spacing = 0.5 / (per_round + 1);
  std::vector<double> x;
  for (int i = 1; i <= per_round; ++i) x.push_back(f + (i - 0.5 * (per_round + 1)) * spacing);
  const double shift = std::max(0.5 * spacing - x.front(), std::min(0.0, 1.0 - 0.5 * spacing - x.back()));
  for (const double xi : x) {
    const double lambda = lo * std::exp(width * (xi + shift));
    if (lambda > lo && lambda < up && (next.empty() || lambda > next.back())) next.push_back(lambda);
  }
  return next;
}

QuantizedModel search_shared_lambda(const TensorSet& model, const TensorSet* importance,
                                    const ModelQuantizeParams& params, const SharedLambdaGoal& goal) {
  NQ_ASSERT(params.quant.method == Method::kEcsq && target_rate_bits(params.quant) == 0 && goal.target > 0);
  const auto t0 = std::chrono::steady_clock::now();
  const double target = goal.target;
  ModelQuantizeParams fixed = params;
  fixed.quant.lambda = 0;
  fixed.rate_allocation = RateAllocation::kPerProblem;

  // How far a model's rate is from the goal: +inf when a budget rules it out.
  auto miss = [&](double rate) {
    if (goal.at_most) return rate <= target ? target - rate : std::numeric_limits<double>::infinity();
    return std::fabs(rate - target);
  };
  const bool bytes = goal.unit == SharedLambdaGoal::Unit::kBytes;
  auto shown = [&](double rate) {
    return bytes ? std::to_string(static_cast<uint64_t>(rate)) + " bytes" : lambda_text(rate) + " bits/weight";
  };
  const std::string hint = goal.hint.empty() ? "" : "; " + goal.hint;  // ends every out-of-reach error

  QuantizedModel best = quantize_model(model, importance, fixed);
  const double rate0 = goal.rate(best);
  double best_err = miss(rate0), best_rate = rate0;
  // Rates in bits per kept weight, for the high-rate estimate below (pruning, so the kept weights, do not depend on
  // λ).
  const double bits_per_unit = bytes ? 8.0 / std::max(1.0, kept_weights(best)) : 1.0;
  auto done = [&]() -> QuantizedModel {
    best.total.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::move(best);
  };
  // ECSQ reaches no higher rate than its λ = 0 fixed point (the per-problem search's rule too).
  if (target >= rate0 || best_err <= kRateTolerance * target) return done();

  std::vector<RatePoint> points{{0.0, rate0}};
  // The first round around the high-rate slope: D(R) ≈ c·2^(−2R), so λ = −dD/dR ≈ 2 ln 2 · D(R), with D(R) grown
  // from the λ = 0 distortion by 4^(rate0 − target).
  const double d = best.total.hw_distortion;
  // (Capped: a budget far below the λ = 0 file, on few kept weights, would make it overflow; any λ that large
  // leaves one level per codebook anyway.)
  const double guess = std::min(1e200, (d > 0 ? d : 1e-30) * 2 * std::log(2.0) *
                                           std::exp2(std::min(512.0, 2 * bits_per_unit * (rate0 - target))));
  std::vector<double> next;
  for (int i = 0; i < kPerRound; ++i) next.push_back(guess * std::exp2(kSpanLog2 * (i / (kPerRound - 1.0) - 0.5)));

  // The least rate seen where every codebook had one level at most: no larger λ can lower it.
  double floor_rate = std::numeric_limits<double>::infinity(), floor_lambda = 0;
  const size_t at_once = models_at_once(model, params.quant.k);
  for (int round = 0; round < kMaxRounds && !next.empty(); ++round) {
    for (size_t b = 0; b < next.size(); b += at_once) {
      const std::vector<double> batch(next.begin() + static_cast<ptrdiff_t>(b),
                                      next.begin() + static_cast<ptrdiff_t>(std::min(next.size(), b + at_once)));
      std::vector<QuantizedModel> models = quantize_model_lambdas(model, importance, fixed, batch);
      for (size_t m = 0; m < models.size(); ++m) {
        const double rate = goal.rate(models[m]);
        points.push_back({batch[m], rate});
        if (models[m].total.clusters <= 1 && rate < floor_rate) {
          floor_rate = rate;
          floor_lambda = batch[m];
        }
        const double err = miss(rate);
        if (err < best_err) {
          best_err = err;
          best_rate = rate;
          best = std::move(models[m]);
        }
      }
    }
    if (progress_enabled())  // a line per round between the rounds' own progress bars
      std::fprintf(stderr, "shared-lambda search, round %d: %zu lambdas, %s %s (target %s) at lambda %s\n",
                   round + 1, next.size(), goal.at_most ? "best within" : "nearest",
                   std::isfinite(best_err) ? shown(best_rate).c_str() : "none",
                   shown(target).c_str(), lambda_text(best.total.lambda).c_str());
    if (best_err <= kRateTolerance * target) break;
    // One level per codebook is the least rate any λ gives: above the target, a budget is out of reach, and the
    // nearest model has been seen.
    if (floor_rate > target && std::isfinite(floor_rate)) {
      NQ_CHECK(std::isfinite(best_err), ErrorCode::kInvalidArgument,
               goal.what << " is out of reach: with one level per codebook (lambda " << lambda_text(floor_lambda)
                         << ") the model takes " << shown(floor_rate) << hint);
      if (!goal.at_most) break;
    }
    std::sort(points.begin(), points.end(), [](const RatePoint& a, const RatePoint& b) { return a.lambda < b.lambda; });
    next = next_lambda_candidates(points, target, kPerRound);
    NQ_CHECK(next.empty() || next.back() < 1e300, ErrorCode::kInvalidArgument,
             goal.what << " is out of reach: at lambda " << lambda_text(points.back().lambda)
                       << " the model still takes " << shown(points.back().rate) << hint);
  }
  if (!std::isfinite(best_err)) {  // a budget the rounds ran out before meeting
    double least = rate0;
    for (const RatePoint& p : points) least = std::min(least, p.rate);
    NQ_FAIL(ErrorCode::kInvalidArgument, goal.what << " was not reached in " << kMaxRounds
                                                   << " rounds: the least the search found is " << shown(least)
                                                   << hint);
  }
  return done();
}

QuantizedModel quantize_model_shared_lambda(const TensorSet& model, const TensorSet* importance,
                                            const ModelQuantizeParams& params) {
  SharedLambdaGoal goal;
  goal.rate = [](QuantizedModel& m) { return model_rate_bits(m); };
  goal.target = target_rate_bits(params.quant);
  goal.what = "a model entropy of " + lambda_text(goal.target) + " bits/weight";
  ModelQuantizeParams fixed = params;
  fixed.quant.target_bits = 0;
  fixed.quant.target_ratio = 0;
  return search_shared_lambda(model, importance, fixed, goal);
}

}  // namespace nq::quant
