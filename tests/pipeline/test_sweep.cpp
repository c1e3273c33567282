// Sweep driver: λ grids, list parsing, RD monotonicity, target selection against brute force, CSV schema.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include "netquant/error.h"
#include "netquant/sweep.h"

namespace nq {
namespace {

TensorSet random_model(uint64_t seed, TensorSet* importance) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> heavy(3.0f);
  std::gamma_distribution<float> gamma(0.7f, 1.0f);
  TensorSet model;
  const std::vector<std::vector<int64_t>> shapes = {{37, 29}, {29}, {11, 7, 3}};
  int i = 0;
  for (const auto& shape : shapes) {
    const std::string name = "layer" + std::to_string(i++) + ".weight";
    const int64_t n = shape_numel(shape);
    std::vector<float> w(n), h(n);
    for (auto& v : w) v = 0.05f * heavy(rng);
    for (auto& v : h) v = gamma(rng);
    model.add(Tensor::from_f32(name, shape, w));
    if (importance) importance->add(Tensor::from_f32(name, shape, h));
  }
  return model;
}

TEST(Sweep, LogSpaceMatchesClosedForm) {
  const auto v = log_space(1e-6, 1e-1, 6);
  ASSERT_EQ(v.size(), 6u);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(std::log10(v[i]), -6.0 + static_cast<double>(i), 1e-12);
  EXPECT_EQ(log_space(0.5, 2.0, 1), std::vector<double>{0.5});
  EXPECT_THROW(log_space(0.0, 1.0, 3), Error);
  EXPECT_THROW(log_space(2.0, 1.0, 3), Error);
  EXPECT_THROW(log_space(1.0, 2.0, 0), Error);
}

TEST(Sweep, ParsesListsAndRejectsGarbage) {
  EXPECT_EQ(parse_lambda_list("0.1,0.2,0"), (std::vector<double>{0.1, 0.2, 0.0}));
  EXPECT_EQ(parse_lambda_list("1e-3:1e-1:3").size(), 3u);
  EXPECT_EQ(parse_int_list("2:5"), (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(parse_int_list("8,4"), (std::vector<int>{8, 4}));
  EXPECT_THROW(parse_lambda_list("a:b:c"), Error);
  EXPECT_THROW(parse_lambda_list("1,-2"), Error);
  EXPECT_THROW(parse_int_list("2.5"), Error);
  EXPECT_THROW(parse_int_list("5:2"), Error);
}

TEST(Sweep, EcsqEntropyIsNonIncreasingInLambda) {
  TensorSet importance;
  const TensorSet model = random_model(11, &importance);
  ModelQuantizeParams base;
  base.quant.method = Method::kEcsq;
  base.quant.k = 32;
  const auto range = auto_lambda_range(model, &importance, base);
  EXPECT_GT(range.first, 0);
  EXPECT_GT(range.second, range.first);
  std::vector<SweepPointSpec> specs;
  for (double l : log_space(range.first, range.second, 9)) {
    ModelQuantizeParams p = base;
    p.quant.lambda = l;
    specs.push_back({p, "lambda", l});
  }
  const auto points = run_sweep(model, &importance, specs, nullptr);
  ASSERT_EQ(points.size(), specs.size());
  for (size_t i = 1; i < points.size(); ++i) {
    EXPECT_LE(points[i].stats.entropy_bits_per_weight, points[i - 1].stats.entropy_bits_per_weight + 1e-9)
        << "λ " << points[i].knob;
    EXPECT_EQ(points[i].index, i);
  }
  // The automatic range reaches the interesting ends: near the rate of hw k-means with k_max centres at the
  // low end, about one bit at the high end.
  ModelQuantizeParams km = base;
  km.quant.method = Method::kHwKmeans;
  const double kmeans_bits = quantize_model(model, &importance, km).total.entropy_bits_per_weight;
  EXPECT_GE(points.front().stats.clusters, 8);
  EXPECT_GE(points.front().stats.entropy_bits_per_weight, 0.85 * kmeans_bits);
  EXPECT_LE(points.back().stats.entropy_bits_per_weight, 1.5);
}

// run_sweep batches consecutive λ points (quantize_model_lambdas); every point must equal run_sweep_point on it
// alone — for every scope, with pruning and a mixed spec list (a k-means point and a second ECSQ family with
// another k break the batches).
TEST(Sweep, BatchedLambdaPointsEqualOnePointAtATime) {
  TensorSet importance;
  const TensorSet model = random_model(21, &importance);
  for (const char* scope : {"global", "tensor", "row", "group:50"}) {
    ModelQuantizeParams base;
    base.quant.method = Method::kEcsq;
    base.quant.k = 16;
    base.quant.backend = Backend::kCpu;
    base.scope = parse_scope(scope);
    base.prune = 0.2;
    std::vector<SweepPointSpec> specs;
    const std::vector<double> lambdas = log_space(1e-6, 1e-2, 11);  // 11 > one batch of kSweepLambdaBatch
    for (size_t i = 0; i < lambdas.size(); ++i) {
      ModelQuantizeParams p = base;
      p.quant.lambda = lambdas[i];
      if (i == 4) {  // a point of another method among them (which has no λ)
        p.quant.method = Method::kHwKmeans;
        p.quant.lambda = 0;
      }
      if (i >= 7) p.quant.k = 8;
      specs.push_back({p, "lambda", lambdas[i]});
    }
    const std::vector<SweepPoint> batched = run_sweep(model, &importance, specs, nullptr);
    ASSERT_EQ(batched.size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      SCOPED_TRACE(std::string(scope) + " point " + std::to_string(i));
      QuantizedModel alone_q;
      const SweepPoint alone = run_sweep_point(model, &importance, specs[i], i, nullptr, &alone_q);
      EXPECT_EQ(batched[i].index, i);
      EXPECT_EQ(batched[i].stats.clusters, alone.stats.clusters);
      EXPECT_EQ(batched[i].stats.hw_distortion, alone.stats.hw_distortion);
      EXPECT_EQ(batched[i].stats.entropy_bits_per_weight, alone.stats.entropy_bits_per_weight);
      EXPECT_EQ(batched[i].stats.huffman_bits_per_weight, alone.stats.huffman_bits_per_weight);
      EXPECT_EQ(batched[i].stats.lambda, alone.stats.lambda);
      if (specs[i].params.quant.method == Method::kEcsq) {  // the models themselves, through the batched entry
        const QuantizedModel batch_q =
            quantize_model_lambdas(model, &importance, specs[i].params, {1e-7, specs[i].params.quant.lambda}).at(1);
        EXPECT_EQ(batch_q.codebooks, alone_q.codebooks);
        for (size_t t = 0; t < alone_q.tensors.size(); ++t)
          EXPECT_EQ(batch_q.tensors[t].indices, alone_q.tensors[t].indices);
      }
    }
  }
  ModelQuantizeParams km;
  km.quant.method = Method::kHwKmeans;
  EXPECT_THROW(quantize_model_lambdas(model, &importance, km, {1e-4}), Error);
}

// The criterion is one for the whole eligible set: the first of validation accuracy after fine-tuning, validation
// accuracy, test accuracy after fine-tuning and test accuracy that every eligible point has (each drawn
// independently, so choosing by another would pick other points), else the distortion.
TEST(Sweep, TargetSelectionMatchesBruteForce) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  const std::vector<double TaskMetrics::*> order = {&TaskMetrics::accuracy_finetuned_validation,
                                                   &TaskMetrics::accuracy_validation,
                                                   &TaskMetrics::accuracy_finetuned, &TaskMetrics::accuracy};
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<SweepPoint> pts(1 + rng() % 12);
    // Each measure on every point, on none, or (one time in three) on some points only.
    std::vector<int> presence(order.size());
    for (auto& pr : presence) pr = static_cast<int>(rng() % 3);  // 0: none, 1: all, 2: some
    for (auto& p : pts) {
      p.stats.huffman_bits_per_weight = 8 * u(rng);
      p.stats.ratio_huffman = 32 / std::max(p.stats.huffman_bits_per_weight, 0.01);
      p.stats.hw_distortion = u(rng);
      for (size_t m = 0; m < order.size(); ++m)
        if (presence[m] == 1 || (presence[m] == 2 && rng() % 2 == 0))
          p.metrics.*order[m] = std::round(20 * u(rng)) / 20;  // coarse: ties happen
    }
    // One trial in four puts the bits target exactly on a point, and one in six the ratio target: a point at the
    // target meets it.
    const double target_bits = trial % 4 == 1 ? pts[rng() % pts.size()].stats.huffman_bits_per_weight : 8 * u(rng);
    const double target_ratio = trial % 6 == 3   ? pts[rng() % pts.size()].stats.ratio_huffman
                                : trial % 3 == 0 ? 32 / (8 * u(rng) + 0.01)
                                                 : 0;
    std::vector<size_t> eligible;
    for (size_t i = 0; i < pts.size(); ++i)
      if (pts[i].stats.huffman_bits_per_weight <= target_bits &&
          (target_ratio == 0 || pts[i].stats.ratio_huffman >= target_ratio))
        eligible.push_back(i);
    double TaskMetrics::*by = nullptr;
    for (auto field : order) {
      bool all = !eligible.empty();
      for (size_t i : eligible) all = all && !std::isnan(pts[i].metrics.*field);
      if (all) {
        by = field;
        break;
      }
    }
    int want = -1;
    for (size_t i : eligible) {
      if (want < 0) {
        want = static_cast<int>(i);
        continue;
      }
      const SweepPoint& b = pts[static_cast<size_t>(want)];
      const bool better = by ? pts[i].metrics.*by > b.metrics.*by : pts[i].stats.hw_distortion < b.stats.hw_distortion;
      if (better) want = static_cast<int>(i);
    }
    EXPECT_EQ(target_criterion(pts, target_bits, target_ratio), by) << "trial " << trial;
    EXPECT_EQ(best_point_for_target(pts, target_bits, target_ratio), want) << "trial " << trial;
  }
}

// Duplicates: the previous point of the same method, scope and filters with the same clusters, entropy and
// distortion. Each of the six differing alone makes a point new.
TEST(Sweep, DuplicatesNeedEveryFieldEqual) {
  SweepPoint a;
  a.method = "ecsq";
  a.scope = "global";
  a.stats.clusters = 7;
  a.stats.entropy_bits_per_weight = 2.5;
  a.stats.hw_distortion = 0.1;
  const std::vector<std::function<void(SweepPoint&)>> changes = {
      [](SweepPoint& p) { p.method = "hw-kmeans"; }, [](SweepPoint& p) { p.scope = "row"; },
      [](SweepPoint& p) { p.include = "fc"; },        [](SweepPoint& p) { p.exclude = "fc"; },
      [](SweepPoint& p) { p.stats.clusters = 6; },   [](SweepPoint& p) { p.stats.entropy_bits_per_weight = 2.25; },
      [](SweepPoint& p) { p.stats.hw_distortion = 0.2; }};
  std::vector<SweepPoint> same = {a, a};
  mark_duplicates(same);
  EXPECT_FALSE(same[0].duplicate_of_previous);
  EXPECT_TRUE(same[1].duplicate_of_previous);
  for (size_t c = 0; c < changes.size(); ++c) {
    std::vector<SweepPoint> pts = {a, a};
    changes[c](pts[1]);
    mark_duplicates(pts);
    EXPECT_FALSE(pts[1].duplicate_of_previous) << "change " << c;
  }
}

// The automatic λ range from its definition: 2 ln2 · D(hw k-means at the user's k) / 16 up to 2 ln2 · D(k = 2).
TEST(Sweep, AutoLambdaRangeFollowsTheUsersK) {
  TensorSet importance;
  const TensorSet model = random_model(4, &importance);
  for (int k : {4, 64}) {
    ModelQuantizeParams base;
    base.quant.method = Method::kEcsq;
    base.quant.k = k;
    base.quant.backend = Backend::kCpu;
    ModelQuantizeParams km = base;
    km.quant.method = Method::kHwKmeans;
    km.quant.lambda = 0;
    const double d_k = quantize_model(model, &importance, km).total.hw_distortion;
    km.quant.k = 2;
    const double d_2 = quantize_model(model, &importance, km).total.hw_distortion;
    const auto range = auto_lambda_range(model, &importance, base);
    EXPECT_DOUBLE_EQ(range.first, 2 * std::log(2.0) * d_k / 16) << "k " << k;
    EXPECT_DOUBLE_EQ(range.second, 2 * std::log(2.0) * d_2) << "k " << k;
  }
}

// Batches of λ points hold at most max_batch (≤ kSweepLambdaBatch) points each, in order, covering every spec once.
TEST(Sweep, LambdaBatchesStayWithinTheirLimit) {
  TensorSet importance;
  const TensorSet model = random_model(3, &importance);
  std::vector<SweepPointSpec> specs;
  for (int i = 0; i < 20; ++i) {
    ModelQuantizeParams p;
    p.quant.method = Method::kEcsq;
    p.quant.k = 8;
    p.quant.lambda = 1e-5 * (i + 1);
    specs.push_back({p, "lambda", p.quant.lambda});
  }
  for (int64_t max_batch : {int64_t{3}, kSweepLambdaBatch, kSweepLambdaBatch + 5}) {
    const std::vector<SweepBatch> batches = plan_sweep_batches(model, specs, max_batch);
    const size_t limit = static_cast<size_t>(std::min(max_batch, kSweepLambdaBatch));
    size_t at = 0;
    for (const SweepBatch& b : batches) {
      EXPECT_EQ(b.begin, at);
      EXPECT_GT(b.end, b.begin);
      EXPECT_LE(b.end - b.begin, limit) << "max_batch " << max_batch;
      at = b.end;
    }
    EXPECT_EQ(at, specs.size());
    EXPECT_EQ(batches.size(), (specs.size() + limit - 1) / limit) << "max_batch " << max_batch;  // full batches
  }
}

TEST(Sweep, CsvHasOneRowPerPointAndFixedColumns) {
  TensorSet importance;
  const TensorSet model = random_model(3, &importance);
  std::vector<SweepPointSpec> specs;
  for (int k : {2, 4, 4, 16}) {
    ModelQuantizeParams p;
    p.quant.method = Method::kHwKmeans;
    p.quant.k = k;
    specs.push_back({p, "k", static_cast<double>(k)});
  }
  const auto points = run_sweep(model, &importance, specs, nullptr);
  EXPECT_TRUE(points[2].duplicate_of_previous);  // k = 4 twice collapses to the same solution
  EXPECT_FALSE(points[1].duplicate_of_previous);
  const std::string csv = sweep_to_csv(points);
  std::istringstream is(csv);
  std::string line;
  std::getline(is, line);
  EXPECT_EQ(line, sweep_csv_header());
  const auto commas = std::count(line.begin(), line.end(), ',');
  int rows = 0;
  while (std::getline(is, line)) {
    EXPECT_EQ(std::count(line.begin(), line.end(), ','), commas) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 4);
}

// The name filters: λ points under different filters are never batched together (each equals its point alone),
// identical statistics under different filters are not duplicates, and the patterns land in the last two CSV
// columns, quoted when they hold a comma or a quote.
TEST(Sweep, NameFiltersSplitBatchesAndAreRecorded) {
  TensorSet importance;
  const TensorSet model = random_model(5, &importance);
  std::vector<SweepPointSpec> specs;
  for (const char* exclude : {"", "layer1", "layer1", "layer[0-1]{1,2}\"x"}) {
    ModelQuantizeParams p;
    p.quant.method = Method::kEcsq;
    p.quant.k = 8;
    p.quant.lambda = 1e-4;
    p.quant.backend = Backend::kCpu;
    p.exclude_regex = exclude;
    specs.push_back({p, "lambda", 1e-4});
  }
  const std::vector<SweepBatch> batches = plan_sweep_batches(model, specs, kSweepLambdaBatch);
  ASSERT_EQ(batches.size(), 3u);  // {0}, {1, 2}, {3}
  EXPECT_EQ(batches[1].begin, 1u);
  EXPECT_EQ(batches[1].end, 3u);
  const std::vector<SweepPoint> points = run_sweep(model, &importance, specs, nullptr);
  for (size_t i = 0; i < specs.size(); ++i) {
    const SweepPoint alone = run_sweep_point(model, &importance, specs[i], i, nullptr);
    EXPECT_EQ(points[i].stats.hw_distortion, alone.stats.hw_distortion) << i;
    EXPECT_EQ(points[i].stats.params, model.total_numel()) << i;
    EXPECT_EQ(points[i].exclude, specs[i].params.exclude_regex);
  }
  EXPECT_NE(points[1].stats.hw_distortion, points[0].stats.hw_distortion);  // the filter changed the problem
  EXPECT_FALSE(points[1].duplicate_of_previous);
  EXPECT_TRUE(points[2].duplicate_of_previous);  // same filter, same solution
  std::istringstream is(sweep_to_csv(points));
  std::string line;
  std::getline(is, line);
  const auto ends_with = [](const std::string& s, const std::string& end) {
    return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
  };
  EXPECT_TRUE(ends_with(line, ",duplicate,include,exclude")) << line;
  std::vector<std::string> rows;
  while (std::getline(is, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_TRUE(ends_with(rows[0], ",0,,")) << rows[0];  // not a duplicate, no filters: empty cells
  EXPECT_TRUE(ends_with(rows[1], ",0,,layer1")) << rows[1];
  EXPECT_TRUE(ends_with(rows[2], ",1,,layer1")) << rows[2];
  EXPECT_TRUE(ends_with(rows[3], ",0,,\"layer[0-1]{1,2}\"\"x\"")) << rows[3];
}

}  // namespace
}  // namespace nq
