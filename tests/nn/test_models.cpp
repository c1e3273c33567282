// Built-in models: parameter counts and names, init, weights round trip and errors, determinism of training,
// and a short Fashion-MNIST run that must clearly beat chance (skipped without the dataset).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/nn.h"
#include "nn_test_util.h"

namespace nq {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("nq_nn_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

bool equal_sets(const TensorSet& a, const TensorSet& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name() != b[i].name() || a[i].shape() != b[i].shape() || a[i].to_f32() != b[i].to_f32()) return false;
  return true;
}

// Synthetic separable data: class k brightens a k-dependent block of the image, plus noise.
Dataset synthetic(int64_t n, uint64_t seed) {
  Dataset d;
  d.images = Tensor("images", DType::kF32, {n, 1, 28, 28});
  d.labels.resize(size_t(n));
  float* x = d.images.mutable_data_as<float>();
  uint64_t s = seed;
  auto rnd = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return double(s >> 11) * 0x1.0p-53;
  };
  for (int64_t i = 0; i < n; ++i) {
    const int k = int(rnd() * 10);
    d.labels[size_t(i)] = k;
    for (int p = 0; p < 784; ++p) x[i * 784 + p] = float(0.3 * rnd() + ((p / 28) / 3 == k ? 0.7 : 0.0));
  }
  return d;
}

TEST(Models, ParameterCountsNamesAndShapes) {
  const Model a = build_model("lenet300");
  EXPECT_EQ(a.num_parameters(), 266610);
  EXPECT_EQ(a.weights()[0].name(), "fc1.weight");
  EXPECT_EQ(a.weights()[0].shape(), (std::vector<int64_t>{300, 784}));
  EXPECT_EQ(a.weights()[5].name(), "fc3.bias");
  const Model b = build_model("lenet5");
  EXPECT_EQ(b.num_parameters(), 431080);
  EXPECT_EQ(b.weights().at("conv2.weight").shape(), (std::vector<int64_t>{50, 20, 5, 5}));
  EXPECT_EQ(b.weights().at("fc1.weight").shape(), (std::vector<int64_t>{500, 800}));
  EXPECT_THROW(build_model("resnet"), Error);
}

TEST(Models, InitIsSeededAndWithinPyTorchBounds) {
  const Model a = build_model("lenet5", 3), b = build_model("lenet5", 3), c = build_model("lenet5", 4);
  EXPECT_TRUE(equal_sets(a.weights(), b.weights()));
  EXPECT_FALSE(equal_sets(a.weights(), c.weights()));
  const auto w = a.weights().at("conv2.weight").to_f32();  // fan_in 500
  double max_abs = 0, mean = 0;
  for (float v : w) max_abs = std::max(max_abs, double(std::abs(v))), mean += v / double(w.size());
  EXPECT_LE(max_abs, 1 / std::sqrt(500.0));
  EXPECT_GT(max_abs, 0.95 / std::sqrt(500.0));
  EXPECT_LT(std::abs(mean), 0.002);
}

TEST(Models, SaveLoadRoundTripAndErrors) {
  Model a = build_model("lenet300", 9);
  const std::string path = temp_path("w.safetensors");
  save_weights(a, path);
  Model b = build_model("lenet300", 10);
  load_weights(b, path);
  EXPECT_TRUE(equal_sets(a.weights(), b.weights()));
  // Missing tensor, wrong shape, extra tensor: clear errors naming the tensor.
  TensorSet t = a.weights();
  TensorSet missing;
  for (const Tensor& x : t)
    if (x.name() != "fc2.bias") missing.add(x);
  try {
    b.set_weights(missing);
    FAIL() << "missing tensor accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeMismatch);
    EXPECT_NE(std::string(e.what()).find("fc2.bias"), std::string::npos) << e.what();
  }
  Model l5 = build_model("lenet5");
  EXPECT_THROW(l5.set_weights(a.weights()), Error);
  TensorSet extra = a.weights();
  extra.add(Tensor("fc4.weight", DType::kF32, {2, 2}));
  EXPECT_THROW(b.set_weights(extra), Error);
  // Float64 weights are accepted (converted).
  TensorSet f64;
  for (const Tensor& x : a.weights()) f64.add(x.converted(DType::kF64));
  b.set_weights(f64);
  EXPECT_TRUE(equal_sets(a.weights(), b.weights()));
  // A weight that is not finite (a diverged run's) is refused by name, as quantize refuses it.
  TensorSet bad;
  for (const Tensor& x : a.weights()) {
    Tensor y = x;
    if (y.name() == "fc2.weight") y.mutable_data_as<float>()[37] = std::nanf("");
    bad.add(y);
  }
  try {
    load_weights(b, bad, "bad.safetensors");
    FAIL() << "a NaN weight accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("bad.safetensors: tensor 'fc2.weight': weight 37 is not finite"),
              std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
}

// A model JSON is user input: every malformed or oversized network is an nq::Error with a message that says
// what is wrong, never a crash, a signed overflow (a wrapped, negative shape) or a bare allocation failure.
TEST(Models, HostileModelJsonIsAClearError) {
  auto net = [](const std::string& input, const std::string& layers, int classes = 10) {
    return "{\"input\": " + input + ", \"classes\": " + std::to_string(classes) + ", \"layers\": [" + layers + "]}";
  };
  const std::string fc10 = R"({"type": "linear", "name": "f", "out": 10})";
  struct Case {
    std::string json, message;
    ErrorCode code;
  };
  const std::vector<Case> cases = {
      {"{", "does not parse", ErrorCode::kInvalidArgument},
      {"[1, 2]", "model JSON", ErrorCode::kInvalidArgument},
      {net("[1, 28]", fc10), "[channels, height, width]", ErrorCode::kInvalidArgument},
      {net("[0, 28, 28]", fc10), "empty input", ErrorCode::kInvalidArgument},
      // Sizes are JSON integers: 1.5 used to be cut to 1 without a word.
      {net("[1, 28, 28]", R"({"type": "linear", "name": "f", "out": 1.5})"), "\"out\" must be an integer, got 1.5",
       ErrorCode::kInvalidArgument},
      {net("[1, 28.5, 28]", fc10), "\"input\" must be an integer", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "maxpool2d", "kernel": 2, "stride": "2"}, )" + fc10),
       "\"stride\" must be an integer", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "conv", "name": "c", "out": 4})"), "unknown layer type 'conv'",
       ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "conv2d", "name": "c", "out": 4, "kernel": 3, "stride": 0}, )" + fc10),
       "layer 'c': Conv2d needs", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "conv2d", "name": "c", "out": 4, "kernel": 29}, )" + fc10),
       "kernel 29 larger than the padded input", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "maxpool2d", "kernel": 0}, )" + fc10), "MaxPool2d window 0",
       ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", fc10 + ", " + fc10), "duplicate tensor name 'f.weight'", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", fc10, 7), "ends with 10 outputs, expected 7 classes", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", fc10, 1), "at least 2 classes", ErrorCode::kInvalidArgument},
      // c·h·w overflows int64 (3037000500² > 2^63): refused, not wrapped into a negative shape.
      {net("[1, 3037000500, 3037000500]", fc10), "the input exceeds 2^46 elements", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "conv2d", "name": "c", "out": 4, "kernel": 3, "padding": 4611686018427387904}, )" + fc10),
       "exceeds 2^46", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "conv2d", "name": "c", "out": 1099511627776, "kernel": 3}, )" + fc10),
       "layer 'c': the output exceeds 2^46 elements", ErrorCode::kInvalidArgument},
      {net("[1, 28, 28]", R"({"type": "linear", "name": "f", "out": 4000000000000}, )" + fc10),
       "the parameters exceed 2^46 elements (at 'f.weight')", ErrorCode::kInvalidArgument},
      // Large but representable: more than any machine's memory, refused before allocating.
      {net("[1, 28, 28]", R"({"type": "linear", "name": "f", "out": 20000000000}, )" +
                              std::string(R"({"type": "linear", "name": "g", "out": 10})")),
       "has 15900000000010 parameters", ErrorCode::kOutOfMemory},
  };
  for (const Case& c : cases) {
    try {
      build_model_from_json(c.json, 1);
      ADD_FAILURE() << "accepted: " << c.json;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), c.code) << c.json << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << c.json << ": " << e.what();
    }
  }
  // The control: a valid custom net builds, with the parameter count its layers imply.
  const Model ok = build_model_from_json(
      net("[1, 8, 8]", R"({"type": "conv2d", "name": "c", "out": 3, "kernel": 3}, {"type": "relu"}, )"
                       R"({"type": "flatten"}, {"type": "linear", "name": "f", "out": 10})"),
      1);
  EXPECT_EQ(ok.num_parameters(), (3 * 9 + 3) + (3 * 6 * 6 * 10 + 10));
  // Whole numbers written as floats are the same sizes.
  const Model ok_float = build_model_from_json(
      net("[1, 8.0, 8]", R"({"type": "conv2d", "name": "c", "out": 3.0, "kernel": 3}, {"type": "relu"}, )"
                         R"({"type": "flatten"}, {"type": "linear", "name": "f", "out": 1e1})"),
      1);
  EXPECT_EQ(ok_float.num_parameters(), ok.num_parameters());
}

TEST(Models, TrainingIsDeterministicAndLearns) {
  const Dataset data = synthetic(300, 5);
  for (OptimizerKind opt : {OptimizerKind::kSgd, OptimizerKind::kAdam}) {
    TrainParams p;
    p.optimizer = opt;
    p.epochs = 2;
    p.batch = 32;  // 300 = 9 full batches + a partial one
    p.seed = 42;
    p.backend = Backend::kCpu;
    p.progress = false;
    p.weight_decay = 1e-4;
    Model a = build_model("lenet300", 1), b = build_model("lenet300", 1);
    const TrainResult ra = train(a, data, &data, p);
    const TrainResult rb = train(b, data, &data, p);
    EXPECT_TRUE(equal_sets(a.weights(), b.weights())) << "same seed must give identical weights";
    ASSERT_EQ(ra.epochs.size(), 2u);
    EXPECT_GT(ra.epochs.back().test_accuracy, 0.5);  // chance is 0.1
    EXPECT_EQ(ra.epochs.back().test_accuracy, rb.epochs.back().test_accuracy);
    EXPECT_EQ(opt == OptimizerKind::kAdam, !ra.adam_v.empty());
    p.seed = 43;
    Model c = build_model("lenet300", 1);
    train(c, data, nullptr, p);
    EXPECT_FALSE(equal_sets(a.weights(), c.weights())) << "another shuffle seed must change the weights";
  }
}

// train() against a replay of plain SGD steps (momentum 0) from compute_gradients: every image is trained on once
// per epoch, in batches of `batch` with the last one partial, in a seeded shuffle that can leave images in place.
TEST(Models, TrainingStepsReplayFromGradientsOfTheShuffledBatches) {
  const Model start = build_model_from_json(
      R"({"name":"tiny","input":[1,28,28],"classes":10,"layers":[{"type":"flatten"},)"
      R"({"type":"linear","name":"fc","out":10}]})",
      3);
  auto params = [](int64_t batch, uint64_t seed) {
    TrainParams p;
    p.epochs = 1;
    p.batch = batch;
    p.lr = 0.5;
    p.momentum = 0;
    p.seed = seed;
    p.backend = Backend::kCpu;
    p.progress = false;
    return p;
  };
  // One SGD step on the mean gradient over `batch`'s images.
  auto step = [](const Model& m, std::vector<float>& w, const Dataset& batch) {
    TensorSet ws = m.weights();
    float* flat = ws[0].mutable_data_as<float>();
    std::copy(w.begin(), w.begin() + ws[0].numel(), flat);
    std::copy(w.begin() + ws[0].numel(), w.end(), ws[1].mutable_data_as<float>());
    const TensorSet g = compute_gradients(m, ws, batch, 64, Backend::kCpu);
    const std::vector<float> g0 = g[0].to_f32(), g1 = g[1].to_f32();
    for (size_t i = 0; i < g0.size(); ++i) w[i] -= 0.5f * g0[i];
    for (size_t i = 0; i < g1.size(); ++i) w[g0.size() + i] -= 0.5f * g1[i];
  };
  auto flat = [](const Model& m) {
    std::vector<float> w = m.weights()[0].to_f32(), b = m.weights()[1].to_f32();
    w.insert(w.end(), b.begin(), b.end());
    return w;
  };
  auto distance = [](const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
    return d;
  };
  ASSERT_EQ(start.weights().size(), 2u);

  // 10 images in one batch of 16: one step over all ten (none left out of a partial last batch).
  const Dataset ten = synthetic(10, 8);
  Model m = start;
  train(m, ten, nullptr, params(16, 1));
  std::vector<float> want = flat(start);
  step(start, want, ten);
  EXPECT_LT(distance(flat(m), want), 1e-5);
  EXPECT_GT(distance(flat(start), want), 1e-2);  // the step is large enough to be seen

  // Two images in batches of 1: the order is one of the two, and over 16 seeds both occur.
  const Dataset two = synthetic(2, 9);
  std::vector<float> order01 = flat(start), order10 = flat(start);
  step(start, order01, nn::test::images_of(two, {0}));
  step(start, order01, nn::test::images_of(two, {1}));
  step(start, order10, nn::test::images_of(two, {1}));
  step(start, order10, nn::test::images_of(two, {0}));
  ASSERT_GT(distance(order01, order10), 1e-4);
  int in_place = 0, swapped = 0;
  for (uint64_t seed = 0; seed < 16; ++seed) {
    Model t = start;
    train(t, two, nullptr, params(1, seed));
    const double d01 = distance(flat(t), order01), d10 = distance(flat(t), order10);
    ASSERT_LT(std::min(d01, d10), 1e-5) << "seed " << seed << ": neither order";
    (d01 < d10 ? in_place : swapped) += 1;
  }
  EXPECT_GT(in_place, 0);
  EXPECT_GT(swapped, 0);
}

// Hyper-parameters that can only diverge or make no sense are refused before any work, each naming itself; the
// edges that are valid (momentum 0, no decay) train.
TEST(Models, TrainingRefusesHyperParametersOutsideTheirRange) {
  const Dataset data = synthetic(40, 7);
  auto base = [] {
    TrainParams p;
    p.epochs = 1;
    p.batch = 16;
    p.backend = Backend::kCpu;
    p.progress = false;
    return p;
  };
  const std::vector<std::pair<std::function<void(TrainParams&)>, std::string>> bad = {
      {[](TrainParams& p) { p.momentum = 1.0; }, "momentum"},
      {[](TrainParams& p) { p.momentum = -0.1; }, "momentum"},
      {[](TrainParams& p) { p.momentum = std::nan(""); }, "momentum"},
      {[](TrainParams& p) { p.weight_decay = -1e-4; }, "weight decay"},
      {[](TrainParams& p) { p.weight_decay = INFINITY; }, "weight decay"},
      {[](TrainParams& p) { p.beta1 = 1.0; }, "betas"},
      {[](TrainParams& p) { p.beta2 = -0.5; }, "betas"},
      {[](TrainParams& p) { p.eps = 0; }, "eps"},
  };
  for (const auto& [set, name] : bad) {
    TrainParams p = base();
    set(p);
    Model m = build_model("lenet300", 1);
    const TensorSet before = m.weights();
    try {
      train(m, data, nullptr, p);
      ADD_FAILURE() << name << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    EXPECT_TRUE(equal_sets(m.weights(), before)) << name << ": a refused run changed the weights";
  }
  TrainParams edge = base();
  edge.momentum = 0;
  edge.weight_decay = 0;
  Model m = build_model("lenet300", 1);
  EXPECT_NO_THROW(train(m, data, nullptr, edge));
}

// The README's promise: training, evaluation and Hessians give the same bits for any --threads (batches split
// into micro-batches fixed by the batch size; 100 images = 2 batches of 64 and 36, so both a split and a partial
// batch). LeNet-5's convolutions are large enough for OpenBLAS to split a GEMM if it were allowed threads.
TEST(Models, TrainingEvaluationAndHessianAreTheSameForAnyThreadCount) {
  const Dataset data = synthetic(100, 9);
  const int saved = num_threads();
  TensorSet first_weights, first_hessian;
  EvalResult first_eval{};
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    set_num_threads(threads);
    Model m = build_model("lenet5", 4);
    TrainParams p;
    p.optimizer = OptimizerKind::kAdam;
    p.epochs = 1;
    p.batch = 64;
    p.backend = Backend::kCpu;
    p.progress = false;
    train(m, data, nullptr, p);
    EvalParams ep;
    ep.backend = Backend::kCpu;
    const EvalResult e = evaluate(m, data, ep);
    HessianParams hp;
    hp.backend = Backend::kCpu;
    hp.progress = false;
    const TensorSet h = hessian_diagonal(m, data, hp);
    if (threads == 1) {
      first_weights = m.weights();
      first_eval = e;
      first_hessian = h;
      continue;
    }
    EXPECT_TRUE(equal_sets(m.weights(), first_weights));
    EXPECT_EQ(e.loss, first_eval.loss);
    EXPECT_EQ(e.accuracy, first_eval.accuracy);
    EXPECT_TRUE(equal_sets(h, first_hessian));
  }
  set_num_threads(saved);
}

// Retraining a pruned net (TrainParams::keep_zeros). Oracle: one full-batch SGD step without momentum is
// w − lr·(g + wd·w) with g the mean-loss gradient of compute_gradients (float64 sums, so within float rounding of
// training's float micro-batches), and exactly 0 where w was 0; several Adam epochs with weight decay keep every
// zero at 0 and move the rest; and a model without zeros trains to the same bits with or without the flag.
TEST(Models, KeepZerosRetrainsOnlyTheSurvivors) {
  const Dataset data = synthetic(97, 21);
  Model start = build_model("lenet300", 6);
  for (const Tensor& t : start.weights())
    for (float v : t.to_f32()) ASSERT_NE(v, 0.0f) << t.name() << ": the fresh model must have no zeros";
  // Prune a seeded ~60% of every tensor, with both signs of zero.
  TensorSet pruned;
  uint64_t s = 99;
  for (const Tensor& t : start.weights()) {
    std::vector<float> w = t.to_f32();
    for (float& v : w) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const uint32_t r = static_cast<uint32_t>(s >> 33);
      if (r % 10 < 6) v = r % 20 < 3 ? -0.0f : 0.0f;
    }
    pruned.add(Tensor::from_f32(t.name(), t.shape(), w));
  }
  start.set_weights(pruned);

  {  // one SGD step over the whole set
    TrainParams p;
    p.optimizer = OptimizerKind::kSgd;
    p.momentum = 0;
    p.weight_decay = 1e-3;
    p.lr = 0.5;
    p.epochs = 1;
    p.batch = data.size();
    p.backend = Backend::kCpu;
    p.progress = false;
    p.keep_zeros = true;
    Model m = start;
    train(m, data, nullptr, p);
    const TensorSet g = compute_gradients(start, pruned, data, 1000, Backend::kCpu);
    for (size_t ti = 0; ti < pruned.size(); ++ti) {
      const std::vector<float> w0 = pruned[ti].to_f32(), w1 = m.weights()[ti].to_f32(), gt = g[ti].to_f32();
      double gmax = 0;
      for (float v : gt) gmax = std::max(gmax, std::fabs(double(v)));
      for (size_t i = 0; i < w0.size(); ++i) {
        if (w0[i] == 0.0f) {
          ASSERT_EQ(w1[i], 0.0f) << pruned[ti].name() << "[" << i << "] was pruned";
          continue;
        }
        const double expect = double(w0[i]) - p.lr * (double(gt[i]) + p.weight_decay * double(w0[i]));
        ASSERT_NEAR(w1[i], expect, 1e-5 * p.lr * gmax + 1e-6 * std::fabs(double(w0[i])))
            << pruned[ti].name() << "[" << i << "]";
      }
    }
  }
  {  // several Adam epochs with weight decay
    TrainParams p;
    p.optimizer = OptimizerKind::kAdam;
    p.weight_decay = 1e-2;
    p.epochs = 3;
    p.batch = 16;
    p.backend = Backend::kCpu;
    p.progress = false;
    p.keep_zeros = true;
    Model m = start;
    const TrainResult r = train(m, data, nullptr, p);
    size_t kept = 0, moved = 0;
    for (size_t ti = 0; ti < pruned.size(); ++ti) {
      const std::vector<float> w0 = pruned[ti].to_f32(), w1 = m.weights()[ti].to_f32();
      const std::vector<float> v = r.adam_v[ti].to_f32();
      for (size_t i = 0; i < w0.size(); ++i) {
        if (w0[i] == 0.0f) {
          ASSERT_EQ(w1[i], 0.0f) << pruned[ti].name() << "[" << i << "]";
          ASSERT_EQ(v[i], 0.0f) << "Adam's state of a pruned weight must stay 0";
        } else {
          ++kept;
          moved += w1[i] != w0[i];
        }
      }
    }
    EXPECT_GT(moved, kept * 9 / 10) << "the surviving weights must train";
    // Without the flag the zeros move: the flag is what holds them.
    Model free_run = start;
    p.keep_zeros = false;
    train(free_run, data, nullptr, p);
    size_t zeros_left = 0;
    for (const Tensor& t : free_run.weights())
      for (float v : t.to_f32()) zeros_left += v == 0.0f;
    EXPECT_LT(zeros_left, kept / 10);
  }
  {  // no zeros: the flag changes nothing
    TrainParams p;
    p.optimizer = OptimizerKind::kAdam;
    p.epochs = 1;
    p.batch = 32;
    p.backend = Backend::kCpu;
    p.progress = false;
    Model a = build_model("lenet300", 6), b = build_model("lenet300", 6);
    train(a, data, nullptr, p);
    p.keep_zeros = true;
    train(b, data, nullptr, p);
    EXPECT_TRUE(equal_sets(a.weights(), b.weights()));
  }
}

TEST(Models, Lenet5TrainsOnSyntheticData) {
  const Dataset data = synthetic(200, 8);
  Model m = build_model("lenet5", 2);
  TrainParams p;
  p.epochs = 3;
  p.batch = 20;
  p.lr = 0.02;
  p.backend = Backend::kCpu;
  p.progress = false;
  const TrainResult r = train(m, data, &data, p);
  EXPECT_GT(r.epochs.back().test_accuracy, 0.8);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
}

TEST(Models, FashionMnistShortRunBeatsChance) {
  const std::string dir = default_data_dir();
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz") &&
      !std::filesystem::exists(dir + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << "Fashion-MNIST not found in " << dir << " (apt-get install dataset-fashion-mnist)";
  const Dataset train_set = load_mnist(dir, true);
  const Dataset test_set = load_mnist(dir, false);
  Model m = build_model("lenet300", 1);
  TrainParams p;
  p.epochs = 2;
  p.batch = 32;
  p.train_subset = 2000;
  p.test_subset = 1000;
  p.backend = Backend::kCpu;
  p.progress = false;
  const TrainResult r = train(m, train_set, &test_set, p);
  std::printf("[ measure  ] lenet300, 2000 Fashion-MNIST images, 2 epochs: test accuracy %.2f%% (1000 images)\n",
              100 * r.epochs.back().test_accuracy);
  EXPECT_GT(r.epochs.back().test_accuracy, 0.60);
  EvalParams ep;
  ep.limit = 1000;
  ep.backend = Backend::kCpu;
  const EvalResult e = evaluate(m, test_set, ep);
  EXPECT_DOUBLE_EQ(e.accuracy, r.epochs.back().test_accuracy);
  EXPECT_EQ(e.samples, 1000);
}

TEST(Models, CudaBackendWithoutCudaIsUnavailable) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  const Model m = build_model("lenet300");
  const Dataset d = synthetic(4, 1);
  EvalParams ep;
  ep.backend = Backend::kCuda;
  try {
    evaluate(m, d, ep);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
}

}  // namespace
}  // namespace nq
