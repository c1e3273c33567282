// The Hessian-diagonal driver (host code, written once): OBD recursion (Becker & LeCun 1988; LeCun et al. 1990),
// empirical Fisher, and the exact Gauss-Newton diagonal, averaged over samples in float64 (Becker & LeCun 1988; LeCun et al. 1990).
#include <numeric>

#include "netquant/error.h"
#include "netquant/nn.h"
#include "netquant/progress.h"
#include "nn/data_parallel_net.h"
#include "nn/model_internal.h"

namespace nq {

HessianMethod parse_hessian_method(const std::string& name) {
  if (name == "obd") return HessianMethod::kObd;
  if (name == "fisher") return HessianMethod::kFisher;
  if (name == "ggn") return HessianMethod::kGgn;
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown Hessian method '" << name << "' (expected obd, fisher or ggn)");
}

const char* hessian_method_name(HessianMethod m) {
  switch (m) {
    case HessianMethod::kObd: return "obd";
    case HessianMethod::kFisher: return "fisher";
    case HessianMethod::kGgn: return "ggn";
  }
  return "?";
}

TensorSet hessian_diagonal(const Model& model, const Dataset& data, const HessianParams& p) {
  const nn::NetSpec& spec = model.spec();
  nn::check_dataset(spec, data, "Hessian data");
  NQ_CHECK(p.batch > 0, ErrorCode::kInvalidArgument, "Hessian batch must be positive, got " << p.batch);
  NQ_CHECK(p.samples >= 0, ErrorCode::kInvalidArgument, "Hessian samples must be >= 0, got " << p.samples);
  const Backend b = nn::prepare_backend(p.backend);
  const nn::Buffer<float> weights(b, nn::flatten_params<float>(spec, model.weights(), "model " + model.name()));
  nn::DataParallelNet replicas(spec, b);

  const int64_t n = p.samples > 0 ? std::min(p.samples, data.size()) : data.size();
  const int64_t c = spec.num_classes;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  std::vector<double> sum(static_cast<size_t>(weights.size()), 0.0);
  // Per-sample curvatures (scale 1) summed over the images; the mean over all samples is taken at the end.
  const nn::DataParallelNet::BackwardPass pass = [&](nn::Network<float>& net, const int32_t* labels,
                                                     nn::Buffer<float>& dz, float* out) {
    const int64_t count = net.batch();
    dz.ensure(count * c);
    switch (p.method) {
      case HessianMethod::kObd:
        NQ_NN_OP(b, softmax_ce_hessian, net.probs(), dz.data(), 1.0f, count, c);
        net.backward(nn::BackwardMode::kHessian, dz.data(), out);
        break;
      case HessianMethod::kFisher:
        NQ_NN_OP(b, softmax_ce_backward, net.probs(), labels, dz.data(), 1.0f, count, c);
        net.backward(nn::BackwardMode::kSqGrad, dz.data(), out);
        break;
      case HessianMethod::kGgn:  // J^T (diag(p) - p p^T) J = sum_k (J^T s_k)(J^T s_k)^T, diagonal per sample
        for (int64_t k = 0; k < c; ++k) {
          NQ_NN_OP(b, softmax_ce_factor_column, net.probs(), dz.data(), k, count, c);
          net.backward(nn::BackwardMode::kSqGrad, dz.data(), out);
        }
        break;
    }
  };
  Progress bar(std::string("hessian ") + hessian_method_name(p.method), n);
  if (!p.progress) bar.finish();
  for (int64_t s = 0; s < n; s += p.batch) {
    const int64_t count = std::min(p.batch, n - s);
    replicas.accumulate(weights.data(), data, idx.data() + s, count, pass, sum);
    bar.update(s + count);
  }
  for (double& v : sum) v /= double(n);
  TensorSet result = nn::unflatten_params(spec, sum);
  result.metadata()["netquant.importance"] = hessian_method_name(p.method);
  result.metadata()["netquant.samples"] = std::to_string(n);
  result.metadata()["netquant.model"] = model.name();
  return result;
}

}  // namespace nq
