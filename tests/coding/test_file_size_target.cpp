// A budget on the .nq file (quantize_model_to_file_size). Oracles: the bytes serialize_nq writes for the result
// (the file, not an estimate), quantize_model at the λ the search reports (bit for bit: the search returns a model
// it made), the λ = 0 model's file (nothing is larger), a λ grid walked by brute force (no grid point may fit the
// budget better than a search that stopped short of 0.5%), and one level per codebook (the floor below which a
// budget is out of reach).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/fixtures.h"
#include "quant/same_result.h"

namespace nq {
namespace {

using test::expect_same_model;

// Tensors of awkward sizes with importances orders of magnitude apart, a 1-D one and one left in float by a name
// filter (its bytes are part of every file, so of the floor).
using Fixture = test::ScaledModel;
Fixture make_fixture(uint64_t seed) {
  return test::scaled_model({{"hot", {9, 131}}, {"cold", {37, 29}}, {"bias", {61}}, {"kept.norm", {17}}},
                           {{"hot", 50.0f}, {"cold", 0.02f}, {"bias", 1.0f}, {"kept.norm", 1.0f}},
                           seed);
}

ModelQuantizeParams ecsq_params(const std::string& scope, double prune) {
  ModelQuantizeParams p;
  p.quant = test::params(Method::kEcsq, 16);
  p.scope = parse_scope(scope);
  p.prune = prune;
  p.exclude_regex = "norm";
  return p;
}

uint64_t file_bytes(QuantizedModel m) { return serialize_nq(m).size(); }

QuantizedModel at_lambda(const Fixture& f, ModelQuantizeParams p, double lambda) {
  p.quant.lambda = lambda;
  return quantize_model(f.model, &f.importance, p);
}

TEST(FileSizeTarget, IsTheLargestFileWithinTheBudgetAtItsLambda) {
  const Fixture f = make_fixture(5);
  for (const char* scope : {"row", "tensor", "group:100", "global"}) {
    for (const double prune : {0.0, 0.4}) {
      SCOPED_TRACE(std::string(scope) + " prune " + std::to_string(prune));
      const ModelQuantizeParams p = ecsq_params(scope, prune);
      const uint64_t top = file_bytes(at_lambda(f, p, 0));    // nothing ECSQ makes is larger
      const uint64_t floor = file_bytes(at_lambda(f, p, 1e9));  // one level per codebook
      ASSERT_LT(floor, top);
      for (const double share : {0.2, 0.55, 0.9}) {
        const auto budget = static_cast<uint64_t>(floor + share * static_cast<double>(top - floor));
        SCOPED_TRACE("budget " + std::to_string(budget) + " of [" + std::to_string(floor) + ", " +
                     std::to_string(top) + "]");
        const QuantizedModel got = quantize_model_to_file_size(f.model, &f.importance, p, budget);
        const double lambda = got.total.lambda;
        ASSERT_GT(lambda, 0);
        for (const QuantizedTensor& qt : got.tensors) {
          if (qt.quantized) {
            EXPECT_EQ(qt.stats.lambda, lambda) << qt.name;  // one λ for every codebook
          }
        }
        const uint64_t size = file_bytes(got);
        EXPECT_LE(size, budget);
        // The statistics are the file's.
        EXPECT_NEAR(got.total.ratio_file, 4.0 * static_cast<double>(got.total.params) / static_cast<double>(size),
                    1e-9 * got.total.ratio_file);
        expect_same_model(got, at_lambda(f, p, lambda), "the model at its lambda");
        // Within 0.5% of the budget, or no λ of a fine grid fits it better (the file's steps left no closer one).
        if (static_cast<double>(size) < 0.995 * static_cast<double>(budget)) {
          for (int i = 0; i <= 96; ++i) {
            const double grid_lambda = lambda * std::exp2((i - 48) / 8.0);
            const uint64_t s = file_bytes(at_lambda(f, p, grid_lambda));
            EXPECT_FALSE(s > size && s <= budget) << "lambda " << grid_lambda << " gives " << s << " bytes";
          }
        }
      }
    }
  }
}

TEST(FileSizeTarget, ABudgetAboveTheLambdaZeroFileIsThatFile) {
  const Fixture f = make_fixture(7);
  const ModelQuantizeParams p = ecsq_params("row", 0.1);
  const QuantizedModel zero = at_lambda(f, p, 0);
  const uint64_t top = file_bytes(zero);
  for (const uint64_t budget : {top, top + 1, 10 * top}) {
    const QuantizedModel got = quantize_model_to_file_size(f.model, &f.importance, p, budget);
    EXPECT_EQ(got.total.lambda, 0);
    expect_same_model(got, zero, "lambda 0");
  }
}

TEST(FileSizeTarget, ABudgetBelowOneLevelPerCodebookIsAnErrorNamingTheFloor) {
  const Fixture f = make_fixture(9);
  const ModelQuantizeParams p = ecsq_params("row", 0.0);
  const uint64_t floor = file_bytes(at_lambda(f, p, 1e9));
  try {
    quantize_model_to_file_size(f.model, &f.importance, p, floor - 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string what = e.what();
    EXPECT_NE(what.find("at most " + std::to_string(floor - 1) + " bytes is out of reach"), std::string::npos)
        << what;
    EXPECT_NE(what.find(std::to_string(floor) + " bytes"), std::string::npos) << what;
  }
  // Exactly the floor is within reach.
  EXPECT_LE(file_bytes(quantize_model_to_file_size(f.model, &f.importance, p, floor)), floor);
}

TEST(FileSizeTarget, RefusesWhatItCannotMeet) {
  const Fixture f = make_fixture(3);
  auto code_of = [&](const ModelQuantizeParams& p, uint64_t budget) {
    try {
      quantize_model_to_file_size(f.model, &f.importance, p, budget);
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;  // no error: not what any case below wants
  };
  ModelQuantizeParams p = ecsq_params("row", 0);
  EXPECT_EQ(code_of(p, 0), ErrorCode::kInvalidArgument);
  for (const Method m : {Method::kHwKmeans, Method::kUniform, Method::kExact}) {
    ModelQuantizeParams q = p;
    q.quant.method = m;
    EXPECT_EQ(code_of(q, 100000), ErrorCode::kInvalidArgument) << method_traits(m).name;
  }
  ModelQuantizeParams q = p;
  q.quant.lambda = 1e-4;
  EXPECT_EQ(code_of(q, 100000), ErrorCode::kInvalidArgument);
  q = p;
  q.quant.target_bits = 2;
  EXPECT_EQ(code_of(q, 100000), ErrorCode::kInvalidArgument);
  q = p;
  q.quant.target_ratio = 8;
  EXPECT_EQ(code_of(q, 100000), ErrorCode::kInvalidArgument);
  q = p;
  q.quant.k = kNqMaxLevels + 1;
  EXPECT_EQ(code_of(q, 100000), ErrorCode::kInvalidArgument);
}

TEST(FileSizeTarget, ARatioIsFloat32BytesOverTheBudget) {
  const Fixture f = make_fixture(1);
  int64_t weights = 0;
  for (const Tensor& t : f.model) weights += t.numel();
  for (const double ratio : {1.0, 3.0, 7.5, 31.9, 1000.0}) {
    const uint64_t budget = file_bytes_for_ratio(f.model, ratio);
    // The budget meets the ratio, and one byte more would not.
    EXPECT_GE(4.0 * static_cast<double>(weights) / static_cast<double>(budget), ratio) << ratio;
    EXPECT_LT(4.0 * static_cast<double>(weights) / static_cast<double>(budget + 1), ratio) << ratio;
  }
  for (const double bad : {0.0, -2.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e12})
    EXPECT_THROW(file_bytes_for_ratio(f.model, bad), Error) << bad;
}

}  // namespace
}  // namespace nq
