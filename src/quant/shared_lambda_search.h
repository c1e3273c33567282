// A model-wide target rate met by one λ shared by every problem (RateAllocation::kSharedLambda): the search over
// that λ, made of whole-model ECSQ runs at given λ values (quantize_model_lambdas).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "netquant/quantize.h"

namespace nq::quant {

// The model's entropy per kept quantized weight: Σ_j kept_j · H_j / Σ_j kept_j over its problems (with one shared
// codebook, the entropy of the whole index stream). This is what a target rate is compared with; without pruning
// it is QuantStats::entropy_bits_per_weight.
double model_rate_bits(const QuantizedModel& m);

// kSharedLambda without a target, or with a method other than ecsq, is kInvalidArgument (in every scope); callers
// that read their inputs first check here before.
void check_rate_allocation(const ModelQuantizeParams& params);
// True when `params` asks for one λ over several problems: kSharedLambda with a target rate in a scope of many
// codebooks (in global scope the per-problem search already is the shared one). Checks as check_rate_allocation.
bool wants_shared_lambda(const ModelQuantizeParams& params);

// The λ candidates of the search's next round, given the (λ, rate) points so far, sorted by λ (λ = 0 first, its
// rate above the target): up to `per_round` points strictly between the bracket's ends (the largest λ whose rate
// is above the target below the least λ whose rate is at or below it), evenly spaced in log λ by 1/(2·(per_round
// + 1)) of the bracket around the crossing interpolated linearly in log λ; or `per_round` points beyond the others
// on the side the target lies. Empty when the bracket is closed to a relative width of 1e-9. Exposed for tests.
struct RatePoint {
  double lambda;
  double rate;
};
std::vector<double> next_lambda_candidates(const std::vector<RatePoint>& sorted_points, double target, int per_round);

// What a search over the one λ aims at: a rate of the whole model that falls as λ grows (in steps, and not always
// monotonically).
struct SharedLambdaGoal {
  enum class Unit { kBitsPerWeight, kBytes };
  // The model's rate: bits per kept quantized weight, or bytes of the whole model.
  std::function<double(QuantizedModel&)> rate;
  Unit unit = Unit::kBitsPerWeight;
  double target = 0;  // > 0, in the same unit
  // false: the model whose rate is nearest the target; true: a budget, the model with the largest rate at or below
  // it (and none is an error).
  bool at_most = false;
  // For the error when the target is out of reach: what was asked ("a .nq file of at most 30000 bytes") and what
  // could make it reachable.
  std::string what, hint;
};

// The search itself: `params` asks for ecsq without a target (its λ is ignored); the result is bit for bit
// quantize_model with params.quant.lambda set to its λ (QuantStats::lambda). The λ = 0 model when its rate is
// within the goal. Within 0.5% of the target when the rate's steps allow. kInvalidArgument, naming goal.what and
// the smallest rate found, when even one level per codebook is above an at_most target.
QuantizedModel search_shared_lambda(const TensorSet& model, const TensorSet* importance,
                                    const ModelQuantizeParams& params, const SharedLambdaGoal& goal);

// quantize_model for a kSharedLambda target: the model at the one λ, over every problem, whose model rate
// (model_rate_bits) is nearest the target among those tried, within 0.5% when the rate's steps allow; bit for bit
// quantize_model with that λ (QuantStats::lambda) and no target. The λ = 0 model when the target is at or above
// its rate. The candidates do not depend on the machine, so neither does the result.
QuantizedModel quantize_model_shared_lambda(const TensorSet& model, const TensorSet* importance,
                                            const ModelQuantizeParams& params);

}  // namespace nq::quant
