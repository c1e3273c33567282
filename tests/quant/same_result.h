// Bit-for-bit comparison of two QuantizeResults (of two QuantStats, expect_same_stats; of two QuantizedModels, expect_same_model) (a batched path against one quantize() per problem): codebook,
// indices, statistics, λ, iteration count, convergence and the per-iteration history.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>

#include "netquant/quantize.h"

namespace nq::test {

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

inline void expect_same_result(const QuantizeResult& got, const QuantizeResult& want, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(got.codebook, want.codebook);
  ASSERT_EQ(got.indices, want.indices);
  EXPECT_TRUE(same_bits(got.hw_distortion, want.hw_distortion)) << got.hw_distortion << " vs " << want.hw_distortion;
  EXPECT_TRUE(same_bits(got.mse, want.mse));
  EXPECT_TRUE(same_bits(got.entropy_bits, want.entropy_bits));
  EXPECT_TRUE(same_bits(got.lambda, want.lambda)) << got.lambda << " vs " << want.lambda;
  EXPECT_EQ(got.iterations, want.iterations);
  EXPECT_EQ(got.converged, want.converged);
  ASSERT_EQ(got.history.size(), want.history.size());
  for (size_t i = 0; i < got.history.size(); ++i) {
    EXPECT_TRUE(same_bits(got.history[i].objective, want.history[i].objective)) << "iteration " << i;
    EXPECT_TRUE(same_bits(got.history[i].entropy, want.history[i].entropy)) << "iteration " << i;
    EXPECT_EQ(got.history[i].clusters, want.history[i].clusters) << "iteration " << i;
  }
}

// Every statistic but the time, bit for bit (params: the caller's business for the totals).
inline void expect_same_stats(const QuantStats& a, const QuantStats& b, bool with_params, const std::string& what) {
  SCOPED_TRACE(what);
  if (with_params) {
    EXPECT_EQ(a.params, b.params);
  }
  EXPECT_EQ(a.pruned, b.pruned);
  EXPECT_EQ(a.clusters, b.clusters);
  for (auto [x, y] : {std::pair{a.hw_distortion, b.hw_distortion}, {a.mse, b.mse},
                      {a.entropy_bits_per_weight, b.entropy_bits_per_weight},
                      {a.fixed_bits_per_weight, b.fixed_bits_per_weight}, {a.ratio_fixed, b.ratio_fixed},
                      {a.ratio_entropy, b.ratio_entropy}, {a.lambda, b.lambda}}) {
    EXPECT_TRUE(same_bits(x, y)) << x << " vs " << y;
  }
  EXPECT_EQ(a.iterations, b.iterations);
  EXPECT_EQ(a.converged, b.converged);
}

// Two models bit for bit: codebooks, each tensor's layout, indices and statistics, and the totals (but time).
inline void expect_same_model(const QuantizedModel& got, const QuantizedModel& want, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(got.codebooks.size(), want.codebooks.size());
  for (size_t j = 0; j < got.codebooks.size(); ++j) {
    ASSERT_EQ(got.codebooks[j].size(), want.codebooks[j].size()) << "codebook " << j;
    EXPECT_TRUE(got.codebooks[j].empty() ||
                std::memcmp(got.codebooks[j].data(), want.codebooks[j].data(),
                            got.codebooks[j].size() * sizeof(float)) == 0)
        << "codebook " << j;
  }
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (size_t i = 0; i < got.tensors.size(); ++i) {
    const QuantizedTensor &g = got.tensors[i], &w = want.tensors[i];
    SCOPED_TRACE(g.name);
    ASSERT_EQ(g.name, w.name);
    ASSERT_EQ(g.quantized, w.quantized);
    EXPECT_EQ(g.problem_size, w.problem_size);
    EXPECT_EQ(g.first_codebook, w.first_codebook);
    EXPECT_EQ(g.num_problems, w.num_problems);
    EXPECT_EQ(g.indices, w.indices);
    if (g.quantized) expect_same_stats(g.stats, w.stats, true, "tensor");
  }
  expect_same_stats(got.total, want.total, true, "total");
}

}  // namespace nq::test
