// CPU ops of 2-D max pooling: forward records the arg-max; backward routes gradients (and, identically, the
// OBD Hessian diagonal, LeCun et al. 1990) to it.
#include <limits>

#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

template <class T>
void forward_impl(const T* x, T* y, int32_t* arg, const Conv2dShape& s) {
  NQ_CHECK(s.n * s.in_c * s.in_h * s.in_w <= std::numeric_limits<int32_t>::max(), ErrorCode::kInvalidArgument,
           "max-pool input of " << s.n * s.in_c * s.in_h * s.in_w << " values is too large for one batch");
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t plane = 0; plane < s.n * s.in_c; ++plane) {
    const int64_t base = plane * s.in_h * s.in_w;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t best = -1;
        T best_v = T(0);
        for (int64_t ky = 0; ky < s.kh; ++ky) {
          const int64_t iy = oy * s.stride - s.padding + ky;
          if (iy < 0 || iy >= s.in_h) continue;
          for (int64_t kx = 0; kx < s.kw; ++kx) {
            const int64_t ix = ox * s.stride - s.padding + kx;
            if (ix < 0 || ix >= s.in_w) continue;
            const int64_t idx = base + iy * s.in_w + ix;
            if (best < 0 || x[idx] > best_v) best = idx, best_v = x[idx];  // strict '>': first maximum wins
          }
        }
        const int64_t o = (plane * oh + oy) * ow + ox;
        y[o] = best_v;
        arg[o] = static_cast<int32_t>(best);
      }
  }
}

template <class T>
void backward_impl(const int32_t* arg, const T* gy, T* gx, const Conv2dShape& s) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h() * s.out_w();
  // A plane's arg-max indices stay inside the same input plane, so planes are independent.
  for (int64_t plane = 0; plane < s.n * s.in_c; ++plane) {
    T* g = gx + plane * in_plane;
    for (int64_t j = 0; j < in_plane; ++j) g[j] = T(0);
    for (int64_t o = plane * out_plane; o < (plane + 1) * out_plane; ++o) gx[arg[o]] += gy[o];
  }
}

}  // namespace

#define NQ_NN_DEFINE_POOL(T)                                                                         \
  void maxpool2d_forward(const T* x, T* y, int32_t* arg, const Conv2dShape& s) {                   \
    forward_impl(x, y, arg, s);                                                                    \
  }                                                                                                \
  void maxpool2d_backward(const int32_t* arg, const T* gy, T* gx, const Conv2dShape& s) {          \
    backward_impl(arg, gy, gx, s);                                                                 \
  }

NQ_NN_DEFINE_POOL(float)
NQ_NN_DEFINE_POOL(double)

}  // namespace nq::nn::cpu
