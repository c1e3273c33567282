// Quantized-forward training after Park, Ahn & Yoo (CVPR 2017): weighted-entropy (or uniform) weights re-quantized
// from a full-precision copy every step, and log-domain (or linear) activation quantizers after each ReLU, both with
// straight-through gradients.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/parallel_for.h"
#include "netquant/activation_quant.h"
#include "netquant/error.h"
#include "netquant/lc.h"
#include "netquant/pipeline.h"
#include "netquant/progress.h"
#include "nn/data_parallel_net.h"
#include "nn/model_internal.h"

namespace nq {

ActivationQuant parse_activation_quant(const std::string& name) {
  if (name == "none") return ActivationQuant::kNone;
  if (name == "wentropy") return ActivationQuant::kLogWeightedEntropy;
  if (name == "linear") return ActivationQuant::kLinear;
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown activation quantizer '" << name << "' (none, wentropy or linear)");
}

const char* activation_quant_name(ActivationQuant kind) {
  switch (kind) {
    case ActivationQuant::kNone: return "none";
    case ActivationQuant::kLogWeightedEntropy: return "wentropy";
    case ActivationQuant::kLinear: return "linear";
  }
  return "?";
}

namespace {

// One fitted quantizer per ReLU layer, applied in place through Network's activation hook.
struct ActivationQuantizers {
  ActivationQuant kind = ActivationQuant::kNone;
  std::vector<LogQuantizer> log;
  std::vector<LinearQuantizer> linear;

  void apply(int relu, float* x, int64_t n) const {
    if (kind == ActivationQuant::kLogWeightedEntropy) {
      const LogQuantizer& q = log.at(size_t(relu));
      std::vector<float> levels(size_t(q.num_levels()));  // cached: exp2 once per level, not per value
      for (int i = 0; i < q.num_levels(); ++i) levels[size_t(i)] = float(q.level(i));
      for (int64_t i = 0; i < n; ++i) {
        const int idx = q.index(x[i]);
        x[i] = idx < 0 ? 0.0f : levels[size_t(idx)];
      }
    } else if (kind == ActivationQuant::kLinear) {
      const LinearQuantizer& q = linear.at(size_t(relu));
      for (int64_t i = 0; i < n; ++i) x[i] = q.quantize(x[i]);
    }
  }
  std::vector<std::string> describe() const {
    std::vector<std::string> out;
    for (const LogQuantizer& q : log)
      out.push_back("log: fsr " + std::to_string(q.fsr) + " step " + std::to_string(q.step) + " (r0 " +
                    std::to_string(q.level(0)) + ", rmax " + std::to_string(q.level(q.num_levels() - 1)) + ")");
    for (const LinearQuantizer& q : linear) out.push_back("linear: delta " + std::to_string(q.delta));
    return out;
  }
};

// Fits the activation quantizers on the first `samples` images with the network's current weights (no hook).
ActivationQuantizers calibrate(nn::Network<float>& net, const Dataset& data, int64_t samples, ActivationQuant kind,
                               int bits) {
  ActivationQuantizers q;
  q.kind = kind;
  if (kind == ActivationQuant::kNone) return q;
  std::vector<LogHistogram> hist;
  net.set_activation_hook([&](int relu, float* x, int64_t n) {
    if (size_t(relu) >= hist.size()) hist.resize(size_t(relu) + 1);
    hist[size_t(relu)].add(x, size_t(n));
  });
  const int64_t n = std::min(samples, data.size());
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  nn::BatchLoader b(net.backend());
  nn::cpu::SingleThreadedBlas one_blas_thread(/*serial_caller=*/true);  // the same histograms for any --threads
  for (int64_t s = 0; s < n; s += 256) {
    const int64_t count = std::min<int64_t>(256, n - s);
    b.load(net.spec(), data, idx.data() + s, count);
    net.forward(b.x.data(), b.y.data(), count);
  }
  net.set_activation_hook(nullptr);
  for (const LogHistogram& h : hist) {
    if (kind == ActivationQuant::kLogWeightedEntropy) q.log.push_back(fit_log_quantizer(h, bits));
    else q.linear.push_back(fit_linear_quantizer(h, bits));
  }
  return q;
}

// Test accuracy of the network's current weights (host memory) on the replicas, with their activation hook.
double accuracy(nn::DataParallelNet& replicas, const nn::Network<float>& net, const Dataset& data) {
  return nn::evaluate_net(replicas, net.weights().data(), data, 0, 500).accuracy;
}

}  // namespace

QuantTrainResult quantized_train(const Model& model, const Dataset& train_all, const Dataset& test_all,
                                 const QuantTrainParams& p) {
  NQ_CHECK(p.weight_method == Method::kWentropy || p.weight_method == Method::kInt, ErrorCode::kInvalidArgument,
           "quantized training: weight method must be wentropy or int, got " << method_traits(p.weight_method).name);
  NQ_CHECK(p.weight_bits >= 1 && p.weight_bits <= 16 && p.activation_bits >= 1 && p.activation_bits <= 16,
           ErrorCode::kInvalidArgument,
           "quantized training: --weight-bits and --act-bits must be in 1..16, got " << p.weight_bits << " and "
                                                                                    << p.activation_bits);
  NQ_CHECK(p.weight_method != Method::kInt || p.weight_bits >= 2, ErrorCode::kInvalidArgument,
           "quantized training: the symmetric int grid needs >= 2 bits");
  NQ_CHECK(p.epochs >= 0, ErrorCode::kInvalidArgument, "quantized training: --epochs must be >= 0, got " << p.epochs);
  NQ_CHECK(p.batch > 0, ErrorCode::kInvalidArgument, "quantized training: --batch must be > 0, got " << p.batch);
  NQ_CHECK(p.lr > 0 && std::isfinite(p.lr), ErrorCode::kInvalidArgument,
           "quantized training: --lr must be > 0, got " << p.lr);
  NQ_CHECK(p.requantize_every >= 1, ErrorCode::kInvalidArgument,
           "quantized training: --requantize-every must be >= 1, got " << p.requantize_every);
  NQ_CHECK(p.calibration_samples > 0, ErrorCode::kInvalidArgument,
           "quantized training: --calibration must be > 0, got " << p.calibration_samples);
  const auto t_start = std::chrono::steady_clock::now();
  const nn::NetSpec& spec = model.spec();
  const Dataset train = dataset_head(train_all, p.train_subset);
  const Dataset test = dataset_head(test_all, p.test_subset);
  nn::check_dataset(spec, train, "training data");
  nn::check_dataset(spec, test, "test data");
  nn::cpu::sync_blas_threads();  // CPU only: the activation hook writes host memory

  ModelQuantizeParams mq;
  mq.quant.method = p.weight_method;
  mq.quant.k = 1 << p.weight_bits;
  mq.quant.int_bits = p.weight_bits;
  mq.quant.backend = Backend::kCpu;
  mq.scope = parse_scope("tensor");
  mq.skip_1d = true;
  auto quantize_flat = [&](const std::vector<float>& w, QuantizedModel* out) {
    QuantizedModel q = quantize_model(nn::unflatten_params(spec, w), nullptr, mq);
    std::vector<float> flat = nn::flatten_params<float>(spec, q.dequantize(), "quantized weights");
    if (out) *out = std::move(q);
    return flat;
  };

  QuantTrainResult result;
  std::vector<float> w = nn::flatten_params<float>(spec, model.weights(), "model " + model.name());
  const int64_t np = int64_t(w.size());
  nn::Network<float> net(spec, Backend::kCpu);  // holds the weights evaluated; calibrates serially (its hook
                                                // fills shared histograms)
  nn::DataParallelNet replicas(spec, Backend::kCpu);  // training and evaluation
  net.set_weights(w);
  result.float_accuracy = accuracy(replicas, net, test);

  net.set_weights(quantize_flat(w, nullptr));
  ActivationQuantizers aq = calibrate(net, train, p.calibration_samples, p.activation, p.activation_bits);
  replicas.set_activation_hook([&aq](int relu, float* x, int64_t cnt) { aq.apply(relu, x, cnt); });
  result.accuracy_before = accuracy(replicas, net, test);

  std::vector<double> m(size_t(np), 0.0), v(size_t(np), 0.0);
  const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  nn::Buffer<float> grad(Backend::kCpu);
  grad.resize(np);
  const int64_t n = train.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  uint64_t state = p.seed * 0x9E3779B97F4A7C15ull + 1;
  int64_t step = 0;
  std::vector<float> wq;
  for (int epoch = 0; epoch < p.epochs; ++epoch) {
    for (int64_t i = n - 1; i > 0; --i) {  // xorshift64* Fisher-Yates: portable
      state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
      std::swap(order[size_t(i)], order[size_t((state * 2685821657736338717ull) % uint64_t(i + 1))]);
    }
    Progress bar("quantized training epoch " + std::to_string(epoch + 1), n);
    if (!p.progress) bar.finish();
    double loss = 0;
    for (int64_t s = 0; s < n; s += p.batch) {
      const int64_t count = std::min(p.batch, n - s);
      if (step % p.requantize_every == 0) wq = quantize_flat(w, nullptr);
      // Straight-through: the gradient at the quantized weights updates the full-precision copy.
      replicas.gradient(wq.data(), train, order.data() + s, count, grad.data(), &loss, nullptr);
      ++step;
      const float* g = grad.data();
      const double bc1 = 1 - std::pow(beta1, double(step)), bc2 = 1 - std::pow(beta2, double(step));
      // Elementwise, in fixed chunks: the same bits for any thread count.
      parallel_for_chunks(np, kElementwiseChunk, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          m[size_t(i)] = beta1 * m[size_t(i)] + (1 - beta1) * g[i];
          v[size_t(i)] = beta2 * v[size_t(i)] + (1 - beta2) * double(g[i]) * g[i];
          w[size_t(i)] -= float(p.lr * (m[size_t(i)] / bc1) / (std::sqrt(v[size_t(i)] / bc2) + eps));
        }
      });
      bar.update(s + count);
    }
    bar.finish();
    result.epoch_loss.push_back(loss / double(n));
  }
  // Final: quantize the trained weights, re-fit the activation quantizers to them, evaluate.
  net.set_weights(quantize_flat(w, &result.weights));
  aq = calibrate(net, train, p.calibration_samples, p.activation, p.activation_bits);  // replicas' hook reads aq
  result.accuracy_after = accuracy(replicas, net, test);
  result.activation_quantizers = aq.describe();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return result;
}

}  // namespace nq
