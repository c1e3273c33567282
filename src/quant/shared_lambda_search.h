// A model-wide target rate met by one λ shared by every problem (RateAllocation::kSharedLambda): the search over
// that λ, made of whole-model ECSQ runs at given λ values (quantize_model_lambdas).
#pragma once

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

// quantize_model for a kSharedLambda target: the model at the one λ, over every problem, whose model rate
// (model_rate_bits) is nearest the target among those tried, within 0.5% when the rate's steps allow; bit for bit
// quantize_model with that λ (QuantStats::lambda) and no target. The λ = 0 model when the target is at or above
// its rate. The candidates do not depend on the machine, so neither does the result.
QuantizedModel quantize_model_shared_lambda(const TensorSet& model, const TensorSet* importance,
                                            const ModelQuantizeParams& params);

}  // namespace nq::quant
