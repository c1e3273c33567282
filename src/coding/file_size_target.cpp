// A budget on the .nq file: the shared-λ search (quant/shared_lambda_search.h) with the file's size as its rate.
// The file's size is the one rate that counts everything a user pays for (the index streams, their code tables,
// 32 bits per codebook level, the pruned positions, the tensors kept in float and the directory), so a row or
// group scope whose codebooks cost more than their levels save is weighed as such.
#include <algorithm>
#include <cmath>
#include <string>

#include "coding/nq_format.h"
#include "netquant/coding.h"
#include "netquant/error.h"
#include "quant/shared_lambda_search.h"
#include "quant/quantizers.h"

namespace nq {

uint64_t file_bytes_for_ratio(const TensorSet& model, double ratio) {
  NQ_CHECK(ratio > 0 && std::isfinite(ratio), ErrorCode::kInvalidArgument,
           "a target file ratio must be a positive number, got " << ratio);
  double weights = 0;
  for (const Tensor& t : model) weights += static_cast<double>(t.numel());
  const double bytes = std::floor(4.0 * weights / ratio);
  NQ_CHECK(bytes >= 1, ErrorCode::kInvalidArgument,
           "a file ratio of " << ratio << " leaves less than one byte for " << weights << " weights");
  return static_cast<uint64_t>(std::min(bytes, 1.8e19));
}

void check_file_size_target(const ModelQuantizeParams& params) {
  NQ_CHECK(params.quant.method == Method::kEcsq, ErrorCode::kInvalidArgument,
           "a file size budget is met by ecsq's lambda (one for every codebook), got method "
               << method_traits(params.quant.method).name);
  NQ_CHECK(params.quant.lambda == 0 && quant::target_rate_bits(params.quant) == 0, ErrorCode::kInvalidArgument,
           "a file size budget is the target: give no lambda, target bits or target ratio with it");
  NQ_CHECK(params.quant.k <= kNqMaxLevels, ErrorCode::kInvalidArgument,
           "a .nq codebook holds at most " << kNqMaxLevels << " levels, and k asks for " << params.quant.k);
}

QuantizedModel quantize_model_to_file_size(const TensorSet& model, const TensorSet* importance,
                                           const ModelQuantizeParams& params, uint64_t max_bytes, IndexCoder coder) {
  check_file_size_target(params);
  NQ_CHECK(max_bytes > 0, ErrorCode::kInvalidArgument, "a file size budget must be at least one byte");
  quant::SharedLambdaGoal goal;
  // Each candidate is coded once: its size, and its coding statistics (the model returned keeps them).
  goal.rate = [coder](QuantizedModel& m) {
    m.index_coder = coder;
    const coding::ModelEncoding enc = coding::encode_nq(m);
    coding::fill_coding_stats(m, enc);
    return static_cast<double>(enc.file_size);
  };
  goal.unit = quant::SharedLambdaGoal::Unit::kBytes;
  goal.target = static_cast<double>(max_bytes);
  goal.at_most = true;
  goal.what = "a .nq file of at most " + std::to_string(max_bytes) + " bytes";
  goal.hint = "a coarser scope (fewer codebooks), more pruning, or fewer tensors kept in float make it smaller";
  return quant::search_shared_lambda(model, importance, params, goal);
}

}  // namespace nq
