#include "quant/model_values.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/mapped_pages.h"
#include "core/parallel_for.h"
#include "netquant/error.h"

namespace nq::quant {

namespace {

// "FILE: " for a tensor read from a file, so that a message names the shard or importance file too.
std::string file_prefix(const Tensor& t) { return t.source().empty() ? std::string() : t.source() + ": "; }

// The first fault over chunks, each chunk's own first fault given: weights first, then importance, in flat order.
ValueFaults first_fault(const std::vector<ValueFaults>& chunks) {
  ValueFaults first;
  for (const ValueFaults& f : chunks)
    if (f.weight >= 0) {
      first.weight = f.weight;
      return first;
    }
  for (const ValueFaults& f : chunks)
    if (f.importance >= 0) {
      first.importance = f.importance;
      return first;
    }
  return first;
}

}  // namespace

ValueSource::ValueSource(const Tensor& weights, const Tensor* importance, ImportanceTransform transform)
    : weights_(&weights), importance_(importance), transform_(transform) {
  if (!importance_ || transform_ != ImportanceTransform::kNormalize) return;
  const int64_t n = importance_->numel();
  std::vector<float> buf(static_cast<size_t>(std::min<int64_t>(n, kInlineLoopMax)));
  double sum = 0;  // in element order: the scale does not depend on the chunking or the thread count
  for (int64_t i0 = 0; i0 < n; i0 += kInlineLoopMax) {
    const int64_t i1 = std::min(n, i0 + kInlineLoopMax);
    importance_->to_f32(i0, i1, buf.data());
    for (int64_t i = 0; i < i1 - i0; ++i) sum += buf[static_cast<size_t>(i)];
  }
  scale_ = normalize_scale(n, sum);
}

ValueFaults ValueSource::convert(int64_t i0, int64_t i1, float* w, float* h) const {
  ValueFaults faults;
  weights_->to_f32(i0, i1, w);
  const int64_t n = i1 - i0;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) {
      faults.weight = i0 + i;
      break;
    }
  auto release = [&](const Tensor& t) {
    if (!release_pages_) return;
    const size_t elt = dtype_size(t.dtype());
    release_mapped_pages(static_cast<const uint8_t*>(t.data()) + static_cast<size_t>(i0) * elt,
                         static_cast<size_t>(n) * elt);
  };
  release(*weights_);
  if (!importance_) return faults;
  importance_->to_f32(i0, i1, h);
  release(*importance_);
  for (int64_t i = 0; i < n; ++i)
    if (!(std::isfinite(h[i]) && h[i] >= 0)) {
      faults.importance = i0 + i;
      break;
    }
  if (transform_ == ImportanceTransform::kSqrt)
    for (int64_t i = 0; i < n; ++i) h[i] = std::sqrt(h[i]);
  if (transform_ == ImportanceTransform::kNormalize)
    for (int64_t i = 0; i < n; ++i) h[i] = normalize_importance(h[i], scale_);
  return faults;
}

void ValueSource::convert_all(float* w, float* h) const {
  const int64_t n = size();
  // Each thread converts (and so faults in) its own chunks: one thread's page faults were a tenth of a row-scope
  // run on 2 cores.
  std::vector<ValueFaults> faults(static_cast<size_t>((n + kInlineLoopMax - 1) / kInlineLoopMax));
  parallel_for_chunks(n, kInlineLoopMax, [&](int64_t i0, int64_t i1) {
    faults[static_cast<size_t>(i0 / kInlineLoopMax)] = convert(i0, i1, w + i0, importance_ ? h + i0 : nullptr);
  });
  throw_fault(first_fault(faults));
}

void ValueSource::check_all() const {
  const int64_t n = size();
  const int64_t chunks = (n + kInlineLoopMax - 1) / kInlineLoopMax;
  std::vector<ValueFaults> faults(static_cast<size_t>(chunks));
#pragma omp parallel if (chunks > 1)
  {
    std::vector<float> w(static_cast<size_t>(kInlineLoopMax)), h(importance_ ? w.size() : 0);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * kInlineLoopMax;
      faults[static_cast<size_t>(c)] = convert(i0, std::min(n, i0 + kInlineLoopMax), w.data(), h.data());
    }
  }
  throw_fault(first_fault(faults));
}

void ValueSource::throw_fault(const ValueFaults& first) const {
  float v = 0;
  if (first.weight >= 0) {
    weights_->to_f32(first.weight, first.weight + 1, &v);
    NQ_FAIL(ErrorCode::kInvalidArgument, file_prefix(*weights_) << "tensor '" << weights_->name() << "': weight "
                                                                << first.weight << " is not finite (" << v << ")");
  }
  if (first.importance >= 0) {
    importance_->to_f32(first.importance, first.importance + 1, &v);
    NQ_FAIL(ErrorCode::kInvalidArgument, file_prefix(*importance_) << "importance of tensor '" << weights_->name()
                                                                   << "': value " << first.importance << " is " << v
                                                                   << " (must be finite and >= 0)");
  }
}

}  // namespace nq::quant
