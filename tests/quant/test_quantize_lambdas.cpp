// nq::quantize_lambdas (ECSQ at several λ in lockstep, sharing each pass over the data) against one quantize()
// per λ: the same codebooks, indices, statistics, iteration counts and histories, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/same_result.h"

namespace nq {
namespace {

struct Data {
  std::vector<float> w, h;
};
Data make(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 1.0);
  Data d;
  for (size_t i = 0; i < n; ++i) {
    d.w.push_back(static_cast<float>(0.05 * t(rng)));
    d.h.push_back(i % 13 == 0 ? 0.0f : static_cast<float>(g(rng)));
  }
  return d;
}

using test::expect_same_result;

TEST(QuantizeLambdas, EachPointEqualsItsOwnQuantize) {
  // λ from "plain k-means" through a collapse to one cluster, unsorted, with a repeat.
  const std::vector<double> lambdas = {0.0, 1e-6, 3e-5, 1e-3, 1e-4, 3e-5, 0.5};
  uint64_t seed = 3;
  for (const size_t n : {size_t{1}, size_t{3}, size_t{33}, size_t{4099}, size_t{100003}})
    for (const bool weighted : {true, false})
      for (const int max_iter : {1, 100}) {
        const Data d = make(n, ++seed);
        QuantizeParams q;
        q.method = Method::kEcsq;
        q.k = 16;
        q.max_iter = max_iter;
        q.backend = Backend::kCpu;
        const float* h = weighted ? d.h.data() : nullptr;
        const std::vector<QuantizeResult> all = quantize_lambdas(d.w.data(), h, n, q, lambdas);
        ASSERT_EQ(all.size(), lambdas.size());
        for (size_t m = 0; m < lambdas.size(); ++m) {
          QuantizeParams one = q;
          one.lambda = lambdas[m];
          expect_same_result(all[m], quantize(d.w.data(), h, n, one),
                      "n=" + std::to_string(n) + " lambda=" + std::to_string(lambdas[m]) +
                          (weighted ? " weighted" : "") + " max_iter=" + std::to_string(max_iter));
        }
      }
}

TEST(QuantizeLambdas, WarmStartAndFewerLevelsThanK) {
  Data d = make(2000, 9);
  for (size_t i = 0; i < d.w.size(); ++i) d.w[i] = std::round(d.w[i] * 40.0f) / 40.0f;  // few distinct values
  QuantizeParams q;
  q.method = Method::kEcsq;
  q.k = 64;
  q.backend = Backend::kCpu;
  for (const bool warm : {false, true}) {
    if (warm) q.initial_centers = {-0.1, -0.02, 0.0, 0.05};
    const std::vector<double> lambdas = {1e-5, 2e-4};
    const auto all = quantize_lambdas(d.w.data(), d.h.data(), d.w.size(), q, lambdas);
    for (size_t m = 0; m < lambdas.size(); ++m) {
      QuantizeParams one = q;
      one.lambda = lambdas[m];
      expect_same_result(all[m], quantize(d.w.data(), d.h.data(), d.w.size(), one), warm ? "warm" : "cold");
    }
  }
}

TEST(QuantizeLambdas, RejectsWhatItCannotDo) {
  const Data d = make(100, 1);
  QuantizeParams q;
  q.method = Method::kHwKmeans;
  EXPECT_THROW(quantize_lambdas(d.w.data(), nullptr, 100, q, {1e-4}), Error);
  q.method = Method::kEcsq;
  q.target_bits = 2;
  EXPECT_THROW(quantize_lambdas(d.w.data(), nullptr, 100, q, {1e-4}), Error);
  q.target_bits = 0;
  EXPECT_THROW(quantize_lambdas(d.w.data(), nullptr, 100, q, {-1.0}), Error);
  EXPECT_TRUE(quantize_lambdas(d.w.data(), nullptr, 100, q, {}).empty());
  std::vector<float> bad = d.w;
  bad[7] = NAN;
  EXPECT_THROW(quantize_lambdas(bad.data(), nullptr, 100, q, {1e-4}), Error);
}

}  // namespace
}  // namespace nq
