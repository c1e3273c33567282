// CUDA ops of the fully connected layer (nn_ops.h): cuBLAS GEMMs for forward and gradient; the OBD Hessian
// diagonal (Becker & LeCun 1988; LeCun et al. 1990) is the gradient GEMMs with squared operands (squared into
// scratch, then the same GEMMs); per-sample squared gradients as (gy²)ᵀ(x²).
#include "cublas_handle.cuh"
#include "device_buffer.cuh"
#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::gemm;
using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;

template <class T>
__global__ void add_bias_kernel(T* __restrict__ y, const T* __restrict__ b, int64_t n, int64_t out) {
  NQ_GRID_STRIDE(i, n * out) y[i] += b[i % out];
}

template <class T>
void forward_impl(const T* x, const T* w, const T* b, T* y, int64_t n, int64_t in, int64_t out) {
  gemm(false, true, n, out, in, T(1), x, in, w, in, T(0), y, out);  // y = x Wᵀ
  if (n * out > 0) {
    add_bias_kernel<T><<<nn_grid(n * out), kNnThreads>>>(y, b, n, out);
    NQ_CUDA_CHECK_LAUNCH("add_bias_kernel");
  }
}

template <class T>
void backward_impl(const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, int64_t n, int64_t in, int64_t out) {
  gemm(true, false, out, in, n, T(1), gy, out, x, in, T(0), gw, in);
  ::nq::cuda::column_sums<T, false, false>(gy, gb, n, out);
  if (gx) gemm(false, false, n, in, out, T(1), gy, out, w, in, T(0), gx, in);
}

template <class T>
void hessian_impl(const T* x, const T* w, const T* hy, T* hx, T* hw, T* hb, int64_t n, int64_t in, int64_t out) {
  T* x2 = ::nq::cuda::scratch<T>(0, n * in);
  T* w2 = hx ? ::nq::cuda::scratch<T>(1, out * in) : nullptr;
  ::nq::cuda::square_into(x, x2, n * in);
  if (hx) ::nq::cuda::square_into(w, w2, out * in);
  backward_impl<T>(x2, w2, hy, hx, hw, hb, n, in, out);
}

template <class T>
void sqgrad_impl(const T* x, const T* w, const T* gy, T* gx, T* sw, T* sb, int64_t n, int64_t in, int64_t out) {
  T* x2 = ::nq::cuda::scratch<T>(0, n * in);
  T* g2 = ::nq::cuda::scratch<T>(1, n * out);
  ::nq::cuda::square_into(x, x2, n * in);
  ::nq::cuda::square_into(gy, g2, n * out);
  gemm(true, false, out, in, n, T(1), g2, out, x2, in, T(1), sw, in);
  ::nq::cuda::column_sums<T, true, true>(gy, sb, n, out);
  if (gx) gemm(false, false, n, in, out, T(1), gy, out, w, in, T(0), gx, in);
}

}  // namespace

#define NQ_NN_CUDA_LINEAR(T)                                                                                  \
  void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t n, int64_t in, int64_t out) {       \
    forward_impl<T>(x, w, b, y, n, in, out);                                                                \
  }                                                                                                         \
  void linear_backward(const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, int64_t n, int64_t in,     \
                       int64_t out) {                                                                       \
    backward_impl<T>(x, w, gy, gx, gw, gb, n, in, out);                                                     \
  }                                                                                                         \
  void linear_hessian_backward(const T* x, const T* w, const T* hy, T* hx, T* hw, T* hb, int64_t n,         \
                               int64_t in, int64_t out) {                                                   \
    hessian_impl<T>(x, w, hy, hx, hw, hb, n, in, out);                                                      \
  }                                                                                                         \
  void linear_backward_sqgrad(const T* x, const T* w, const T* gy, T* gx, T* sw, T* sb, int64_t n,          \
                              int64_t in, int64_t out) {                                                    \
    sqgrad_impl<T>(x, w, gy, gx, sw, sb, n, in, out);                                                       \
  }

NQ_NN_CUDA_LINEAR(float)
NQ_NN_CUDA_LINEAR(double)

}  // namespace nq::nn::cuda
