// Built-in networks (LeNet-300-100, LeNet-5): build, load/save weights, evaluate, train, gradients and
// per-parameter Hessian diagonals (OBD recursion, empirical Fisher, exact Gauss-Newton) for the importance
// weights of the quantizers. CPU backend here; `--backend cuda` dispatches to the CUDA ops when built with them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "netquant/backend.h"
#include "netquant/io.h"
#include "netquant/tensor.h"

namespace nq {

namespace nn {
struct NetSpec;
}

// "lenet300", "lenet5".
std::vector<std::string> builtin_model_names();

// A sequential network and its float32 parameters, named and shaped like PyTorch's state_dict
// (`fc1.weight` [out, in], `conv1.weight` [out, in, kh, kw], `*.bias` [out]), in layer order.
class Model {
 public:
  Model() = default;
  const std::string& name() const;
  int64_t num_parameters() const;
  int64_t num_classes() const;
  std::vector<int64_t> input_shape() const;  // per sample: {channels, height, width}
  std::string describe() const;               // one line per layer

  const TensorSet& weights() const { return weights_; }
  // Replaces all parameters from `weights` (any float dtype, converted to F32). Every parameter must be
  // present with its exact shape; a tensor the model does not have is an error too (wrong model?). kShapeMismatch.
  void set_weights(const TensorSet& weights);

  const nn::NetSpec& spec() const;  // internal description (src/nn/network.h)

 private:
  friend Model build_model(const std::string& name, uint64_t seed);
  friend Model build_model_from_json(const std::string& json_text, uint64_t seed);
  std::shared_ptr<const nn::NetSpec> spec_;
  TensorSet weights_;
};

// LeNet-300-100 (266,610 parameters) or Caffe's LeNet-5 (431,080), initialized like PyTorch's defaults
// (Kaiming-uniform: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))) from `seed`. kInvalidArgument for
// an unknown name. A name ending in ".json" is read as a file in build_model_from_json's format.
Model build_model(const std::string& name, uint64_t seed = 1);
// Any sequential net of Linear/Conv2d/ReLU/MaxPool2d/Flatten layers described in JSON, e.g.
// {"name":"tiny","input":[1,8,8],"classes":3,"layers":[{"type":"conv2d","name":"conv1","out":4,"kernel":3,
//  "stride":1,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},{"type":"flatten"},
//  {"type":"linear","name":"fc1","out":3}]}
Model build_model_from_json(const std::string& json_text, uint64_t seed = 1);

// Weights files by extension (.safetensors or .npy); save writes F32 with metadata netquant.model = name.
void load_weights(Model& model, const std::string& path);
// Weights already read (e.g. a .nq file's, dequantized); errors name `source` ("weights file SOURCE: ...").
// A weight that is not finite is refused (the model is left as it was).
void load_weights(Model& model, const TensorSet& weights, const std::string& source);
// Throws kInvalidArgument at the first float weight that is NaN or Inf: "WHAT: tensor 'x': weight i is not
// finite (nan)".
void check_finite_weights(const TensorSet& weights, const std::string& what);
void save_weights(const Model& model, const std::string& path);

// ---- evaluation -----------------------------------------------------------------------------------------
struct EvalParams {
  int64_t batch = 500;              // images per forward pass
  int64_t limit = 0;                // evaluate only the first `limit` images (0 = all)
  Backend backend = Backend::kAuto;
};
struct EvalResult {
  double loss = 0;      // mean cross-entropy
  double accuracy = 0;  // fraction in [0, 1]
  int64_t samples = 0;
};
EvalResult evaluate(const Model& model, const Dataset& data, const EvalParams& params = {});

// Logits [n, classes] (F32) of the first `n` images (n = 0: all).
Tensor forward_logits(const Model& model, const Dataset& data, int64_t n = 0, Backend backend = Backend::kAuto);

// ---- training -------------------------------------------------------------------------------------------
enum class OptimizerKind { kSgd, kAdam };
OptimizerKind parse_optimizer(const std::string& name);  // "sgd" | "adam"

struct EpochStats {
  int epoch = 0;                 // 1-based
  double train_loss = 0;         // mean over the epoch's mini-batches (weights changing along the way)
  double train_accuracy = 0;
  double test_loss = 0;          // NaN when no test set was given
  double test_accuracy = 0;      // NaN when no test set was given
  double seconds = 0;            // training time of the epoch (test evaluation excluded)
  double images_per_second = 0;  // training throughput
};

struct TrainParams {
  OptimizerKind optimizer = OptimizerKind::kSgd;
  int epochs = 10;
  int64_t batch = 64;
  double lr = 0;                // 0 = default: 0.01 for SGD, 0.001 for Adam
  double momentum = 0.9;        // SGD only
  double weight_decay = 0;      // L2 on all parameters (PyTorch semantics: added to the gradient)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam
  uint64_t seed = 1;            // the epoch shuffles
  // Retraining a pruned net: parameters that are exactly 0 at the start stay 0 (their gradient is masked before
  // every step, so the optimizer's state for them stays 0 and weight decay has nothing to act on). Every other
  // parameter trains as usual. Meant for weights that were pruned to 0; a fresh model's zero biases would stay 0.
  bool keep_zeros = false;
  int64_t train_subset = 0;     // use the first N training images (0 = all)
  int64_t test_subset = 0;      // evaluate on the first N test images (0 = all)
  Backend backend = Backend::kAuto;
  bool progress = true;         // nq::Progress per epoch (a bar on a terminal, a line per 30 s in a log)
  std::function<void(const EpochStats&)> on_epoch;  // called after each epoch (e.g. to print a line)
};

struct TrainResult {
  std::vector<EpochStats> epochs;
  TensorSet adam_v;  // Adam's second-moment estimate v per parameter (Adam only; importance h = sqrt(v))
  double seconds = 0;
};

// Mini-batch training of `model` in place. Deterministic: the same model, data and params give bitwise-identical
// weights for any thread count (seeded shuffles; on the CPU a batch's micro-batches are fixed by its size and the
// network, each GEMM runs on one OpenBLAS thread, and the micro-batches' gradients are summed in order).
TrainResult train(Model& model, const Dataset& train_data, const Dataset* test_data, const TrainParams& params);

// ---- gradients ------------------------------------------------------------------------------------------
// Gradient of the mean cross-entropy over all of `data`, with the parameters taken from `weights` (same names
// and shapes as model.weights(); any float dtype). Returned with the parameters' names and shapes (F32).
// Summed in float64 over chunks of `chunk` images. The hook for fine-tuning quantized weights.
TensorSet compute_gradients(const Model& model, const TensorSet& weights, const Dataset& data,
                            int64_t chunk = 1000, Backend backend = Backend::kAuto);

// ---- Hessian diagonals (importance of each parameter) ---------------------------------------------------
enum class HessianMethod {
  kObd,     // Becker & LeCun / OBD recursion (Gauss-Newton diagonal, off-diagonal terms dropped): ~1 backward
  kFisher,  // empirical Fisher: mean over samples of the squared per-sample gradient
  kGgn,     // exact Gauss-Newton diagonal: classes backward passes with the columns of the softmax-CE factor
};
HessianMethod parse_hessian_method(const std::string& name);  // "obd" | "fisher" | "ggn"
const char* hessian_method_name(HessianMethod method);

struct HessianParams {
  HessianMethod method = HessianMethod::kObd;
  int64_t samples = 1000;  // the first N images of the data (0 = all); Choi et al.: 1,000 ~ 50,000
  int64_t batch = 250;     // images per pass
  Backend backend = Backend::kAuto;
  bool progress = true;
};

// h_i = mean over the samples of d2 loss / d w_i^2 (per method), with the parameters' names and shapes (F32,
// all >= 0), metadata netquant.importance = method and netquant.samples = N. Accumulated in float64.
TensorSet hessian_diagonal(const Model& model, const Dataset& data, const HessianParams& params = {});

}  // namespace nq
