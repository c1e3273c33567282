// LC quantization driver (Carreira-Perpiñán & Idelbayev 2017): direct compression Θ = Π(w̄),
// λ = 0, then T rounds of L step (Nesterov SGD on loss + (μ/2)‖w − Δ(Θ) − λ/μ‖²), C step Θ = Π(w − λ/μ) and
// multiplier update λ ← λ − μ(w − Δ(Θ)), ending with w = Δ(Θ).
#include "netquant/lc.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/parallel_for.h"
#include "netquant/error.h"
#include "netquant/pipeline.h"
#include "netquant/progress.h"
#include "nn/data_parallel_net.h"
#include "nn/model_internal.h"

namespace nq {

double lc_penalty(const float* w, const float* delta, const float* lambda, double mu, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = (double(w[i]) - double(delta[i])) - (lambda ? double(lambda[i]) / mu : 0.0);
    sum += d * d;
  }
  return 0.5 * mu * sum;
}

void lc_add_penalty_gradient(const float* w, const float* delta, const float* lambda, double mu, float* grad,
                             size_t n) {
  // μ(w − Δ − λ/μ) written as μ(w − Δ) − λ: no division, so a tiny μ with λ = 0 stays exact.
  for (size_t i = 0; i < n; ++i)
    grad[i] += static_cast<float>(mu * (double(w[i]) - double(delta[i])) - (lambda ? double(lambda[i]) : 0.0));
}

QuantizedModel lc_c_step(const TensorSet& w, const TensorSet* lambda, double mu, const TensorSet* importance,
                         const ModelQuantizeParams& params) {
  if (!lambda) return quantize_model(w, importance, params);
  NQ_CHECK(mu > 0 && std::isfinite(mu), ErrorCode::kInvalidArgument, "LC C step: μ must be finite and > 0, got " << mu);
  TensorSet shifted;
  shifted.metadata() = w.metadata();
  for (const Tensor& t : w) {
    const Tensor* l = lambda->find(t.name());
    NQ_CHECK(l != nullptr, ErrorCode::kShapeMismatch, "LC C step: no multipliers for tensor '" << t.name() << "'");
    NQ_CHECK(l->numel() == t.numel(), ErrorCode::kShapeMismatch,
             "LC C step: multipliers of '" << t.name() << "' have " << l->numel() << " values, the tensor "
                                            << t.numel());
    std::vector<float> v = t.to_f32();
    const std::vector<float> lv = l->to_f32();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(double(v[i]) - double(lv[i]) / mu);
    shifted.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  return quantize_model(shifted, importance, params);
}

namespace {

struct Range {  // one penalized (quantized) tensor in the flat parameter vector
  int64_t offset = 0, numel = 0;
};

std::vector<Range> penalized_ranges(const nn::NetSpec& spec, const std::vector<std::string>& names) {
  std::vector<Range> out;
  const std::vector<nn::ParamInfo> layout = nn::param_layout(spec);
  for (const std::string& name : names) {
    auto it = std::find_if(layout.begin(), layout.end(), [&](const nn::ParamInfo& p) { return p.name == name; });
    NQ_CHECK(it != layout.end(), ErrorCode::kShapeMismatch,
             "LC: tensor '" << name << "' is not a parameter of network '" << spec.name << "'");
    out.push_back({it->offset, it->numel});
  }
  return out;
}

double violation_norm(const std::vector<float>& w, const std::vector<float>& delta, const std::vector<Range>& ranges,
                      double* w_norm) {
  double d2 = 0, w2 = 0;
  for (const Range& r : ranges)
    for (int64_t i = r.offset; i < r.offset + r.numel; ++i) {
      const double d = double(w[size_t(i)]) - double(delta[size_t(i)]);
      d2 += d * d;
      w2 += double(w[size_t(i)]) * double(w[size_t(i)]);
    }
  if (w_norm) *w_norm = std::sqrt(w2);
  return std::sqrt(d2);
}

EvalResult evaluate_weights(const Model& model, const TensorSet& weights, const Dataset& data, Backend backend) {
  Model m = model;
  m.set_weights(weights);
  EvalParams ep;
  ep.backend = backend;
  return evaluate(m, data, ep);
}

uint64_t next_random(uint64_t& state) {  // splitmix64: portable shuffles
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void check_params(const LcParams& p) {
  NQ_CHECK(p.mu0 > 0 && std::isfinite(p.mu0), ErrorCode::kInvalidArgument, "LC: mu0 must be > 0, got " << p.mu0);
  // The penalty must grow (or hold, a = 1) for the iterates to approach the feasible set: a < 1 lets μ fade to 0.
  NQ_CHECK(p.mu_factor >= 1 && std::isfinite(p.mu_factor), ErrorCode::kInvalidArgument,
           "LC: mu-factor must be >= 1 (μ_t = μ0·a^t must not shrink), got " << p.mu_factor);
  NQ_CHECK(p.steps >= 0 && p.epochs_per_step >= 0, ErrorCode::kInvalidArgument,
           "LC: steps and epochs per step must be >= 0, got " << p.steps << " and " << p.epochs_per_step);
  // The penalty's gradient μ(w − Δ) is float32: a μ near float's range (3.4e38) turns it into Inf and the weights
  // into NaN. 1e30 is far beyond any useful schedule and leaves room for |w − Δ| up to 1e8.
  constexpr double kMaxMu = 1e30;
  const double last_mu = p.steps > 0 ? p.mu0 * std::pow(p.mu_factor, p.steps - 1) : p.mu0;
  NQ_CHECK(last_mu <= kMaxMu, ErrorCode::kInvalidArgument,
           "LC: the last step's mu = mu0 * mu-factor^(steps - 1) = " << last_mu << " exceeds " << kMaxMu
               << " (float32 gradients overflow); lower --mu0, --mu-factor or --steps");
  NQ_CHECK(p.lr > 0 && std::isfinite(p.lr), ErrorCode::kInvalidArgument, "LC: lr must be > 0, got " << p.lr);
  NQ_CHECK(p.lr_decay > 0 && p.lr_decay <= 1, ErrorCode::kInvalidArgument,
           "LC: lr decay must be in (0, 1], got " << p.lr_decay);
  NQ_CHECK(p.momentum >= 0 && p.momentum < 1, ErrorCode::kInvalidArgument,
           "LC: momentum must be in [0, 1), got " << p.momentum);
  NQ_CHECK(p.batch > 0, ErrorCode::kInvalidArgument, "LC: batch must be > 0, got " << p.batch);
}

}  // namespace

LcObjective lc_l_objective(const Model& model, const TensorSet& w, const TensorSet& delta, const TensorSet& lambda,
                           const std::vector<std::string>& penalized, double mu, const Dataset& data,
                           Backend backend) {
  const nn::NetSpec& spec = model.spec();
  const EvalResult e = evaluate_weights(model, w, data, backend);
  LcObjective out;
  out.value = e.loss;
  out.gradient = compute_gradients(model, w, data, std::max<int64_t>(1, data.size()), backend);
  const std::vector<float> wf = nn::flatten_params<float>(spec, w, "LC weights");
  const std::vector<float> df = nn::flatten_params<float>(spec, delta, "LC Δ(Θ)");
  const std::vector<float> lf = nn::flatten_params<float>(spec, lambda, "LC multipliers");
  std::vector<float> g = nn::flatten_params<float>(spec, out.gradient, "LC gradient");
  for (const Range& r : penalized_ranges(spec, penalized)) {
    const size_t o = size_t(r.offset), n = size_t(r.numel);
    out.value += lc_penalty(wf.data() + o, df.data() + o, lf.data() + o, mu, n);
    lc_add_penalty_gradient(wf.data() + o, df.data() + o, lf.data() + o, mu, g.data() + o, n);
  }
  out.gradient = nn::unflatten_params(spec, g);
  return out;
}

LcResult lc_compress(const Model& model, const Dataset& train, const Dataset* test, const TensorSet* importance,
                     const LcParams& p) {
  check_params(p);
  const auto t_start = std::chrono::steady_clock::now();
  const nn::NetSpec& spec = model.spec();
  const Dataset data = dataset_head(train, p.train_subset);
  nn::check_dataset(spec, data, "LC training data");
  Dataset test_data;
  if (test) {
    test_data = dataset_head(*test, p.test_subset);
    nn::check_dataset(spec, test_data, "LC test data");
  }
  const Backend backend = nn::prepare_backend(p.backend);
  const double nan = std::numeric_limits<double>::quiet_NaN();

  // Direct compression: Θ = Π(w̄), λ = 0.
  LcResult result;
  std::vector<float> w = nn::flatten_params<float>(spec, model.weights(), "model " + model.name());
  const int64_t np = static_cast<int64_t>(w.size());
  QuantizedModel q = lc_c_step(model.weights(), nullptr, 1.0, importance, p.compress);
  result.direct = q;
  std::vector<std::string> names;
  for (const QuantizedTensor& t : q.tensors)
    if (t.quantized) names.push_back(t.name);
  NQ_CHECK(!names.empty(), ErrorCode::kInvalidArgument, "LC: the C step quantizes no tensor (all skipped?)");
  const std::vector<Range> ranges = penalized_ranges(spec, names);
  std::vector<float> delta = nn::flatten_params<float>(spec, q.dequantize(), "Δ(Θ)");
  std::vector<float> lambda(size_t(np), 0.0f);

  auto record = [&](int step, double mu, double lr, double train_loss, double step_seconds, bool eval_w) {
    LcStepStats s;
    s.step = step;
    s.mu = mu;
    s.lr = lr;
    double w_norm = 0;
    s.violation = violation_norm(w, delta, ranges, &w_norm);
    s.relative_violation = w_norm > 0 ? s.violation / w_norm : 0;
    s.penalty = 0;
    if (mu > 0)
      for (const Range& r : ranges)
        s.penalty += lc_penalty(w.data() + r.offset, delta.data() + r.offset, lambda.data() + r.offset, mu,
                                size_t(r.numel));
    s.train_loss = train_loss;
    s.test_loss = s.test_accuracy = s.test_accuracy_w = nan;
    if (test) {
      const EvalResult eq = evaluate_weights(model, q.dequantize(), test_data, backend);
      s.test_loss = eq.loss;
      s.test_accuracy = eq.accuracy;
      if (eval_w) s.test_accuracy_w = evaluate_weights(model, nn::unflatten_params(spec, w), test_data, backend).accuracy;
    }
    s.codebook = q.codebooks.empty() ? std::vector<float>{} : q.codebooks.front();
    s.seconds = step_seconds;
    result.history.push_back(s);
    if (p.on_step) p.on_step(result.history.back());
  };
  record(-1, 0.0, 0.0, nan, std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(), false);

  nn::DataParallelNet replicas(spec, backend);
  nn::Buffer<float> weights(backend), grad(backend);
  grad.resize(np);
  std::vector<float> velocity(static_cast<size_t>(np));
  const int64_t n = data.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  uint64_t rng = p.seed ^ 0x4C43616C676FULL;  // "LCalgo"
  const int64_t batches = (n + p.batch - 1) / p.batch;
  int64_t epochs_done = 0;

  for (int t = 0; t < p.steps; ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    const double mu = p.mu0 * std::pow(p.mu_factor, t);
    // L step: w ← argmin L(w) + (μ/2)‖w − Δ(Θ) − λ/μ‖², warm-started from the current w; fresh momentum.
    std::fill(velocity.begin(), velocity.end(), 0.0f);
    double first_lr = 0, last_epoch_loss = nan;
    Progress bar("LC step " + std::to_string(t + 1) + "/" + std::to_string(p.steps), batches * p.epochs_per_step);
    if (!p.progress) bar.finish();
    for (int e = 0; e < p.epochs_per_step; ++e, ++epochs_done) {
      // lr <= 1/μ: a larger step would overshoot the penalty's own minimum (its curvature is μ).
      const double lr = std::min(p.lr * std::pow(p.lr_decay, double(epochs_done)), 1.0 / mu);
      if (e == 0) first_lr = lr;
      for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(next_random(rng) % uint64_t(i + 1))]);
      double loss_sum = 0;
      for (int64_t b = 0; b < batches; ++b) {
        const int64_t lo = b * p.batch, count = std::min(p.batch, n - lo);
        weights.upload(w.data(), np);
        replicas.gradient(weights.data(), data, order.data() + lo, count, grad.data(), &loss_sum, nullptr);
        std::vector<float> g = grad.download();
        for (const Range& r : ranges)
          lc_add_penalty_gradient(w.data() + r.offset, delta.data() + r.offset, lambda.data() + r.offset, mu,
                                  g.data() + r.offset, size_t(r.numel));
        // Nesterov momentum, PyTorch's form: v ← m v + g; w ← w − lr (g + m v).
        const float m = float(p.momentum), lrf = float(lr);
        // Elementwise, in fixed chunks: the same bits for any thread count.
        parallel_for_chunks(np, kElementwiseChunk, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            float& v = velocity[size_t(i)];
            v = m * v + g[size_t(i)];
            w[size_t(i)] -= lrf * (g[size_t(i)] + m * v);
          }
        });
        bar.update(e * batches + b + 1);
      }
      last_epoch_loss = loss_sum / double(n);
      NQ_CHECK(std::isfinite(last_epoch_loss), ErrorCode::kInvalidArgument,
               "LC step " << t << ": the training loss diverged (lr " << lr << ", μ " << mu << "); lower --lr");
    }
    bar.finish();
    // C step: Θ ← Π(w − λ/μ).
    // Warm-started from the previous codebooks (k-means / ECSQ C steps), as Carreira-Perpiñán & Idelbayev do.
    const TensorSet lambda_set = nn::unflatten_params(spec, lambda);
    ModelQuantizeParams warm = p.compress;
    warm.initial_codebooks = q.codebooks;
    q = lc_c_step(nn::unflatten_params(spec, w), &lambda_set, mu, importance, warm);
    delta = nn::flatten_params<float>(spec, q.dequantize(), "Δ(Θ)");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    record(t, mu, first_lr, last_epoch_loss, seconds, true);
    // Multipliers: λ ← λ − μ(w − Δ(Θ)).
    for (const Range& r : ranges)
      for (int64_t i = r.offset; i < r.offset + r.numel; ++i)
        lambda[size_t(i)] = static_cast<float>(double(lambda[size_t(i)]) - mu * (double(w[size_t(i)]) - double(delta[size_t(i)])));
  }
  // End with w = Δ(Θ): the compressed model itself (tensors kept in float carry w as it stood at the C step).
  result.compressed = std::move(q);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return result;
}

}  // namespace nq
