// Helpers for the nn tests: tiny float64 networks, seeded data, and finite-difference oracles.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "netquant/io.h"
#include "nn/network.h"

namespace nq::nn::test {

inline LayerSpec linear(const char* name, int64_t out) { return {LayerKind::kLinear, name, out, 0, 1, 0}; }
inline LayerSpec conv(const char* name, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0) {
  return {LayerKind::kConv2d, name, out, k, stride, pad};
}
inline LayerSpec relu() { return {LayerKind::kReLU, "", 0, 0, 1, 0}; }
inline LayerSpec maxpool(int64_t k, int64_t stride = 0) { return {LayerKind::kMaxPool2d, "", 0, k, stride, 0}; }
inline LayerSpec flatten() { return {LayerKind::kFlatten, "", 0, 0, 1, 0}; }

inline NetSpec make_spec(int64_t c, int64_t h, int64_t w, int64_t classes, std::vector<LayerSpec> layers) {
  NetSpec s;
  s.name = "tiny";
  s.in_c = c, s.in_h = h, s.in_w = w;
  s.num_classes = classes;
  s.layers = std::move(layers);
  return s;
}

// The images `which` of `data`, in that order, with their labels (what pipeline's dataset_subset does; the nn
// tests do not link the pipeline).
inline Dataset images_of(const Dataset& data, const std::vector<int64_t>& which) {
  const int64_t per = data.size() ? data.images.numel() / data.size() : 0;
  std::vector<int64_t> shape = data.images.shape();
  shape[0] = static_cast<int64_t>(which.size());
  Dataset out;
  out.num_classes = data.num_classes;
  out.images = Tensor(data.images.name(), DType::kF32, shape);
  const float* in = data.images.data_as<float>();
  float* o = out.images.mutable_data_as<float>();
  for (size_t i = 0; i < which.size(); ++i) {
    std::copy(in + which[i] * per, in + (which[i] + 1) * per, o + static_cast<int64_t>(i) * per);
    out.labels.push_back(data.labels[static_cast<size_t>(which[i])]);
  }
  return out;
}

// A tiny problem: a float64 net with seeded random weights, inputs and labels.
struct Problem {
  Problem(const NetSpec& spec, int64_t n, uint64_t seed, double weight_scale = 0.5) : net(spec), n(n) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    w.resize(size_t(net.num_params()));
    for (double& v : w) v = weight_scale * normal(rng);
    x.resize(size_t(n * net.input_size()));
    for (double& v : x) v = normal(rng);
    y.resize(size_t(n));
    for (int32_t& v : y) v = static_cast<int32_t>(rng() % uint64_t(spec.num_classes));
    net.set_weights(w);
  }

  double mean_loss(const std::vector<double>& weights) {
    net.set_weights(weights);
    net.forward(x.data(), y.data(), n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += net.sample_loss()[i];
    return s / double(n);
  }
  std::vector<double> logits(const std::vector<double>& weights, int64_t sample) {
    net.set_weights(weights);
    net.forward(x.data() + sample * net.input_size(), y.data() + sample, 1);
    return std::vector<double>(net.logits(), net.logits() + net.num_classes());
  }
  // Gradient of the mean loss over samples [first, first+count) (all by default) by the backward walk.
  std::vector<double> gradient(const std::vector<double>& weights, int64_t first = 0, int64_t count = -1) {
    if (count < 0) count = n;
    net.set_weights(weights);
    net.forward(x.data() + first * net.input_size(), y.data() + first, count);
    std::vector<double> dz(size_t(count * net.num_classes()));
    cpu::softmax_ce_backward(net.probs(), net.labels(), dz.data(), 1.0 / double(count), count, net.num_classes());
    std::vector<double> g(size_t(net.num_params()));
    net.backward(BackwardMode::kGradient, dz.data(), g.data());
    return g;
  }
  // Mean over samples of the OBD diagonal (scale 1/n).
  std::vector<double> obd(const std::vector<double>& weights) {
    net.set_weights(weights);
    net.forward(x.data(), y.data(), n);
    std::vector<double> hz(size_t(n * net.num_classes()));
    cpu::softmax_ce_hessian(net.probs(), hz.data(), 1.0 / double(n), n, net.num_classes());
    std::vector<double> h(size_t(net.num_params()));
    net.backward(BackwardMode::kHessian, hz.data(), h.data());
    return h;
  }
  // Mean over samples of per-sample squared gradients (kFisher) or exact GGN columns (kGgn).
  std::vector<double> sqgrad(const std::vector<double>& weights, bool ggn) {
    net.set_weights(weights);
    net.forward(x.data(), y.data(), n);
    const int64_t c = net.num_classes();
    std::vector<double> dz(size_t(n * c)), acc(size_t(net.num_params()), 0.0);
    if (ggn) {
      for (int64_t k = 0; k < c; ++k) {
        cpu::softmax_ce_factor_column(net.probs(), dz.data(), k, n, c);
        net.backward(BackwardMode::kSqGrad, dz.data(), acc.data());
      }
    } else {
      cpu::softmax_ce_backward(net.probs(), net.labels(), dz.data(), 1.0, n, c);
      net.backward(BackwardMode::kSqGrad, dz.data(), acc.data());
    }
    for (double& v : acc) v /= double(n);
    return acc;
  }

  Network<double> net;
  int64_t n;
  std::vector<double> w, x;
  std::vector<int32_t> y;
};

// Central finite difference of f along coordinate i.
template <class F>
double central_diff(F&& f, std::vector<double> w, size_t i, double eps) {
  const double w0 = w[i];
  w[i] = w0 + eps;
  const double fp = f(w);
  w[i] = w0 - eps;
  const double fm = f(w);
  return (fp - fm) / (2 * eps);
}

// max_i |a_i - b_i| / (atol + max|b|): a scale-aware error for vectors of mixed magnitude.
inline double rel_max_error(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0, err = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::abs(b[i]));
  for (size_t i = 0; i < b.size(); ++i) err = std::max(err, std::abs(a[i] - b[i]));
  return err / (m > 0 ? m : 1.0);
}

}  // namespace nq::nn::test
