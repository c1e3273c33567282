// CPU ops of 2-D max pooling: forward records the arg-max; backward routes gradients (and, identically, the
// OBD Hessian diagonal, LeCun et al. 1990) to it.
#include <algorithm>
#include <limits>

#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

// One candidate of a window in row-major order: it replaces the best only when strictly greater (so the first
// maximum wins and a NaN never displaces), by std::max and an index mask, not a branch (a compare of two random
// activations is a coin flip for the branch predictor; plain ternaries were still compiled to a branch).
template <class T>
inline void consider(T v, int64_t idx, T& best_v, int64_t& best) {
  const int64_t take = -static_cast<int64_t>(v > best_v);  // all ones when v wins
  best ^= (best ^ idx) & take;
  best_v = std::max(best_v, v);  // (best_v < v) ? v : best_v
}

// 2x2 windows, stride 2, no padding: every window lies inside the input, and outputs along a row are
// independent, so the four compares of neighbouring outputs overlap.
template <class T>
void pool_2x2(const T* x, T* y, int32_t* arg, const Conv2dShape& s) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t plane = 0; plane < s.n * s.in_c; ++plane) {
    const int64_t base = plane * s.in_h * s.in_w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const int64_t r0 = base + 2 * oy * s.in_w, r1 = r0 + s.in_w;
      T* yo = y + (plane * oh + oy) * ow;
      int32_t* ao = arg + (plane * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t best = r0 + 2 * ox;
        T best_v = x[best];
        consider(x[r0 + 2 * ox + 1], r0 + 2 * ox + 1, best_v, best);
        consider(x[r1 + 2 * ox], r1 + 2 * ox, best_v, best);
        consider(x[r1 + 2 * ox + 1], r1 + 2 * ox + 1, best_v, best);
        yo[ox] = best_v;
        ao[ox] = static_cast<int32_t>(best);
      }
    }
  }
}

template <class T>
void forward_impl(const T* x, T* y, int32_t* arg, const Conv2dShape& s) {
  NQ_CHECK(s.n * s.in_c * s.in_h * s.in_w <= std::numeric_limits<int32_t>::max(), ErrorCode::kInvalidArgument,
           "max-pool input of " << s.n * s.in_c * s.in_h * s.in_w << " values is too large for one batch");
  const int64_t oh = s.out_h(), ow = s.out_w();
  if (s.kh == 2 && s.kw == 2 && s.stride == 2 && s.padding == 0) {  // the usual window: straight-line code
    pool_2x2(x, y, arg, s);
    return;
  }
  for (int64_t plane = 0; plane < s.n * s.in_c; ++plane) {
    const int64_t base = plane * s.in_h * s.in_w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const int64_t iy0 = oy * s.stride - s.padding;  // the window's rows inside the input: [ky0, ky1)
      const int64_t ky0 = std::max<int64_t>(0, -iy0), ky1 = std::min(s.kh, s.in_h - iy0);
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t ix0 = ox * s.stride - s.padding;
        const int64_t kx0 = std::max<int64_t>(0, -ix0), kx1 = std::min(s.kw, s.in_w - ix0);
        const int64_t o = (plane * oh + oy) * ow + ox;
        if (ky0 >= ky1 || kx0 >= kx1) {  // a window wholly in the padding
          y[o] = T(0);
          arg[o] = -1;
          continue;
        }
        // The first maximum in row-major window order.
        int64_t best = base + (iy0 + ky0) * s.in_w + ix0 + kx0;
        T best_v = x[best];
        for (int64_t ky = ky0; ky < ky1; ++ky) {
          const int64_t row = base + (iy0 + ky) * s.in_w + ix0;
          for (int64_t kx = kx0; kx < kx1; ++kx) consider(x[row + kx], row + kx, best_v, best);
        }
        y[o] = best_v;
        arg[o] = static_cast<int32_t>(best);
      }
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
    for (int64_t o = plane * out_plane; o < (plane + 1) * out_plane; ++o)
      if (arg[o] >= 0) gx[arg[o]] += gy[o];  // -1: a window wholly in the padding (no input, no gradient)
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
