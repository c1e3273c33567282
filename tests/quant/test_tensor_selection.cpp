// ModelQuantizeParams::include_regex / exclude_regex (quant::TensorSelector). Oracle: quantize_model of the model
// with the deselected tensors removed — the filtered run must equal it bit for bit (codebooks, indices, per-tensor
// statistics), with the deselected tensors present as raw (their original bits) in the original order. The names
// each pattern selects are written out by hand here, not computed with a regex library.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/fixtures.h"
#include "quant/same_result.h"
#include "quant/tensor_selector.h"

namespace nq {
namespace {

using test::make_importance;
using test::expect_same_stats;
using test::same_bits;
using test::student_t;

// An LLM-like checkpoint in miniature: awkward sizes, three float dtypes, 1-D norms and a bias, a non-float tensor.
TensorSet make_llm(uint64_t seed) {
  TensorSet m;
  auto add = [&](const char* name, std::vector<int64_t> shape, DType dtype) {
    Tensor t = Tensor::from_f32(name, shape, student_t(static_cast<size_t>(shape_numel(shape)), seed++));
    m.add(dtype == DType::kF32 ? t : t.converted(dtype));
  };
  add("model.embed_tokens.weight", {37, 13}, DType::kF32);
  add("model.layers.0.self_attn.q_proj.weight", {29, 13}, DType::kF32);
  add("model.layers.0.self_attn.q_proj.bias", {29}, DType::kF32);
  add("model.layers.0.input_layernorm.weight", {13}, DType::kF16);
  add("model.layers.1.mlp.up_proj.weight", {23, 13}, DType::kF16);
  add("model.layers.1.mlp.down_proj.weight", {13, 23}, DType::kBF16);
  add("model.norm.weight", {13}, DType::kBF16);
  add("lm_head.weight", {37, 13}, DType::kF32);
  Tensor steps("steps", DType::kI64, {3});  // not float: kept whatever the filters say
  m.add(steps);
  m.metadata()["format"] = "pt";
  return m;
}


TensorSet without(const TensorSet& set, const std::set<std::string>& names) {
  TensorSet out;
  out.metadata() = set.metadata();
  for (const Tensor& t : set)
    if (!names.count(t.name())) out.add(t);
  return out;
}


bool same_tensor_bits(const Tensor& a, const Tensor& b) {
  return a.name() == b.name() && a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// `got` (the filtered run over `model`) against `want` (the run over `model` without `deselected`).
void expect_filtered_equals_reduced(const QuantizedModel& got, const QuantizedModel& want, const TensorSet& model,
                                    const std::set<std::string>& deselected) {
  ASSERT_EQ(got.tensors.size(), model.size());
  ASSERT_EQ(want.tensors.size(), model.size() - deselected.size());
  ASSERT_EQ(got.codebooks.size(), want.codebooks.size());
  for (size_t j = 0; j < got.codebooks.size(); ++j) {
    ASSERT_EQ(got.codebooks[j].size(), want.codebooks[j].size()) << "codebook " << j;
    EXPECT_TRUE(got.codebooks[j].empty() ||  // an empty vector's null data may not reach memcmp
                std::memcmp(got.codebooks[j].data(), want.codebooks[j].data(),
                            got.codebooks[j].size() * sizeof(float)) == 0)
        << "codebook " << j;
  }
  const TensorSet deq = got.dequantize();
  size_t w = 0;
  int64_t deselected_params = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    const QuantizedTensor& g = got.tensors[i];
    SCOPED_TRACE(model[i].name());
    ASSERT_EQ(g.name, model[i].name());  // the original order
    if (deselected.count(g.name)) {
      EXPECT_FALSE(g.quantized);
      EXPECT_TRUE(same_tensor_bits(g.original, model[i]));
      EXPECT_TRUE(same_tensor_bits(deq[i], model[i])) << "dequantized";
      EXPECT_TRUE(g.indices.empty());
      deselected_params += model[i].numel();
      continue;
    }
    const QuantizedTensor& r = want.tensors[w++];
    ASSERT_EQ(g.name, r.name);
    ASSERT_EQ(g.quantized, r.quantized);
    EXPECT_EQ(g.dtype, r.dtype);
    EXPECT_EQ(g.shape, r.shape);
    if (!g.quantized) {
      EXPECT_TRUE(same_tensor_bits(g.original, r.original));
      continue;
    }
    EXPECT_EQ(g.problem_size, r.problem_size);
    EXPECT_EQ(g.first_codebook, r.first_codebook);
    EXPECT_EQ(g.num_problems, r.num_problems);
    EXPECT_EQ(g.indices, r.indices);
    expect_same_stats(g.stats, r.stats, true, "tensor stats");
  }
  expect_same_stats(got.total, want.total, false, "total");
  EXPECT_EQ(got.total.params, want.total.params + deselected_params);
}

ModelQuantizeParams params_for(Method method, int k, const std::string& scope, double prune) {
  ModelQuantizeParams p;
  p.quant.method = method;
  p.quant.k = k;
  p.quant.lambda = method == Method::kEcsq ? 2e-4 : 0.0;
  p.quant.backend = Backend::kCpu;
  p.scope = parse_scope(scope);
  p.prune = prune;
  return p;
}

struct FilterCase {
  std::string include, exclude;
  bool skip_1d;
  std::set<std::string> deselected;  // the float tensors the filters keep raw (skip_1d's own not counted)
};

const std::vector<FilterCase>& filter_cases() {
  static const std::vector<FilterCase> cases = {
      // The README's LLM example: embeddings, LM head and every norm stay in float.
      {"", "embed|lm_head|norm", false,
       {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight", "lm_head.weight"}},
      // Only the MLP of layer 1 and the attention projections (a partial match, \d a Perl class).
      {"layers\\.\\d+\\.(mlp|self_attn)", "", false,
       {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight",
        "lm_head.weight"}},
      // Both filters with skip_1d: ^ anchors the start of a name; the 1-D tensors (the bias, the norms) are raw
      // by skip_1d in the oracle's run as well, so they are not the filters' to remove.
      {"^model\\.layers\\.", "q_proj", true,
       {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"}},
  };
  return cases;
}

TEST(TensorSelection, FilteredRunEqualsRunOverTheSelectedTensors) {
  const TensorSet model = make_llm(3);
  const TensorSet imp = make_importance(model, 4);
  struct Config {
    Method method;
    int k;
    const char* scope;
    double prune;
  };
  for (const Config& cfg : {Config{Method::kHwKmeans, 6, "global", 0.3}, Config{Method::kEcsq, 8, "global", 0.0},
                            Config{Method::kHwKmeans, 4, "row", 0.2}, Config{Method::kEcsq, 5, "row", 0.0}}) {
    for (const FilterCase& c : filter_cases()) {
      SCOPED_TRACE(std::string(method_traits(cfg.method).name) + " " + cfg.scope + " include '" + c.include +
                   "' exclude '" + c.exclude + "'" + (c.skip_1d ? " skip_1d" : ""));
      const std::set<std::string>& removed = c.deselected;
      ModelQuantizeParams p = params_for(cfg.method, cfg.k, cfg.scope, cfg.prune);
      p.skip_1d = c.skip_1d;
      const TensorSet reduced = without(model, removed);
      const TensorSet reduced_imp = without(imp, removed);
      const QuantizedModel want = quantize_model(reduced, &reduced_imp, p);
      p.include_regex = c.include;
      p.exclude_regex = c.exclude;
      // An importance lacking the deselected tensors is accepted, and one holding them changes nothing.
      expect_filtered_equals_reduced(quantize_model(model, &reduced_imp, p), want, model, removed);
      expect_filtered_equals_reduced(quantize_model(model, &imp, p), want, model, removed);
      if (cfg.method == Method::kEcsq) {  // the sweep's batched λ path selects the same tensors
        const std::vector<QuantizedModel> batch = quantize_model_lambdas(model, &reduced_imp, p, {p.quant.lambda});
        ASSERT_EQ(batch.size(), 1u);
        expect_filtered_equals_reduced(batch[0], want, model, removed);
      }
    }
  }
}

TEST(TensorSelection, PruneModelKeepsDeselectedTensorsBits) {
  const TensorSet model = make_llm(11);
  const TensorSet imp = make_importance(model, 12);
  for (const FilterCase& c : filter_cases()) {
    SCOPED_TRACE("include '" + c.include + "' exclude '" + c.exclude + "'");
    const std::set<std::string>& removed = c.deselected;
    ModelQuantizeParams p;
    p.prune = 0.45;
    p.skip_1d = c.skip_1d;
    const TensorSet reduced = without(model, removed);
    const TensorSet want = prune_model(reduced, &imp, p);
    p.include_regex = c.include;
    p.exclude_regex = c.exclude;
    const TensorSet got = prune_model(model, &imp, p);
    ASSERT_EQ(got.size(), model.size());
    EXPECT_EQ(got.metadata(), model.metadata());
    int64_t zeros = 0;
    for (size_t i = 0; i < model.size(); ++i) {
      SCOPED_TRACE(model[i].name());
      if (removed.count(model[i].name())) {
        EXPECT_TRUE(same_tensor_bits(got[i], model[i]));
        continue;
      }
      EXPECT_TRUE(same_tensor_bits(got[i], want.at(model[i].name())));
      if (dtype_is_float(model[i].dtype()))
        for (float v : got[i].to_f32()) zeros += v == 0.0f;
    }
    EXPECT_GT(zeros, 0);  // the fraction reached the selected tensors
  }
}

void expect_error(const std::function<void()>& f, ErrorCode code, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(TensorSelection, InvalidPatternNamesOptionPatternAndReason) {
  const TensorSet model = make_llm(5);
  for (const auto& [include, exclude] : {std::pair<std::string, std::string>{"(q_proj", ""}, {"", "[z-a]"},
                                         {"ok", "a{2,1}"}, {"*norm", ""}}) {
    ModelQuantizeParams p;
    p.include_regex = include;
    p.exclude_regex = exclude;
    const bool bad_include = exclude.empty() || include == "*norm";
    const std::string option = bad_include ? "--include '" + include + "'" : "--exclude '" + exclude + "'";
    SCOPED_TRACE(option);
    const std::string what = "is not a valid regular expression (RE2 syntax): ";
    expect_error([&] { quantize_model(model, nullptr, p); }, ErrorCode::kInvalidArgument, {option, what});
    p.prune = 0.5;
    expect_error([&] { prune_model(model, nullptr, p); }, ErrorCode::kInvalidArgument, {option, what});
    // The regex library's reason follows the colon.
    try {
      quant::TensorSelector select(p);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_GT(msg.size(), msg.find(what) + what.size()) << msg;
    }
  }
}

TEST(TensorSelection, EmptySelectionIsRefusedNamingThePatterns) {
  const TensorSet model = make_llm(6);
  const TensorSet imp = make_importance(model, 7);
  ModelQuantizeParams p = params_for(Method::kHwKmeans, 4, "global", 0.0);
  p.exclude_regex = ".";  // every name has a character
  expect_error([&] { quantize_model(model, &imp, p); }, ErrorCode::kInvalidArgument,
               {"--exclude '.' leaves no tensor to quantize", "none of the model's 8 float tensors"});
  p.exclude_regex.clear();
  p.include_regex = "^embed";  // a typo for "embed": the names start with "model."
  expect_error([&] { quantize_model(model, &imp, p); }, ErrorCode::kInvalidArgument, {"--include '^embed' leaves"});
  p.include_regex = "norm";
  p.skip_1d = true;  // the norms are 1-D: nothing left
  expect_error([&] { quantize_model(model, &imp, p); }, ErrorCode::kInvalidArgument,
               {"--include 'norm' leaves", "5 float tensors (1-D ones skipped)"});
  p.skip_1d = false;
  p.exclude_regex = "weight";
  expect_error([&] { quantize_model(model, &imp, p); }, ErrorCode::kInvalidArgument,
               {"--include 'norm' / --exclude 'weight' leave no tensor"});
  p.prune = 0.3;
  expect_error([&] { prune_model(model, &imp, p); }, ErrorCode::kInvalidArgument, {"leave no tensor to quantize"});
  p.prune = 0;
  p.quant.method = Method::kEcsq;
  expect_error([&] { quantize_model_lambdas(model, &imp, p, {1e-4, 1e-3}); }, ErrorCode::kInvalidArgument,
               {"leave no tensor to quantize"});
  // Without a filter a model with no float tensor is kept as it is (as before the filters); with one it is an error.
  TensorSet ints;
  ints.add(Tensor("steps", DType::kI64, {3}));
  ModelQuantizeParams none;
  const QuantizedModel q = quantize_model(ints, nullptr, none);
  ASSERT_EQ(q.tensors.size(), 1u);
  EXPECT_FALSE(q.tensors[0].quantized);
  none.include_regex = "steps";
  expect_error([&] { quantize_model(ints, nullptr, none); }, ErrorCode::kInvalidArgument,
               {"--include 'steps' leaves", "the model has no float tensor"});
}

TEST(TensorSelection, SelectorMatchesAnywhereAndAppliesTheDtypeRule) {
  ModelQuantizeParams p;
  p.include_regex = "proj";
  p.exclude_regex = "^model\\.layers\\.1\\.";
  const quant::TensorSelector s(p);
  EXPECT_TRUE(s.filtered());
  EXPECT_EQ(s.describe(), "--include 'proj' / --exclude '^model\\.layers\\.1\\.'");
  EXPECT_TRUE(s.quantizes("model.layers.0.self_attn.q_proj.weight", DType::kF32, {4, 4}));  // a partial match
  EXPECT_FALSE(s.quantizes("model.layers.1.mlp.up_proj.weight", DType::kF32, {4, 4}));     // excluded
  EXPECT_FALSE(s.quantizes("lm_head.weight", DType::kF32, {4, 4}));                         // not included
  EXPECT_FALSE(s.quantizes("x.proj", DType::kI32, {4}));                                    // not float
  EXPECT_FALSE(s.quantizes("x.proj", DType::kF32, {0, 4}));                                 // no values
  EXPECT_TRUE(s.quantizes("x.proj", DType::kBF16, {4}));  // 1-D without skip_1d
  p.skip_1d = true;
  EXPECT_FALSE(quant::TensorSelector(p).quantizes("x.proj", DType::kBF16, {4}));
  // Case matters, as in grep without -i.
  EXPECT_FALSE(s.quantizes("model.layers.0.Q_PROJ", DType::kF32, {2, 2}));
  const quant::TensorSelector all{ModelQuantizeParams()};
  EXPECT_FALSE(all.filtered());
  EXPECT_EQ(all.describe(), "");
  EXPECT_TRUE(all.quantizes("anything", DType::kF16, {1}));
  EXPECT_NO_THROW(all.check_selection(0, 0));
}

// Regression: under std::regex (libstdc++) a 20,000-character name with (a|b)*c overflowed the stack and (a*)*b
// took exponential time. A safetensors header may hold names of megabytes; RE2 matches them in linear time.
TEST(TensorSelection, LongNamesAndBacktrackingPatternsNeitherCrashNorHang) {
  const std::string name(1 << 20, 'a');
  for (const char* pattern : {"(a|b)*c", "(a*)*b", "((((((a|b))))))*c", "((a|b)|(c|(d|a)))*e"}) {
    SCOPED_TRACE(pattern);
    ModelQuantizeParams p;
    p.exclude_regex = pattern;
    EXPECT_TRUE(quant::TensorSelector(p).name_selected(name));  // none of them matches: nothing excluded
  }
  ModelQuantizeParams p;
  p.include_regex = "^(a|b)*$";
  EXPECT_TRUE(quant::TensorSelector(p).name_selected(name));
  EXPECT_FALSE(quant::TensorSelector(p).name_selected(name + "c"));
  // Through quantize_model, with a model whose one tensor has that name.
  TensorSet model;
  model.add(Tensor::from_f32(name, {5}, {0.1f, -0.2f, 0.3f, 0.05f, -0.4f}));
  ModelQuantizeParams q;
  q.quant.k = 2;
  q.exclude_regex = "(a|b)*c";
  const QuantizedModel out = quantize_model(model, nullptr, q);
  ASSERT_EQ(out.tensors.size(), 1u);
  EXPECT_TRUE(out.tensors[0].quantized);
}

}  // namespace
}  // namespace nq
