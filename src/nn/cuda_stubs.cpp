// CPU-only build: every cuda:: nn op exists and throws kUnavailable, so `--backend cuda` is a clear error.
#include "nn/nn_ops.h"

#if !NQ_HAVE_CUDA
namespace nq::nn::cuda {
namespace {
[[noreturn]] void unavailable(const char* op) {
  NQ_FAIL(ErrorCode::kUnavailable, "nn op " << op << ": this netquant was built without CUDA (use --backend cpu)");
}
}  // namespace

#define NQ_NN_STUB_MEMORY(T)                                                            \
  T* buffer_alloc(int64_t, T) { unavailable("buffer_alloc"); }                          \
  void buffer_free(T*) {}                                                               \
  void buffer_upload(T*, const T*, int64_t) { unavailable("buffer_upload"); }           \
  void buffer_download(T*, const T*, int64_t) { unavailable("buffer_download"); }       \
  void buffer_fill(T*, int64_t, T) { unavailable("buffer_fill"); }

#define NQ_NN_STUB_OPS(T)                                                                                       \
  void linear_forward(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t) { unavailable("linear_forward"); } \
  void linear_backward(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t) {                  \
    unavailable("linear_backward");                                                                           \
  }                                                                                                           \
  void linear_hessian_backward(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t) {          \
    unavailable("linear_hessian_backward");                                                                   \
  }                                                                                                           \
  void linear_backward_sqgrad(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t) {           \
    unavailable("linear_backward_sqgrad");                                                                    \
  }                                                                                                           \
  void conv2d_forward(const T*, const T*, const T*, T*, T*, const Conv2dShape&) { unavailable("conv2d_forward"); } \
  void conv2d_backward(const T*, const T*, const T*, T*, T*, T*, const Conv2dShape&) {                         \
    unavailable("conv2d_backward");                                                                           \
  }                                                                                                           \
  void conv2d_hessian_backward(const T*, const T*, const T*, T*, T*, T*, const Conv2dShape&) {                 \
    unavailable("conv2d_hessian_backward");                                                                   \
  }                                                                                                           \
  void conv2d_backward_sqgrad(const T*, const T*, const T*, T*, T*, T*, const Conv2dShape&) {                  \
    unavailable("conv2d_backward_sqgrad");                                                                    \
  }                                                                                                           \
  void relu_forward(const T*, T*, int64_t) { unavailable("relu_forward"); }                                   \
  void relu_backward(const T*, const T*, T*, int64_t) { unavailable("relu_backward"); }                       \
  void maxpool2d_forward(const T*, T*, int32_t*, const Conv2dShape&) { unavailable("maxpool2d_forward"); }    \
  void maxpool2d_backward(const int32_t*, const T*, T*, const Conv2dShape&) { unavailable("maxpool2d_backward"); } \
  void softmax_ce_forward(const T*, const int32_t*, T*, T*, T*, int64_t, int64_t) {                           \
    unavailable("softmax_ce_forward");                                                                        \
  }                                                                                                           \
  void softmax_ce_backward(const T*, const int32_t*, T*, T, int64_t, int64_t) { unavailable("softmax_ce_backward"); } \
  void softmax_ce_hessian(const T*, T*, T, int64_t, int64_t) { unavailable("softmax_ce_hessian"); }           \
  void softmax_ce_factor_column(const T*, T*, int64_t, int64_t, int64_t) {                                    \
    unavailable("softmax_ce_factor_column");                                                                  \
  }                                                                                                           \
  void sgd_step(T*, const T*, T*, int64_t, double, double, double) { unavailable("sgd_step"); }               \
  void adam_step(T*, const T*, T*, T*, int64_t, double, double, double, double, double, int64_t) {            \
    unavailable("adam_step");                                                                                 \
  }                                                                                                           \
  void mask_gradient(T*, const T*, int64_t) { unavailable("mask_gradient"); }

NQ_NN_STUB_MEMORY(float)
NQ_NN_STUB_MEMORY(double)
NQ_NN_STUB_MEMORY(int32_t)
NQ_NN_STUB_OPS(float)
NQ_NN_STUB_OPS(double)

}  // namespace nq::nn::cuda
#endif
