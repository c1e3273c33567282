// The built-in optimizers (sgd_step, adam_step) against a float64 replay of PyTorch's update rules, written the
// way torch.optim writes them (Adam: step size lr / (1 − β1^t), denominator sqrt(v) / sqrt(1 − β2^t) + ε), over
// several steps with weight decay, on a count that spans several of the elementwise chunks threads split.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/parallel_for.h"
#include "nn/nn_ops.h"

namespace nq::nn {
namespace {

constexpr int64_t kCount = 2 * kElementwiseChunk + 37;  // three chunks, the last one short
constexpr int kSteps = 7;

template <class T>
std::vector<T> draw(std::mt19937_64& rng, double scale) {
  std::normal_distribution<double> d(0.0, scale);
  std::vector<T> v(static_cast<size_t>(kCount));
  for (T& x : v) x = static_cast<T>(d(rng));
  return v;
}

// Tolerance per type, relative to the quantity's scale (its typical magnitude: a difference of two such terms can
// cancel to far less). The state is stored in T after every step, as the replay stores it, so only the order of a
// few fp64 operations differs: float results land a few ulps of the scale apart, double ones far closer.
template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 1e-6 : 1e-12;
}

template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double scale, const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = want[i];
    ASSERT_NEAR(g, w, tolerance<T>() * (std::fabs(w) + scale)) << what << " at " << i;
  }
}

template <class T>
void check_sgd(double momentum, double weight_decay) {
  SCOPED_TRACE("momentum " + std::to_string(momentum) + " weight decay " + std::to_string(weight_decay));
  std::mt19937_64 rng(71);
  std::vector<T> w = draw<T>(rng, 0.1), v(static_cast<size_t>(kCount), T(0));
  std::vector<double> rw(w.begin(), w.end()), rv(rw.size(), 0.0);
  const double lr = 0.05;
  for (int t = 1; t <= kSteps; ++t) {
    const std::vector<T> g = draw<T>(rng, 1.0);
    cpu::sgd_step(w.data(), g.data(), momentum != 0 ? v.data() : nullptr, kCount, lr, momentum, weight_decay);
    for (size_t i = 0; i < rw.size(); ++i) {  // torch.optim.SGD, dampening 0, no Nesterov
      double d = static_cast<double>(g[i]) + weight_decay * rw[i];
      if (momentum != 0) {
        rv[i] = t == 1 ? d : momentum * rv[i] + d;  // the buffer starts as a copy of the first gradient
        rv[i] = static_cast<double>(static_cast<T>(rv[i]));
        d = rv[i];
      }
      rw[i] = static_cast<double>(static_cast<T>(rw[i] - lr * d));
    }
    expect_close(w, rw, 0.1, "w after step " + std::to_string(t));
    if (momentum != 0) expect_close(v, rv, 10.0, "momentum after step " + std::to_string(t));
  }
}

template <class T>
void check_adam(double beta1, double beta2, double weight_decay) {
  SCOPED_TRACE("betas " + std::to_string(beta1) + " " + std::to_string(beta2) + " weight decay " +
               std::to_string(weight_decay));
  std::mt19937_64 rng(72);
  std::vector<T> w = draw<T>(rng, 0.1), m(static_cast<size_t>(kCount), T(0)), v(m);
  std::vector<double> rw(w.begin(), w.end()), rm(rw.size(), 0.0), rv(rw.size(), 0.0);
  const double lr = 1e-3, eps = 1e-8;
  for (int t = 1; t <= kSteps; ++t) {
    // Gradients of changing scale, so that v's bias correction matters at every step.
    const std::vector<T> g = draw<T>(rng, std::pow(3.0, t % 3));
    cpu::adam_step(w.data(), g.data(), m.data(), v.data(), kCount, lr, beta1, beta2, eps, weight_decay, t);
    const double step_size = lr / (1 - std::pow(beta1, t));
    const double root_c2 = std::sqrt(1 - std::pow(beta2, t));
    for (size_t i = 0; i < rw.size(); ++i) {  // torch.optim.Adam (amsgrad off), L2 decay added to the gradient
      const double d = static_cast<double>(g[i]) + weight_decay * rw[i];
      rm[i] = static_cast<double>(static_cast<T>(beta1 * rm[i] + (1 - beta1) * d));
      rv[i] = static_cast<double>(static_cast<T>(beta2 * rv[i] + (1 - beta2) * d * d));
      rw[i] = static_cast<double>(static_cast<T>(rw[i] - step_size * rm[i] / (std::sqrt(rv[i]) / root_c2 + eps)));
    }
    expect_close(m, rm, 10.0, "m after step " + std::to_string(t));
    expect_close(v, rv, 100.0, "v after step " + std::to_string(t));
    expect_close(w, rw, 0.1, "w after step " + std::to_string(t));
  }
}

TEST(Optimizers, SgdMatchesTorchRulesInFloat64Replay) {
  for (double momentum : {0.0, 0.9})
    for (double wd : {0.0, 5e-4}) {
      check_sgd<float>(momentum, wd);
      check_sgd<double>(momentum, wd);
    }
}

TEST(Optimizers, AdamMatchesTorchRulesInFloat64Replay) {
  for (double wd : {0.0, 1e-2}) {
    check_adam<float>(0.9, 0.999, wd);
    check_adam<double>(0.9, 0.999, wd);
    check_adam<double>(0.5, 0.9, wd);  // bias corrections far from 1 for every step here
  }
}

}  // namespace
}  // namespace nq::nn
