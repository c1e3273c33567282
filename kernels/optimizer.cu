// CUDA optimizer steps (nn_ops.h): SGD with momentum and weight decay, and Adam; PyTorch's update rules, fp64
// arithmetic per element exactly as the CPU op; and the gradient mask of retraining a pruned net.
#include <cmath>

#include "nn/nn_formulas.h"
#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;

template <class T>
__global__ void sgd_kernel(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ v, int64_t count, double lr,
                           double momentum, double wd) {
  NQ_GRID_STRIDE(i, count) {
    T unused{};  // v is touched only with momentum
    sgd_update(w[i], g[i], v ? v[i] : unused, lr, momentum, wd);
  }
}

template <class T>
__global__ void adam_kernel(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            int64_t count, double lr, double b1, double b2, double eps, double wd, double c1,
                            double c2) {
  NQ_GRID_STRIDE(i, count) { adam_update(w[i], g[i], m[i], v[i], lr, b1, b2, eps, wd, c1, c2); }
}

template <class T>
void sgd_impl(T* w, const T* g, T* v, int64_t count, double lr, double momentum, double wd) {
  if (count <= 0) return;
  sgd_kernel<T><<<nn_grid(count), kNnThreads>>>(w, g, v, count, lr, momentum, wd);
  NQ_CUDA_CHECK_LAUNCH("sgd_kernel");
}

template <class T>
void adam_impl(T* w, const T* g, T* m, T* v, int64_t count, double lr, double b1, double b2, double eps, double wd,
               int64_t t) {
  NQ_CHECK(t >= 1, ErrorCode::kInvalidArgument, "adam: step " << t << " must be at least 1");
  if (count <= 0) return;
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double c2 = 1.0 - std::pow(b2, static_cast<double>(t));
  adam_kernel<T><<<nn_grid(count), kNnThreads>>>(w, g, m, v, count, lr, b1, b2, eps, wd, c1, c2);
  NQ_CUDA_CHECK_LAUNCH("adam_kernel");
}

template <class T>
__global__ void mask_kernel(T* __restrict__ g, const T* __restrict__ keep, int64_t count) {
  NQ_GRID_STRIDE(i, count) { g[i] = keep[i] != T(0) ? g[i] : T(0); }
}

template <class T>
void mask_impl(T* g, const T* keep, int64_t count) {
  if (count <= 0) return;
  mask_kernel<T><<<nn_grid(count), kNnThreads>>>(g, keep, count);
  NQ_CUDA_CHECK_LAUNCH("mask_kernel");
}

}  // namespace

#define NQ_NN_CUDA_OPTIMIZERS(T)                                                                               \
  void sgd_step(T* w, const T* g, T* v, int64_t count, double lr, double momentum, double weight_decay) {     \
    sgd_impl<T>(w, g, v, count, lr, momentum, weight_decay);                                                 \
  }                                                                                                          \
  void adam_step(T* w, const T* g, T* m, T* v, int64_t count, double lr, double beta1, double beta2,         \
                 double eps, double weight_decay, int64_t t) {                                               \
    adam_impl<T>(w, g, m, v, count, lr, beta1, beta2, eps, weight_decay, t);                                 \
  }                                                                                                          \
  void mask_gradient(T* g, const T* keep, int64_t count) { mask_impl<T>(g, keep, count); }

NQ_NN_CUDA_OPTIMIZERS(float)
NQ_NN_CUDA_OPTIMIZERS(double)

}  // namespace nq::nn::cuda
