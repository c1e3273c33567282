// Model-level CUDA paths against the CPU backend: row/group ECSQ through op (f) (every row's λ search sharing each
// launch) and the sharded driver's ECSQ passes over device-resident blocks. The fp64 sums of the two backends
// differ in their last bits, so results agree to rounding (a few indices at near ties), and each CUDA path must
// give the same bits run after run. Row/group k-means and exact go through op (e), whose rows equal the CPU's bit
// for bit, so there the whole model must. Skips itself without a device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_test_support.h"
#include "netquant/backend.h"
#include "netquant/distributed.h"
#include "netquant/io.h"
#include "netquant/quantize.h"

namespace nq {
namespace {

// NQ_CUDA_PARITY_QUICK=1 (the compute-sanitizer runs): a smaller model and fewer iterations.
bool quick() { return test::cuda_quick(); }

TensorSet make_model(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  TensorSet m;
  const std::vector<std::vector<int64_t>> shapes =
      quick() ? std::vector<std::vector<int64_t>>{{5, 4099}, {30, 33}, {2, 20000}}
              : std::vector<std::vector<int64_t>>{{37, 4099}, {300, 33}, {5, 20000}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::vector<float> v(static_cast<size_t>(shapes[i][0] * shapes[i][1]));
    for (float& x : v) x = static_cast<float>(0.05 * t(rng));
    m.add(Tensor::from_f32("layer" + std::to_string(i) + ".weight", shapes[i], v));
  }
  return m;
}
TensorSet make_importance(const TensorSet& model, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> g(0.7, 2.0);
  TensorSet s;
  for (const Tensor& t : model) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = i % 17 == 0 ? 0.0f : static_cast<float>(g(rng));
    s.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  return s;
}

double rel_diff(double a, double b) { return std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), 1e-300}); }

void expect_same_bits(const QuantizedModel& a, const QuantizedModel& b) {
  ASSERT_EQ(a.codebooks, b.codebooks);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t t = 0; t < a.tensors.size(); ++t) EXPECT_EQ(a.tensors[t].indices, b.tensors[t].indices);
}

// Codebooks level for level within rounding, totals close, and few indices apart.
void expect_close(const QuantizedModel& cpu, const QuantizedModel& gpu) {
  ASSERT_EQ(cpu.codebooks.size(), gpu.codebooks.size());
  size_t levels_apart = 0;
  for (size_t j = 0; j < cpu.codebooks.size(); ++j) levels_apart += cpu.codebooks[j].size() != gpu.codebooks[j].size();
  EXPECT_LE(levels_apart, cpu.codebooks.size() / 100 + 1) << "problems whose level counts differ";
  EXPECT_LE(rel_diff(cpu.total.hw_distortion, gpu.total.hw_distortion), 1e-4);
  EXPECT_NEAR(cpu.total.entropy_bits_per_weight, gpu.total.entropy_bits_per_weight, 1e-3);
  size_t n = 0, differ = 0;
  for (size_t t = 0; t < cpu.tensors.size(); ++t) {
    const auto& a = cpu.tensors[t].indices;
    const auto& b = gpu.tensors[t].indices;
    ASSERT_EQ(a.size(), b.size());
    n += a.size();
    for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
  }
  EXPECT_LE(differ, n / 1000 + 2) << "indices differ beyond rounding";
}

// ECSQ at λ (or at a target rate when target_bits > 0) with pruning, on the CPU backend to start with.
ModelQuantizeParams ecsq_params(int k, int max_iter, double lambda, double target_bits, double prune) {
  ModelQuantizeParams p;
  p.quant.method = Method::kEcsq;
  p.quant.k = k;
  p.quant.max_iter = max_iter;
  p.quant.lambda = target_bits > 0 ? 0.0 : lambda;  // one rate goal: the target searches λ itself
  p.quant.target_bits = target_bits;
  p.prune = prune;
  p.quant.backend = Backend::kCpu;
  return p;
}

TEST(CudaModelParity, RowAndGroupEcsqOnTheDevice) {
  NQ_REQUIRE_CUDA();
  const TensorSet model = make_model(3);
  const TensorSet imp = make_importance(model, 4);
  for (const std::string scope : {"row", "group:1000"})
    for (const bool target : {false, true}) {
      SCOPED_TRACE(scope + (target ? " target 1.5 bits" : " lambda 2e-5"));
      ModelQuantizeParams p = ecsq_params(16, quick() ? 8 : 40, 2e-5, target ? 1.5 : 0.0, 0.2);
      p.scope = parse_scope(scope);
      const QuantizedModel cpu = quantize_model(model, &imp, p);
      p.quant.backend = Backend::kCuda;
      const QuantizedModel gpu = quantize_model(model, &imp, p);
      EXPECT_EQ(gpu.backend, Backend::kCuda);
      expect_close(cpu, gpu);
      expect_same_bits(gpu, quantize_model(model, &imp, p));
      // Several λ in one call: each equals its own call on the device, bit for bit.
      if (!target) {
        const std::vector<double> lambdas = {0.0, 2e-5, 3e-4};
        const std::vector<QuantizedModel> batch = quantize_model_lambdas(model, &imp, p, lambdas);
        ASSERT_EQ(batch.size(), lambdas.size());
        for (size_t m = 0; m < lambdas.size(); ++m) {
          ModelQuantizeParams one = p;
          one.quant.lambda = lambdas[m];
          expect_same_bits(batch[m], quantize_model(model, &imp, one));
        }
      }
    }
}

// Tensors of awkward shapes for the row/group k-means paths: rows for each of op (e)'s device kernels (longest row
// ≤ 1024, 2048, 4096, 8192 values), short rows, rows too long for the device's on-chip Lloyd (10007: such a tensor
// goes one quantize() per row, which under 16384 values runs on the CPU whichever backend), a 1-D tensor (rows of
// one value). Importances with scattered zeros, and one row all zero (solved unweighted).
TensorSet make_rows_model(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  const std::vector<std::vector<int64_t>> shapes =
      quick() ? std::vector<std::vector<int64_t>>{{3, 4099}, {40, 33}, {3, 1500}, {1, 8192}, {1, 10007}, {77}}
              : std::vector<std::vector<int64_t>>{{37, 4099}, {300, 33}, {9, 1500}, {3, 8192},
                                                  {2, 10007}, {5, 2048}, {777}};
  TensorSet m;
  for (size_t i = 0; i < shapes.size(); ++i) {
    int64_t numel = 1;
    for (const int64_t d : shapes[i]) numel *= d;
    std::vector<float> v(static_cast<size_t>(numel));
    for (float& x : v) x = static_cast<float>(0.05 * t(rng));
    if (i == 1)
      for (size_t j = 0; j < v.size(); j += 5) v[j] = std::round(v[j] * 100.0f) / 100.0f;  // duplicates
    m.add(Tensor::from_f32("rows" + std::to_string(i) + ".weight", shapes[i], v));
  }
  return m;
}
TensorSet make_rows_importance(const TensorSet& model, uint64_t seed) {
  TensorSet s = make_importance(model, seed);
  TensorSet out;
  for (const Tensor& t : s) {
    std::vector<float> v = t.to_f32();
    if (t.shape().size() == 2 && t.shape()[0] > 2) {  // row 2 weightless
      const size_t len = static_cast<size_t>(t.shape()[1]);
      std::fill(v.begin() + static_cast<std::ptrdiff_t>(2 * len), v.begin() + static_cast<std::ptrdiff_t>(3 * len),
                0.0f);
    }
    out.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  return out;
}

// Bit for bit the same quantization: every codebook and index, and so the statistics.
void expect_identical(const QuantizedModel& cpu, const QuantizedModel& gpu) {
  ASSERT_EQ(cpu.codebooks.size(), gpu.codebooks.size());
  size_t books_apart = 0;
  for (size_t j = 0; j < cpu.codebooks.size(); ++j)
    if (cpu.codebooks[j] != gpu.codebooks[j] && books_apart++ < 3)
      ADD_FAILURE() << "codebook " << j << ": " << cpu.codebooks[j].size() << " levels on the CPU, "
                    << gpu.codebooks[j].size() << " on CUDA";
  EXPECT_EQ(books_apart, 0u) << "codebooks that differ";
  ASSERT_EQ(cpu.tensors.size(), gpu.tensors.size());
  for (size_t t = 0; t < cpu.tensors.size(); ++t) {
    const QuantizedTensor& a = cpu.tensors[t];
    const QuantizedTensor& b = gpu.tensors[t];
    ASSERT_EQ(a.indices.size(), b.indices.size()) << a.name;
    size_t differ = 0;
    for (size_t i = 0; i < a.indices.size(); ++i) differ += a.indices[i] != b.indices[i];
    EXPECT_EQ(differ, 0u) << a.name << ": indices that differ";
    EXPECT_EQ(a.stats.pruned, b.stats.pruned) << a.name;
    EXPECT_EQ(a.stats.iterations, b.stats.iterations) << a.name;
    EXPECT_EQ(a.stats.converged, b.stats.converged) << a.name;
  }
  EXPECT_EQ(cpu.total.hw_distortion, gpu.total.hw_distortion);
  EXPECT_EQ(cpu.total.entropy_bits_per_weight, gpu.total.entropy_bits_per_weight);
}

TEST(CudaModelParity, RowAndGroupKmeansOnTheDeviceEqualTheCpuBitForBit) {
  NQ_REQUIRE_CUDA();
  // The public API end to end: pruning (on the device past 16384 weights: the same mask), each tensor's rows or
  // groups through op (e) in one call (per-row Lloyd on chip, or one thread per row for exact), warm starts, and
  // what op (e) cannot take (rows of 10007 for Lloyd) one problem at a time.
  const TensorSet model = make_rows_model(11);
  const TensorSet imp = make_rows_importance(model, 12);
  const std::vector<std::string> scopes =
      quick() ? std::vector<std::string>{"row", "group:1000"}
              : std::vector<std::string>{"row", "group:1000", "group:8192"};
  // (Exact solves each row on one device thread: too slow under compute-sanitizer, whose quick runs leave it to
  // the op-level tests.)
  const std::vector<Method> methods = quick() ? std::vector<Method>{Method::kKmeans, Method::kHwKmeans}
                                              : std::vector<Method>{Method::kKmeans, Method::kHwKmeans, Method::kExact};
  for (const Method method : methods)
    for (const std::string& scope : scopes)
      for (const int variant : {0, 1, 2}) {  // plain, pruned, warm starts
        if (method == Method::kExact && variant == 2) continue;  // exact takes no start
        SCOPED_TRACE(std::string(method_traits(method).name) + " " + scope +
                     (variant == 1 ? " pruned" : variant == 2 ? " warm" : ""));
        ModelQuantizeParams p;
        p.quant.method = method;
        p.quant.k = 12;
        p.quant.max_iter = quick() ? 6 : 30;
        p.quant.init = method == Method::kHwKmeans ? Init::kQuantile : Init::kLinear;
        p.scope = parse_scope(scope);
        p.prune = variant == 1 ? 0.25 : 0.0;
        p.quant.backend = Backend::kCpu;
        if (variant == 2) {  // a third of the problems from a fixed codebook, a third from their cold one moved, the
                             // rest cold
          const QuantizedModel cold = quantize_model(model, &imp, p);
          p.initial_codebooks.resize(cold.codebooks.size());
          for (size_t j = 0; j < cold.codebooks.size(); ++j) {
            if (j % 3 == 0) p.initial_codebooks[j] = {-0.04f, -0.01f, 0.0f, 0.02f};
            if (j % 3 == 1) {
              p.initial_codebooks[j] = cold.codebooks[j];
              for (float& c : p.initial_codebooks[j]) c = c * 1.25f + 0.001f;
            }
          }
        }
        const QuantizedModel cpu = quantize_model(model, &imp, p);
        p.quant.backend = Backend::kCuda;
        const QuantizedModel gpu = quantize_model(model, &imp, p);
        EXPECT_EQ(gpu.backend, Backend::kCuda);
        expect_identical(cpu, gpu);
      }
}

// A model and its importance written to a fresh temporary folder for the sharded driver, removed afterwards.
struct ShardedFiles {
  std::string dir, model, imp;
  TensorSet weights;
  ShardedFiles(uint64_t seed, const char* tag) {
    std::string tmpl = std::string("/tmp/nq_cuda_") + tag + "_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    model = dir + "/model.safetensors";
    imp = dir + "/imp.safetensors";
    weights = make_model(seed);
    write_safetensors(model, weights);
    write_safetensors(imp, make_importance(weights, seed + 1));
  }
  ~ShardedFiles() {
    std::remove(model.c_str());
    std::remove(imp.c_str());
    ::rmdir(dir.c_str());
  }
};

TEST(CudaModelParity, ShardedEcsqPassesOnTheDevice) {
  NQ_REQUIRE_CUDA();
  const ShardedFiles f(5, "sharded");
  const TensorSet& model = f.weights;
  const TensorSet imp = make_importance(model, 6);
  for (const bool target : {false, true}) {
    SCOPED_TRACE(target ? "target 2 bits" : "lambda 1e-5");
    ModelQuantizeParams p = ecsq_params(32, quick() ? 8 : 30, 1e-5, target ? 2.0 : 0.0, 0.1);
    const QuantizedModel cpu = quantize_model_sharded(f.model, f.imp, p);
    p.quant.backend = Backend::kCuda;
    ShardedQuantizeInfo info;
    const QuantizedModel gpu = quantize_model_sharded(f.model, f.imp, p, &info);
    EXPECT_EQ(gpu.backend, Backend::kCuda);
    EXPECT_GT(info.passes, 2);
    expect_close(cpu, gpu);
    expect_same_bits(gpu, quantize_model_sharded(f.model, f.imp, p));
    // The in-process quantizer on the device reaches the same solution to rounding.
    p.scope = parse_scope("global");
    expect_close(cpu, quantize_model(model, &imp, p));
  }
}

// Sharded k-means with CUDA: each block sorted and summed on the device, Lloyd on the host copies, the labels
// on the device. Close to the CPU run (the device's prefix sums differ in the last bits), bitwise repeatable, and
// reported as CUDA.
TEST(CudaModelParity, ShardedKmeansSortsBlocksOnTheDevice) {
  NQ_REQUIRE_CUDA();
  const ShardedFiles f(7, "sharded_km");
  for (const Method method : {Method::kHwKmeans, Method::kKmeans}) {
    SCOPED_TRACE(method == Method::kHwKmeans ? "hw-kmeans" : "kmeans");
    ModelQuantizeParams p;
    p.quant.method = method;
    p.quant.k = 16;
    p.quant.max_iter = quick() ? 8 : 30;
    p.scope = parse_scope("global");
    p.prune = 0.1;
    p.quant.backend = Backend::kCpu;
    const QuantizedModel cpu = quantize_model_sharded(f.model, f.imp, p);
    p.quant.backend = Backend::kCuda;
    const QuantizedModel gpu = quantize_model_sharded(f.model, f.imp, p);
    EXPECT_EQ(gpu.backend, Backend::kCuda);
    expect_close(cpu, gpu);
    expect_same_bits(gpu, quantize_model_sharded(f.model, f.imp, p));
  }
}

}  // namespace
}  // namespace nq
