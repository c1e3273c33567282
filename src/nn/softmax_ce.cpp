// CPU ops of the softmax cross-entropy output: probabilities, loss, accuracy, gradient, OBD output curvature
// p(1-p) (Becker & LeCun 1988) and the columns of the exact Gauss-Newton factor of diag(p) - p p^T.
#include <cmath>

#include "nn/nn_formulas.h"
#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

template <class T>
void forward_impl(const T* z, const int32_t* labels, T* p, T* loss, T* correct, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i) softmax_ce_sample(z + i * c, labels[i], p + i * c, loss[i], correct[i], c);
}

template <class T>
void backward_impl(const T* p, const int32_t* labels, T* gz, T scale, int64_t n, int64_t c) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) gz[i * c + k] = scale * (p[i * c + k] - (k == labels[i] ? T(1) : T(0)));
}

template <class T>
void hessian_impl(const T* p, T* hz, T scale, int64_t n, int64_t c) {
  for (int64_t j = 0; j < n * c; ++j) hz[j] = scale * p[j] * (T(1) - p[j]);
}

template <class T>
void factor_column_impl(const T* p, T* gz, int64_t col, int64_t n, int64_t c) {
  // (diag(p) - p p^T) = sum_k s_k s_k^T with s_k = sqrt(p_k)(e_k - p), because sum_k p_k = 1.
  for (int64_t i = 0; i < n; ++i) {
    const T r = std::sqrt(p[i * c + col]);
    for (int64_t k = 0; k < c; ++k) gz[i * c + k] = r * ((k == col ? T(1) : T(0)) - p[i * c + k]);
  }
}

}  // namespace

#define NQ_NN_DEFINE_SOFTMAX_CE(T)                                                                             \
  void softmax_ce_forward(const T* z, const int32_t* labels, T* p, T* loss, T* correct, int64_t n, int64_t c) { \
    forward_impl(z, labels, p, loss, correct, n, c);                                                         \
  }                                                                                                          \
  void softmax_ce_backward(const T* p, const int32_t* labels, T* gz, T scale, int64_t n, int64_t c) {         \
    backward_impl(p, labels, gz, scale, n, c);                                                               \
  }                                                                                                          \
  void softmax_ce_hessian(const T* p, T* hz, T scale, int64_t n, int64_t c) { hessian_impl(p, hz, scale, n, c); } \
  void softmax_ce_factor_column(const T* p, T* gz, int64_t k, int64_t n, int64_t c) {                          \
    factor_column_impl(p, gz, k, n, c);                                                                      \
  }

NQ_NN_DEFINE_SOFTMAX_CE(float)
NQ_NN_DEFINE_SOFTMAX_CE(double)

}  // namespace nq::nn::cpu
