// Host drivers (written once for every backend): evaluation, mini-batch training with SGD/Adam, and the mean-loss
// gradient used by fine-tuning. Determinism: seeded shuffles and fixed-order reductions (see nn.h).
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/cuda_device.h"
#include "netquant/error.h"
#include "netquant/nn.h"
#include "netquant/progress.h"
#include "nn/data_parallel_net.h"
#include "nn/model_internal.h"

namespace nq {
namespace nn {

void check_dataset(const NetSpec& spec, const Dataset& data, const std::string& what) {
  NQ_CHECK(data.size() > 0, ErrorCode::kInvalidArgument, what << " is empty");
  const auto& s = data.images.shape();
  NQ_CHECK(data.images.dtype() == DType::kF32 && s.size() == 4 && s[0] == data.size() && s[1] == spec.in_c &&
               s[2] == spec.in_h && s[3] == spec.in_w,
           ErrorCode::kShapeMismatch,
           what << ": images are " << dtype_name(data.images.dtype()) << " " << shape_to_string(s) << ", model "
                << spec.name << " needs F32 [" << data.size() << ", " << spec.in_c << ", " << spec.in_h << ", "
                << spec.in_w << "]");
  NQ_CHECK(data.num_classes <= spec.num_classes, ErrorCode::kShapeMismatch,
           what << " has " << data.num_classes << " classes, model " << spec.name << " has " << spec.num_classes);
}

template <class T>
void gather_batch(const NetSpec& spec, const Dataset& data, const int64_t* idx, int64_t count, std::vector<T>& x,
                  std::vector<int32_t>& y) {
  const int64_t size = spec.in_c * spec.in_h * spec.in_w;
  const float* images = data.images.data_as<float>();
  x.resize(static_cast<size_t>(count * size));
  y.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t j = idx[i];
    NQ_ASSERT(j >= 0 && j < data.size());
    const int32_t label = data.labels[static_cast<size_t>(j)];
    NQ_CHECK(label >= 0 && label < spec.num_classes, ErrorCode::kBadFile,
             "label " << label << " of image " << j << " is outside [0, " << spec.num_classes << ")");
    y[static_cast<size_t>(i)] = label;
    for (int64_t k = 0; k < size; ++k) x[static_cast<size_t>(i * size + k)] = static_cast<T>(images[j * size + k]);
  }
}

template void gather_batch<float>(const NetSpec&, const Dataset&, const int64_t*, int64_t, std::vector<float>&,
                                  std::vector<int32_t>&);
template void gather_batch<double>(const NetSpec&, const Dataset&, const int64_t*, int64_t, std::vector<double>&,
                                   std::vector<int32_t>&);

Backend prepare_backend(Backend requested) {
  const Backend b = resolve_nn_backend(requested);
  if (b == Backend::kCpu) cpu::sync_blas_threads();
  // The CUDA device is per host thread: a caller's thread (a Python thread, an OpenMP worker) other than the one
  // that chose the device would otherwise run the network on device 0.
  if (b == Backend::kCuda) nq::cuda::bind_thread_device();
  return b;
}

EvalResult evaluate_net(DataParallelNet& replicas, const float* weights, const Dataset& data, int64_t limit,
                        int64_t batch) {
  NQ_CHECK(batch > 0, ErrorCode::kInvalidArgument, "evaluation batch must be positive, got " << batch);
  const int64_t n = limit > 0 ? std::min(limit, data.size()) : data.size();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  double loss = 0, correct = 0;
  for (int64_t b = 0; b < n; b += batch)
    replicas.evaluate(weights, data, idx.data() + b, std::min(batch, n - b), &loss, &correct);
  return {loss / double(n), correct / double(n), n};
}

namespace {

uint64_t next_random(uint64_t& state) {  // splitmix64: portable, unlike std::shuffle's distributions
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace
}  // namespace nn

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adam") return OptimizerKind::kAdam;
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown optimizer '" << name << "' (expected sgd or adam)");
}

EvalResult evaluate(const Model& model, const Dataset& data, const EvalParams& params) {
  nn::check_dataset(model.spec(), data, "evaluation data");
  const Backend backend = nn::prepare_backend(params.backend);
  const nn::Buffer<float> weights(
      backend, nn::flatten_params<float>(model.spec(), model.weights(), "model " + model.name()));
  nn::DataParallelNet replicas(model.spec(), backend);
  return nn::evaluate_net(replicas, weights.data(), data, params.limit, params.batch);
}

Tensor forward_logits(const Model& model, const Dataset& data, int64_t n, Backend backend) {
  nn::check_dataset(model.spec(), data, "data");
  n = n > 0 ? std::min(n, data.size()) : data.size();
  nn::Network<float> net(model.spec(), nn::prepare_backend(backend));
  net.set_weights(nn::flatten_params<float>(model.spec(), model.weights(), "model " + model.name()));
  const int64_t c = model.num_classes();
  Tensor out("logits", DType::kF32, {n, c});
  float* dst = out.mutable_data_as<float>();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  nn::BatchLoader loader(net.backend());
  constexpr int64_t kChunk = 500;
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t count = std::min(kChunk, n - b);
    loader.load(net.spec(), data, idx.data() + b, count);
    net.forward(loader.x.data(), loader.y.data(), count);
    NQ_NN_OP(net.backend(), buffer_download, dst + b * c, net.logits(), count * c);
  }
  return out;
}

TrainResult train(Model& model, const Dataset& train_data, const Dataset* test_data, const TrainParams& p) {
  const nn::NetSpec& spec = model.spec();
  nn::check_dataset(spec, train_data, "training data");
  if (test_data) nn::check_dataset(spec, *test_data, "test data");
  NQ_CHECK(p.epochs >= 0, ErrorCode::kInvalidArgument, "epochs must be >= 0, got " << p.epochs);
  NQ_CHECK(p.batch > 0, ErrorCode::kInvalidArgument, "batch must be positive, got " << p.batch);
  NQ_CHECK(p.lr >= 0 && std::isfinite(p.lr), ErrorCode::kInvalidArgument, "lr must be >= 0, got " << p.lr);
  // Momentum 1 or more never decays the velocity (the steps grow without bound); a negative decay grows weights.
  NQ_CHECK(p.momentum >= 0 && p.momentum < 1, ErrorCode::kInvalidArgument,
           "momentum must be in [0, 1), got " << p.momentum);
  NQ_CHECK(p.weight_decay >= 0 && std::isfinite(p.weight_decay), ErrorCode::kInvalidArgument,
           "weight decay must be >= 0, got " << p.weight_decay);
  NQ_CHECK(p.beta1 >= 0 && p.beta1 < 1 && p.beta2 >= 0 && p.beta2 < 1, ErrorCode::kInvalidArgument,
           "Adam's betas must be in [0, 1), got " << p.beta1 << " and " << p.beta2);
  NQ_CHECK(p.eps > 0 && std::isfinite(p.eps), ErrorCode::kInvalidArgument, "Adam's eps must be > 0, got " << p.eps);
  const bool adam = p.optimizer == OptimizerKind::kAdam;
  const double lr = p.lr > 0 ? p.lr : (adam ? 1e-3 : 1e-2);

  const Backend backend = nn::prepare_backend(p.backend);
  std::vector<float> start = nn::flatten_params<float>(spec, model.weights(), "model " + model.name());
  nn::Buffer<float> weights(backend, start);  // updated in place by the optimizer; the replicas read it
  const int64_t np = weights.size();
  nn::DataParallelNet replicas(spec, backend);
  nn::Buffer<float> grad(backend), m1(backend), m2(backend);
  grad.resize(np);
  m1.resize(np);  // SGD momentum, or Adam's first moment
  if (adam) m2.resize(np);
  // keep_zeros: 1 where the starting parameter is non-zero, else 0 (-0.0 counts as zero), made from the host copy.
  nn::Buffer<float> keep(backend);
  if (p.keep_zeros) {
    for (float& v : start) v = v != 0.0f ? 1.0f : 0.0f;
    keep.upload(start.data(), static_cast<int64_t>(start.size()));
  }

  const int64_t n = p.train_subset > 0 ? std::min(p.train_subset, train_data.size()) : train_data.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  uint64_t rng = p.seed ^ 0x6E65747175616E74ull;  // "netquant"
  TrainResult result;
  int64_t step = 0;
  const auto t_start = std::chrono::steady_clock::now();
  for (int epoch = 1; epoch <= p.epochs; ++epoch) {
    for (int64_t i = n - 1; i > 0; --i)  // Fisher-Yates with a portable generator
      std::swap(order[size_t(i)], order[size_t(nn::next_random(rng) % uint64_t(i + 1))]);
    Progress bar("epoch " + std::to_string(epoch) + "/" + std::to_string(p.epochs), n);
    if (!p.progress) bar.finish();
    const auto t0 = std::chrono::steady_clock::now();
    double loss = 0, correct = 0;
    for (int64_t b = 0; b < n; b += p.batch) {
      const int64_t count = std::min(p.batch, n - b);
      replicas.gradient(weights.data(), train_data, order.data() + b, count, grad.data(), &loss, &correct);
      ++step;
      if (p.keep_zeros) NQ_NN_OP(backend, mask_gradient, grad.data(), keep.data(), np);
      if (adam)
        NQ_NN_OP(backend, adam_step, weights.data(), grad.data(), m1.data(), m2.data(), np, lr, p.beta1,
                 p.beta2, p.eps, p.weight_decay, step);
      else
        NQ_NN_OP(backend, sgd_step, weights.data(), grad.data(), m1.data(), np, lr, p.momentum,
                 p.weight_decay);
      char status[64];
      std::snprintf(status, sizeof status, "loss %.4f acc %.2f%%", loss / double(b + count),
                    100.0 * correct / double(b + count));
      bar.update(b + count, status);
    }
    bar.finish();
    EpochStats st;
    st.epoch = epoch;
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.train_loss = loss / double(n);
    st.train_accuracy = correct / double(n);
    st.images_per_second = st.seconds > 0 ? double(n) / st.seconds : 0;
    st.test_loss = st.test_accuracy = std::numeric_limits<double>::quiet_NaN();
    if (test_data) {
      const EvalResult e = nn::evaluate_net(replicas, weights.data(), *test_data, p.test_subset, 500);
      st.test_loss = e.loss;
      st.test_accuracy = e.accuracy;
    }
    result.epochs.push_back(st);
    if (p.on_epoch) p.on_epoch(st);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  model.set_weights(nn::unflatten_params(spec, weights.download()));
  if (adam) {
    result.adam_v = nn::unflatten_params(spec, m2.download());
    result.adam_v.metadata()["netquant.importance"] = "adam_v";
    result.adam_v.metadata()["netquant.model"] = model.name();
  }
  return result;
}

namespace nn {

TensorSet compute_gradients(DataParallelNet& replicas, const TensorSet& weights, const Dataset& data,
                            int64_t chunk) {
  const NetSpec& spec = replicas.spec();
  NQ_CHECK(chunk > 0, ErrorCode::kInvalidArgument, "gradient chunk must be positive, got " << chunk);
  const Backend b = replicas.backend();
  const Buffer<float> w(b, flatten_params<float>(spec, weights, "weights"));
  const int64_t n = data.size();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  std::vector<double> sum(static_cast<size_t>(w.size()), 0.0);
  // Scale 1/n (not 1/count): the chunks' gradients then add up to the mean over all of `data`.
  const DataParallelNet::BackwardPass pass = [&](Network<float>& net, const int32_t* labels, Buffer<float>& dz,
                                                 float* out) {
    dz.ensure(net.batch() * spec.num_classes);
    NQ_NN_OP(b, softmax_ce_backward, net.probs(), labels, dz.data(), float(1.0 / double(n)), net.batch(),
             spec.num_classes);
    net.backward(BackwardMode::kGradient, dz.data(), out);
  };
  for (int64_t s = 0; s < n; s += chunk)
    replicas.accumulate(w.data(), data, idx.data() + s, std::min(chunk, n - s), pass, sum);
  return unflatten_params(spec, sum);
}

}  // namespace nn

TensorSet compute_gradients(const Model& model, const TensorSet& weights, const Dataset& data, int64_t chunk,
                            Backend backend) {
  nn::check_dataset(model.spec(), data, "gradient data");
  nn::DataParallelNet replicas(model.spec(), nn::prepare_backend(backend));
  return nn::compute_gradients(replicas, weights, data, chunk);
}

}  // namespace nq
