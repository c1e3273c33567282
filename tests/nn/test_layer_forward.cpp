// Forward passes of Conv2d and MaxPool2d against direct loops (the gradient tests check backward against finite
// differences of the forward, which cannot catch a forward that is wrong in itself).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "nn/nn_ops.h"

namespace nq::nn {
namespace {

struct Case {
  int64_t n, in_c, in_h, in_w, out_c, kh, kw, stride, padding;
};

// Awkward shapes: non-square inputs and kernels, strides 1-3, padding up to the kernel size, 1x1 kernels.
const Case kCases[] = {
    {3, 2, 7, 6, 4, 3, 3, 1, 0}, {2, 1, 9, 9, 5, 5, 5, 1, 0}, {2, 3, 8, 5, 2, 3, 2, 2, 1},
    {1, 2, 5, 7, 3, 2, 3, 3, 2}, {4, 1, 6, 6, 2, 1, 1, 1, 0}, {2, 2, 4, 4, 3, 3, 3, 1, 3},
    {1, 1, 1, 1, 2, 1, 1, 1, 0}, {3, 3, 11, 10, 2, 4, 4, 2, 0},
    // 2x2 windows of stride 2 (pooling's fast path), on even and odd sizes (the last row and column unread).
    {2, 3, 8, 6, 2, 2, 2, 2, 0}, {1, 2, 7, 9, 1, 2, 2, 2, 0},
};

Conv2dShape shape_of(const Case& c, bool pool) {
  Conv2dShape s;
  s.n = c.n, s.in_c = c.in_c, s.in_h = c.in_h, s.in_w = c.in_w;
  s.out_c = pool ? c.in_c : c.out_c;
  s.kh = c.kh, s.kw = c.kw, s.stride = c.stride, s.padding = c.padding;
  return s;
}

// x at (i, c, iy, ix), or nullptr outside the image (zero padding).
const double* at(const std::vector<double>& x, const Conv2dShape& s, int64_t i, int64_t c, int64_t iy, int64_t ix) {
  if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) return nullptr;
  return &x[size_t(((i * s.in_c + c) * s.in_h + iy) * s.in_w + ix)];
}

TEST(LayerForward, Conv2dEqualsTheDirectSum) {
  std::mt19937_64 rng(17);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const Case& c : kCases) {
    const Conv2dShape s = shape_of(c, false);
    SCOPED_TRACE("n " + std::to_string(c.n) + " in " + std::to_string(c.in_c) + "x" + std::to_string(c.in_h) + "x" +
                 std::to_string(c.in_w) + " kernel " + std::to_string(c.kh) + "x" + std::to_string(c.kw) +
                 " stride " + std::to_string(c.stride) + " pad " + std::to_string(c.padding));
    std::vector<double> x(size_t(s.n * s.in_c * s.in_h * s.in_w)), w(size_t(s.out_c * s.col_rows())),
        b(size_t(s.out_c));
    for (double& v : x) v = normal(rng);
    for (double& v : w) v = normal(rng);
    for (double& v : b) v = normal(rng);
    const int64_t oh = s.out_h(), ow = s.out_w();
    std::vector<double> y(size_t(s.n * s.out_c * oh * ow) + 1, -7.0), col(size_t(s.col_rows() * s.col_cols()));
    cpu::conv2d_forward(x.data(), w.data(), b.data(), y.data(), col.data(), s);
    EXPECT_EQ(y.back(), -7.0) << "wrote past the output";
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t o = 0; o < s.out_c; ++o)
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox) {
            double want = b[size_t(o)];
            for (int64_t ci = 0; ci < s.in_c; ++ci)
              for (int64_t ky = 0; ky < s.kh; ++ky)
                for (int64_t kx = 0; kx < s.kw; ++kx) {
                  const double* v = at(x, s, i, ci, oy * s.stride - s.padding + ky, ox * s.stride - s.padding + kx);
                  if (v) want += w[size_t(((o * s.in_c + ci) * s.kh + ky) * s.kw + kx)] * *v;
                }
            ASSERT_NEAR(y[size_t(((i * s.out_c + o) * oh + oy) * ow + ox)], want, 1e-12 * (1 + std::abs(want)))
                << "sample " << i << " channel " << o << " at " << oy << "," << ox;
          }
  }
}

// Values from a set of 4 so that windows hold ties: the first maximum in row-major window order must win.
TEST(LayerForward, MaxPoolEqualsTheDirectSearch) {
  std::mt19937_64 rng(5);
  for (const Case& c : kCases) {
    if (c.padding >= c.kh || c.padding >= c.kw) continue;  // a window wholly in the padding has no maximum
    const Conv2dShape s = shape_of(c, true);
    SCOPED_TRACE("kernel " + std::to_string(c.kh) + "x" + std::to_string(c.kw) + " stride " +
                 std::to_string(c.stride) + " pad " + std::to_string(c.padding));
    std::vector<double> x(size_t(s.n * s.in_c * s.in_h * s.in_w));
    for (double& v : x) v = double(rng() % 4) - 1.5;
    const int64_t oh = s.out_h(), ow = s.out_w(), outputs = s.n * s.in_c * oh * ow;
    std::vector<double> y(static_cast<size_t>(outputs));
    std::vector<int32_t> arg(size_t(outputs) + 1, -9);
    cpu::maxpool2d_forward(x.data(), y.data(), arg.data(), s);
    EXPECT_EQ(arg.back(), -9) << "wrote past the output";
    for (int64_t p = 0; p < s.n * s.in_c; ++p)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          int64_t best = -1;
          for (int64_t ky = 0; ky < s.kh; ++ky)
            for (int64_t kx = 0; kx < s.kw; ++kx) {
              const int64_t iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx;
              if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
              const int64_t idx = (p * s.in_h + iy) * s.in_w + ix;
              if (best < 0 || x[size_t(idx)] > x[size_t(best)]) best = idx;
            }
          const size_t o = size_t((p * oh + oy) * ow + ox);
          ASSERT_EQ(arg[o], best) << "plane " << p << " at " << oy << "," << ox;
          ASSERT_EQ(y[o], x[size_t(best)]);
        }
  }
}

}  // namespace
}  // namespace nq::nn
