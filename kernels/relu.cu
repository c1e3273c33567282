// CUDA ops of the ReLU activation (nn_ops.h); its Gauss-Newton Hessian backward is the same mask.
#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;

template <class T>
__global__ void relu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t count) {
  NQ_GRID_STRIDE(i, count) y[i] = x[i] > T(0) ? x[i] : T(0);
}

// gx may alias gy (in place): each element is read and written by the same thread only.
template <class T>
__global__ void relu_backward_kernel(const T* __restrict__ y, const T* gy, T* gx, int64_t count) {
  NQ_GRID_STRIDE(i, count) gx[i] = y[i] > T(0) ? gy[i] : T(0);
}

template <class T>
void forward_impl(const T* x, T* y, int64_t count) {
  if (count <= 0) return;
  relu_forward_kernel<T><<<nn_grid(count), kNnThreads>>>(x, y, count);
  NQ_CUDA_CHECK_LAUNCH("relu_forward_kernel");
}

template <class T>
void backward_impl(const T* y, const T* gy, T* gx, int64_t count) {
  if (count <= 0) return;
  relu_backward_kernel<T><<<nn_grid(count), kNnThreads>>>(y, gy, gx, count);
  NQ_CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

}  // namespace

#define NQ_NN_CUDA_RELU(T)                                                                                   \
  void relu_forward(const T* x, T* y, int64_t count) { forward_impl<T>(x, y, count); }                     \
  void relu_backward(const T* y, const T* gy, T* gx, int64_t count) { backward_impl<T>(y, gy, gx, count); }

NQ_NN_CUDA_RELU(float)
NQ_NN_CUDA_RELU(double)

}  // namespace nq::nn::cuda
