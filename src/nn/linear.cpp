// CPU ops of the fully connected layer: forward, gradient, OBD Hessian diagonal and per-sample squared gradients.
// The OBD recursion (Becker & LeCun 1988; LeCun et al. 1990) is the gradient GEMMs with squared operands.
#include "nn/blas.h"
#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

template <class T>
void forward_impl(const T* x, const T* w, const T* b, T* y, int64_t n, int64_t in, int64_t out) {
  gemm(false, true, n, out, in, T(1), x, in, w, in, T(0), y, out);  // y = x W^T
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) y[r * out + o] += b[o];
}

// sb[o] (+)= sum_n f(gy[n,o]) accumulated in double in sample order (deterministic, any thread count).
template <class T, bool kSquare, bool kAccumulate>
void column_sums(const T* gy, T* sb, int64_t n, int64_t out) {
  for (int64_t o = 0; o < out; ++o) {
    double s = 0;
    for (int64_t r = 0; r < n; ++r) {
      const double v = gy[r * out + o];
      s += kSquare ? v * v : v;
    }
    sb[o] = kAccumulate ? static_cast<T>(sb[o] + s) : static_cast<T>(s);
  }
}

// The shared shape of backward and Hessian-backward: gw = gy^T x, gb = sum gy, gx = gy w.
template <class T>
void backward_impl(const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, int64_t n, int64_t in, int64_t out) {
  gemm(true, false, out, in, n, T(1), gy, out, x, in, T(0), gw, in);
  column_sums<T, false, false>(gy, gb, n, out);
  if (gx) gemm(false, false, n, in, out, T(1), gy, out, w, in, T(0), gx, in);
}

template <class T>
void hessian_impl(const T* x, const T* w, const T* hy, T* hx, T* hw, T* hb, int64_t n, int64_t in, int64_t out) {
  auto x2 = scratch<T>(n * in);
  square_into(x, x2.get(), n * in);
  std::unique_ptr<T[]> w2;
  if (hx) {
    w2 = scratch<T>(out * in);
    square_into(w, w2.get(), out * in);
  }
  backward_impl(x2.get(), w2.get(), hy, hx, hw, hb, n, in, out);
}

template <class T>
void sqgrad_impl(const T* x, const T* w, const T* gy, T* gx, T* sw, T* sb, int64_t n, int64_t in, int64_t out) {
  // The per-sample gradient of W is the outer product gy[n] x[n]^T, so sum_n of its square is (gy^2)^T (x^2).
  auto x2 = scratch<T>(n * in);
  auto g2 = scratch<T>(n * out);
  square_into(x, x2.get(), n * in);
  square_into(gy, g2.get(), n * out);
  gemm(true, false, out, in, n, T(1), g2.get(), out, x2.get(), in, T(1), sw, in);
  column_sums<T, true, true>(gy, sb, n, out);
  if (gx) gemm(false, false, n, in, out, T(1), gy, out, w, in, T(0), gx, in);
}

}  // namespace

#define NQ_NN_DEFINE_LINEAR(T)                                                                                   \
  void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t n, int64_t in, int64_t out) {          \
    forward_impl(x, w, b, y, n, in, out);                                                                      \
  }                                                                                                            \
  void linear_backward(const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb, int64_t n, int64_t in,        \
                       int64_t out) {                                                                          \
    backward_impl(x, w, gy, gx, gw, gb, n, in, out);                                                           \
  }                                                                                                            \
  void linear_hessian_backward(const T* x, const T* w, const T* hy, T* hx, T* hw, T* hb, int64_t n, int64_t in, \
                               int64_t out) {                                                                  \
    hessian_impl(x, w, hy, hx, hw, hb, n, in, out);                                                            \
  }                                                                                                            \
  void linear_backward_sqgrad(const T* x, const T* w, const T* gy, T* gx, T* sw, T* sb, int64_t n, int64_t in,  \
                              int64_t out) {                                                                   \
    sqgrad_impl(x, w, gy, gx, sw, sb, n, in, out);                                                             \
  }

NQ_NN_DEFINE_LINEAR(float)
NQ_NN_DEFINE_LINEAR(double)

}  // namespace nq::nn::cpu
