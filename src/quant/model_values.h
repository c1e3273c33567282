// Internal: a quantized tensor's values as quantize_model's problems see them — the weights as float32, the
// importance as float32 after --importance-transform — converted by ranges. The model driver converts a few
// tensors at a time (a model larger than memory is quantized in waves) and the streamed pruning selection scores
// ranges it never stores; both go through convert(), so they agree to the bit.
#pragma once

#include <cstdint>
#include <vector>

#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq::quant {

// --importance-transform normalize: h · n / Σh (mean 1 per tensor), Σh in fp64, the product in fp64 and rounded
// once. The scale alone may exceed float's range (importances of mean 1e-39 have a scale of 1e39), the product
// never does (h · n / Σh ≤ n). Σh = 0 leaves h as it is. Every driver (in process, sharded) scales through these.
inline double normalize_scale(int64_t n, double sum) { return sum > 0 ? static_cast<double>(n) / sum : 1.0; }
inline float normalize_importance(float h, double scale) {
  return static_cast<float>(static_cast<double>(h) * scale);
}

// The first value of a range that fails its check, or −1: a weight that is not finite, an importance that is not
// finite or is negative (checked before the transform, as the user wrote it).
struct ValueFaults {
  int64_t weight = -1;
  int64_t importance = -1;
};

class ValueSource {
 public:
  // kNormalize's per-tensor scale (mean importance 1) is computed here, in one serial pass over the importance in
  // element order, so that every range is scaled alike. `importance` null: none.
  ValueSource(const Tensor& weights, const Tensor* importance, ImportanceTransform transform);

  const Tensor& weights() const { return *weights_; }
  bool has_importance() const { return importance_ != nullptr; }
  int64_t size() const { return weights_->numel(); }

  // Values [i0, i1) into w (and h when there is an importance), and the first faults among them.
  ValueFaults convert(int64_t i0, int64_t i1, float* w, float* h) const;
  // The whole tensor into w[0, size()) (and h, when there is an importance), converted in parallel chunks; throws
  // kInvalidArgument naming the tensor, the index and the value at the first fault (weights before importance).
  void convert_all(float* w, float* h) const;
  // The same checks without keeping the values (a streamed run checks every tensor before quantizing any).
  void check_all() const;
  // From now on every conversion gives back the input pages it read when they are a file mapping
  // (core/mapped_pages.h), for callers that do not read those values again (a streamed run reads each range once
  // per pass); a page read again after all is read from the file.
  void release_pages_after_reading() { release_pages_ = true; }

 private:
  void throw_fault(const ValueFaults& first) const;

  const Tensor* weights_;
  const Tensor* importance_;
  ImportanceTransform transform_;
  double scale_ = 1.0;  // normalize_scale
  bool release_pages_ = false;
};

}  // namespace nq::quant
