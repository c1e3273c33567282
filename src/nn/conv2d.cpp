// CPU ops of the 2-D convolution: im2col + one GEMM per call for forward, gradient and the OBD Hessian diagonal
// (weight-gradient convolution of x^2 with H in place of the gradient, transposed convolution with the squared
// kernel: Becker & LeCun 1988; LeCun et al. 1990), and per-sample squared gradients for Fisher / exact GGN.
#include <algorithm>

#include "nn/blas.h"
#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

// Output columns [lo, hi) of a row read inside the input for kernel offset k (padding outside): ox with
// 0 <= ox*stride - pad + k < size.
inline void inside_range(int64_t k, int64_t pad, int64_t stride, int64_t size, int64_t out, int64_t& lo,
                         int64_t& hi) {
  const int64_t first = pad - k;  // ox * stride >= first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = size - 1 + pad - k;  // ox * stride <= last
  hi = last < 0 ? 0 : std::min(out, last / stride + 1);
  lo = std::min(lo, hi);
}

// col[(c*kh+ky)*kw+kx, (i*oh+oy)*ow+ox] = x[i, c, oy*stride-pad+ky, ox*stride-pad+kx] (0 outside the image).
// The columns inside the image are found once per kernel offset, so the copy has no per-element bounds test
// (it ran on every element, a visible share of LeNet-5's evaluation).
template <class T>
void im2col(const T* x, T* col, const Conv2dShape& s) {
  const int64_t oh = s.out_h(), ow = s.out_w(), ncols = s.col_cols(), rows = s.col_rows();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (s.kh * s.kw), ky = (r / s.kw) % s.kh, kx = r % s.kw;
    int64_t lo, hi;
    inside_range(kx, s.padding, s.stride, s.in_w, ow, lo, hi);
    const int64_t x0 = lo * s.stride - s.padding + kx;  // input column of output column lo
    T* dst = col + r * ncols;
    for (int64_t i = 0; i < s.n; ++i) {
      const T* plane = x + (i * s.in_c + c) * s.in_h * s.in_w;
      for (int64_t oy = 0; oy < oh; ++oy) {
        const int64_t iy = oy * s.stride - s.padding + ky;
        T* d = dst + (i * oh + oy) * ow;
        if (iy < 0 || iy >= s.in_h) {
          std::fill(d, d + ow, T(0));
          continue;
        }
        std::fill(d, d + lo, T(0));
        if (hi > lo) {  // (x0 may lie outside the row when no column is inside)
          const T* src = plane + iy * s.in_w + x0;
          if (s.stride == 1) {
            std::copy(src, src + (hi - lo), d + lo);
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) d[ox] = src[(ox - lo) * s.stride];
          }
        }
        std::fill(d + hi, d + ow, T(0));
      }
    }
  }
}

// gx = col2im(gcol): each input pixel sums the column entries that read it. One (sample, channel) plane per
// thread, fixed order inside: deterministic.
template <class T>
void col2im(const T* gcol, T* gx, const Conv2dShape& s) {
  const int64_t oh = s.out_h(), ow = s.out_w(), ncols = s.col_cols();
  for (int64_t plane = 0; plane < s.n * s.in_c; ++plane) {
    const int64_t i = plane / s.in_c, c = plane % s.in_c;
    T* g = gx + plane * s.in_h * s.in_w;
    std::fill(g, g + s.in_h * s.in_w, T(0));
    for (int64_t ky = 0; ky < s.kh; ++ky)
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const T* src = gcol + ((c * s.kh + ky) * s.kw + kx) * ncols + i * oh * ow;
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t iy = oy * s.stride - s.padding + ky;
          if (iy < 0 || iy >= s.in_h) continue;
          for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t ix = ox * s.stride - s.padding + kx;
            if (ix >= 0 && ix < s.in_w) g[iy * s.in_w + ix] += src[oy * ow + ox];
          }
        }
      }
  }
}

// [n, out_c, L] <-> [out_c, n*L]
template <class T>
void to_channel_major(const T* y, T* yt, const Conv2dShape& s) {
  const int64_t L = s.out_h() * s.out_w();
  for (int64_t o = 0; o < s.out_c; ++o)
    for (int64_t i = 0; i < s.n; ++i) std::copy(y + (i * s.out_c + o) * L, y + (i * s.out_c + o + 1) * L, yt + (o * s.n + i) * L);
}

template <class T>
void forward_impl(const T* x, const T* w, const T* b, T* y, T* col, const Conv2dShape& s) {
  const int64_t L = s.out_h() * s.out_w(), ncols = s.col_cols(), rows = s.col_rows();
  im2col(x, col, s);
  auto yt = scratch<T>(s.out_c * ncols);
  gemm(false, false, s.out_c, ncols, rows, T(1), w, rows, col, ncols, T(0), yt.get(), ncols);
  for (int64_t o = 0; o < s.out_c; ++o)
    for (int64_t i = 0; i < s.n; ++i) {
      const T* src = yt.get() + (o * s.n + i) * L;
      T* dst = y + (i * s.out_c + o) * L;
      for (int64_t l = 0; l < L; ++l) dst[l] = src[l] + b[o];
    }
}

// gw = gy' col^T, gb = sum gy, gx = col2im(w^T gy'). Shared by the gradient and (with squared operands) OBD.
template <class T>
void backward_impl(const T* col, const T* w, const T* gy, T* gx, T* gw, T* gb, const Conv2dShape& s) {
  const int64_t ncols = s.col_cols(), rows = s.col_rows();
  auto gyt = scratch<T>(s.out_c * ncols);
  to_channel_major(gy, gyt.get(), s);
  gemm(false, true, s.out_c, rows, ncols, T(1), gyt.get(), ncols, col, ncols, T(0), gw, rows);
  for (int64_t o = 0; o < s.out_c; ++o) {
    double acc = 0;
    for (int64_t j = 0; j < ncols; ++j) acc += gyt[o * ncols + j];
    gb[o] = static_cast<T>(acc);
  }
  if (gx) {
    auto gcol = scratch<T>(rows * ncols);
    gemm(true, false, rows, ncols, s.out_c, T(1), w, rows, gyt.get(), ncols, T(0), gcol.get(), ncols);
    col2im(gcol.get(), gx, s);
  }
}

template <class T>
void hessian_impl(const T* col, const T* w, const T* hy, T* hx, T* hw, T* hb, const Conv2dShape& s) {
  const int64_t ncol = s.col_rows() * s.col_cols(), nw = s.out_c * s.col_rows();
  auto col2 = scratch<T>(ncol);
  square_into(col, col2.get(), ncol);  // im2col(x)^2 == im2col(x^2), padding zeros included
  std::unique_ptr<T[]> w2;
  if (hx) {
    w2 = scratch<T>(nw);
    square_into(w, w2.get(), nw);
  }
  backward_impl(col2.get(), w2.get(), hy, hx, hw, hb, s);
}

template <class T>
void sqgrad_impl(const T* col, const T* w, const T* gy, T* gx, T* sw, T* sb, const Conv2dShape& s) {
  // Weights are shared over positions, so a sample's gradient is a GEMM over its own positions; square it
  // before summing over samples. Samples run in order: deterministic.
  const int64_t L = s.out_h() * s.out_w(), ncols = s.col_cols(), rows = s.col_rows(), nw = s.out_c * rows;
  auto gws = scratch<T>(nw);
  for (int64_t i = 0; i < s.n; ++i) {
    const T* gyi = gy + i * s.out_c * L;  // [out_c, L], already channel-major within a sample
    gemm(false, true, s.out_c, rows, L, T(1), gyi, L, col + i * L, ncols, T(0), gws.get(), rows);
    for (int64_t j = 0; j < nw; ++j) sw[j] += gws[j] * gws[j];
    for (int64_t o = 0; o < s.out_c; ++o) {
      double acc = 0;
      for (int64_t l = 0; l < L; ++l) acc += gyi[o * L + l];
      sb[o] = static_cast<T>(sb[o] + acc * acc);
    }
  }
  if (gx) {
    auto gyt = scratch<T>(s.out_c * ncols);
    to_channel_major(gy, gyt.get(), s);
    auto gcol = scratch<T>(rows * ncols);
    gemm(true, false, rows, ncols, s.out_c, T(1), w, rows, gyt.get(), ncols, T(0), gcol.get(), ncols);
    col2im(gcol.get(), gx, s);
  }
}

}  // namespace

#define NQ_NN_DEFINE_CONV2D(T)                                                                                   \
  void conv2d_forward(const T* x, const T* w, const T* b, T* y, T* col, const Conv2dShape& s) {                 \
    forward_impl(x, w, b, y, col, s);                                                                          \
  }                                                                                                            \
  void conv2d_backward(const T* col, const T* w, const T* gy, T* gx, T* gw, T* gb, const Conv2dShape& s) {     \
    backward_impl(col, w, gy, gx, gw, gb, s);                                                                  \
  }                                                                                                            \
  void conv2d_hessian_backward(const T* col, const T* w, const T* hy, T* hx, T* hw, T* hb,                     \
                               const Conv2dShape& s) {                                                         \
    hessian_impl(col, w, hy, hx, hw, hb, s);                                                                   \
  }                                                                                                            \
  void conv2d_backward_sqgrad(const T* col, const T* w, const T* gy, T* gx, T* sw, T* sb,                      \
                              const Conv2dShape& s) {                                                          \
    sqgrad_impl(col, w, gy, gx, sw, sb, s);                                                                    \
  }

NQ_NN_DEFINE_CONV2D(float)
NQ_NN_DEFINE_CONV2D(double)

}  // namespace nq::nn::cpu
