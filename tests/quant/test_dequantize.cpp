// QuantizedModel::dequantize (and the decompressor, through the same quant::dequantize_indices) against the rule
// written out element by element: each weight's codebook value as float32, converted to the dtype by the scalar
// conversions (f32_to_f16 / f32_to_bf16, exact to f64), +0 when pruned. Covers every stored index width, all four
// float dtypes, codebooks with special values (NaN, ±Inf, −0, subnormals, values that round on conversion), row
// and tiny-group layouts (converted tables and per-value conversion), awkward sizes, one and two threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "netquant/quantize.h"
#include "quant/dequantize.h"

using namespace nq;

namespace {

std::vector<float> make_codebook(size_t k, std::mt19937_64& rng) {
  std::vector<float> cb(k);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -0.0f, 1e-41f, 65520.0f, 1.0009765625f + 1e-7f,
                            -3.0e-5f};
  for (size_t i = 0; i < k; ++i)
    cb[i] = i < 8 && rng() % 3 == 0 ? specials[i] : std::normal_distribution<float>(0.0f, 0.1f)(rng);
  return cb;
}

uint64_t expected_bits(float v, DType dtype) {
  switch (dtype) {
    case DType::kF32: {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      return u;
    }
    case DType::kF64: {
      const double d = v;
      uint64_t u;
      std::memcpy(&u, &d, 8);
      return u;
    }
    case DType::kF16: return f32_to_f16(v);
    default: return f32_to_bf16(v);
  }
}

uint64_t actual_bits(const Tensor& t, size_t i) {
  const auto* p = static_cast<const uint8_t*>(t.data()) + i * dtype_size(t.dtype());
  uint64_t u = 0;
  std::memcpy(&u, p, dtype_size(t.dtype()));
  return u;
}

}  // namespace

TEST(Dequantize, EqualsTheScalarRuleForEveryWidthDtypeAndLayout) {
  std::mt19937_64 rng(5);
  struct Layout {
    int64_t rows, cols, problem;  // problem = weights per codebook
    size_t k;
  };
  const std::vector<Layout> layouts = {
      {1, 1, 1, 1},           {3, 31, 93, 2},          {257, 33, 33, 16},       // one codebook; rows
      {1, 300007, 300007, 300}, {1031, 255, 255, 70},  {4099, 17, 3, 3},        // 2-byte indices; tiny groups
      {2, 70001, 70001, 65536}, {600, 600, 600, 4},                            // 4-byte indices; rows
  };
  for (const auto& lay : layouts) {
    QuantizedModel m;
    m.scope.kind = ScopeKind::kRow;
    QuantizedTensor t;
    t.name = "w";
    t.shape = {lay.rows, lay.cols};
    const int64_t n = lay.rows * lay.cols;
    t.problem_size = lay.problem;
    t.num_problems = (n + lay.problem - 1) / lay.problem;
    t.first_codebook = 1;  // after another tensor's codebook
    m.codebooks.push_back({42.0f});
    std::vector<int32_t> idx(static_cast<size_t>(n));
    for (int64_t p = 0; p < t.num_problems; ++p) {
      const size_t k = std::max<size_t>(1, lay.k - static_cast<size_t>(p % 3));  // codebooks of different sizes
      m.codebooks.push_back(make_codebook(k, rng));
      for (int64_t i = p * lay.problem; i < std::min(n, (p + 1) * lay.problem); ++i)
        idx[static_cast<size_t>(i)] = rng() % 4 == 0 ? kPrunedIndex : static_cast<int32_t>(rng() % k);
    }
    t.indices = IndexArray(idx);
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64}) {
      t.dtype = dtype;
      m.tensors = {t};
      for (int threads : {1, 2}) {
        const int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        const TensorSet set = m.dequantize();
        omp_set_num_threads(saved);
        const Tensor& out = set.at("w");
        ASSERT_EQ(out.dtype(), dtype);
        ASSERT_EQ(out.shape(), t.shape);
        for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
          const int32_t v = idx[i];
          const float value = v == kPrunedIndex ? 0.0f : m.codebooks[1 + i / static_cast<size_t>(lay.problem)][static_cast<size_t>(v)];
          ASSERT_EQ(actual_bits(out, i), expected_bits(value, dtype))
              << "layout " << lay.rows << "x" << lay.cols << " width " << t.indices.width() << " dtype "
              << dtype_name(dtype) << " weight " << i << " threads " << threads;
        }
      }
    }
  }
}
