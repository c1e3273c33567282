// Shared fixtures of the quantizer tests: seeded random weights and importances — heavy-tailed weights (0.05 ×
// Student-t, 3 degrees of freedom), as trained weights are, and Gamma(0.7, 2) importances kept off zero — and the
// CPU parameters a test starts from.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "netquant/backend.h"
#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq::test {

inline std::vector<float> student_t(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(0.05 * t(rng));
  return v;
}

// An importance tensor (float32, same name and shape) for every float tensor of `model`, in its order.
inline TensorSet make_importance(const TensorSet& model, uint64_t seed) {
  TensorSet s;
  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> g(0.7, 2.0);
  for (const Tensor& t : model) {
    if (!dtype_is_float(t.dtype())) continue;
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (auto& x : v) x = static_cast<float>(g(rng) + 1e-3);
    s.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  return s;
}

// A model of Student-t tensors of the given shapes (seeds seed, seed + 1, …) and its importance, make_importance's
// with each tensor's values multiplied by scale[name]: tensors whose importances differ by orders of magnitude, as
// layers' Hessians do.
struct ScaledModel {
  TensorSet model, importance;
};
inline ScaledModel scaled_model(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                                const std::map<std::string, float>& scale, uint64_t seed) {
  ScaledModel f;
  for (const auto& [name, shape] : shapes)
    f.model.add(Tensor::from_f32(name, shape, student_t(static_cast<size_t>(shape_numel(shape)), seed++)));
  for (const Tensor& t : make_importance(f.model, seed)) {
    std::vector<float> v = t.to_f32();
    for (float& x : v) x *= scale.at(t.name());
    f.importance.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  return f;
}

// Method m with k levels on the CPU backend, every other parameter at its default.
inline QuantizeParams params(Method m, int k) {
  QuantizeParams p;
  p.method = m;
  p.k = k;
  p.backend = Backend::kCpu;
  return p;
}

}  // namespace nq::test
