// Inputs at the edges of floating point, found by the randomized differential campaign of tests/stress/: importances
// over 16 decades, steps far below the values, all-pruned tensors, starts larger than k. Each case once crashed,
// asserted or returned a wrong result; each is checked here against an oracle recomputed from the inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "netquant/tensor.h"
#include "quant/fixtures.h"

namespace nq {
namespace {

using test::params;

void expect_error(const std::function<void()>& f, ErrorCode code, const std::string& message) {
  try {
    f();
    ADD_FAILURE() << "no error (expected: " << message << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

// The k-means invariants a sorted path must keep whatever the rounding: levels strictly ascending, every value
// labelled with its nearest level (ties either way), and, at a fixed point (where the final labels are the
// clusters the levels are the means of), each level within the range of the values it labels.
void expect_nearest_ascending(const QuantizeResult& r, const std::vector<float>& w, const std::string& what) {
  ASSERT_EQ(r.indices.size(), w.size()) << what;
  for (size_t j = 1; j < r.codebook.size(); ++j) ASSERT_LT(r.codebook[j - 1], r.codebook[j]) << what << " level " << j;
  std::vector<float> lo(r.codebook.size(), INFINITY), hi(r.codebook.size(), -INFINITY);
  for (size_t i = 0; i < w.size(); ++i) {
    const int32_t j = r.indices[i];
    ASSERT_GE(j, 0) << what;
    ASSERT_LT(static_cast<size_t>(j), r.codebook.size()) << what;
    const double own = std::fabs(static_cast<double>(w[i]) - r.codebook[static_cast<size_t>(j)]);
    for (const float c : r.codebook) ASSERT_LE(own, std::fabs(static_cast<double>(w[i]) - c)) << what << " value " << i;
    lo[static_cast<size_t>(j)] = std::min(lo[static_cast<size_t>(j)], w[i]);
    hi[static_cast<size_t>(j)] = std::max(hi[static_cast<size_t>(j)], w[i]);
  }
  for (size_t j = 0; r.converged && j < r.codebook.size(); ++j)
    if (lo[j] <= hi[j]) {
      EXPECT_GE(r.codebook[j], lo[j]) << what << " level " << j;
      EXPECT_LE(r.codebook[j], hi[j]) << what << " level " << j;
    }
}

// A cluster's centre is its sums' quotient, and the sums are differences of prefix sums: where a cluster's
// importance is tiny next to the importance sorted before it, the difference cancels and the quotient landed
// outside the cluster, even beyond its neighbour (an internal assert in quantize, std::terminate in row scope).
TEST(NumericExtremes, LloydCentresStayInsideTheirClusters) {
  {  // the smallest case: one Lloyd step from quantile starts
    const std::vector<float> w = {-8.0f, 3e-20f, 0.0f, 1e-17f};
    for (Method m : {Method::kKmeans, Method::kHwKmeans}) {
      auto p = params(m, 3);
      p.init = Init::kQuantile;
      p.max_iter = 1;
      expect_nearest_ascending(quantize(w.data(), nullptr, w.size(), p), w, "4 values");
    }
  }
  // Importances over 16 decades, one Lloyd step or to convergence, per tensor and per row.
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.05);
  std::uniform_real_distribution<double> decades(-16.0, 0.0);
  for (int trial = 0; trial < 12; ++trial) {
    const size_t n = 200 + 37 * static_cast<size_t>(trial);
    std::vector<float> w(n), h(n);
    for (size_t i = 0; i < n; ++i) {
      w[i] = static_cast<float>(normal(rng));
      h[i] = static_cast<float>(std::pow(10.0, decades(rng)));
    }
    for (int max_iter : {1, 300}) {
      auto p = params(Method::kHwKmeans, 32);
      p.max_iter = max_iter;
      p.tol = 0;
      const std::string what = "trial " + std::to_string(trial) + ", max_iter " + std::to_string(max_iter);
      expect_nearest_ascending(quantize(w.data(), h.data(), n, p), w, what);
      // The same values as the rows of a tensor (op (e), all rows in one parallel region): each row's result is
      // the one quantize gives that row alone.
      const int64_t cols = 50, rows = static_cast<int64_t>(n) / cols;
      TensorSet model, imp;
      model.add(Tensor::from_f32("t", {rows, cols}, std::vector<float>(w.begin(), w.begin() + rows * cols)));
      imp.add(Tensor::from_f32("t", {rows, cols}, std::vector<float>(h.begin(), h.begin() + rows * cols)));
      ModelQuantizeParams mp;
      mp.quant = p;
      mp.scope.kind = ScopeKind::kRow;
      const QuantizedModel q = quantize_model(model, &imp, mp);
      ASSERT_EQ(q.codebooks.size(), static_cast<size_t>(rows)) << what;
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<float> row_w(w.begin() + r * cols, w.begin() + (r + 1) * cols);
        const QuantizeResult one = quantize(row_w.data(), h.data() + r * cols, static_cast<size_t>(cols), p);
        EXPECT_EQ(q.codebooks[static_cast<size_t>(r)], one.codebook) << what << " row " << r;
        expect_nearest_ascending(one, row_w, what + " row " + std::to_string(r));
      }
    }
  }
}

// An explicit step far below the values: w/Δ past 2^63 converted to int64 (undefined behaviour; a segfault, or one
// cell for everything). Refused now: too many cells, or (past 2^60 cells from 0, where cells saturate and would
// merge values) too small for the values.
TEST(NumericExtremes, UniformStepFarBelowTheValuesIsRefused) {
  for (const std::vector<float>& w : {std::vector<float>{-1.0f, 0.25f, 1.0f}, std::vector<float>{-1.0f, 0.0f, 1.0f},
                                      std::vector<float>{0.5f, 0.75f}, std::vector<float>{-3e-5f, -2e-5f}})
    for (double step : {1e-17, 1e-19, 1e-30, 1e-300}) {
      auto p = params(Method::kUniform, 16);  // k unused with a step or a target
      p.step = step;
      const bool saturates = std::fabs(w[0]) / step >= 0x1p60;
      expect_error([&] { quantize(w.data(), nullptr, w.size(), p); }, ErrorCode::kInvalidArgument,
                   saturates ? "is too small for values up to" : "at most 2^26");
    }
  // From k, the cells cover the weighted values: an outlier of importance 0 a decillion times larger lands in the
  // outer cell (its cell number saturates instead of overflowing).
  const std::vector<float> w = {0.1f, -0.05f, 0.02f, -0.08f, 0.03f, 1e30f}, h = {1, 1, 1, 1, 1, 0};
  const QuantizeResult r = quantize(w.data(), h.data(), w.size(), params(Method::kUniform, 5));
  EXPECT_EQ(r.indices[5], r.indices[0]) << "the outlier shares 0.1's outer cell";
  EXPECT_LE(r.codebook.size(), 5u);
}

// Where cells far outnumber the values, only the occupied ones are kept: the other values' levels are those of
// the dense cell arrays (oracle: the same values without the far outlier, which sits alone in its own cell).
TEST(NumericExtremes, UniformSparseCellsGiveTheDenseLevels) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 0.05);
  std::gamma_distribution<double> gamma(0.7, 2.0);
  std::vector<float> w(1001), h(1001);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(normal(rng)), h[i] = static_cast<float>(gamma(rng));
  auto p = params(Method::kUniform, 16);
  p.step = 0.01;
  const QuantizeResult dense = quantize(w.data(), h.data(), w.size(), p);  // ~40 cells for 1001 values
  w.push_back(1e5f);  // 10^7 cells away
  h.push_back(2.0f);
  const QuantizeResult sparse = quantize(w.data(), h.data(), w.size(), p);
  ASSERT_EQ(sparse.codebook.size(), dense.codebook.size() + 1);
  EXPECT_EQ(sparse.codebook.back(), 1e5f);
  for (size_t i = 0; i + 1 < w.size(); ++i)
    ASSERT_EQ(sparse.codebook[static_cast<size_t>(sparse.indices[i])], dense.codebook[static_cast<size_t>(dense.indices[i])])
        << "value " << i;
}

// A target rate with an outlier of importance 0 far outside the weighted values: the search's finest step gave
// more than 2^26 cells over all the values and threw, instead of returning the closest rate it can reach.
TEST(NumericExtremes, UniformTargetWithAFarOutlierReturnsAResult) {
  for (float outlier : {10.0f, 100.0f, 1e6f}) {
    const std::vector<float> w = {0.1f, -0.05f, 0.02f, -0.08f, 0.03f, outlier}, h = {1, 1, 1, 1, 1, 0};
    for (double bits : {1.0, 2.0, 3.0}) {
      auto p = params(Method::kUniform, 16);  // k unused with a step or a target
      p.target_bits = bits;
      const QuantizeResult r = quantize(w.data(), h.data(), w.size(), p);
      // Oracle: the entropy of the returned labels, recomputed; six values reach at most log2(6) bits.
      std::vector<int> count(r.codebook.size(), 0);
      for (int32_t j : r.indices) ++count[static_cast<size_t>(j)];
      double entropy = 0;
      for (int c : count)
        if (c) entropy -= c / 6.0 * std::log2(c / 6.0);
      EXPECT_NEAR(r.entropy_bits, entropy, 1e-12);
      EXPECT_LE(std::fabs(r.entropy_bits - bits), std::fabs(std::log2(6.0) - bits) + 1e-12)
          << "outlier " << outlier << ", target " << bits;
    }
  }
}

// quantize_model in row or group scope with every value of one tensor pruned: its rows are all empty, and the
// row op refused the empty array ("rows_kmeans: missing values"). The other tensor's rows are quantized as
// quantize() does each row's kept values.
TEST(NumericExtremes, RowScopeWithATensorPrunedWhole) {
  TensorSet model;
  model.add(Tensor::from_f32("a.weight", {2, 3}, std::vector<float>(6, 0.0f)));
  const std::vector<float> b = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f, 0.7f, -0.8f};
  model.add(Tensor::from_f32("b.weight", {2, 4}, b));
  for (const char* scope : {"row", "group:3"}) {
    ModelQuantizeParams mp;
    mp.quant = params(Method::kHwKmeans, 2);
    mp.scope = parse_scope(scope);
    mp.prune = 0.5;  // 7 of 14: the 6 zeros and 0.1
    const QuantizedModel q = quantize_model(model, nullptr, mp);
    ASSERT_EQ(q.tensors.size(), 2u);
    for (int32_t j : q.tensors[0].indices) EXPECT_EQ(j, kPrunedIndex) << scope;
    const QuantizedTensor& t = q.tensors[1];
    EXPECT_EQ(t.indices[0], kPrunedIndex) << scope;
    const TensorSet deq = q.dequantize();
    const std::vector<float> got = deq.at("b.weight").to_f32();
    for (int64_t s = 0; s < t.num_problems; ++s) {
      const int64_t begin = s * t.problem_size, end = std::min<int64_t>(8, begin + t.problem_size);
      std::vector<float> kept;
      std::vector<size_t> where;
      for (int64_t i = begin; i < end; ++i)
        if (t.indices[static_cast<size_t>(i)] != kPrunedIndex) kept.push_back(b[static_cast<size_t>(i)]), where.push_back(i);
      const QuantizeResult one = quantize(kept.data(), nullptr, kept.size(), params(Method::kHwKmeans, 2));
      for (size_t m = 0; m < kept.size(); ++m)
        EXPECT_EQ(got[where[m]], one.codebook[static_cast<size_t>(one.indices[m])]) << scope << " value " << where[m];
    }
  }
}

// A start is a codebook of at most k levels: more distinct centres than k gave a result with more than k levels.
TEST(NumericExtremes, AStartLargerThanKIsRefused) {
  const std::vector<float> w = {0, 1, 2, 3, 4, 5, 6, 7};
  for (Method m : {Method::kKmeans, Method::kHwKmeans, Method::kEcsq}) {
    auto p = params(m, 2);
    p.initial_centers = {0, 2, 4, 6};
    expect_error([&] { quantize(w.data(), nullptr, w.size(), p); }, ErrorCode::kInvalidArgument,
                 "the start has 4 distinct centres, more than k = 2");
    p.initial_centers = {0, 6, 6, 0};  // two distinct: accepted, and two levels at most
    EXPECT_LE(quantize(w.data(), nullptr, w.size(), p).codebook.size(), 2u);
  }
}

}  // namespace
}  // namespace nq
