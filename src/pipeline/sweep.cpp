// Rate–distortion sweep driver: point lists, automatic λ range, duplicate collapsing, target selection, CSV.
#include "netquant/sweep.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/progress.h"

namespace nq {

std::vector<double> log_space(double lo, double hi, int n) {
  NQ_CHECK(n >= 1, ErrorCode::kInvalidArgument, "sweep: need at least one point, got " << n);
  NQ_CHECK(lo > 0 && std::isfinite(lo) && std::isfinite(hi) && hi >= lo, ErrorCode::kInvalidArgument,
           "sweep: λ range must satisfy 0 < LO <= HI, got " << lo << ":" << hi);
  std::vector<double> out(static_cast<size_t>(n));
  if (n == 1) {
    out[0] = lo;
    return out;
  }
  const double a = std::log(lo), b = std::log(hi);
  for (int i = 0; i < n; ++i) out[static_cast<size_t>(i)] = std::exp(a + (b - a) * i / (n - 1));
  out.back() = hi;
  return out;
}

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) parts.push_back(cur);
  return parts;
}

double parse_double(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    const double v = std::stod(s, &used);
    NQ_CHECK(used == s.size() && std::isfinite(v), ErrorCode::kInvalidArgument, what << ": bad number '" << s << "'");
    return v;
  } catch (const std::logic_error&) {
    NQ_FAIL(ErrorCode::kInvalidArgument, what << ": bad number '" << s << "'");
  }
}

int parse_int(const std::string& s, const std::string& what) {
  const double v = parse_double(s, what);
  NQ_CHECK(v == std::floor(v), ErrorCode::kInvalidArgument, what << ": '" << s << "' is not an integer");
  NQ_CHECK(std::fabs(v) < 1e9, ErrorCode::kInvalidArgument, what << ": " << s << " is out of range (|n| < 1e9)");
  return static_cast<int>(v);
}
}  // namespace

std::vector<double> parse_lambda_list(const std::string& text) {
  const auto colon = split(text, ':');
  if (colon.size() == 3) {
    return log_space(parse_double(colon[0], "--lambdas"), parse_double(colon[1], "--lambdas"),
                     parse_int(colon[2], "--lambdas"));
  }
  NQ_CHECK(colon.size() == 1, ErrorCode::kInvalidArgument,
           "--lambdas: expected LO:HI:N or a comma-separated list, got '" << text << "'");
  std::vector<double> out;
  for (const auto& p : split(text, ',')) {
    const double v = parse_double(p, "--lambdas");
    NQ_CHECK(v >= 0, ErrorCode::kInvalidArgument, "--lambdas: λ must be >= 0, got " << v);
    out.push_back(v);
  }
  NQ_CHECK(!out.empty(), ErrorCode::kInvalidArgument, "--lambdas: empty list");
  return out;
}

std::vector<int> parse_int_list(const std::string& text) {
  std::vector<int> out;
  const auto colon = split(text, ':');
  if (colon.size() == 2) {
    const int lo = parse_int(colon[0], "list"), hi = parse_int(colon[1], "list");
    NQ_CHECK(lo <= hi && hi - lo < 100000, ErrorCode::kInvalidArgument, "bad range '" << text << "'");
    for (int v = lo; v <= hi; ++v) out.push_back(v);
    return out;
  }
  for (const auto& p : split(text, ',')) out.push_back(parse_int(p, "list"));
  NQ_CHECK(!out.empty(), ErrorCode::kInvalidArgument, "empty list '" << text << "'");
  return out;
}

std::pair<double, double> auto_lambda_range(const TensorSet& model, const TensorSet* importance,
                                            const ModelQuantizeParams& base) {
  // High-rate theory: at the operating point of rate R the RD slope is −dD/dR ≈ 2 ln2 · D(R), and ECSQ's λ is
  // that slope. Hessian-weighted k-means (cheap: the sorted path) at k = k_max and at k = 2 gives D at the top
  // and the bottom of the useful rates, so λ from 2 ln2·D(k_max)/16 to 2 ln2·D(2) spans the curve from "barely
  // changes k-means" to "one or two clusters left", whatever the scale of the weights and importances.
  ModelQuantizeParams probe = base;
  probe.quant.method = Method::kHwKmeans;
  probe.quant.lambda = 0;
  probe.quant.target_bits = probe.quant.target_ratio = 0;
  probe.quant.k = std::max(2, base.quant.k);
  const double d_hi_rate = quantize_model(model, importance, probe).total.hw_distortion;
  probe.quant.k = 2;
  const double d_lo_rate = quantize_model(model, importance, probe).total.hw_distortion;
  const double slope = 2.0 * std::log(2.0);
  double lo = slope * d_hi_rate / 16.0, hi = slope * d_lo_rate;
  if (!(hi > 0) || !std::isfinite(hi)) hi = 1e-30;
  if (!(lo > 0) || lo >= hi) lo = hi * 1e-4;
  return {lo, hi};
}

namespace {

// A sweep point from its quantized model: coding accounted, evaluated when asked.
SweepPoint finish_point(QuantizedModel q, const SweepPointSpec& spec, size_t index, const SweepEvaluator& evaluate,
                        QuantizedModel* quantized) {
  SweepPoint p;
  p.index = index;
  p.method = method_traits(spec.params.quant.method).name;
  p.scope = scope_to_string(spec.params.scope);
  p.include = spec.params.include_regex;
  p.exclude = spec.params.exclude_regex;
  p.knob_name = spec.knob_name;
  p.knob = spec.knob;
  q.index_coder = spec.coder;
  account_coding(q);
  p.stats = q.total;
  if (evaluate) p.metrics = evaluate(q, q.dequantize());
  if (quantized) *quantized = std::move(q);
  return p;
}

// ECSQ points at a given λ, which quantize_model_lambdas can run together.
bool lambda_point(const SweepPointSpec& s) {
  const QuantizeParams& q = s.params.quant;
  return q.method == Method::kEcsq && q.target_bits == 0 && q.target_ratio == 0;
}

// Every setting but λ equal (the fields of QuantizeParams and ModelQuantizeParams, λ left out).
bool same_but_lambda(const ModelQuantizeParams& a, const ModelQuantizeParams& b) {
  const QuantizeParams &x = a.quant, &y = b.quant;
  return x.method == y.method && x.k == y.k && x.step == y.step && x.target_bits == y.target_bits &&
         x.target_ratio == y.target_ratio && x.init == y.init && x.max_iter == y.max_iter && x.tol == y.tol &&
         x.seed == y.seed && x.int_symmetric == y.int_symmetric && x.int_bits == y.int_bits &&
         x.pow2_levels == y.pow2_levels && x.exact_histogram_bins == y.exact_histogram_bins &&
         x.initial_centers == y.initial_centers && x.backend == y.backend && a.scope.kind == b.scope.kind &&
         a.scope.group == b.scope.group && a.prune == b.prune && a.importance_transform == b.importance_transform &&
         a.skip_1d == b.skip_1d && a.include_regex == b.include_regex && a.exclude_regex == b.exclude_regex &&
         a.initial_codebooks == b.initial_codebooks && a.rate_allocation == b.rate_allocation;
}

}  // namespace

SweepPoint run_sweep_point(const TensorSet& model, const TensorSet* importance, const SweepPointSpec& spec,
                           size_t index, const SweepEvaluator& evaluate, QuantizedModel* quantized) {
  return finish_point(quantize_model(model, importance, spec.params), spec, index, evaluate, quantized);
}

std::vector<SweepBatch> plan_sweep_batches(const TensorSet& model, const std::vector<SweepPointSpec>& specs,
                                           int64_t max_batch) {
  // Each batch holds its models' indices at once: keep them within ~2 GB.
  int64_t params_in_model = 0;
  for (const Tensor& t : model) params_in_model += t.numel();
  const size_t limit = static_cast<size_t>(std::clamp<int64_t>(
      std::min(max_batch, int64_t{2000000000} / std::max<int64_t>(1, 4 * params_in_model)), 1, kSweepLambdaBatch));
  std::vector<SweepBatch> batches;
  for (size_t i = 0; i < specs.size();) {
    size_t j = i + 1;
    if (lambda_point(specs[i]))
      while (j < specs.size() && j - i < limit && lambda_point(specs[j]) &&
             same_but_lambda(specs[i].params, specs[j].params))
        ++j;
    batches.push_back({i, j});
    i = j;
  }
  return batches;
}

std::vector<SweepPoint> run_sweep_batch(const TensorSet& model, const TensorSet* importance,
                                        const std::vector<SweepPointSpec>& specs, const SweepBatch& batch,
                                        const SweepEvaluator& evaluate) {
  std::vector<SweepPoint> points;
  if (batch.end - batch.begin == 1) {
    points.push_back(run_sweep_point(model, importance, specs[batch.begin], batch.begin, evaluate));
    return points;
  }
  std::vector<double> lambdas;
  for (size_t m = batch.begin; m < batch.end; ++m) lambdas.push_back(specs[m].params.quant.lambda);
  std::vector<QuantizedModel> models = quantize_model_lambdas(model, importance, specs[batch.begin].params, lambdas);
  for (size_t m = batch.begin; m < batch.end; ++m)
    points.push_back(finish_point(std::move(models[m - batch.begin]), specs[m], m, evaluate, nullptr));
  return points;
}

std::vector<SweepPoint> run_sweep(const TensorSet& model, const TensorSet* importance,
                                  const std::vector<SweepPointSpec>& specs, const SweepEvaluator& evaluate) {
  std::vector<SweepPoint> points;
  points.reserve(specs.size());
  Progress progress("sweep", static_cast<int64_t>(specs.size()));
  for (const SweepBatch& b : plan_sweep_batches(model, specs, kSweepLambdaBatch)) {
    const SweepPointSpec& first = specs[b.begin];
    // "ecsq lambda=1e-05", "kmeans k=4", "binary": the point as a person reads it.
    std::string status = method_traits(first.params.quant.method).name;
    if (first.knob_name != "fixed") {
      char knob[32];
      std::snprintf(knob, sizeof knob, "%.4g", first.knob);
      status += " " + first.knob_name + "=" + knob;
    }
    progress.update(static_cast<int64_t>(b.begin), status);
    for (SweepPoint& p : run_sweep_batch(model, importance, specs, b, evaluate)) points.push_back(std::move(p));
  }
  progress.finish();
  mark_duplicates(points);
  return points;
}

void mark_duplicates(std::vector<SweepPoint>& points) {
  for (size_t i = 1; i < points.size(); ++i) {
    const auto& a = points[i - 1];
    auto& b = points[i];
    b.duplicate_of_previous = a.method == b.method && a.scope == b.scope && a.include == b.include &&
                              a.exclude == b.exclude && a.stats.clusters == b.stats.clusters &&
                              a.stats.entropy_bits_per_weight == b.stats.entropy_bits_per_weight &&
                              a.stats.hw_distortion == b.stats.hw_distortion;
  }
}

namespace {
std::vector<size_t> points_meeting(const std::vector<SweepPoint>& points, double target_bits, double target_ratio) {
  std::vector<size_t> eligible;
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& s = points[i].stats;
    if (target_bits > 0 && s.huffman_bits_per_weight > target_bits) continue;
    if (target_ratio > 0 && s.ratio_huffman < target_ratio) continue;
    eligible.push_back(i);
  }
  return eligible;
}

double TaskMetrics::*criterion_for(const std::vector<SweepPoint>& points, const std::vector<size_t>& eligible) {
  // One criterion for the whole set, so that a point is never compared on one measure with another on a
  // different one: held-out images before the test set (which then stays unseen by the choice), and after
  // fine-tuning before without (what a fine-tuned point would be used as).
  for (double TaskMetrics::*field : {&TaskMetrics::accuracy_finetuned_validation, &TaskMetrics::accuracy_validation,
                                     &TaskMetrics::accuracy_finetuned, &TaskMetrics::accuracy}) {
    if (!eligible.empty() && std::all_of(eligible.begin(), eligible.end(),
                                         [&](size_t i) { return !std::isnan(points[i].metrics.*field); }))
      return field;
  }
  return nullptr;
}
}  // namespace

double TaskMetrics::*target_criterion(const std::vector<SweepPoint>& points, double target_bits,
                                      double target_ratio) {
  return criterion_for(points, points_meeting(points, target_bits, target_ratio));
}

int best_point_for_target(const std::vector<SweepPoint>& points, double target_bits, double target_ratio) {
  const std::vector<size_t> eligible = points_meeting(points, target_bits, target_ratio);
  const auto criterion = criterion_for(points, eligible);
  auto score = [&](const SweepPoint& p) {
    return criterion ? p.metrics.*criterion : -p.stats.hw_distortion;
  };
  int best = -1;
  for (size_t i : eligible)
    if (best < 0 || score(points[i]) > score(points[static_cast<size_t>(best)])) best = static_cast<int>(i);
  return best;
}

namespace {
// A text cell: as it is, or quoted with its quotes doubled (RFC 4180) when it holds a separator, a quote or a line
// break — a regex such as 'a{1,2}' must not add a column.
std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}
}  // namespace

std::string sweep_csv_header() {
  return "index,method,scope,knob_name,knob,lambda,params,pruned,clusters,hw_distortion,mse,"
         "entropy_bits_per_weight,huffman_bits_per_weight,fixed_bits_per_weight,ratio_fixed,ratio_entropy,"
         "ratio_huffman,ratio_file,accuracy,loss,accuracy_finetuned,loss_finetuned,accuracy_validation,"
         "accuracy_finetuned_validation,duplicate,include,exclude";
}

std::string sweep_to_csv(const std::vector<SweepPoint>& points) {
  std::ostringstream os;
  os << sweep_csv_header() << "\n";
  char buf[64];
  auto num = [&](double v) -> std::string {
    if (std::isnan(v)) return "";
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
  };
  for (const auto& p : points) {
    const auto& s = p.stats;
    os << p.index << "," << p.method << "," << p.scope << "," << p.knob_name << "," << num(p.knob) << ","
       << num(s.lambda) << "," << s.params << "," << s.pruned << "," << s.clusters << "," << num(s.hw_distortion)
       << "," << num(s.mse) << "," << num(s.entropy_bits_per_weight) << "," << num(s.huffman_bits_per_weight) << ","
       << num(s.fixed_bits_per_weight) << "," << num(s.ratio_fixed) << "," << num(s.ratio_entropy) << ","
       << num(s.ratio_huffman) << "," << num(s.ratio_file) << "," << num(p.metrics.accuracy) << ","
       << num(p.metrics.loss) << "," << num(p.metrics.accuracy_finetuned) << "," << num(p.metrics.loss_finetuned)
       << "," << num(p.metrics.accuracy_validation) << "," << num(p.metrics.accuracy_finetuned_validation) << ","
       << (p.duplicate_of_previous ? 1 : 0) << "," << csv_cell(p.include) << "," << csv_cell(p.exclude) << "\n";
  }
  return os.str();
}

}  // namespace nq
