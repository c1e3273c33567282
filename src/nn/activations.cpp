// CPU ops of the ReLU activation. Its Gauss-Newton Hessian backward is the gradient mask (f'(a)^2 = 1[a>0]).
#include "nn/nn_ops.h"

namespace nq::nn::cpu {

#define NQ_NN_DEFINE_RELU(T)                                                                 \
  void relu_forward(const T* x, T* y, int64_t count) {                                     \
    for (int64_t i = 0; i < count; ++i)       \
        y[i] = x[i] > T(0) ? x[i] : T(0);                                                  \
  }                                                                                        \
  void relu_backward(const T* y, const T* gy, T* gx, int64_t count) {                      \
    for (int64_t i = 0; i < count; ++i)       \
        gx[i] = y[i] > T(0) ? gy[i] : T(0);                                                \
  }

NQ_NN_DEFINE_RELU(float)
NQ_NN_DEFINE_RELU(double)

}  // namespace nq::nn::cpu
