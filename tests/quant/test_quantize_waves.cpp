// quantize_model in waves (ModelQuantizeParams::batch_weights): a model quantized a few tensors at a time must be
// the model quantized at once, bit for bit — codebooks, indices, every statistic — for every scope that streams,
// with pruning, importance transforms, λ batches and warm starts. The oracle for the model is the one-wave run.
// The pruning cut both take (quant/prune_cut.h: over converted arrays in one wave, over the unconverted model range
// by range in several) is checked against brute-force sorting on tie-heavy scores here and in test_select_pruned.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/fixtures.h"
#include "quant/prune_cases.h"
#include "quant/same_result.h"
#include "quant/prune_cut.h"

namespace nq {
namespace {

using test::make_importance;
using test::expect_same_model;
using test::student_t;

// Eight tensors of awkward sizes in three float dtypes, a 1-D one and a non-float one; the third repeats a few
// values so that pruning scores tie across tensors.
TensorSet make_model(uint64_t seed) {
  TensorSet m;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, DType dtype, bool ties = false) {
    std::vector<float> v = student_t(static_cast<size_t>(shape_numel(shape)), seed++);
    if (ties)
      for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * static_cast<float>(static_cast<int>(i % 7) - 3);
    Tensor t = Tensor::from_f32(name, shape, v);
    m.add(dtype == DType::kF32 ? t : t.converted(dtype));
  };
  add("a", {31, 33}, DType::kF32);
  add("b", {7, 129}, DType::kF16);
  add("c", {13, 17}, DType::kF32, true);
  add("bias", {257}, DType::kF32);
  add("d", {3, 5, 11}, DType::kBF16);
  add("e", {1, 1000}, DType::kF32);
  add("f", {64, 3}, DType::kF16, true);
  m.add(Tensor("steps", DType::kI64, {2}));
  add("g", {5, 41}, DType::kF32);
  return m;
}

struct WaveCase {
  Method method;
  int k;
  std::string scope;
  double prune;
  ImportanceTransform transform;
  bool skip_1d;
};

ModelQuantizeParams params_for(const WaveCase& c) {
  ModelQuantizeParams p;
  p.quant = test::params(c.method, c.k);
  if (c.method == Method::kEcsq) p.quant.lambda = 2e-4;
  p.scope = parse_scope(c.scope);
  p.prune = c.prune;
  p.importance_transform = c.transform;
  p.skip_1d = c.skip_1d;
  return p;
}

TEST(QuantizeWaves, AnyBatchSizeGivesTheModelQuantizedAtOnce) {
  const TensorSet model = make_model(11);
  const TensorSet imp = make_importance(model, 12);
  const std::vector<WaveCase> cases = {
      {Method::kHwKmeans, 16, "row", 0.0, ImportanceTransform::kNone, false},
      {Method::kHwKmeans, 16, "row", 0.37, ImportanceTransform::kNone, true},
      {Method::kKmeans, 4, "group:31", 0.5, ImportanceTransform::kSqrt, false},
      {Method::kExact, 5, "row", 0.2, ImportanceTransform::kNormalize, false},
      {Method::kEcsq, 32, "tensor", 0.3, ImportanceTransform::kNormalize, true},
      {Method::kEcsq, 16, "row", 0.0, ImportanceTransform::kSqrt, false},
      {Method::kUniform, 8, "tensor", 0.61, ImportanceTransform::kNone, false},
      {Method::kHwKmeans, 8, "global", 0.25, ImportanceTransform::kNone, false},  // one wave whatever the batch
  };
  for (const WaveCase& c : cases)
    for (const bool weighted : {true, false}) {
      ModelQuantizeParams p = params_for(c);
      const TensorSet* h = weighted ? &imp : nullptr;
      if (!weighted) p.importance_transform = ImportanceTransform::kNone;  // it needs an importance
      p.batch_weights = int64_t{1} << 40;
      const QuantizedModel want = quantize_model(model, h, p);
      // 1: every tensor its own wave; 300 and 1200: several tensors per wave, with the big ones alone.
      for (const int64_t batch : {int64_t{1}, int64_t{300}, int64_t{1200}}) {
        p.batch_weights = batch;
        expect_same_model(quantize_model(model, h, p), want,
                          std::string(method_traits(c.method).name) + " " + c.scope + " prune " + std::to_string(c.prune) +
                              (weighted ? " weighted" : "") + " batch " + std::to_string(batch));
      }
    }
}

// The model stores each tensor's indices in the narrowest width its codebooks need (IndexArray): one byte for up
// to 255 levels, two beyond; the values read back are the per-problem results either way.
TEST(QuantizeWaves, IndicesAreAsNarrowAsTheCodebooksAllow) {
  TensorSet model;
  std::vector<float> many(5000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = 0.001f * static_cast<float>(i % 1000);  // 1000 values
  model.add(Tensor::from_f32("wide", {5000}, many));
  model.add(Tensor::from_f32("narrow", {40, 25}, student_t(1000, 51)));
  for (const int k : {16, 255, 256, 600}) {
    SCOPED_TRACE(k);
    ModelQuantizeParams p;
    p.quant = test::params(Method::kExact, k);
    p.scope = parse_scope("tensor");
    p.prune = 0.1;
    const QuantizedModel q = quantize_model(model, nullptr, p);
    EXPECT_EQ(q.tensors[0].indices.width(), k <= 255 ? 1 : 2);
    EXPECT_EQ(q.tensors[1].indices.width(), k <= 255 ? 1 : 2);  // hundreds of distinct values stay unpruned
    for (const QuantizedTensor& t : q.tensors) {
      const std::vector<float>& cb = q.codebooks[static_cast<size_t>(t.first_codebook)];
      int32_t top = -1;
      for (const int32_t i : t.indices) top = std::max(top, i);
      EXPECT_EQ(static_cast<size_t>(top) + 1, cb.size()) << t.name;  // every level used, the last one included
      EXPECT_EQ(t.indices.count(kPrunedIndex), t.stats.pruned);
    }
  }
}

TEST(QuantizeWaves, LambdaBatchesAndWarmStartsStreamTheSame) {
  const TensorSet model = make_model(21);
  const TensorSet imp = make_importance(model, 22);
  ModelQuantizeParams p = params_for({Method::kEcsq, 16, "row", 0.3, ImportanceTransform::kNone, false});
  const std::vector<double> lambdas = {1e-5, 3e-4, 2e-3};
  p.batch_weights = 0;  // automatic: this small model is one wave
  const std::vector<QuantizedModel> want = quantize_model_lambdas(model, &imp, p, lambdas);
  p.batch_weights = 1;
  const std::vector<QuantizedModel> got = quantize_model_lambdas(model, &imp, p, lambdas);
  ASSERT_EQ(got.size(), lambdas.size());
  for (size_t m = 0; m < lambdas.size(); ++m) expect_same_model(got[m], want[m], "lambda " + std::to_string(m));

  // Warm starts from the λ = 3e-4 codebooks: problem j of every wave starts from codebook j of the model.
  ModelQuantizeParams warm = params_for({Method::kHwKmeans, 16, "row", 0.3, ImportanceTransform::kNone, false});
  warm.initial_codebooks = want[1].codebooks;
  warm.batch_weights = int64_t{1} << 40;
  const QuantizedModel once = quantize_model(model, &imp, warm);
  warm.batch_weights = 500;
  expect_same_model(quantize_model(model, &imp, warm), once, "warm start");
  warm.initial_codebooks.clear();  // the warm start must matter, or the check above proves nothing
  EXPECT_NE(quantize_model(model, &imp, warm).codebooks, once.codebooks);
}

// Faults anywhere fail a streamed run before any wave is quantized, with the one-wave run's message.
TEST(QuantizeWaves, StreamedRunRefusesBadValuesAsTheOneWaveRun) {
  const TensorSet good = make_model(31);
  const TensorSet good_imp = make_importance(good, 32);
  struct Fault {
    bool in_importance;
    float value;
    std::string words;
  };
  for (const Fault& f : {Fault{false, std::nanf(""), "tensor 'g': weight 77 is not finite"},
                         Fault{true, -2.0f, "importance of tensor 'g': value 77 is -2 (must be finite and >= 0)"}}) {
    TensorSet model, imp;
    for (const TensorSet* src : {&good, &good_imp})
      for (const Tensor& t : *src) {
        Tensor copy = t.dtype() == DType::kF32 ? Tensor::from_f32(t.name(), t.shape(), t.to_f32()) : t;
        if (t.name() == "g" && (src == &good_imp) == f.in_importance)
          static_cast<float*>(copy.mutable_data())[77] = f.value;
        (src == &good ? model : imp).add(std::move(copy));
      }
    for (const int64_t batch : {int64_t{1} << 40, int64_t{1}}) {
      ModelQuantizeParams p = params_for({Method::kHwKmeans, 4, "row", 0.2, ImportanceTransform::kNone, false});
      p.batch_weights = batch;
      try {
        quantize_model(model, &imp, p);
        ADD_FAILURE() << "no error for " << f.words;
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find(f.words), std::string::npos) << e.what();
      }
    }
  }
  ModelQuantizeParams p;
  p.batch_weights = -1;
  EXPECT_THROW(quantize_model(good, &good_imp, p), Error);
}

// The streamed selection alone, against brute-force sorting, on scores with ties inside and across tensors
// (prune_cases.h: rounded values, zeros, −0 importance, a constant tensor), for counts that end inside a tie.
TEST(QuantizeWaves, StreamedPruningCutMatchesBruteForce) {
  uint64_t seed = 40;
  for (const auto& sizes : std::vector<std::vector<size_t>>{{1}, {5, 3}, {4099, 33, 1000, 257}, {70001, 31, 65537}})
    for (const bool weighted : {true, false}) {
      const quant::prune_cases::Model m = quant::prune_cases::make_model(sizes, ++seed);
      std::vector<Tensor> w, h;
      for (size_t t = 0; t < sizes.size(); ++t) {
        const std::vector<int64_t> shape{static_cast<int64_t>(sizes[t])};
        w.push_back(Tensor::from_f32("w" + std::to_string(t), shape, m.w[t]));
        h.push_back(Tensor::from_f32("w" + std::to_string(t), shape, m.h[t]));
      }
      std::vector<quant::ValueSource> sources;
      for (size_t t = 0; t < sizes.size(); ++t)
        sources.emplace_back(w[t], weighted ? &h[t] : nullptr, ImportanceTransform::kNone);
      const int64_t total = static_cast<int64_t>(m.total());
      for (int64_t count : {int64_t{1}, total / 3, total / 2, total - 1, total}) {
        count = std::max<int64_t>(count, 1);
        SCOPED_TRACE("total " + std::to_string(total) + " count " + std::to_string(count) +
                     (weighted ? " weighted" : ""));
        const auto want = quant::prune_cases::brute_force(m, weighted, count);
        // Collect limits that take every path: all histogram passes and the ties pass (0), collecting after one
        // or more passes (1, 300, 5000), and collecting at once (the default, above these totals).
        for (const uint64_t collect_max : {uint64_t{0}, uint64_t{1}, uint64_t{300}, uint64_t{5000},
                                           quant::kPruneCollectMax}) {
          const quant::PruneCut cut = quant::find_prune_cut(sources, count, collect_max);
          for (size_t t = 0; t < sizes.size(); ++t) {
            std::vector<uint8_t> mask(sizes[t], 7);  // sentinel: every entry must be written
            quant::mark_pruned(cut, t, m.w[t].data(), weighted ? m.h[t].data() : nullptr,
                               static_cast<int64_t>(sizes[t]), mask.data());
            EXPECT_EQ(mask, want[t]) << "tensor " << t << ", collecting at most " << collect_max;
          }
        }
      }
      EXPECT_THROW(quant::find_prune_cut(sources, total + 1), Error);
      EXPECT_THROW(quant::find_prune_cut(sources, 0), Error);
    }
}

// prune_model_each, converted at once and streamed (batch_weights below the total), against brute-force sorting on
// the same tie-heavy scores, with an f16 tensor (zeroed bytes in its own dtype) and an int tensor it must pass
// through. Tensors come in the model's order; one with nothing pruned is handed over as the input's own view.
TEST(QuantizeWaves, PruneModelEachStreamsTheBruteForceMask) {
  const std::vector<size_t> sizes{4099, 33, 1000, 257, 70001};
  for (const bool weighted : {true, false}) {
    quant::prune_cases::Model m = quant::prune_cases::make_model(sizes, weighted ? 91 : 92);
    // w3 is stored as f16: the oracle ranks its f16 values.
    m.w[3] = Tensor::from_f32("w3", {static_cast<int64_t>(sizes[3])}, m.w[3]).converted(DType::kF16).to_f32();
    TensorSet model, imp;
    for (size_t t = 0; t < sizes.size(); ++t) {
      const std::string name = "w" + std::to_string(t);
      const std::vector<int64_t> shape{static_cast<int64_t>(sizes[t])};
      Tensor f32 = Tensor::from_f32(name, shape, m.w[t]);
      model.add(t == 3 ? f32.converted(DType::kF16) : f32);
      imp.add(Tensor::from_f32(name, shape, m.h[t]));
      if (t == 1) model.add(Tensor("steps", DType::kI64, {3}));  // not selected
    }
    const int64_t total = static_cast<int64_t>(m.total());
    for (const double fraction : {0.0, 0.3, 0.5, 0.97}) {
      const int64_t count = static_cast<int64_t>(std::floor(fraction * static_cast<double>(total)));
      const auto want = count > 0 ? quant::prune_cases::brute_force(m, weighted, count)
                                  : std::vector<std::vector<uint8_t>>();
      for (const int64_t batch : {int64_t{0}, int64_t{1}, total - 1}) {
        SCOPED_TRACE("fraction " + std::to_string(fraction) + " batch " + std::to_string(batch) +
                     (weighted ? " weighted" : ""));
        ModelQuantizeParams p;
        p.prune = fraction;
        p.batch_weights = batch;
        std::vector<Tensor> got;
        prune_model_each(model, weighted ? &imp : nullptr, p, [&](Tensor t) { got.push_back(std::move(t)); });
        ASSERT_EQ(got.size(), model.size());
        for (size_t i = 0, t = 0; i < got.size(); ++i) {
          const Tensor& in = model[i];
          ASSERT_EQ(got[i].name(), in.name());
          ASSERT_EQ(got[i].dtype(), in.dtype());
          if (in.dtype() == DType::kI64) {
            EXPECT_EQ(got[i].data(), in.data());
            continue;
          }
          const std::vector<double> a = in.to_f64(), b = got[i].to_f64();
          int64_t pruned = 0;
          for (size_t k = 0; k < a.size(); ++k) {
            const bool cut = count > 0 && want[t][k];
            pruned += cut;
            if (cut)
              ASSERT_TRUE(b[k] == 0 && !std::signbit(b[k])) << in.name() << "[" << k << "]";
            else
              ASSERT_EQ(std::memcmp(&a[k], &b[k], sizeof(double)), 0) << in.name() << "[" << k << "]";
          }
          if (pruned == 0) {
            EXPECT_EQ(got[i].data(), in.data()) << in.name() << ": nothing pruned, yet copied";
          }
          ++t;
        }
      }
    }
  }
}

}  // namespace
}  // namespace nq
