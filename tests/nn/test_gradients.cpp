// Gradients of every layer type (Linear, Conv2d with stride/padding, ReLU, MaxPool, softmax-CE) and of whole
// tiny nets against central finite differences of the mean loss in float64.
#include <gtest/gtest.h>

#include "nn_test_util.h"

namespace nq::nn::test {
namespace {

struct Case {
  const char* name;
  NetSpec spec;
  int64_t n;
};

std::vector<Case> cases() {
  return {
      {"linear_softmax", make_spec(1, 1, 7, 5, {linear("fc1", 5)}), 9},
      {"mlp_relu", make_spec(1, 3, 5, 4, {flatten(), linear("fc1", 11), relu(), linear("fc2", 4)}), 7},
      {"conv_stride2_pad1", make_spec(2, 7, 6, 3, {conv("conv1", 3, 3, 2, 1), flatten(), linear("fc1", 3)}), 5},
      {"conv_pad2_stride3", make_spec(3, 5, 5, 2, {conv("conv1", 2, 2, 3, 2), flatten(), linear("fc1", 2)}), 3},
      {"conv_relu_maxpool", make_spec(1, 9, 9, 3, {conv("c1", 4, 3), relu(), maxpool(2), flatten(), linear("fc", 3)}),
       6},
      {"overlapping_maxpool",
       make_spec(2, 8, 8, 5, {conv("c1", 3, 3, 1, 1), maxpool(3, 2), flatten(), linear("fc", 5)}), 4},
      {"lenet5_like", make_spec(1, 12, 12, 3,
                                {conv("conv1", 3, 5), maxpool(2), conv("conv2", 4, 3), maxpool(2), flatten(),
                                 linear("fc1", 6), relu(), linear("fc2", 3)}),
       5},
  };
}

class GradientTest : public ::testing::TestWithParam<Case> {};

TEST_P(GradientTest, MatchesCentralDifferences) {
  const Case& c = GetParam();
  Problem prob(c.spec, c.n, /*seed=*/17 + c.n);
  const std::vector<double> g = prob.gradient(prob.w);
  auto loss = [&](const std::vector<double>& w) { return prob.mean_loss(w); };
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double fd = central_diff(loss, prob.w, i, 1e-6);
    const double err = std::abs(g[i] - fd) / (1e-6 + std::abs(fd));
    worst = std::max(worst, std::abs(g[i] - fd));
    ASSERT_LT(std::abs(g[i] - fd), 1e-7 + 1e-5 * std::abs(fd))
        << c.name << " parameter " << i << ": backprop " << g[i] << " vs finite difference " << fd << " (rel "
        << err << ")";
  }
  // The gradient must not be trivially zero (then the test could not fail).
  double norm = 0;
  for (double v : g) norm += v * v;
  EXPECT_GT(norm, 1e-8) << c.name;
  RecordProperty("max_abs_error", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(Layers, GradientTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(SoftmaxCe, LossMatchesDirectFormulaAndArgmaxPicksLowestOnTies) {
  const double z[6] = {1.0, 3.0, 3.0, -2.0, 0.5, 0.25};
  const int32_t labels[2] = {2, 0};
  double p[6], loss[2], correct[2];
  cpu::softmax_ce_forward(z, labels, p, loss, correct, 2, 3);
  const double s0 = std::exp(1.0) + 2 * std::exp(3.0);
  EXPECT_NEAR(loss[0], -std::log(std::exp(3.0) / s0), 1e-14);
  EXPECT_EQ(correct[0], 0.0);  // tie between classes 1 and 2: class 1 wins, label is 2
  EXPECT_EQ(correct[1], 0.0);  // argmax of the second row is class 1
  EXPECT_NEAR(p[3] + p[4] + p[5], 1.0, 1e-15);
  const int32_t labels2[2] = {1, 1};
  cpu::softmax_ce_forward(z, labels2, p, loss, correct, 2, 3);
  EXPECT_EQ(correct[0], 1.0);
  EXPECT_EQ(correct[1], 1.0);
}

TEST(MaxPool, RoutesToFirstMaximumAndAddsOverlaps) {
  // One 3x3 plane, window 2, stride 1: the centre (value 9) is the max of all four windows.
  const double x[9] = {1, 2, 3, 4, 9, 5, 6, 7, 8};
  Conv2dShape s;
  s.n = 1, s.in_c = 1, s.in_h = 3, s.in_w = 3, s.out_c = 1, s.kh = s.kw = 2, s.stride = 1;
  double y[4];
  int32_t arg[4];
  cpu::maxpool2d_forward(x, y, arg, s);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(arg[i], 4);
  const double gy[4] = {1, 2, 3, 4};
  double gx[9];
  cpu::maxpool2d_backward(arg, gy, gx, s);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(gx[i], i == 4 ? 10.0 : 0.0);
}

}  // namespace
}  // namespace nq::nn::test
