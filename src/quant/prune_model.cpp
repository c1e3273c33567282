// nq::prune_model: the weights a pruned quantization keeps, with the pruned ones at 0 — the start of retraining a
// pruned net. The mask is quantize_model's own (a cheap two-level quantization with the caller's pruning settings),
// so the two can never disagree on which weights a fraction prunes.
#include <cstring>

#include "netquant/error.h"
#include "netquant/quantize.h"

namespace nq {

TensorSet prune_model(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params) {
  NQ_CHECK(params.prune >= 0 && params.prune < 1, ErrorCode::kInvalidArgument,
           "prune fraction must be in [0, 1), got " << params.prune);
  ModelQuantizeParams mask_params;
  mask_params.prune = params.prune;
  mask_params.skip_1d = params.skip_1d;
  mask_params.include_regex = params.include_regex;  // the same tensors as quantize_model selects
  mask_params.exclude_regex = params.exclude_regex;
  mask_params.importance_transform = params.importance_transform;
  mask_params.quant.method = Method::kHwKmeans;  // every method prunes the same weights; two levels are cheap
  mask_params.quant.k = 2;
  // Tensor scope: the mask does not depend on the scope (pruning is model-wide, before any problem), and tensor
  // scope streams a model larger than memory through in waves, as global scope cannot.
  mask_params.scope = parse_scope("tensor");
  mask_params.batch_weights = params.batch_weights;
  mask_params.quant.backend = params.quant.backend;
  const QuantizedModel mask = quantize_model(model, importance, mask_params);
  TensorSet out;
  out.metadata() = model.metadata();
  for (const QuantizedTensor& t : mask.tensors) {
    Tensor kept = model.at(t.name);  // its own dtype and bits; a pruned entry becomes all-zero bytes: +0 (or 0)
    if (t.quantized) {
      const size_t size = dtype_size(kept.dtype());
      unsigned char* bytes = nullptr;  // the copy is made at the first pruned entry (a mapped file's tensor is a view)
      for (size_t i = 0; i < t.indices.size(); ++i)
        if (t.indices[i] == kPrunedIndex) {
          if (!bytes) bytes = static_cast<unsigned char*>(kept.mutable_data());
          std::memset(bytes + i * size, 0, size);
        }
    }
    out.add(std::move(kept));
  }
  return out;
}

}  // namespace nq
