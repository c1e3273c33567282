// Backend parity of the nn layer ops (nn_ops.h): every op on the CUDA backend against the CPU backend, compared
// by normalized MSE (ggml test-backend-ops style) for float and double, or bit for bit where the ops promise it
// (ReLU, max-pool, the optimizer steps), with sentinels after every device output and a bitwise run-to-run check.
// Output arrays start as poison (NaN; a sentinel for indices) on both backends, so an op that accumulates into an
// output it should overwrite, or skips an element, fails; outputs the ops accumulate into by contract (the
// per-sample squared gradients) start from the same random values on both. Skips itself without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_test_support.h"
#include "netquant/backend.h"
#include "nn/nn_ops.h"

namespace nq::nn {
namespace {

template <class T>
constexpr double kMaxNmse = sizeof(T) == 4 ? 1e-9 : 1e-20;
constexpr int kGuard = 64;
template <class T>
constexpr T kSentinel = T(-12345.25);

// The value fresh output arrays start with: NaN, or for arg-max indices one that no op writes (-1 is legitimate).
template <class T>
T poison_value() {
  if constexpr (std::is_floating_point_v<T>) {
    return std::numeric_limits<T>::quiet_NaN();
  } else {
    return T(-123456789);
  }
}
template <class T>
std::vector<T> poisoned(int64_t n) {
  return std::vector<T>(static_cast<size_t>(n), poison_value<T>());
}

// A device array with kGuard sentinel elements after the payload, freed on scope exit.
template <class T>
class DevArray {
 public:
  explicit DevArray(const std::vector<T>& host) : n_(static_cast<int64_t>(host.size())) {
    p_ = cuda::buffer_alloc(n_ + kGuard, T(0));
    cuda::buffer_fill(p_, n_ + kGuard, kSentinel<T>);
    if (n_) cuda::buffer_upload(p_, host.data(), n_);
  }
  explicit DevArray(int64_t n) : DevArray(poisoned<T>(n)) {}  // a fresh output: poison, see poison_value
  DevArray(const DevArray&) = delete;
  DevArray& operator=(const DevArray&) = delete;
  ~DevArray() { cuda::buffer_free(p_); }
  T* get() { return p_; }
  std::vector<T> download() const {  // payload only; asserts the guard is intact
    std::vector<T> all(static_cast<size_t>(n_ + kGuard));
    cuda::buffer_download(all.data(), p_, n_ + kGuard);
    for (int64_t i = n_; i < n_ + kGuard; ++i) EXPECT_EQ(all[i], kSentinel<T>) << "out-of-bounds write at +" << i - n_;
    all.resize(static_cast<size_t>(n_));
    return all;
  }

 private:
  int64_t n_;
  T* p_ = nullptr;
};

template <class T>
std::vector<T> randn(int64_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}
template <class T>
std::vector<T> randu(int64_t n, uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

template <class T>
void expect_close(const std::vector<T>& cpu, const std::vector<T>& gpu, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  double num = 0, den = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_TRUE(std::isfinite(static_cast<double>(cpu[i]))) << what << " [" << i << "] (CPU oracle)";
    ASSERT_TRUE(std::isfinite(static_cast<double>(gpu[i]))) << what << " [" << i << "]";
    const double d = static_cast<double>(cpu[i]) - static_cast<double>(gpu[i]);
    num += d * d;
    den += static_cast<double>(cpu[i]) * static_cast<double>(cpu[i]);
  }
  EXPECT_LE(num / std::max(den, 1e-300), kMaxNmse<T>) << what << " (normalized MSE)";
}

// Bit for bit; reports the first difference.
template <class T>
void expect_bitwise(const std::vector<T>& cpu, const std::vector<T>& gpu, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  if (cpu.empty() || std::memcmp(cpu.data(), gpu.data(), sizeof(T) * cpu.size()) == 0) return;
  size_t i = 0;
  while (std::memcmp(&cpu[i], &gpu[i], sizeof(T)) == 0) ++i;
  ADD_FAILURE() << what << ": not bitwise equal, first at [" << i << "]: CPU " << cpu[i] << ", CUDA " << gpu[i];
}

template <class T>
class CudaNnParity : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CudaNnParity, Types);

TYPED_TEST(CudaNnParity, Linear) {
  using T = TypeParam;
  NQ_REQUIRE_CUDA();
  struct Case { int64_t n, in, out; };
  for (const Case& c : {Case{1, 1, 1}, Case{3, 31, 33}, Case{257, 100, 10}, Case{64, 784, 300}}) {
    SCOPED_TRACE(testing::Message() << c.n << "x" << c.in << "->" << c.out);
    const auto x = randn<T>(c.n * c.in, 1), w = randn<T>(c.out * c.in, 2, 0.1), b = randn<T>(c.out, 3);
    const auto gy = randn<T>(c.n * c.out, 4), hy = randu<T>(c.n * c.out, 5, 0.0, 1.0);
    DevArray<T> dx(x), dw(w), db(b), dgy(gy), dhy(hy);
    // forward
    auto y = poisoned<T>(c.n * c.out);
    cpu::linear_forward(x.data(), w.data(), b.data(), y.data(), c.n, c.in, c.out);
    DevArray<T> dy(c.n * c.out);
    cuda::linear_forward(dx.get(), dw.get(), db.get(), dy.get(), c.n, c.in, c.out);
    expect_close(y, dy.download(), "linear_forward");
    // backward and Hessian backward share the shape; each with and without the input gradient (the first layer)
    for (int hess = 0; hess < 2; ++hess) {
      for (const bool with_gx : {true, false}) {
        const auto& g = hess ? hy : gy;
        DevArray<T>& dg = hess ? dhy : dgy;
        const std::string what =
            std::string(hess ? "linear_hessian" : "linear_backward") + (with_gx ? "" : " (gx null)");
        auto gx = poisoned<T>(c.n * c.in), gw = poisoned<T>(c.out * c.in), gb = poisoned<T>(c.out);
        DevArray<T> dgx(c.n * c.in), dgw(c.out * c.in), dgb(c.out);
        T* cgx = with_gx ? gx.data() : nullptr;
        T* ggx = with_gx ? dgx.get() : nullptr;
        if (hess) {
          cpu::linear_hessian_backward(x.data(), w.data(), g.data(), cgx, gw.data(), gb.data(), c.n, c.in, c.out);
          cuda::linear_hessian_backward(dx.get(), dw.get(), dg.get(), ggx, dgw.get(), dgb.get(), c.n, c.in, c.out);
        } else {
          cpu::linear_backward(x.data(), w.data(), g.data(), cgx, gw.data(), gb.data(), c.n, c.in, c.out);
          cuda::linear_backward(dx.get(), dw.get(), dg.get(), ggx, dgw.get(), dgb.get(), c.n, c.in, c.out);
        }
        if (with_gx) expect_close(gx, dgx.download(), what + " gx");
        expect_close(gw, dgw.download(), what + " gw");
        expect_close(gb, dgb.download(), what + " gb");
      }
    }
    // per-sample squared gradients accumulate into existing values (the same random start on both backends);
    // gx (overwritten) may be null
    for (const bool with_gx : {false, true}) {
      const std::string what = std::string("linear_sqgrad") + (with_gx ? "" : " (gx null)");
      auto sw = randu<T>(c.out * c.in, 6, 0.0, 1.0), sb = randu<T>(c.out, 7, 0.0, 1.0);
      auto gx = poisoned<T>(c.n * c.in);
      DevArray<T> dsw(sw), dsb(sb), dgx(c.n * c.in);
      cpu::linear_backward_sqgrad(x.data(), w.data(), gy.data(), with_gx ? gx.data() : nullptr, sw.data(), sb.data(),
                                  c.n, c.in, c.out);
      cuda::linear_backward_sqgrad(dx.get(), dw.get(), dgy.get(), with_gx ? dgx.get() : nullptr, dsw.get(), dsb.get(),
                                   c.n, c.in, c.out);
      expect_close(sw, dsw.download(), what + " sw");
      expect_close(sb, dsb.download(), what + " sb");
      if (with_gx) expect_close(gx, dgx.download(), what + " gx");
    }
  }
}

// conv2d_backward_sqgrad's per-sample gradients go through scratch in chunks of 2^24 / (out_c · col_rows) samples
// (kernels/conv2d.cu, sqgrad_impl); one shape below needs three chunks, the last one partial.
constexpr int64_t kConvSqgradChunkValues = int64_t{1} << 24;

TYPED_TEST(CudaNnParity, Conv2d) {
  using T = TypeParam;
  NQ_REQUIRE_CUDA();
  auto shape = [](int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t k, int64_t stride, int64_t pad) {
    Conv2dShape s;
    s.n = n, s.in_c = c, s.in_h = h, s.in_w = w, s.out_c = oc, s.kh = k, s.kw = k, s.stride = stride, s.padding = pad;
    return s;
  };
  int64_t most_chunks = 0;
  // LeNet-5's two layers; stride and padding; 1x1; stride 3 > kernel 1 (input pixels no window reads: gx must be
  // written 0 there); padding 3 >= kernel 3 (windows wholly in the padding); 250 samples with 256 x 576 weights
  // (113 samples per squared-gradient chunk: chunks of 113, 113 and 24).
  for (const Conv2dShape& s : {shape(3, 1, 28, 28, 20, 5, 1, 0), shape(2, 20, 12, 12, 50, 5, 1, 0),
                               shape(2, 3, 9, 7, 4, 3, 2, 1), shape(1, 1, 1, 1, 1, 1, 1, 0),
                               shape(3, 2, 8, 8, 5, 1, 3, 0), shape(2, 1, 5, 5, 2, 3, 2, 3),
                               shape(250, 64, 4, 4, 256, 3, 1, 0)}) {
    const int64_t nx = s.n * s.in_c * s.in_h * s.in_w, nw = s.out_c * s.col_rows();
    const int64_t ny = s.n * s.out_c * s.out_h() * s.out_w(), ncol = s.col_rows() * s.col_cols();
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(s.n, kConvSqgradChunkValues / nw));
    most_chunks = std::max(most_chunks, (s.n + chunk - 1) / chunk);
    SCOPED_TRACE(testing::Message() << "conv n" << s.n << " " << s.in_c << "x" << s.in_h << "x" << s.in_w << " -> "
                                    << s.out_c << " k" << s.kh << " s" << s.stride << " p" << s.padding);
    const auto x = randn<T>(nx, 11), w = randn<T>(nw, 12, 0.2), b = randn<T>(s.out_c, 13);
    const auto gy = randn<T>(ny, 14), hy = randu<T>(ny, 15, 0.0, 1.0);
    DevArray<T> dx(x), dw(w), db(b), dgy(gy), dhy(hy), dy(ny), dcol(ncol);
    auto y = poisoned<T>(ny), col = poisoned<T>(ncol);
    cpu::conv2d_forward(x.data(), w.data(), b.data(), y.data(), col.data(), s);
    cuda::conv2d_forward(dx.get(), dw.get(), db.get(), dy.get(), dcol.get(), s);
    expect_close(col, dcol.download(), "im2col");
    expect_close(y, dy.download(), "conv2d_forward");
    // backward and Hessian backward, each with and without the input gradient (the first layer's call, where the
    // Hessian does not square W)
    for (int hess = 0; hess < 2; ++hess) {
      for (const bool with_gx : {true, false}) {
        const auto& g = hess ? hy : gy;
        DevArray<T>& dg = hess ? dhy : dgy;
        const std::string what =
            std::string(hess ? "conv2d_hessian" : "conv2d_backward") + (with_gx ? "" : " (gx null)");
        auto gx = poisoned<T>(nx), gw = poisoned<T>(nw), gb = poisoned<T>(s.out_c);
        DevArray<T> dgx(nx), dgw(nw), dgb(s.out_c);
        T* cgx = with_gx ? gx.data() : nullptr;
        T* ggx = with_gx ? dgx.get() : nullptr;
        if (hess) {
          cpu::conv2d_hessian_backward(col.data(), w.data(), g.data(), cgx, gw.data(), gb.data(), s);
          cuda::conv2d_hessian_backward(dcol.get(), dw.get(), dg.get(), ggx, dgw.get(), dgb.get(), s);
        } else {
          cpu::conv2d_backward(col.data(), w.data(), g.data(), cgx, gw.data(), gb.data(), s);
          cuda::conv2d_backward(dcol.get(), dw.get(), dg.get(), ggx, dgw.get(), dgb.get(), s);
        }
        if (with_gx) expect_close(gx, dgx.download(), what + " gx");
        expect_close(gw, dgw.download(), what + " gw");
        expect_close(gb, dgb.download(), what + " gb");
      }
    }
    // per-sample squared gradients accumulate into existing values (the same random start on both backends);
    // gx (overwritten) may be null
    for (const bool with_gx : {true, false}) {
      const std::string what = std::string("conv2d_sqgrad") + (with_gx ? "" : " (gx null)");
      auto sw = randu<T>(nw, 16, 0.0, 1.0), sb = randu<T>(s.out_c, 17, 0.0, 1.0);
      auto gx = poisoned<T>(nx);
      DevArray<T> dsw(sw), dsb(sb), dgx(nx);
      cpu::conv2d_backward_sqgrad(col.data(), w.data(), gy.data(), with_gx ? gx.data() : nullptr, sw.data(), sb.data(),
                                  s);
      cuda::conv2d_backward_sqgrad(dcol.get(), dw.get(), dgy.get(), with_gx ? dgx.get() : nullptr, dsw.get(),
                                   dsb.get(), s);
      expect_close(sw, dsw.download(), what + " sw");
      expect_close(sb, dsb.download(), what + " sb");
      if (with_gx) expect_close(gx, dgx.download(), what + " gx");
    }
  }
  EXPECT_GE(most_chunks, 3) << "no shape spans several squared-gradient chunks";
}

// The arg-max the pooling ops promise: the first maximum of each window in row-major order (strict '>'), -1 for
// a window wholly in the padding. `ties` counts the windows whose maximum occurs more than once.
template <class T>
std::vector<int32_t> first_max_args(const std::vector<T>& x, const Conv2dShape& s, int64_t& ties) {
  std::vector<int32_t> arg;
  ties = 0;
  for (int64_t plane = 0; plane < s.n * s.in_c; ++plane)
    for (int64_t oy = 0; oy < s.out_h(); ++oy)
      for (int64_t ox = 0; ox < s.out_w(); ++ox) {
        int64_t best = -1, count = 0;
        for (int64_t ky = 0; ky < s.kh; ++ky)
          for (int64_t kx = 0; kx < s.kw; ++kx) {
            const int64_t iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx;
            if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
            const int64_t idx = (plane * s.in_h + iy) * s.in_w + ix;
            if (best < 0 || x[idx] > x[best]) {
              best = idx, count = 1;
            } else if (x[idx] == x[best]) {
              ++count;
            }
          }
        ties += count > 1;
        arg.push_back(static_cast<int32_t>(best));
      }
  return arg;
}

TYPED_TEST(CudaNnParity, ReluAndMaxPool) {
  using T = TypeParam;
  NQ_REQUIRE_CUDA();
  for (int64_t count : {int64_t{1}, int64_t{33}, int64_t{4099}}) {
    const auto x = randn<T>(count, 21), gy = randn<T>(count, 22);
    auto y = poisoned<T>(count), gx = poisoned<T>(count);
    DevArray<T> dx(x), dy(count), dgy(gy);
    cpu::relu_forward(x.data(), y.data(), count);
    cuda::relu_forward(dx.get(), dy.get(), count);
    expect_bitwise(y, dy.download(), "relu");
    cpu::relu_backward(y.data(), gy.data(), gx.data(), count);
    cuda::relu_backward(dy.get(), dgy.get(), dgy.get(), count);  // in place
    expect_bitwise(gx, dgy.download(), "relu backward");
  }
  auto pool = [](int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad) {
    Conv2dShape s;
    s.n = n, s.in_c = c, s.in_h = h, s.in_w = w, s.out_c = c, s.kh = k, s.kw = k, s.stride = stride, s.padding = pad;
    return s;
  };
  // Inputs: random with repeated values; ReLU'd (many zero ties); one value per plane (every window a tie; the
  // values are of both signs, so a padding position never competes as a 0). Shapes: LeNet's 2x2; padding;
  // overlapping windows (backward adds); stride 3 > window 2 (input pixels no window reads: gx must be written 0);
  // padding 2 = window (windows wholly in the padding: arg -1, y 0).
  const char* const kInputs[] = {"random with repeats", "ReLU'd", "constant planes"};
  for (int input = 0; input < 3; ++input) {
    int64_t ties = 0;  // windows whose maximum occurs more than once, over all shapes
    for (const Conv2dShape& s : {pool(3, 20, 24, 24, 2, 2, 0), pool(2, 3, 9, 7, 3, 2, 1), pool(1, 1, 5, 5, 3, 1, 0),
                                 pool(2, 3, 9, 9, 2, 3, 0), pool(1, 2, 5, 5, 2, 2, 2)}) {
      SCOPED_TRACE(testing::Message() << "pool " << kInputs[input] << " n" << s.n << " " << s.in_c << "x" << s.in_h
                                      << "x" << s.in_w << " k" << s.kh << " s" << s.stride << " p" << s.padding);
      const int64_t plane = s.in_h * s.in_w;
      const int64_t nx = s.n * s.in_c * plane, ny = s.n * s.in_c * s.out_h() * s.out_w();
      auto x = randn<T>(nx, 31);
      if (input == 0) {
        for (int64_t i = 0; i < nx; i += 5) x[i] = x[i / 2];  // repeated values: first-maximum ties by chance
      } else if (input == 1) {
        for (T& v : x) v = std::max(v, T(0));
      } else {
        const auto level = randn<T>(s.n * s.in_c, 33);
        for (int64_t i = 0; i < nx; ++i) x[i] = level[i / plane];
      }
      int64_t shape_ties = 0;
      const auto expected_arg = first_max_args(x, s, shape_ties);
      ties += shape_ties;
      const auto gy = randn<T>(ny, 32);
      auto y = poisoned<T>(ny), gx = poisoned<T>(nx);
      auto arg = poisoned<int32_t>(ny);
      DevArray<T> dx(x), dy(ny), dgy(gy), dgx(nx);
      DevArray<int32_t> darg(ny);
      cpu::maxpool2d_forward(x.data(), y.data(), arg.data(), s);
      cuda::maxpool2d_forward(dx.get(), dy.get(), darg.get(), s);
      EXPECT_EQ(expected_arg, arg) << "CPU arg-max: the first maximum";
      EXPECT_EQ(arg, darg.download()) << "arg-max indices";
      expect_bitwise(y, dy.download(), "max-pool forward");
      cpu::maxpool2d_backward(arg.data(), gy.data(), gx.data(), s);
      cuda::maxpool2d_backward(darg.get(), dgy.get(), dgx.get(), s);
      expect_bitwise(gx, dgx.download(), "max-pool backward (same summation order as the CPU)");
    }
    EXPECT_GT(ties, input > 0 ? 100 : 0) << kInputs[input] << ": too few ties to break";
  }
}

TYPED_TEST(CudaNnParity, SoftmaxCrossEntropy) {
  using T = TypeParam;
  NQ_REQUIRE_CUDA();
  for (int64_t n : {int64_t{1}, int64_t{33}, int64_t{1024}}) {
    const int64_t c = 10;
    const auto z = randn<T>(n * c, 41, 3.0);
    std::vector<int32_t> labels(n);
    for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 7) % c);
    auto p = poisoned<T>(n * c), loss = poisoned<T>(n), correct = poisoned<T>(n);
    auto gz = poisoned<T>(n * c), hz = poisoned<T>(n * c), fz = poisoned<T>(n * c);
    DevArray<T> dz(z), dp(n * c), dloss(n), dcorrect(n), dgz(n * c), dhz(n * c), dfz(n * c);
    DevArray<int32_t> dl(labels);
    cpu::softmax_ce_forward(z.data(), labels.data(), p.data(), loss.data(), correct.data(), n, c);
    cuda::softmax_ce_forward(dz.get(), dl.get(), dp.get(), dloss.get(), dcorrect.get(), n, c);
    expect_close(p, dp.download(), "softmax p");
    expect_close(loss, dloss.download(), "softmax loss");
    EXPECT_EQ(correct, dcorrect.download());
    const T scale = T(1) / static_cast<T>(n);
    cpu::softmax_ce_backward(p.data(), labels.data(), gz.data(), scale, n, c);
    cuda::softmax_ce_backward(dp.get(), dl.get(), dgz.get(), scale, n, c);
    expect_close(gz, dgz.download(), "softmax backward");
    cpu::softmax_ce_hessian(p.data(), hz.data(), scale, n, c);
    cuda::softmax_ce_hessian(dp.get(), dhz.get(), scale, n, c);
    expect_close(hz, dhz.download(), "softmax p(1-p)");
    cpu::softmax_ce_factor_column(p.data(), fz.data(), 3, n, c);
    cuda::softmax_ce_factor_column(dp.get(), dfz.get(), 3, n, c);
    expect_close(fz, dfz.download(), "softmax factor column");
  }
}

// The optimizer steps share their formulas with the CPU (nn_formulas.h) and optimizer.cu is built without FMA
// contraction (--fmad=false): the same bits. The steps run in sequence on the same state.
TYPED_TEST(CudaNnParity, Optimizers) {
  using T = TypeParam;
  NQ_REQUIRE_CUDA();
  const int64_t count = 4099;
  auto w = randn<T>(count, 51), g = randn<T>(count, 52), v = randn<T>(count, 53), m = randn<T>(count, 54);
  auto v2 = randu<T>(count, 55, 0.0, 1.0);
  DevArray<T> dw(w), dg(g), dv(v), dm(m), dv2(v2);
  // SGD with momentum and weight decay
  cpu::sgd_step(w.data(), g.data(), v.data(), count, 0.1, 0.9, 1e-4);
  cuda::sgd_step(dw.get(), dg.get(), dv.get(), count, 0.1, 0.9, 1e-4);
  expect_bitwise(w, dw.download(), "sgd w");
  expect_bitwise(v, dv.download(), "sgd v");
  // SGD without momentum: no velocity buffer
  cpu::sgd_step(w.data(), g.data(), nullptr, count, 0.05, 0.0, 1e-2);
  cuda::sgd_step(dw.get(), dg.get(), nullptr, count, 0.05, 0.0, 1e-2);
  expect_bitwise(w, dw.download(), "sgd (no momentum) w");
  // Adam without, then with weight decay
  cpu::adam_step(w.data(), g.data(), m.data(), v2.data(), count, 1e-3, 0.9, 0.999, 1e-8, 0.0, 3);
  cuda::adam_step(dw.get(), dg.get(), dm.get(), dv2.get(), count, 1e-3, 0.9, 0.999, 1e-8, 0.0, 3);
  expect_bitwise(w, dw.download(), "adam w");
  expect_bitwise(m, dm.download(), "adam m");
  expect_bitwise(v2, dv2.download(), "adam v");
  cpu::adam_step(w.data(), g.data(), m.data(), v2.data(), count, 1e-3, 0.9, 0.999, 1e-8, 5e-2, 4);
  cuda::adam_step(dw.get(), dg.get(), dm.get(), dv2.get(), count, 1e-3, 0.9, 0.999, 1e-8, 5e-2, 4);
  expect_bitwise(w, dw.download(), "adam (weight decay) w");
  expect_bitwise(m, dm.download(), "adam (weight decay) m");
  expect_bitwise(v2, dv2.download(), "adam (weight decay) v");
  // The gradient mask of pruned retraining: every third entry pruned (0 and -0.0), a non-finite gradient there
  // must become 0 as well. Oracle: the select written out here.
  std::vector<T> keep(static_cast<size_t>(count), T(1)), masked = g;
  for (int64_t i = 0; i < count; i += 3) {
    keep[static_cast<size_t>(i)] = i % 2 ? T(-0.0) : T(0);
    g[static_cast<size_t>(i)] = i % 5 ? g[static_cast<size_t>(i)] : std::numeric_limits<T>::quiet_NaN();
    masked[static_cast<size_t>(i)] = T(0);
  }
  DevArray<T> dg2(g), dkeep(keep);
  cpu::mask_gradient(g.data(), keep.data(), count);
  cuda::mask_gradient(dg2.get(), dkeep.get(), count);
  expect_bitwise(masked, g, "mask (cpu against the oracle)");
  expect_bitwise(masked, dg2.download(), "mask (cuda against the oracle)");
}

TEST(CudaNnDeterminism, ConvHessianIsBitwiseReproducible) {
  NQ_REQUIRE_CUDA();
  Conv2dShape s;
  s.n = 64, s.in_c = 20, s.in_h = 12, s.in_w = 12, s.out_c = 50, s.kh = s.kw = 5;
  const int64_t nx = s.n * s.in_c * s.in_h * s.in_w, nw = s.out_c * s.col_rows();
  const int64_t ny = s.n * s.out_c * s.out_h() * s.out_w(), ncol = s.col_rows() * s.col_cols();
  const auto x = randn<float>(nx, 61), w = randn<float>(nw, 62, 0.2), b = randn<float>(s.out_c, 63);
  const auto hy = randu<float>(ny, 64, 0.0, 1.0);
  DevArray<float> dx(x), dw(w), db(b), dhy(hy), dy(ny), dcol(ncol);
  cuda::conv2d_forward(dx.get(), dw.get(), db.get(), dy.get(), dcol.get(), s);
  std::vector<float> first[3];
  for (int rep = 0; rep < 2; ++rep) {
    DevArray<float> hx(nx), hw(nw), hb(s.out_c);
    cuda::conv2d_hessian_backward(dcol.get(), dw.get(), dhy.get(), hx.get(), hw.get(), hb.get(), s);
    std::vector<float> now[3] = {hx.download(), hw.download(), hb.download()};
    if (rep == 0) {
      for (int i = 0; i < 3; ++i) first[i] = now[i];
    } else {
      for (int i = 0; i < 3; ++i)
        EXPECT_EQ(std::memcmp(first[i].data(), now[i].data(), sizeof(float) * now[i].size()), 0) << i;
    }
  }
}

}  // namespace
}  // namespace nq::nn
