// nq::prune_model: the float weights a pruned quantization keeps, with the pruned ones at 0 — the start of
// retraining a pruned net. The mask is quantize_model's own (a cheap two-level quantization with the caller's
// pruning settings), so the two can never disagree on which weights a fraction prunes.
#include "netquant/error.h"
#include "netquant/quantize.h"

namespace nq {

TensorSet prune_model(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params) {
  NQ_CHECK(params.prune >= 0 && params.prune < 1, ErrorCode::kInvalidArgument,
           "prune fraction must be in [0, 1), got " << params.prune);
  ModelQuantizeParams mask_params;
  mask_params.prune = params.prune;
  mask_params.skip_1d = params.skip_1d;
  mask_params.importance_transform = params.importance_transform;
  mask_params.quant.method = Method::kHwKmeans;  // every method prunes the same weights; two levels are cheap
  mask_params.quant.k = 2;
  mask_params.quant.backend = params.quant.backend;
  const QuantizedModel mask = quantize_model(model, importance, mask_params);
  TensorSet out;
  out.metadata() = model.metadata();
  for (const QuantizedTensor& t : mask.tensors) {
    std::vector<float> w = model.at(t.name).to_f32();
    if (t.quantized)
      for (size_t i = 0; i < w.size(); ++i)
        if (t.indices[i] == kPrunedIndex) w[i] = 0.0f;
    out.add(Tensor::from_f32(t.name, t.shape, w));
  }
  return out;
}

}  // namespace nq
