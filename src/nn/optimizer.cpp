// CPU optimizer steps (elementwise): SGD with momentum and weight decay, and Adam; PyTorch's update rules; and the
// gradient mask of retraining a pruned net.
// They run on the OpenMP threads in fixed chunks: each element's update is independent, so the result does not
// depend on the thread count, and Adam's fp64 divide and square root per parameter would otherwise be a serial
// quarter of a data-parallel training step (measured on LeNet-300-100).
#include <cmath>

#include "core/parallel_for.h"

#include "nn/nn_formulas.h"
#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

template <class T>
void sgd_impl(T* w, const T* g, T* v, int64_t count, double lr, double momentum, double wd) {
  parallel_for_chunks(count, kElementwiseChunk, [&](int64_t i0, int64_t i1) {
    T unused{};  // v is touched only with momentum
    for (int64_t i = i0; i < i1; ++i) sgd_update(w[i], g[i], v ? v[i] : unused, lr, momentum, wd);
  });
}

template <class T>
void adam_impl(T* w, const T* g, T* m, T* v, int64_t count, double lr, double b1, double b2, double eps, double wd,
               int64_t t) {
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double c2 = 1.0 - std::pow(b2, static_cast<double>(t));
  parallel_for_chunks(count, kElementwiseChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) adam_update(w[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, c1, c2);
  });
}

template <class T>
void mask_impl(T* g, const T* keep, int64_t count) {
  parallel_for_chunks(count, kElementwiseChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) g[i] = keep[i] != T(0) ? g[i] : T(0);
  });
}

}  // namespace

#define NQ_NN_DEFINE_OPTIMIZERS(T)                                                                             \
  void sgd_step(T* w, const T* g, T* v, int64_t count, double lr, double momentum, double weight_decay) {     \
    sgd_impl(w, g, v, count, lr, momentum, weight_decay);                                                    \
  }                                                                                                          \
  void adam_step(T* w, const T* g, T* m, T* v, int64_t count, double lr, double beta1, double beta2,         \
                 double eps, double weight_decay, int64_t t) {                                               \
    adam_impl(w, g, m, v, count, lr, beta1, beta2, eps, weight_decay, t);                                    \
  }                                                                                                          \
  void mask_gradient(T* g, const T* keep, int64_t count) { mask_impl(g, keep, count); }

NQ_NN_DEFINE_OPTIMIZERS(float)
NQ_NN_DEFINE_OPTIMIZERS(double)

}  // namespace nq::nn::cpu
