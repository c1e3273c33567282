// Quantized-forward training (Park, Ahn & Yoo 2017; `netquant wetrain`) against oracles built from the public API:
// no training is direct quantization (quantize_model, evaluate); one full-batch Adam step is a sign step of size lr
// from the gradient at the quantized weights (compute_gradients, straight-through); the same bits for any thread
// count; every out-of-range parameter refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "netquant/error.h"
#include "netquant/lc.h"
#include "netquant/nn.h"
#include "netquant/backend.h"
#include "netquant/quantize.h"
#include "pipeline/teacher_data.h"

namespace nq {
namespace {

// 6x4 single-channel images, 3 classes: flatten → fc1 (9) → ReLU → fc2 (3); 255 parameters.
Model small_model(uint64_t seed) { return test::teacher_mlp("small", 6, 4, 9, 3, seed); }
Dataset teacher_data(int64_t n, uint64_t seed) { return test::teacher_images(n, 6, 4, 3, seed); }

QuantTrainParams quiet_params() {
  QuantTrainParams p;
  p.progress = false;
  return p;
}

// What quantized_train documents for its weights: per tensor, 2^bits levels (int: the symmetric grid), biases kept
// in float.
ModelQuantizeParams weight_quantizer(const QuantTrainParams& p) {
  ModelQuantizeParams mq;
  mq.quant.method = p.weight_method;
  mq.quant.k = 1 << p.weight_bits;
  mq.quant.int_bits = p.weight_bits;
  mq.quant.backend = Backend::kCpu;
  mq.scope = parse_scope("tensor");
  mq.skip_1d = true;
  return mq;
}

Model with_weights(const Model& like, const TensorSet& w) {
  Model m = like;
  m.set_weights(w);
  return m;
}

std::vector<std::string> names(const TensorSet& set) {
  std::vector<std::string> out;
  for (const Tensor& t : set) out.push_back(t.name());
  return out;
}

void expect_same_values(const TensorSet& a, const TensorSet& b) {
  ASSERT_EQ(names(a), names(b));
  for (const std::string& name : names(a)) EXPECT_EQ(a.at(name).to_f32(), b.at(name).to_f32()) << name;
}

TEST(QuantizedTrain, NoTrainingIsDirectQuantization) {
  const Model model = small_model(3);
  const Dataset train = teacher_data(70, 4), test = teacher_data(41, 5);
  for (Method method : {Method::kWentropy, Method::kInt}) {
    QuantTrainParams p = quiet_params();
    p.weight_method = method;
    p.weight_bits = 2;
    p.activation = ActivationQuant::kNone;
    p.epochs = 0;
    const QuantTrainResult r = quantized_train(model, train, test, p);
    const QuantizedModel direct = quantize_model(model.weights(), nullptr, weight_quantizer(p));
    const TensorSet deq = direct.dequantize();
    expect_same_values(r.weights.dequantize(), deq);
    EvalParams ep;
    ep.backend = Backend::kCpu;
    EXPECT_EQ(r.float_accuracy, evaluate(model, test, ep).accuracy);
    const double quantized = evaluate(with_weights(model, deq), test, ep).accuracy;
    EXPECT_EQ(r.accuracy_before, quantized);
    EXPECT_EQ(r.accuracy_after, quantized);
    EXPECT_TRUE(r.epoch_loss.empty());
    for (const QuantizedTensor& t : r.weights.tensors) EXPECT_EQ(t.quantized, t.shape.size() > 1) << t.name;
  }
}

// Adam's first step has m̂ = g and v̂ = g², so it moves every full-precision weight by lr·g/(|g| + eps): a sign
// step, with g the gradient at the quantized weights (straight-through). One batch of the whole set is one step.
TEST(QuantizedTrain, OneFullBatchStepIsASignStepFromTheQuantizedWeights) {
  const Model model = small_model(7);
  const Dataset train = teacher_data(53, 8), test = teacher_data(29, 9);
  QuantTrainParams p = quiet_params();
  p.weight_method = Method::kWentropy;
  p.weight_bits = 3;
  p.activation = ActivationQuant::kNone;
  p.epochs = 1;
  p.batch = train.size();
  p.lr = 0.01;
  const QuantTrainResult r = quantized_train(model, train, test, p);
  ASSERT_EQ(r.epoch_loss.size(), 1u);

  const ModelQuantizeParams mq = weight_quantizer(p);
  const TensorSet w0 = model.weights();
  const TensorSet wq = quantize_model(w0, nullptr, mq).dequantize();
  const TensorSet g = compute_gradients(model, wq, train, 1000, Backend::kCpu);
  TensorSet w1;
  for (const std::string& name : names(w0)) {
    const std::vector<float> w = w0.at(name).to_f32(), gr = g.at(name).to_f32();
    std::vector<float> out(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      const double gi = gr[i];
      out[i] = static_cast<float>(w[i] - p.lr * gi / (std::fabs(gi) + 1e-8));
    }
    w1.add(Tensor::from_f32(name, w0.at(name).shape(), out));
  }
  // The loss the step reports is the quantized forward's, on the same images.
  EvalParams ep;
  ep.backend = Backend::kCpu;
  EXPECT_NEAR(r.epoch_loss[0], evaluate(with_weights(model, wq), train, ep).loss, 1e-5);
  // The weights it ends with are the step's, quantized again (biases: the step itself).
  const TensorSet expected = quantize_model(w1, nullptr, mq).dequantize();
  const TensorSet got = r.weights.dequantize();
  ASSERT_EQ(names(got), names(expected));
  for (const std::string& name : names(got)) {
    const std::vector<float> a = got.at(name).to_f32(), b = expected.at(name).to_f32();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << name << "[" << i << "]";
  }
  // And it moved: a step of 0.01 changes the quantized weights of this model.
  EXPECT_NE(got.at("fc1.weight").to_f32(), wq.at("fc1.weight").to_f32());
}

// After training, the activation quantizers are fitted again to the trained net: a run that starts from the trained
// weights (their int grid quantizes to itself) and trains no epoch fits the same quantizers and scores the same.
TEST(QuantizedTrain, ActivationQuantizersAreRefittedToTheTrainedWeights) {
  const Model model = small_model(11);
  const Dataset train = teacher_data(96, 12), test = teacher_data(37, 13);
  for (ActivationQuant act : {ActivationQuant::kLogWeightedEntropy, ActivationQuant::kLinear}) {
    SCOPED_TRACE(activation_quant_name(act));
    QuantTrainParams p = quiet_params();
    p.weight_method = Method::kInt;
    p.weight_bits = 4;
    p.activation = act;
    p.activation_bits = 3;
    p.epochs = 3;
    p.batch = 16;
    p.lr = 0.05;
    const QuantTrainResult a = quantized_train(model, train, test, p);
    p.epochs = 0;
    const QuantTrainResult b = quantized_train(with_weights(model, a.weights.dequantize()), train, test, p);
    expect_same_values(b.weights.dequantize(), a.weights.dequantize());  // the grid is its own quantization
    EXPECT_EQ(b.activation_quantizers, a.activation_quantizers);
    EXPECT_EQ(b.accuracy_before, a.accuracy_after);
    // Training moved the net enough that the quantizers fitted before it differ.
    const QuantTrainResult before = quantized_train(model, train, test, p);
    EXPECT_NE(before.activation_quantizers, a.activation_quantizers);
  }
}

TEST(QuantizedTrain, SameBitsForAnyThreadCountAndTheSeedShuffles) {
  const Model model = small_model(11);
  const Dataset train = teacher_data(97, 12), test = teacher_data(33, 13);
  QuantTrainParams p = quiet_params();
  p.epochs = 2;
  p.batch = 16;  // 97 = 6 full batches + a partial one
  p.lr = 3e-3;
  p.calibration_samples = 40;
  p.requantize_every = 2;
  const int saved = num_threads();
  std::vector<QuantTrainResult> runs;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    runs.push_back(quantized_train(model, train, test, p));
  }
  set_num_threads(saved);
  expect_same_values(runs[0].weights.dequantize(), runs[1].weights.dequantize());
  EXPECT_EQ(runs[0].epoch_loss, runs[1].epoch_loss);
  EXPECT_EQ(runs[0].accuracy_after, runs[1].accuracy_after);
  EXPECT_EQ(runs[0].activation_quantizers, runs[1].activation_quantizers);
  ASSERT_EQ(runs[0].activation_quantizers.size(), 1u);  // one ReLU
  p.seed = 2;
  const QuantTrainResult other = quantized_train(model, train, test, p);
  EXPECT_NE(other.epoch_loss, runs[0].epoch_loss) << "another shuffle seed must change the steps";
}

TEST(QuantizedTrain, RefusesParametersOutsideTheirRangeByName) {
  const Model model = small_model(1);
  const Dataset data = teacher_data(20, 2);
  const std::vector<std::pair<std::function<void(QuantTrainParams&)>, std::string>> bad = {
      {[](QuantTrainParams& p) { p.epochs = -1; }, "--epochs"},
      {[](QuantTrainParams& p) { p.batch = 0; }, "--batch"},
      {[](QuantTrainParams& p) { p.lr = 0; }, "--lr"},
      {[](QuantTrainParams& p) { p.lr = std::nan(""); }, "--lr"},
      {[](QuantTrainParams& p) { p.requantize_every = 0; }, "--requantize-every"},
      {[](QuantTrainParams& p) { p.calibration_samples = 0; }, "--calibration"},
      {[](QuantTrainParams& p) { p.weight_bits = 17; }, "--weight-bits"},
      {[](QuantTrainParams& p) { p.activation_bits = 0; }, "--act-bits"},
  };
  for (const auto& [set, name] : bad) {
    QuantTrainParams p = quiet_params();
    set(p);
    try {
      quantized_train(model, data, data, p);
      ADD_FAILURE() << name << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace nq
