// Builders of QuantizedModel objects for the coding tests (no dependency on the quantizers).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "netquant/coding.h"
#include "netquant/quantize.h"

namespace nq::testing {

struct ModelSpec {
  ScopeKind scope = ScopeKind::kGlobal;
  int64_t group = 0;
  double prune = 0.0;       // fraction of weights pruned
  bool with_raw = false;    // add tensors kept in float (f32 and f16)
  int k = 16;               // levels (row/group: per problem, varied)
  DType dtype = DType::kF32;
};

// Unlimited Huffman cost Σ count·length (the classic two-smallest merge): the oracle when no limit binds.
inline uint64_t unlimited_huffman_cost(const std::vector<uint64_t>& counts) {
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<>> q;
  for (uint64_t c : counts)
    if (c) q.push(c);
  if (q.size() == 1) return q.top();  // one symbol: one bit each
  uint64_t cost = 0;
  while (q.size() > 1) {
    const uint64_t a = q.top();
    q.pop();
    const uint64_t b = q.top();
    q.pop();
    cost += a + b;
    q.push(a + b);
  }
  return cost;
}

// Skewed index in [0, k): most mass near the middle, like quantized weights.
inline int32_t skewed_index(std::mt19937_64& rng, int k) {
  std::normal_distribution<double> nd(0.0, std::max(1.0, k / 8.0));
  const int v = static_cast<int>(std::lround(nd(rng))) + k / 2;
  return static_cast<int32_t>(std::min(std::max(v, 0), k - 1));
}

inline std::vector<float> random_codebook(std::mt19937_64& rng, int k) {
  std::vector<float> cb(static_cast<size_t>(k));
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  float x = -1.0f;
  for (auto& v : cb) v = (x += 0.001f + std::fabs(u(rng)));
  return cb;
}

inline QuantizedModel random_model(const ModelSpec& spec, uint64_t seed) {
  std::mt19937_64 rng(seed);
  QuantizedModel m;
  m.method = Method::kEcsq;
  m.scope.kind = spec.scope;
  m.scope.group = spec.scope == ScopeKind::kGroup ? spec.group : 0;
  const std::vector<std::vector<int64_t>> shapes = {{37, 13}, {101}, {3, 4, 5}, {1}, {0, 4}, {7, 64}};
  if (spec.scope == ScopeKind::kGlobal) m.codebooks.push_back(random_codebook(rng, spec.k));
  int ti = 0;
  for (const auto& shape : shapes) {
    QuantizedTensor t;
    t.name = "layer" + std::to_string(ti++) + ".weight";
    t.dtype = spec.dtype;
    t.shape = shape;
    const int64_t n = shape_numel(shape);
    switch (spec.scope) {
      case ScopeKind::kGlobal:
      case ScopeKind::kTensor: t.problem_size = n; break;
      case ScopeKind::kRow: t.problem_size = shape.back(); break;
      case ScopeKind::kGroup: t.problem_size = spec.group; break;
    }
    if (n == 0) t.problem_size = 1;
    t.num_problems = n == 0 ? 1 : (n + t.problem_size - 1) / t.problem_size;
    if (n == 0) t.num_problems = spec.scope == ScopeKind::kGlobal ? 1 : 1;
    if (spec.scope == ScopeKind::kGlobal) {
      t.first_codebook = 0;
      t.num_problems = 1;
    } else {
      t.first_codebook = static_cast<int64_t>(m.codebooks.size());
      for (int64_t p = 0; p < t.num_problems; ++p)
        m.codebooks.push_back(random_codebook(rng, 1 + static_cast<int>(rng() % static_cast<uint64_t>(spec.k))));
    }
    t.indices.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (std::uniform_real_distribution<double>(0, 1)(rng) < spec.prune) {
        t.indices[static_cast<size_t>(i)] = kPrunedIndex;
        continue;
      }
      const auto& cb = m.codebooks[static_cast<size_t>(t.first_codebook + i / t.problem_size)];
      t.indices[static_cast<size_t>(i)] = skewed_index(rng, static_cast<int>(cb.size()));
    }
    m.tensors.push_back(std::move(t));
  }
  if (spec.with_raw) {
    for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
      QuantizedTensor t;
      t.name = std::string("bias.") + dtype_name(d);
      t.dtype = d;
      t.shape = {17};
      t.quantized = false;
      std::vector<float> v(17);
      for (auto& x : v) x = std::uniform_real_distribution<float>(-1, 1)(rng);
      t.original = Tensor::from_f32(t.name, t.shape, v).converted(d);
      m.tensors.push_back(std::move(t));
    }
  }
  return m;
}

// Codebook values of tensor t's weight i (0 for pruned), as float.
inline float dequantized_value(const QuantizedModel& m, const QuantizedTensor& t, size_t i) {
  const int32_t idx = t.indices[i];
  if (idx == kPrunedIndex) return 0.0f;
  return m.codebooks[static_cast<size_t>(t.first_codebook) + i / static_cast<size_t>(t.problem_size)]
                    [static_cast<size_t>(idx)];
}

// Same decoded content: scope, method, names, shapes, dtypes, indices, the codebook each weight refers to,
// raw bytes of tensors kept in float.
inline void expect_same_model(const QuantizedModel& a, const QuantizedModel& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.scope.kind, b.scope.kind);
  EXPECT_EQ(a.scope.group, b.scope.group);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t ti = 0; ti < a.tensors.size(); ++ti) {
    const auto& x = a.tensors[ti];
    const auto& y = b.tensors[ti];
    SCOPED_TRACE(x.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.shape, y.shape);
    EXPECT_EQ(x.quantized, y.quantized);
    if (!x.quantized) {
      EXPECT_EQ(x.original.dtype(), y.original.dtype());
      ASSERT_EQ(x.original.nbytes(), y.original.nbytes());
      EXPECT_EQ(0, std::memcmp(x.original.data(), y.original.data(), x.original.nbytes()));
      continue;
    }
    EXPECT_EQ(x.dtype, y.dtype);
    EXPECT_EQ(x.problem_size, y.problem_size);
    EXPECT_EQ(x.num_problems, y.num_problems);
    ASSERT_EQ(x.indices, y.indices);
    for (int64_t p = 0; p < x.num_problems && !x.indices.empty(); ++p)
      EXPECT_EQ(a.codebooks[static_cast<size_t>(x.first_codebook + p)],
                b.codebooks[static_cast<size_t>(y.first_codebook + p)]);
  }
}

}  // namespace nq::testing
