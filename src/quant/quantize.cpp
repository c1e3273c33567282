// nq::quantize: validates one 1-D problem, resolves the backend, and dispatches to the method's driver.
#include "netquant/quantize.h"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>

#include "core/parallel_for.h"
#include "netquant/error.h"
#include "quant/fixed_codebooks.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq {

namespace {

QuantizeResult from_fixed(const quant::Problem& p, quant::FixedCodebookResult f) {
  quant::RawResult raw;
  raw.centers.assign(f.codebook.begin(), f.codebook.end());
  raw.labels = std::move(f.indices);
  raw.iterations = f.iterations;
  raw.converged = f.converged;
  for (size_t i = 0; i < f.objective_history.size(); ++i)
    raw.history.push_back({static_cast<int>(i) + 1, f.objective_history[i], 0, 0, static_cast<int>(f.codebook.size())});
  return quant::finalize(p, std::move(raw));
}

}  // namespace

namespace quant {

void check_quantize_params(const QuantizeParams& params) {
  const MethodTraits& traits = method_traits(params.method);
  NQ_CHECK(!traits.takes_k || params.method == Method::kPow2 || params.method == Method::kInt || params.k >= 1,
           ErrorCode::kInvalidArgument, traits.name << ": k must be >= 1, got " << params.k);
  NQ_CHECK(params.max_iter >= 1, ErrorCode::kInvalidArgument, "max_iter must be >= 1, got " << params.max_iter);
  NQ_CHECK(params.lambda >= 0 && std::isfinite(params.lambda), ErrorCode::kInvalidArgument,
           "lambda must be finite and >= 0, got " << params.lambda);
  NQ_CHECK(params.target_bits >= 0 && params.target_ratio >= 0, ErrorCode::kInvalidArgument,
           "target bits/ratio must be >= 0");
  // A rate target is a finite number of bits: an infinite one (or a ratio so small that 32 / ratio overflows) has
  // no λ or step to search for.
  NQ_CHECK(std::isfinite(params.target_ratio), ErrorCode::kInvalidArgument,
           "target ratio must be finite, got " << params.target_ratio);
  NQ_CHECK(std::isfinite(params.tol) && params.tol >= 0, ErrorCode::kInvalidArgument,
           "tol must be finite and >= 0, got " << params.tol);
  const double rate = target_rate_bits(params);
  NQ_CHECK(std::isfinite(rate), ErrorCode::kInvalidArgument,
           "target bits must be finite, got " << rate << (params.target_bits > 0 ? "" : " (from the target ratio)"));
  NQ_CHECK(!(params.target_bits > 0 || params.target_ratio > 0) || traits.supports_target,
           ErrorCode::kInvalidArgument, traits.name << " does not support a target rate (use ecsq or uniform)");
  NQ_CHECK(params.step >= 0 && std::isfinite(params.step), ErrorCode::kInvalidArgument,
           "uniform step must be finite and >= 0, got " << params.step);
  // Knobs that would otherwise be ignored without a word. The CLI and Python check them first in their own spelling
  // (--lambda, lam); these are what a C++ caller meets.
  NQ_CHECK(params.lambda == 0 || traits.has_lambda, ErrorCode::kInvalidArgument,
           "lambda applies to ecsq only (method " << traits.name << ")");
  NQ_CHECK((params.lambda > 0) + (params.target_bits > 0) + (params.target_ratio > 0) <= 1,
           ErrorCode::kInvalidArgument,
           "give one rate goal: lambda, target_bits or target_ratio (a target searches lambda or the step), got "
               << (params.lambda > 0 ? "lambda " : "") << (params.target_bits > 0 ? "target_bits " : "")
               << (params.target_ratio > 0 ? "target_ratio" : ""));
  NQ_CHECK(params.step == 0 || params.method == Method::kUniform, ErrorCode::kInvalidArgument,
           "step applies to uniform only (method " << traits.name << ")");
  NQ_CHECK(params.step == 0 || rate == 0, ErrorCode::kInvalidArgument,
           "give step or a target rate, not both (a target searches the step)");
  NQ_CHECK(params.exact_histogram_bins >= 0, ErrorCode::kInvalidArgument, "exact_histogram_bins must be >= 0");
  for (const double c : params.initial_centers)
    NQ_CHECK(std::isfinite(c), ErrorCode::kInvalidArgument, "initial centre " << c << " is not finite");
  // A start is a codebook of at most k levels (k-means and ECSQ never add centres): more would give a result of
  // more than k levels. The other methods ignore starts.
  if (!params.initial_centers.empty() && (params.method == Method::kKmeans || params.method == Method::kHwKmeans ||
                                          params.method == Method::kEcsq)) {
    const size_t distinct = warm_start(params).size();  // the start as the drivers take it: sorted, merged
    NQ_CHECK(distinct <= static_cast<size_t>(params.k), ErrorCode::kInvalidArgument,
             traits.name << ": the start has " << distinct << " distinct centres, more than k = " << params.k);
  }
}

void check_lambda_batch(const QuantizeParams& params, const std::vector<double>& lambdas, const char* who) {
  NQ_CHECK(params.method == Method::kEcsq && params.target_bits == 0 && params.target_ratio == 0,
           ErrorCode::kInvalidArgument, who << ": for ecsq at given λ values (no target rate)");
  for (const double lambda : lambdas)
    NQ_CHECK(lambda >= 0 && std::isfinite(lambda), ErrorCode::kInvalidArgument,
             "lambda must be finite and >= 0, got " << lambda);
}

void check_warm_starts(const std::vector<const std::vector<float>*>& warm) {
  for (size_t r = 0; r < warm.size(); ++r)
    if (warm[r])
      for (const float c : *warm[r])
        NQ_CHECK(std::isfinite(c), ErrorCode::kInvalidArgument,
                 "problem " << r << ": initial centre " << c << " is not finite");
}

Problem row_problem(const float* w, const float* h, int64_t begin, int64_t end, Backend backend) {
  Problem p;
  p.w = w + begin;
  p.n = static_cast<size_t>(end - begin);
  p.backend = backend;
  if (h && std::any_of(h + begin, h + end, [](float v) { return v > 0; })) p.h = h + begin;
  return p;
}

int64_t next_slice(const std::vector<int64_t>& row_begin, int64_t r0, int64_t limit,
                   std::vector<int64_t>& slice_begin) {
  const int64_t rows = static_cast<int64_t>(row_begin.size()) - 1;
  int64_t r1 = r0 + 1;
  while (r1 < rows && row_begin[r1 + 1] - row_begin[r0] <= limit) ++r1;
  slice_begin.assign(row_begin.begin() + r0, row_begin.begin() + r1 + 1);
  for (int64_t& b : slice_begin) b -= row_begin[r0];
  return r1;
}

}  // namespace quant

namespace {

// Checks the values (finite) and importances (finite, >= 0) and resolves where the problem runs. An importance
// that is all zero falls back to unweighted (every assignment would cost nothing, so the unweighted quantizer is
// the natural tie-break); methods that do not use importance ignore it.
quant::Problem validated_problem(const float* values, const float* importance, size_t n, const QuantizeParams& params) {
  const MethodTraits& traits = method_traits(params.method);
  NQ_CHECK(n == 0 || values != nullptr, ErrorCode::kInvalidArgument, "quantize: values is null");
  // Validation in parallel (it is a full pass over the data); a failure is then located by a serial scan so
  // the message names the first bad entry.
  const bool check_importance = importance && traits.uses_importance;
  // Counts over blocks, written as compares the compiler vectorises (a short-circuit && per value is not):
  // |v| <= FLT_MAX is false exactly for NaN and ±inf, 0 <= h <= FLT_MAX exactly for finite h >= 0 (−0 too).
  constexpr size_t kBlockValues = size_t{1} << 14;
  const size_t blocks = (n + kBlockValues - 1) / kBlockValues;
  int64_t bad_values = 0, bad_importance = 0, positive = 0;
  auto check_block = [&](size_t b, int64_t& bad_v, int64_t& bad_h, int64_t& pos) {
    const size_t i0 = b * kBlockValues, i1 = std::min(n, i0 + kBlockValues);
    int32_t bv = 0, bh = 0, ps = 0;
    for (size_t i = i0; i < i1; ++i) bv += std::fabs(values[i]) <= FLT_MAX ? 0 : 1;
    if (check_importance)
      for (size_t i = i0; i < i1; ++i) {
        const float h = importance[i];
        bh += static_cast<int32_t>(!(h >= 0.0f) | !(h <= FLT_MAX));
        ps += static_cast<int32_t>(h > 0.0f);
      }
    bad_v += bv;
    bad_h += bh;
    pos += ps;
  };
  if (static_cast<int64_t>(n) <= kInlineLoopMax) {  // a row or group: no OpenMP region (core/parallel_for.h)
    for (size_t b = 0; b < blocks; ++b) check_block(b, bad_values, bad_importance, positive);
  } else {
#pragma omp parallel for schedule(static) reduction(+ : bad_values, bad_importance, positive)
    for (int64_t b = 0; b < static_cast<int64_t>(blocks); ++b)
      check_block(static_cast<size_t>(b), bad_values, bad_importance, positive);
  }
  const bool values_ok = bad_values == 0, importance_ok = bad_importance == 0, any_positive = positive > 0;
  for (size_t i = 0; !values_ok && i < n; ++i)
    NQ_CHECK(std::isfinite(values[i]), ErrorCode::kInvalidArgument,
             "value " << i << " is not finite (" << values[i] << ")");
  for (size_t i = 0; !importance_ok && i < n; ++i)
    NQ_CHECK(std::isfinite(importance[i]) && importance[i] >= 0, ErrorCode::kInvalidArgument,
             "importance " << i << " is " << importance[i] << " (must be finite and >= 0)");
  quant::Problem p;
  p.w = values;
  p.h = any_positive ? importance : nullptr;
  p.n = n;
  p.backend = quant::problem_backend(resolve_backend(params.backend), n);  // result.backend says which ran
  return p;
}

}  // namespace

QuantizeResult quantize(const float* values, const float* importance, size_t n, const QuantizeParams& params) {
  const auto t0 = std::chrono::steady_clock::now();
  quant::check_quantize_params(params);
  const quant::Problem p = validated_problem(values, importance, n, params);

  QuantizeResult r;
  if (n == 0) {
    r.backend = p.backend;
    return r;
  }
  switch (params.method) {
    case Method::kKmeans:
    case Method::kHwKmeans:
    case Method::kExact: {
      // The sorted copy (8 bytes per value and its sums) is freed before finalize allocates the labels: a global
      // problem over a whole model peaks at one of the two, not both.
      quant::RawResult raw;
      {
        const quant::SortedData s(p);
        if (s.distinct_at_most(static_cast<size_t>(std::max(1, params.k)))) {  // exact: a level per value
          raw.centers = quant::distinct_values(s);
          raw.labels_nearest = true;
          raw.iterations = 0;
        } else if (params.method == Method::kExact) {
          raw = quant::exact_dp(p, s, params);
        } else {
          raw = quant::lloyd_sorted(s, params);
        }
      }
      r = quant::finalize(p, std::move(raw));
      break;
    }
    case Method::kUniform: r = quant::finalize(p, quant::uniform_driver(p, params)); break;
    case Method::kEcsq: {
      // The sorted copy makes the start and, scattered into importance bins, the passes' layout (op (d) sorts
      // nothing again); it is freed before the search runs.
      quant::EcsqStart start;
      quant::AssignPass pass;
      {
        const quant::SortedData s(p);
        start = quant::ecsq_start(p, s, params);
        pass = quant::local_pass(p, {s.w().data(), s.h().data()});
      }
      r = quant::finalize(p, quant::ecsq_search(pass, p.n, p.n, start.init, start.d0, params));
      break;
    }
    case Method::kBinary: r = from_fixed(p, quant::quantize_binary(p.w, p.h, n)); break;
    case Method::kTernary: r = from_fixed(p, quant::quantize_ternary(p.w, p.h, n)); break;
    case Method::kPow2:
      r = from_fixed(p, quant::quantize_pow2(p.w, p.h, n, params.pow2_levels, params.max_iter));
      break;
    case Method::kInt:
      r = from_fixed(p, quant::quantize_int(p.w, p.h, n, params.int_bits, params.int_symmetric, params.max_iter));
      break;
    case Method::kWentropy: {
      // Park et al.'s importance is w² by construction; `importance` is ignored.
      quant::Problem pw = p;
      pw.h = nullptr;
      r = from_fixed(pw, quant::quantize_wentropy(p.w, n, params.k, params.max_iter));
      break;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<QuantizeResult> quantize_lambdas(const float* values, const float* importance, size_t n,
                                             const QuantizeParams& params, const std::vector<double>& lambdas) {
  const auto t0 = std::chrono::steady_clock::now();
  quant::check_quantize_params(params);
  quant::check_lambda_batch(params, lambdas, "quantize_lambdas");
  const quant::Problem p = validated_problem(values, importance, n, params);
  std::vector<QuantizeResult> out(lambdas.size());
  if (n == 0) {
    for (QuantizeResult& r : out) r.backend = p.backend;
    return out;
  }
  std::vector<double> init;
  quant::AssignPass pass;
  {  // the sorted copy makes the start and the passes' layout, and is freed before the passes run
    const quant::SortedData s(p);
    init = quant::ecsq_init(s, params);
    pass = quant::local_pass(p, {s.w().data(), s.h().data()});
  }
  std::vector<quant::RawResult> raw = quant::ecsq_iterate_lambdas(pass, p.n, p.n, init, lambdas, params);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t m = 0; m < lambdas.size(); ++m) {
    out[m] = quant::finalize(p, std::move(raw[m]));
    out[m].seconds = seconds / static_cast<double>(lambdas.size());
  }
  return out;
}

}  // namespace nq
