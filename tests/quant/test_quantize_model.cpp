// nq::quantize_model: scopes, pruning, importance transforms, validation, statistics and dequantization,
// checked against direct per-problem quantize() calls and recomputed fp64 sums.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/fixtures.h"
#include "quant/problem_memory.h"

namespace nq {
namespace {

using test::make_importance;
using test::student_t;

TensorSet make_model(uint64_t seed) {
  TensorSet m;
  m.add(Tensor::from_f32("fc1.weight", {7, 33}, student_t(7 * 33, seed)));
  m.add(Tensor::from_f32("fc1.bias", {7}, student_t(7, seed + 1)));
  m.add(Tensor::from_f32("fc2.weight", {3, 31}, student_t(3 * 31, seed + 2)));
  return m;
}

ModelQuantizeParams mparams(Method m, int k, const std::string& scope) {
  ModelQuantizeParams p;
  p.quant.method = m;
  p.quant.k = k;
  p.quant.backend = Backend::kCpu;
  p.scope = parse_scope(scope);
  return p;
}

// The statistics' oracle is recomputed here from the dequantized weights; hw_distortion weighs by the given
// importance for every method, also those whose clustering ignores it (one metric across methods).
TEST(QuantizeModel, ScopesMatchDirectProblems) {
  const TensorSet model = make_model(1);
  const TensorSet imp = make_importance(model, 2);
  for (const Method method : {Method::kHwKmeans, Method::kKmeans, Method::kWentropy}) {
    for (const char* scope : {"global", "tensor", "row", "group:10"}) {
      SCOPED_TRACE(std::string(method_traits(method).name) + " " + scope);
      const auto q = quantize_model(model, &imp, mparams(method, 4, scope));
      const TensorSet deq = q.dequantize();
      ASSERT_EQ(deq.size(), model.size());
      if (std::string(scope) == "global" && method == Method::kHwKmeans) {
        ASSERT_EQ(q.codebooks.size(), 1u);
        // Same as one quantize() over the concatenation.
        std::vector<float> w, h;
        for (const Tensor& t : model) {
          auto a = t.to_f32();
          auto b = imp.at(t.name()).to_f32();
          w.insert(w.end(), a.begin(), a.end());
          h.insert(h.end(), b.begin(), b.end());
        }
        QuantizeParams qp;
        qp.method = Method::kHwKmeans;
        qp.k = 4;
        const auto r = quantize(w.data(), h.data(), w.size(), qp);
        EXPECT_EQ(q.codebooks[0], r.codebook);
        EXPECT_NEAR(q.total.hw_distortion, r.hw_distortion, 1e-12);
        EXPECT_NEAR(q.total.entropy_bits_per_weight, r.entropy_bits, 1e-12);
      }
      double d = 0;
      int64_t n = 0;
      for (size_t ti = 0; ti < model.size(); ++ti) {
        const auto& qt = q.tensors[ti];
        const auto w = model[ti].to_f32();
        const auto v = deq[ti].to_f32();
        const auto h = imp.at(model[ti].name()).to_f32();
        EXPECT_EQ(deq[ti].name(), model[ti].name());
        EXPECT_EQ(deq[ti].shape(), model[ti].shape());
        // Each problem (row / group) uses at most k levels of its own codebook.
        for (int64_t pr = 0; pr < qt.num_problems; ++pr)
          EXPECT_LE(q.codebooks[qt.first_codebook + pr].size(), 4u);
        double td = 0;
        for (size_t i = 0; i < w.size(); ++i) td += h[i] * (double(v[i]) - w[i]) * (double(v[i]) - w[i]);
        EXPECT_NEAR(qt.stats.hw_distortion, td / w.size(), 1e-12) << scope;
        d += td;
        n += static_cast<int64_t>(w.size());
      }
      EXPECT_NEAR(q.total.hw_distortion, d / n, 1e-12) << scope;
      EXPECT_EQ(q.total.params, n);
    }
  }
  // Row scope on a 1-D tensor: rows of length 1, every weight exact.
  const auto q = quantize_model(model, &imp, mparams(Method::kHwKmeans, 2, "row"));
  EXPECT_EQ(q.tensors[1].problem_size, 1);
  EXPECT_EQ(q.tensors[1].stats.hw_distortion, 0.0);
}

// Tensors past the pieces the statistics are summed in (error sums in 65,536-value chunks, index histograms in
// 2^20-value pieces): every figure of every tensor and of the total, recounted here in fp64 from the returned
// indices, codebooks and dequantized values, with pruning, in global, tensor and group scopes.
TEST(QuantizeModel, StatisticsOfLargeTensorsMatchAFloat64Recount) {
  TensorSet model;
  model.add(Tensor::from_f32("big.weight", {3, 400009}, student_t(3 * 400009, 31)));
  model.add(Tensor::from_f32("long.bias", {1100003}, student_t(1100003, 32)));
  model.add(Tensor::from_f32("small.weight", {5, 7}, student_t(35, 33)));
  const TensorSet imp = make_importance(model, 34);
  // kept·H: the entropy-coded bits of a histogram of kept indices.
  auto entropy_coded_bits = [](const std::vector<int64_t>& counts) {
    double kept = 0, bits = 0;
    for (int64_t c : counts) kept += static_cast<double>(c);
    for (int64_t c : counts)
      if (c > 0) bits += static_cast<double>(c) * std::log2(kept / static_cast<double>(c));
    return bits;
  };
  for (const char* scope : {"global", "tensor", "group:65537"}) {
    SCOPED_TRACE(scope);
    ModelQuantizeParams p = mparams(Method::kHwKmeans, 8, scope);
    p.prune = 0.3;
    const QuantizedModel q = quantize_model(model, &imp, p);
    const TensorSet deq = q.dequantize();
    const bool global = std::string(scope) == "global";
    double total_n = 0;
    for (const Tensor& t : model) total_n += static_cast<double>(t.numel());
    double all_d = 0, all_m = 0, all_ebits = 0;
    int64_t all_pruned = 0;
    std::vector<int64_t> global_counts(global ? q.codebooks[0].size() : 0, 0);
    for (size_t ti = 0; ti < model.size(); ++ti) {
      SCOPED_TRACE(model[ti].name());
      const QuantizedTensor& qt = q.tensors[ti];
      const std::vector<float> w = model[ti].to_f32(), v = deq[ti].to_f32();
      const std::vector<float> h = imp.at(model[ti].name()).to_f32();
      const double n = static_cast<double>(w.size());
      double d = 0, m = 0, ebits = 0, cbits = 0;
      int64_t pruned = 0;
      int clusters = 0;
      for (int64_t pr = 0; pr < qt.num_problems; ++pr) {
        const std::vector<float>& cb = q.codebooks[static_cast<size_t>(qt.first_codebook + pr)];
        std::vector<int64_t> counts(cb.size(), 0);
        const size_t i0 = static_cast<size_t>(pr * qt.problem_size);
        const size_t i1 = std::min(w.size(), i0 + static_cast<size_t>(qt.problem_size));
        for (size_t i = i0; i < i1; ++i) {
          const int32_t idx = qt.indices[i];
          const double value = idx == kPrunedIndex ? 0.0 : static_cast<double>(cb[static_cast<size_t>(idx)]);
          ASSERT_EQ(static_cast<double>(v[i]), value) << i;
          const double e = value - static_cast<double>(w[i]);
          d += static_cast<double>(h[i]) * e * e;
          m += e * e;
          if (idx == kPrunedIndex) { ++pruned; continue; }
          ++counts[static_cast<size_t>(idx)];
          if (global) ++global_counts[static_cast<size_t>(idx)];
        }
        clusters = std::max(clusters, static_cast<int>(std::count_if(counts.begin(), counts.end(),
                                                                     [](int64_t c) { return c > 0; })));
        ebits += entropy_coded_bits(counts);
        cbits += global ? 32.0 * static_cast<double>(cb.size()) * n / total_n : 32.0 * static_cast<double>(cb.size());
      }
      EXPECT_EQ(qt.stats.params, static_cast<int64_t>(w.size()));
      EXPECT_EQ(qt.stats.pruned, pruned);
      EXPECT_EQ(qt.stats.clusters, clusters);
      EXPECT_NEAR(qt.stats.hw_distortion, d / n, 1e-9 * d / n);
      EXPECT_NEAR(qt.stats.mse, m / n, 1e-9 * m / n);
      EXPECT_NEAR(qt.stats.entropy_bits_per_weight, ebits / n, 1e-9);
      EXPECT_NEAR(qt.stats.ratio_entropy, 32.0 * n / (ebits + cbits), 1e-9 * qt.stats.ratio_entropy);
      all_d += d;
      all_m += m;
      all_ebits += ebits;
      all_pruned += pruned;
    }
    // The pruned count is the rule's: ⌊0.3·N⌋ of all the model's weights, in every scope (one cut over the model).
    EXPECT_EQ(all_pruned, static_cast<int64_t>(std::floor(0.3 * total_n)));
    EXPECT_EQ(q.total.pruned, all_pruned);
    EXPECT_EQ(q.total.params, static_cast<int64_t>(total_n));
    EXPECT_NEAR(q.total.hw_distortion, all_d / total_n, 1e-9 * all_d / total_n);
    EXPECT_NEAR(q.total.mse, all_m / total_n, 1e-9 * all_m / total_n);
    if (global) all_ebits = entropy_coded_bits(global_counts);  // one codebook: the whole index stream's entropy
    EXPECT_NEAR(q.total.entropy_bits_per_weight, all_ebits / total_n, 1e-9);
  }
}

// Rows and groups of k-means run through op (e) together; every problem's codebook and indices must be what one
// quantize() of that problem's (unpruned) values gives — with pruning, awkward group sizes, a row whose
// importances are all zero, every init rule (kmeans++ takes the one-by-one path) and partial warm starts. ECSQ
// (a given λ, or a target rate) checks the one-by-one path's gathering of unpruned values and warm starts; its
// rows go through op (f) only on CUDA (tests/quant/test_rows_ecsq.cpp checks that driver on the CPU op).
TEST(QuantizeModel, RowAndGroupScopesEqualOneQuantizePerProblem) {
  TensorSet model;
  model.add(Tensor::from_f32("a.weight", {9, 130}, student_t(9 * 130, 61)));
  model.add(Tensor::from_f32("b.weight", {4, 7}, student_t(4 * 7, 62)));
  TensorSet imp = make_importance(model, 63);
  {
    std::vector<float> h = imp.at("a.weight").to_f32();
    std::fill(h.begin() + 2 * 130, h.begin() + 3 * 130, 0.0f);  // row 2 weightless: solved unweighted
    TensorSet fixed;
    fixed.add(Tensor::from_f32("a.weight", {9, 130}, h));
    fixed.add(imp.at("b.weight"));
    imp = fixed;
  }
  for (const Method m : {Method::kHwKmeans, Method::kKmeans, Method::kExact, Method::kEcsq})
    for (const std::string scope : {"row", "group:37"})
      for (const Init init : {Init::kLinear, Init::kQuantile, Init::kKmeansPP})
        for (const double prune : {0.0, 0.3})
          for (const bool warm : {false, true}) {
            SCOPED_TRACE(std::string(method_traits(m).name) + " " + scope + " init " + init_name(init) + " prune " +
                         std::to_string(prune) + (warm ? " warm" : ""));
            ModelQuantizeParams p = mparams(m, 5, scope);
            p.quant.init = init;
            p.prune = prune;
            if (m == Method::kEcsq) {  // pruned: a target rate; else a given λ
              p.quant.lambda = prune > 0 ? 0.0 : 3e-5;
              p.quant.target_bits = prune > 0 ? 1.5 : 0.0;
            }
            if (warm) {  // every other problem starts from a codebook of its own
              const QuantizedModel cold = quantize_model(model, &imp, p);
              p.initial_codebooks.resize(cold.codebooks.size());
              for (size_t j = 0; j < cold.codebooks.size(); j += 2)
                p.initial_codebooks[j] = {-0.04f, -0.01f, 0.0f, 0.02f};
            }
            const QuantizedModel q = quantize_model(model, &imp, p);
            for (size_t t = 0; t < model.size(); ++t) {
              const QuantizedTensor& qt = q.tensors[t];
              const std::vector<float> w = model[t].to_f32(), h = imp.at(model[t].name()).to_f32();
              for (int64_t pr = 0; pr < qt.num_problems; ++pr) {
                std::vector<float> pw, ph;
                std::vector<size_t> where;
                const int64_t b = pr * qt.problem_size, e = std::min<int64_t>(b + qt.problem_size, qt.stats.params);
                for (int64_t i = b; i < e; ++i)
                  if (qt.indices[static_cast<size_t>(i)] != kPrunedIndex) {
                    pw.push_back(w[static_cast<size_t>(i)]);
                    ph.push_back(h[static_cast<size_t>(i)]);
                    where.push_back(static_cast<size_t>(i));
                  }
                QuantizeParams qp = p.quant;
                const size_t j = static_cast<size_t>(qt.first_codebook + pr);
                if (warm && !p.initial_codebooks[j].empty())
                  qp.initial_centers.assign(p.initial_codebooks[j].begin(), p.initial_codebooks[j].end());
                const QuantizeResult r = quantize(pw.data(), ph.data(), pw.size(), qp);
                ASSERT_EQ(q.codebooks[j], r.codebook) << model[t].name() << " problem " << pr;
                for (size_t i = 0; i < where.size(); ++i)
                  ASSERT_EQ(qt.indices[where[i]], r.indices[i]) << model[t].name() << " problem " << pr;
              }
            }
          }
  ModelQuantizeParams bad = mparams(Method::kHwKmeans, 4, "row");
  bad.initial_codebooks.assign(13, {});
  bad.initial_codebooks[3] = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_THROW(quantize_model(model, &imp, bad), Error);
}

// Warm starts: restarting every problem from its own converged codebook is a fixed point (one assignment pass,
// the same codebooks and indices); a count of initial codebooks that does not match the problems is ignored
// (a cold start, same result as without); a non-finite initial centre is an error.
TEST(QuantizeModel, WarmStartFromConvergedCodebooksIsAFixedPoint) {
  const TensorSet model = make_model(41);
  const TensorSet imp = make_importance(model, 42);
  // (ECSQ warm-starts its centres only: its code lengths restart uniform, so it is no fixed point.)
  for (const Method m : {Method::kHwKmeans, Method::kKmeans}) {
    for (const std::string scope : {"global", "tensor", "row"}) {
      ModelQuantizeParams p = mparams(m, 8, scope);
      p.quant.max_iter = 500;
      p.quant.tol = 0;
      const QuantizedModel cold = quantize_model(model, &imp, p);
      ModelQuantizeParams warm = p;
      warm.initial_codebooks = cold.codebooks;
      const QuantizedModel again = quantize_model(model, &imp, warm);
      ASSERT_EQ(again.codebooks.size(), cold.codebooks.size());
      for (size_t j = 0; j < cold.codebooks.size(); ++j)
        EXPECT_EQ(again.codebooks[j], cold.codebooks[j]) << method_traits(m).name << " " << scope << " problem " << j;
      for (size_t t = 0; t < cold.tensors.size(); ++t) EXPECT_EQ(again.tensors[t].indices, cold.tensors[t].indices);
      EXPECT_LE(again.total.iterations, 2) << method_traits(m).name << " " << scope;
      EXPECT_GT(cold.total.iterations, 2) << method_traits(m).name << " " << scope;
      warm.initial_codebooks.pop_back();
      const QuantizedModel ignored = quantize_model(model, &imp, warm);
      EXPECT_EQ(ignored.codebooks, cold.codebooks);
    }
  }
  ModelQuantizeParams bad = mparams(Method::kHwKmeans, 4, "global");
  bad.initial_codebooks = {{0.0f, std::numeric_limits<float>::infinity()}};
  EXPECT_THROW(quantize_model(model, &imp, bad), Error);
}

TEST(QuantizeModel, FixedRatioFormula) {
  const TensorSet model = make_model(3);
  const auto q = quantize_model(model, nullptr, mparams(Method::kKmeans, 5, "global"));
  const double N = static_cast<double>(model.total_numel());
  const double k = static_cast<double>(q.codebooks[0].size());
  EXPECT_NEAR(q.total.ratio_fixed, N * 32 / (N * std::ceil(std::log2(k)) + k * 32), 1e-9);
  EXPECT_NEAR(q.total.ratio_entropy, N * 32 / (N * q.total.entropy_bits_per_weight + k * 32), 1e-9);
}

TEST(QuantizeModel, PruningZeroesTheSmallestScores) {
  const TensorSet model = make_model(5);
  const TensorSet imp = make_importance(model, 6);
  // The importance ranks the weights for pruning whenever it is given, also for the methods whose clustering
  // ignores it (kmeans, wentropy): every method then prunes the same weights.
  for (const Method m : {Method::kHwKmeans, Method::kKmeans, Method::kWentropy, Method::kEcsq}) {
    for (double s : {0.0, 0.5, 0.99}) {
      SCOPED_TRACE(std::string(method_traits(m).name) + " prune " + std::to_string(s));
      auto p = mparams(m, 4, "tensor");
      p.prune = s;
      const auto q = quantize_model(model, &imp, p);
      const int64_t N = model.total_numel();
      EXPECT_EQ(q.total.pruned, static_cast<int64_t>(std::floor(s * N)));
      // Every pruned score <= every kept score; pruned values dequantize to exactly 0.
      double max_pruned = -1, min_kept = 1e300;
      const TensorSet deq = q.dequantize();
      for (size_t ti = 0; ti < model.size(); ++ti) {
        const auto w = model[ti].to_f32();
        const auto h = imp[ti].to_f32();
        const auto v = deq[ti].to_f32();
        for (size_t i = 0; i < w.size(); ++i) {
          const double sc = double(h[i]) * w[i] * w[i];
          if (q.tensors[ti].indices[i] == kPrunedIndex) {
            max_pruned = std::max(max_pruned, sc);
            EXPECT_EQ(v[i], 0.0f);
          } else {
            min_kept = std::min(min_kept, sc);
          }
        }
      }
      if (s > 0) {
        EXPECT_LE(max_pruned, min_kept);
      }
    }
  }
}

// prune_model: the float model with quantize_model's pruned weights at +0. Oracle: the floor(s·N) smallest
// h·w² by brute force (every pruned score ≤ every kept one, the count exact, every kept value bitwise the
// input's); then quantizing the pruned model with the same fraction prunes exactly its zeros (the retraining
// round trip), with and without importance and with skip_1d.
TEST(QuantizeModel, PruneModelZeroesWhatQuantizationPrunes) {
  const TensorSet model = make_model(17);
  const TensorSet imp = make_importance(model, 18);
  for (const bool weighted : {true, false})
    for (const bool skip_1d : {false, true})
      for (const double s : {0.0, 0.37, 0.9}) {
        SCOPED_TRACE(std::string(weighted ? "h·w²" : "w²") + (skip_1d ? " skip_1d" : "") + " prune " +
                     std::to_string(s));
        ModelQuantizeParams p;
        p.prune = s;
        p.skip_1d = skip_1d;
        const TensorSet* h = weighted ? &imp : nullptr;
        const TensorSet pruned = prune_model(model, h, p);
        ASSERT_EQ(pruned.size(), model.size());
        int64_t n_quantized = 0, zeros = 0;
        double max_pruned = -1, min_kept = 1e300;
        for (size_t ti = 0; ti < model.size(); ++ti) {
          ASSERT_EQ(pruned[ti].name(), model[ti].name());
          ASSERT_EQ(pruned[ti].shape(), model[ti].shape());
          const auto w = model[ti].to_f32(), v = pruned[ti].to_f32();
          const bool quantized = !(skip_1d && model[ti].shape().size() == 1);
          if (quantized) n_quantized += static_cast<int64_t>(w.size());
          for (size_t i = 0; i < w.size(); ++i) {
            const double sc = (weighted ? double(imp[ti].to_f32()[i]) : 1.0) * w[i] * w[i];
            if (v[i] == 0.0f && w[i] != 0.0f) {
              ASSERT_TRUE(quantized) << model[ti].name() << " is kept in float";
              ++zeros;
              max_pruned = std::max(max_pruned, sc);
            } else {
              ASSERT_EQ(std::memcmp(&v[i], &w[i], sizeof(float)), 0) << model[ti].name() << "[" << i << "]";
              if (quantized) min_kept = std::min(min_kept, sc);
            }
          }
        }
        EXPECT_EQ(zeros, static_cast<int64_t>(std::floor(s * static_cast<double>(n_quantized))));
        if (zeros > 0) {
          EXPECT_LE(max_pruned, min_kept);
        }
        // Quantizing the pruned model with the same fraction prunes its zeros and nothing else.
        ModelQuantizeParams q = mparams(Method::kHwKmeans, 4, "tensor");
        q.prune = s;
        q.skip_1d = skip_1d;
        const QuantizedModel again = quantize_model(pruned, h, q);
        for (size_t ti = 0; ti < model.size(); ++ti) {
          if (!again.tensors[ti].quantized) continue;
          const auto v = pruned[ti].to_f32(), w = model[ti].to_f32();
          for (size_t i = 0; i < v.size(); ++i)
            EXPECT_EQ(again.tensors[ti].indices[i] == kPrunedIndex, v[i] == 0.0f && w[i] != 0.0f)
                << model[ti].name() << "[" << i << "]";
        }
      }
  // Other dtypes keep their dtype and bits: a pruned entry is all-zero bytes, every other entry the input's bytes,
  // exactly where quantize_model prunes.
  TensorSet mixed;
  mixed.add(model[0].converted(DType::kF64));
  mixed.add(model[1].converted(DType::kBF16));
  mixed.add(model[2].converted(DType::kF16));
  mixed.metadata()["format"] = "pt";
  ModelQuantizeParams p;
  p.prune = 0.6;
  const TensorSet out = prune_model(mixed, &imp, p);
  EXPECT_EQ(out.metadata(), mixed.metadata());
  const QuantizedModel q = quantize_model(mixed, &imp, p);
  int64_t zeroed = 0;
  for (size_t ti = 0; ti < mixed.size(); ++ti) {
    ASSERT_EQ(out[ti].dtype(), mixed[ti].dtype());
    const size_t size = dtype_size(mixed[ti].dtype());
    const auto* a = static_cast<const unsigned char*>(mixed[ti].data());
    const auto* b = static_cast<const unsigned char*>(out[ti].data());
    const std::vector<unsigned char> zero(size, 0);
    for (size_t i = 0; i < static_cast<size_t>(mixed[ti].numel()); ++i) {
      const bool pruned = q.tensors[ti].indices[i] == kPrunedIndex;
      zeroed += pruned;
      EXPECT_EQ(std::memcmp(b + i * size, pruned ? zero.data() : a + i * size, size), 0)
          << mixed[ti].name() << "[" << i << "]";
    }
  }
  EXPECT_EQ(zeroed, static_cast<int64_t>(std::floor(0.6 * static_cast<double>(mixed.total_numel()))));
  ModelQuantizeParams bad;
  bad.prune = 1.0;
  EXPECT_THROW(prune_model(model, &imp, bad), Error);
}

TEST(QuantizeModel, Skip1dTransformsAndDtypes) {
  TensorSet model = make_model(7);
  model.add(Tensor::from_f32("half", {4, 3}, student_t(12, 8)).converted(DType::kF16));
  auto p = mparams(Method::kExact, 3, "tensor");
  p.skip_1d = true;
  const auto q = quantize_model(model, nullptr, p);
  EXPECT_FALSE(q.tensors[1].quantized);
  const TensorSet deq = q.dequantize();
  EXPECT_EQ(deq.at("fc1.bias").to_f32(), model.at("fc1.bias").to_f32());
  EXPECT_EQ(deq.at("half").dtype(), DType::kF16);
  // normalize: mean 1 per tensor, so scaling a tensor's importance changes nothing.
  const TensorSet imp = make_importance(model, 9);
  TensorSet scaled;
  for (const Tensor& t : imp) {
    auto v = t.to_f32();
    for (auto& x : v) x *= 1000.0f;
    scaled.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  auto pn = mparams(Method::kHwKmeans, 4, "global");
  pn.importance_transform = ImportanceTransform::kNormalize;
  const auto a = quantize_model(model, &imp, pn);
  const auto b = quantize_model(model, &scaled, pn);
  ASSERT_EQ(a.codebooks[0].size(), b.codebooks[0].size());  // equal up to the rounding of the rescaling
  for (size_t j = 0; j < a.codebooks[0].size(); ++j) EXPECT_NEAR(a.codebooks[0][j], b.codebooks[0][j], 1e-6);
  pn.importance_transform = ImportanceTransform::kSqrt;
  EXPECT_NO_THROW(quantize_model(model, &imp, pn));
}

// The up-front check for rows or groups of a few values (a 1-D tensor under --scope row): refused with
// kOutOfMemory and a message naming the scope, the busiest tensor and the remedies when the results alone would not
// fit; accepted when they would, or when the available memory is unknown (0).
TEST(QuantizeModel, ManySmallProblemsBeyondMemoryAreRefusedUpFront) {
  quant::ProblemLoad load;
  load.problems = 100000000;
  load.scope = "row";
  load.busiest = "layer3.bias";
  load.busiest_problems = 40000000;
  load.busiest_size = 1;
  const uint64_t need = static_cast<uint64_t>(load.problems) * quant::kBytesPerProblem;
  try {
    quant::check_problem_memory(load, need - 1);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfMemory);
    const std::string m = e.what();
    for (const char* part : {"scope row", "100000000 problems", "'layer3.bias' alone 40000000 of 1 value", "--skip-1d",
                             "--scope"})
      EXPECT_NE(m.find(part), std::string::npos) << part << " missing from: " << m;
  }
  EXPECT_NO_THROW(quant::check_problem_memory(load, need));
  EXPECT_NO_THROW(quant::check_problem_memory(load, 0));
  // Every λ of a batched sweep keeps its own set of results.
  load.sets = 16;
  EXPECT_THROW(quant::check_problem_memory(load, need), Error);
  EXPECT_NO_THROW(quant::check_problem_memory(load, 16 * need));
  // Codebooks of more than 16 levels: 12 bytes per level beyond 16, at most one level per value.
  EXPECT_EQ(quant::extra_codebook_bytes(256, 64), 12.0 * 48);
  EXPECT_EQ(quant::extra_codebook_bytes(256, 1), 0.0);
  EXPECT_EQ(quant::extra_codebook_bytes(16, 4096), 0.0);
  EXPECT_EQ(quant::extra_codebook_bytes(17, 4096), 12.0);
  load.sets = 2;
  load.codebook_bytes = 1000.0;
  EXPECT_NO_THROW(quant::check_problem_memory(load, 2 * need + 2000));
  EXPECT_THROW(quant::check_problem_memory(load, 2 * need + 1999), Error);
}

// And through quantize_model: a model whose rows fit runs (the check passes on this machine), with its problems.
TEST(QuantizeModel, RowScopeOfAVectorMakesOneProblemPerValue) {
  TensorSet model;
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 7) * 0.01f;
  model.add(Tensor::from_f32("bias", {static_cast<int64_t>(v.size())}, v));
  ModelQuantizeParams p;
  p.quant.method = Method::kHwKmeans;
  p.quant.k = 4;
  p.scope = parse_scope("row");
  const QuantizedModel q = quantize_model(model, nullptr, p);
  EXPECT_EQ(q.codebooks.size(), v.size());
  const TensorSet back = q.dequantize();
  ASSERT_NE(back.find("bias"), nullptr);
  EXPECT_EQ(back.find("bias")->to_f32(), v);  // one value per row: lossless
}

TEST(QuantizeModel, ValidationNamesTheTensor) {
  const TensorSet model = make_model(11);
  auto expect = [](const std::function<void()>& f, ErrorCode code, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const auto p = mparams(Method::kHwKmeans, 4, "global");
  TensorSet missing;
  missing.add(Tensor::from_f32("fc1.weight", {7, 33}, std::vector<float>(231, 1.0f)));
  expect([&] { quantize_model(model, &missing, p); }, ErrorCode::kShapeMismatch, "fc1.bias");
  TensorSet wrong = make_importance(model, 12);
  TensorSet wrong2;
  for (const Tensor& t : wrong)
    wrong2.add(t.name() == "fc2.weight" ? Tensor::from_f32(t.name(), {31, 3}, t.to_f32()) : t);
  expect([&] { quantize_model(model, &wrong2, p); }, ErrorCode::kShapeMismatch, "fc2.weight");
  TensorSet neg;
  for (const Tensor& t : make_importance(model, 13)) {
    auto v = t.to_f32();
    if (t.name() == "fc1.bias") v[3] = -1.0f;
    neg.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  expect([&] { quantize_model(model, &neg, p); }, ErrorCode::kInvalidArgument, "fc1.bias");
  TensorSet nan_model;
  for (const Tensor& t : model) {
    auto v = t.to_f32();
    if (t.name() == "fc2.weight") v[5] = NAN;
    nan_model.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  expect([&] { quantize_model(nan_model, nullptr, p); }, ErrorCode::kInvalidArgument, "fc2.weight");
  // Large tensors are converted and checked in chunks of 2^16 on the threads: the error names the first bad
  // value in element order, whichever chunk finds one first (bad values in chunks 1, 3 and 5, on 3 threads).
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(3);
  std::vector<float> big_w(400003), big_h(400003);
  std::mt19937_64 rng(17);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (float& v : big_w) v = normal(rng);
  for (float& v : big_h) v = 1.0f + std::abs(normal(rng));
  std::vector<float> bad_w = big_w, bad_h = big_h;
  for (size_t i : {size_t{340000}, size_t{70001}, size_t{200000}}) {
    bad_w[i] = i == 70001 ? -INFINITY : NAN;
    bad_h[i] = i == 70001 ? -0.5f : NAN;
  }
  TensorSet big_model, big_imp, bad_model, bad_imp;
  big_model.add(Tensor::from_f32("big.weight", {400003}, big_w));
  big_imp.add(Tensor::from_f32("big.weight", {400003}, big_h));
  bad_model.add(Tensor::from_f32("big.weight", {400003}, bad_w));
  bad_imp.add(Tensor::from_f32("big.weight", {400003}, bad_h));
  expect([&] { quantize_model(bad_model, &big_imp, p); }, ErrorCode::kInvalidArgument,
         "tensor 'big.weight': weight 70001 is not finite (-inf)");
  expect([&] { quantize_model(big_model, &bad_imp, p); }, ErrorCode::kInvalidArgument,
         "importance of tensor 'big.weight': value 70001 is -0.5");
  omp_set_num_threads(saved_threads);
  // Zero importance in a tensor is allowed.
  TensorSet zero;
  for (const Tensor& t : model) zero.add(Tensor::from_f32(t.name(), t.shape(), std::vector<float>(t.numel(), 0.0f)));
  EXPECT_NO_THROW(quantize_model(model, &zero, mparams(Method::kEcsq, 4, "tensor")));
}

}  // namespace
}  // namespace nq
