// The data-parallel network's gradient against the float64 gradient of the whole batch, its forward sums, and
// their independence of the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "netquant/backend.h"
#include "netquant/error.h"
#include "netquant/nn.h"
#include "nn/data_parallel_net.h"
#include "nn/nn_test_util.h"

namespace nq::nn {
namespace {

using test::conv;
using test::flatten;
using test::linear;
using test::make_spec;
using test::maxpool;
using test::relu;

NetSpec small_convnet() {
  return make_spec(2, 9, 9, 5, {conv("c1", 4, 3, 1, 1), relu(), maxpool(2), flatten(), linear("f1", 7), relu(),
                                linear("f2", 5)});
}

// A dataset of `n` seeded images of the spec's shape, labels in [0, classes).
Dataset random_dataset(const NetSpec& spec, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Dataset d;
  d.images = Tensor("images", DType::kF32, {n, spec.in_c, spec.in_h, spec.in_w});
  float* x = d.images.mutable_data_as<float>();
  for (int64_t i = 0; i < d.images.numel(); ++i) x[i] = normal(rng);
  d.labels.resize(size_t(n));
  for (int32_t& y : d.labels) y = static_cast<int32_t>(rng() % uint64_t(spec.num_classes));
  d.num_classes = spec.num_classes;
  return d;
}

struct ThreadCount {  // restores the library's thread count after a test changes it
  int saved = num_threads();
  ~ThreadCount() { set_num_threads(saved); }
};

TEST(DataParallelNet, MicroBatchesDependOnTheNetworkAndBatchSizeAlone) {
  // The small net by hand: conv 2->4 channels, 3x3, on 9x9 (padded) -> 4x9x9; pool -> 64; 64 -> 7 -> 5.
  const Network<float> net(small_convnet());
  EXPECT_EQ(net.forward_flops_per_sample(), 2 * (4 * 81 * 2 * 9) + 2 * 64 * 7 + 2 * 7 * 5);
  const Model lenet300 = build_model("lenet300"), lenet5 = build_model("lenet5");
  const Network<float> mlp(lenet300.spec()), cnn(lenet5.spec());
  EXPECT_EQ(mlp.forward_flops_per_sample(), 2 * (784 * 300 + 300 * 100 + 100 * 10));
  // An MLP has 6 FLOPs per parameter and image: 192 / 6 = 32 images, one more for the biases' share.
  EXPECT_EQ(DataParallelNet::micro_batch_size(mlp.num_params(), mlp.forward_flops_per_sample()), 33);
  EXPECT_EQ(DataParallelNet::micro_batch_size(cnn.num_params(), cnn.forward_flops_per_sample()), 16);
  EXPECT_EQ(DataParallelNet::micro_batch_size(1000, 1000000), DataParallelNet::kMinMicroBatch);
  EXPECT_EQ(DataParallelNet::micro_batch_size(1000000, 1000), 64000);

  EXPECT_EQ(DataParallelNet::micro_batches(1, 16, Backend::kCpu), 1);
  EXPECT_EQ(DataParallelNet::micro_batches(16, 16, Backend::kCpu), 1);
  EXPECT_EQ(DataParallelNet::micro_batches(17, 16, Backend::kCpu), 2);
  EXPECT_EQ(DataParallelNet::micro_batches(64, 16, Backend::kCpu), 4);
  EXPECT_EQ(DataParallelNet::micro_batches(64, 33, Backend::kCpu), 2);
  EXPECT_EQ(DataParallelNet::micro_batches(129, 16, Backend::kCpu), 8);
  EXPECT_EQ(DataParallelNet::micro_batches(100000, 16, Backend::kCpu), DataParallelNet::kMaxMicroBatches);
  EXPECT_EQ(DataParallelNet::micro_batches(1000, 16, Backend::kCuda), 1);
}

// Against the float64 network's gradient of the whole batch at the same weights: within float rounding.
TEST(DataParallelNet, EqualsTheWholeDataParallelNetInFloat64) {
  const NetSpec spec = small_convnet();
  const int64_t n = 211;
  const Dataset data = random_dataset(spec, n, 7);
  test::Problem oracle(spec, n, 11);
  const float* images = data.images.data_as<float>();
  std::copy(images, images + data.images.numel(), oracle.x.begin());
  std::copy(data.labels.begin(), data.labels.end(), oracle.y.begin());
  const std::vector<float> w(oracle.w.begin(), oracle.w.end());
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));

  DataParallelNet bg(spec, Backend::kCpu);
  const std::vector<double> w64(w.begin(), w.end());
  for (int64_t count : {1, 3, 16, 17, 33, 64, 129, 211}) {
    SCOPED_TRACE("batch " + std::to_string(count));
    // The oracle's batch: the same images in the same order.
    test::Problem batch(spec, count, 11);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t j = order[size_t(i)];
      std::copy(oracle.x.begin() + j * oracle.net.input_size(), oracle.x.begin() + (j + 1) * oracle.net.input_size(),
                batch.x.begin() + i * oracle.net.input_size());
      batch.y[size_t(i)] = oracle.y[size_t(j)];
    }
    const std::vector<double> want = batch.gradient(w64);
    double want_loss = 0;
    for (int64_t i = 0; i < count; ++i) want_loss += batch.net.sample_loss()[i];

    std::vector<float> got(want.size(), -1.0f);
    double loss = 0, correct = 0;
    bg.gradient(w.data(), data, order.data(), count, got.data(), &loss, &correct);
    double scale = 0;
    for (double g : want) scale = std::max(scale, std::abs(g));
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * scale) << "parameter " << i;
    EXPECT_NEAR(loss, want_loss, 1e-5 * want_loss);
    double want_correct = 0;
    for (int64_t i = 0; i < count; ++i) want_correct += batch.net.sample_correct()[i];
    EXPECT_EQ(correct, want_correct);
    // The forward pass alone adds the same sums.
    double eval_loss = 0, eval_correct = 0;
    bg.evaluate(w.data(), data, order.data(), count, &eval_loss, &eval_correct);
    EXPECT_EQ(eval_loss, loss);
    EXPECT_EQ(eval_correct, correct);
  }
}

// The micro-batches are fixed by the batch size and each GEMM runs on one OpenBLAS thread, so 1, 2 and 3 threads
// give the same bits: for a lone micro-batch too (LeNet-5's first convolution is large enough for OpenBLAS to
// split it, which changes its last bits).
TEST(DataParallelNet, SameBitsForAnyThreadCount) {
  const Model model = build_model("lenet5", 3);
  const NetSpec& spec = model.spec();
  const int64_t n = 100;
  const Dataset data = random_dataset(spec, n, 21);
  std::vector<float> w(size_t(param_count(spec)));
  std::mt19937_64 rng(4);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  for (float& v : w) v = normal(rng);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  ThreadCount restore;
  for (int64_t count : {16, 100}) {
    std::vector<float> reference;
    double reference_loss = 0;
    for (int threads : {1, 2, 3}) {
      SCOPED_TRACE("batch " + std::to_string(count) + ", " + std::to_string(threads) + " threads");
      set_num_threads(threads);
      cpu::sync_blas_threads();  // as the drivers do: OpenBLAS on as many threads
      DataParallelNet bg(spec, Backend::kCpu);
      std::vector<float> g(w.size());
      double loss = 0, eval_loss = 0;
      bg.gradient(w.data(), data, order.data(), count, g.data(), &loss, nullptr);
      bg.evaluate(w.data(), data, order.data(), count, &eval_loss, nullptr);
      EXPECT_EQ(eval_loss, loss);
      if (reference.empty()) {
        reference = g;
        reference_loss = loss;
        continue;
      }
      EXPECT_EQ(loss, reference_loss);
      for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], reference[i]) << "parameter " << i;
    }
  }
}

TEST(DataParallelNet, ABadLabelIsReportedFromAnyMicroBatch) {
  const NetSpec spec = small_convnet();
  Dataset data = random_dataset(spec, 40, 2);
  data.labels[37] = 9;  // the net has 5 classes
  test::Problem p(spec, 1, 5);
  const std::vector<float> w(p.w.begin(), p.w.end());
  std::vector<int64_t> order(40);
  std::iota(order.begin(), order.end(), int64_t{0});
  DataParallelNet bg(spec, Backend::kCpu);
  std::vector<float> g(w.size());
  try {
    bg.gradient(w.data(), data, order.data(), 40, g.data(), nullptr, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile);
    EXPECT_NE(std::string(e.what()).find("image 37"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nq::nn
