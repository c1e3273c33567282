// Internal: per-element formulas of the built-in networks shared by the CPU ops and the CUDA kernels
// ("formulas once"): the optimizer updates and the per-sample softmax cross-entropy.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define NQ_NN_HD __host__ __device__
#else
#define NQ_NN_HD
#endif

namespace nq::nn {

// SGD with momentum and L2 weight decay, PyTorch semantics: g' = g + wd w; v = momentum v + g'; w -= lr v.
template <class T>
NQ_NN_HD inline void sgd_update(T& w, T g, T& v, double lr, double momentum, double wd) {
  const double gi = static_cast<double>(g) + wd * static_cast<double>(w);
  double step = gi;
  if (momentum != 0) {
    const double vi = momentum * static_cast<double>(v) + gi;
    v = static_cast<T>(vi);
    step = vi;
  }
  w = static_cast<T>(static_cast<double>(w) - lr * step);
}

// Adam (Kingma & Ba), PyTorch semantics with L2 decay added to g; c1 = 1 − β1^t, c2 = 1 − β2^t.
template <class T>
NQ_NN_HD inline void adam_update(T& w, T g, T& m, T& v, double lr, double b1, double b2, double eps, double wd,
                                 double c1, double c2) {
  const double gi = static_cast<double>(g) + wd * static_cast<double>(w);
  const double mi = b1 * static_cast<double>(m) + (1 - b1) * gi;
  const double vi = b2 * static_cast<double>(v) + (1 - b2) * gi * gi;
  m = static_cast<T>(mi);
  v = static_cast<T>(vi);
  w = static_cast<T>(static_cast<double>(w) - lr * (mi / c1) / (sqrt(vi / c2) + eps));
}

// One sample of softmax cross-entropy over c logits z: probabilities p (max-shifted), the loss −log p[y], and
// whether the arg-max (lowest index on ties) is the label.
template <class T>
NQ_NN_HD inline void softmax_ce_sample(const T* z, int32_t y, T* p, T& loss, T& correct, int64_t c) {
  int64_t arg = 0;
  for (int64_t k = 1; k < c; ++k)
    if (z[k] > z[arg]) arg = k;
  const double zmax = z[arg];
  double sum = 0;
  for (int64_t k = 0; k < c; ++k) sum += exp(static_cast<double>(z[k]) - zmax);
  for (int64_t k = 0; k < c; ++k) p[k] = static_cast<T>(exp(static_cast<double>(z[k]) - zmax) / sum);
  loss = static_cast<T>(log(sum) - (static_cast<double>(z[y]) - zmax));
  correct = arg == y ? T(1) : T(0);
}

}  // namespace nq::nn
