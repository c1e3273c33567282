// CUDA ops of the softmax cross-entropy output (nn_ops.h): probabilities, loss, accuracy, gradient, the OBD output
// curvature p(1 − p) (Becker & LeCun 1988) and the columns of the exact Gauss-Newton factor. One thread per
// sample for the row-wise forward (C is small: 10 classes), elementwise otherwise; fp64 inside, as the CPU.
#include "nn/nn_formulas.h"
#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;

template <class T>
__global__ void softmax_ce_forward_kernel(const T* __restrict__ z, const int32_t* __restrict__ labels,
                                          T* __restrict__ p, T* __restrict__ loss, T* __restrict__ correct,
                                          int64_t n, int64_t c) {
  NQ_GRID_STRIDE(i, n) { softmax_ce_sample(z + i * c, labels[i], p + i * c, loss[i], correct[i], c); }
}

template <class T>
__global__ void softmax_ce_backward_kernel(const T* __restrict__ p, const int32_t* __restrict__ labels,
                                           T* __restrict__ gz, T scale, int64_t n, int64_t c) {
  NQ_GRID_STRIDE(j, n * c) gz[j] = scale * (p[j] - (j % c == labels[j / c] ? T(1) : T(0)));
}

template <class T>
__global__ void softmax_ce_hessian_kernel(const T* __restrict__ p, T* __restrict__ hz, T scale, int64_t count) {
  NQ_GRID_STRIDE(j, count) hz[j] = scale * p[j] * (T(1) - p[j]);
}

template <class T>
__global__ void softmax_ce_factor_kernel(const T* __restrict__ p, T* __restrict__ gz, int64_t col, int64_t n,
                                         int64_t c) {
  NQ_GRID_STRIDE(j, n * c) {
    const int64_t i = j / c, k = j % c;
    const T r = sqrt(p[i * c + col]);
    gz[j] = r * ((k == col ? T(1) : T(0)) - p[j]);
  }
}

template <class T>
void forward_impl(const T* z, const int32_t* labels, T* p, T* loss, T* correct, int64_t n, int64_t c) {
  NQ_CHECK(c >= 1 && n >= 0, ErrorCode::kInvalidArgument, "softmax: bad shape " << n << " x " << c);
  if (n == 0) return;
  softmax_ce_forward_kernel<T><<<nn_grid(n), kNnThreads>>>(z, labels, p, loss, correct, n, c);
  NQ_CUDA_CHECK_LAUNCH("softmax_ce_forward_kernel");
}

template <class T>
void backward_impl(const T* p, const int32_t* labels, T* gz, T scale, int64_t n, int64_t c) {
  if (n * c <= 0) return;
  softmax_ce_backward_kernel<T><<<nn_grid(n * c), kNnThreads>>>(p, labels, gz, scale, n, c);
  NQ_CUDA_CHECK_LAUNCH("softmax_ce_backward_kernel");
}

template <class T>
void hessian_impl(const T* p, T* hz, T scale, int64_t n, int64_t c) {
  if (n * c <= 0) return;
  softmax_ce_hessian_kernel<T><<<nn_grid(n * c), kNnThreads>>>(p, hz, scale, n * c);
  NQ_CUDA_CHECK_LAUNCH("softmax_ce_hessian_kernel");
}

template <class T>
void factor_impl(const T* p, T* gz, int64_t col, int64_t n, int64_t c) {
  NQ_CHECK(col >= 0 && col < c, ErrorCode::kInvalidArgument, "softmax factor column " << col << " of " << c);
  if (n * c <= 0) return;
  softmax_ce_factor_kernel<T><<<nn_grid(n * c), kNnThreads>>>(p, gz, col, n, c);
  NQ_CUDA_CHECK_LAUNCH("softmax_ce_factor_kernel");
}

}  // namespace

#define NQ_NN_CUDA_SOFTMAX_CE(T)                                                                               \
  void softmax_ce_forward(const T* z, const int32_t* labels, T* p, T* loss, T* correct, int64_t n, int64_t c) { \
    forward_impl<T>(z, labels, p, loss, correct, n, c);                                                      \
  }                                                                                                          \
  void softmax_ce_backward(const T* p, const int32_t* labels, T* gz, T scale, int64_t n, int64_t c) {         \
    backward_impl<T>(p, labels, gz, scale, n, c);                                                            \
  }                                                                                                          \
  void softmax_ce_hessian(const T* p, T* hz, T scale, int64_t n, int64_t c) { hessian_impl<T>(p, hz, scale, n, c); } \
  void softmax_ce_factor_column(const T* p, T* gz, int64_t k, int64_t n, int64_t c) {                          \
    factor_impl<T>(p, gz, k, n, c);                                                                          \
  }

NQ_NN_CUDA_SOFTMAX_CE(float)
NQ_NN_CUDA_SOFTMAX_CE(double)

}  // namespace nq::nn::cuda
