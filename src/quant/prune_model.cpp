// nq::prune_model / prune_model_each: the weights a pruned quantization keeps, with the pruned ones at 0 — the
// start of retraining a pruned net. The mask is quantize_model's own rule, by the same code: op (g) over the
// converted model when it fits in memory, else the streamed cut (prune_cut.h) that quantize_model's waves use.
// So the two can never disagree on which weights a fraction prunes. Nothing is quantized.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/memory_info.h"
#include "core/scratch_vector.h"
#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/model_values.h"
#include "quant/prune_cut.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "quant/tensor_selector.h"

namespace nq {

namespace {

// w, h (floats) and the mask byte per weight while the whole selection is converted at once.
constexpr double kHeldBytesPerWeight = 9;

// The tensor with mask[i] set entries zeroed: a copy when one is (a mapped file's tensor is a view), else itself.
Tensor zeroed(const Tensor& t, const uint8_t* mask) {
  Tensor kept = t;
  const size_t size = dtype_size(kept.dtype());
  unsigned char* bytes = nullptr;
  for (size_t i = 0; i < static_cast<size_t>(t.numel()); ++i)
    if (mask[i]) {
      if (!bytes) bytes = static_cast<unsigned char*>(kept.mutable_data());
      std::memset(bytes + i * size, 0, size);
    }
  return kept;
}

}  // namespace

void prune_model_each(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params,
                      const std::function<void(Tensor)>& take) {
  quant::check_model_params(params, importance != nullptr, /*with_quantizer=*/false);  // the method plays no part
  const quant::TensorSelector select(params);  // quantize_model's tensors, name filters included
  const std::vector<char> chosen = select.choose(model);
  std::vector<quant::ValueSource> sources;
  int64_t total_n = 0;
  for (size_t ti = 0; ti < model.size(); ++ti) {
    if (!chosen[ti]) continue;
    const Tensor& t = model[ti];
    const Tensor* it = nullptr;
    if (importance) {
      it = importance->find(t.name());
      quant::check_importance_layout(t.name(), t.shape(), it ? &it->shape() : nullptr, it ? it->dtype() : DType::kF32);
    }
    sources.emplace_back(t, it, params.importance_transform);
    total_n += t.numel();
  }
  const int64_t to_prune = static_cast<int64_t>(std::floor(params.prune * static_cast<double>(total_n)));

  // All at once when the converted selection fits in half the available memory (or batch_weights covers it);
  // else streamed: the cut from eight histogram passes over the unconverted model, then each tensor alone.
  const double available = static_cast<double>(available_memory_bytes());
  const bool at_once = params.batch_weights > 0
                           ? total_n <= params.batch_weights
                           : available == 0 || kHeldBytesPerWeight * static_cast<double>(total_n) <= available / 2;
  std::vector<std::vector<uint8_t>> masks(sources.size());
  quant::PruneCut cut;
  if (to_prune == 0 || !at_once) {
    if (!at_once)
      for (quant::ValueSource& s : sources) s.release_pages_after_reading();  // RSS: one tensor, not the inputs
    for (const quant::ValueSource& s : sources) s.check_all();  // every tensor's values before any output
    if (to_prune > 0) cut = quant::find_prune_cut(sources, to_prune);
  } else {
    std::vector<ScratchVector<float>> w(sources.size()), h(sources.size());
    quant::PruneArrays arrays;
    for (size_t s = 0; s < sources.size(); ++s) {
      const size_t n = static_cast<size_t>(sources[s].size());
      w[s].resize(n);
      if (importance) h[s].resize(n);
      sources[s].convert_all(w[s].data(), h[s].data());
      masks[s].assign(n, 0);
      arrays.w.push_back(w[s].data());
      if (importance) arrays.h.push_back(h[s].data());
      arrays.n.push_back(n);
      arrays.mask.push_back(masks[s].data());
    }
    // op (g), on the device for large models when there is one (the same mask)
    const Backend where = quant::problem_backend(resolve_backend(params.quant.backend), static_cast<size_t>(total_n));
    try {
      quant::ops_select_pruned(where, arrays, to_prune);
    } catch (const Error& e) {
      if (where != Backend::kCuda || e.code() != ErrorCode::kOutOfMemory) throw;
      quant::ops_select_pruned(Backend::kCpu, arrays, to_prune);
    }
  }

  for (size_t ti = 0, s = 0; ti < model.size(); ++ti) {
    const Tensor& t = model[ti];
    if (!chosen[ti] || to_prune == 0) {
      take(t);
      if (chosen[ti]) ++s;
      continue;
    }
    if (!at_once) {  // streamed: this tensor's mask from the cut, as a wave marks it
      const size_t n = static_cast<size_t>(t.numel());
      ScratchVector<float> tw(n), th(importance ? n : 0);
      sources[s].convert_all(tw.data(), th.data());
      masks[s].resize(n);
      quant::mark_pruned(cut, s, tw.data(), importance ? th.data() : nullptr, static_cast<int64_t>(n), masks[s].data());
    }
    take(zeroed(t, masks[s].data()));
    std::vector<uint8_t>().swap(masks[s]);
    ++s;
  }
}

TensorSet prune_model(const TensorSet& model, const TensorSet* importance, const ModelQuantizeParams& params) {
  TensorSet out;
  out.metadata() = model.metadata();
  prune_model_each(model, importance, params, [&](Tensor t) { out.add(std::move(t)); });
  return out;
}

}  // namespace nq
