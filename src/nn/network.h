// Internal: sequential network description and the host driver that runs its layers' ops on one backend.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/nn_ops.h"

namespace nq::nn {

enum class LayerKind { kLinear, kConv2d, kReLU, kMaxPool2d, kFlatten };

struct LayerSpec {
  LayerKind kind = LayerKind::kReLU;
  std::string name;      // parameter prefix ("fc1" -> fc1.weight, fc1.bias); empty for parameter-free layers
  int64_t out = 0;       // Linear: out features; Conv2d: out channels
  int64_t kernel = 0;    // Conv2d / MaxPool2d: square window
  int64_t stride = 1;    // Conv2d / MaxPool2d (pooling: 0 = kernel)
  int64_t padding = 0;   // Conv2d only
};

struct NetSpec {
  std::string name;
  int64_t in_c = 1, in_h = 28, in_w = 28;  // per-sample input
  int64_t num_classes = 10;
  std::vector<LayerSpec> layers;
};

struct ParamInfo {
  std::string name;              // "fc1.weight"
  std::vector<int64_t> shape;    // PyTorch layout
  int64_t offset = 0;            // into the flat parameter vector
  int64_t numel = 0;
  int64_t fan_in = 0;            // for PyTorch's default init bound 1/sqrt(fan_in)
};

// Parameters in layer order (weight, then bias), with shapes checked against the data flow; throws
// kInvalidArgument for an inconsistent spec (e.g. a Linear whose input does not match, an empty output).
std::vector<ParamInfo> param_layout(const NetSpec& spec);
int64_t param_count(const NetSpec& spec);

// What a backward pass computes for the parameters.
enum class BackwardMode {
  kGradient,  // out = dL/dtheta (overwritten) for the seed dL/dz
  kHessian,   // out = OBD Gauss-Newton diagonal (overwritten) for the seed H_z (Becker & LeCun 1988; LeCun et al. 1990)
  kSqGrad,    // out += sum over samples of (per-sample gradient)^2 for the seed per-sample dL/dz
};

// The host driver, written once for every backend: holds flat parameters and per-layer activations in Buffers,
// and calls the ops of nn_ops.h through NQ_NN_OP.
template <class T>
class Network {
 public:
  // own_weights false: no weights() buffer; every forward/backward runs on use_external_weights' pointer.
  Network(const NetSpec& spec, Backend backend = Backend::kCpu, bool own_weights = true);

  const NetSpec& spec() const { return spec_; }
  const std::vector<ParamInfo>& params() const { return params_; }
  int64_t num_params() const { return num_params_; }
  int64_t num_classes() const { return spec_.num_classes; }
  int64_t input_size() const { return spec_.in_c * spec_.in_h * spec_.in_w; }
  // Multiply-adds × 2 of one image's forward pass through the Linear and Conv2d layers.
  int64_t forward_flops_per_sample() const;
  Backend backend() const { return backend_; }

  Buffer<T>& weights() { return weights_; }  // flat, param_layout order
  const Buffer<T>& weights() const { return weights_; }
  void set_weights(const std::vector<T>& flat);
  std::vector<T> get_weights() const { return weights_.download(); }
  // Runs on num_params() weights owned elsewhere (a backend pointer, read only, kept until reset with nullptr)
  // instead of weights(): replicas of one network share its weights without a copy per step.
  void use_external_weights(const T* flat) { external_weights_ = flat; }

  // Runs the layers on x [n, in_c, in_h, in_w] (a backend pointer, kept until the next forward) and the
  // softmax cross-entropy on labels [n] (backend pointer). Caches what the backward passes need.
  void forward(const T* x, const int32_t* labels, int64_t n);
  int64_t batch() const { return n_; }
  const T* logits() const { return act_.back(); }
  const T* probs() const { return probs_.data(); }
  const T* sample_loss() const { return loss_.data(); }        // [n]
  const T* sample_correct() const { return correct_.data(); }  // [n], 1 or 0
  const int32_t* labels() const { return labels_; }
  // The input of layer i in the last forward (a backend pointer, batch() × layer_input_size(i) values): for a ReLU,
  // the pre-activations, whose distance from 0 says whether rounding could flip its decision.
  const T* layer_input(size_t i) const { return act_.at(i); }
  int64_t layer_input_size(size_t i) const { return layers_.at(i).in_size(); }

  // Optional transform of every ReLU output, applied in place right after the ReLU (e.g. activation quantization,
  // Park et al. 2017); `relu_index` counts the ReLU layers from 0. Default: none. The pointer is backend memory
  // (host memory on the CPU backend). Backward stays as it is, i.e. straight-through: the ReLU mask is read from
  // the transformed output, so the gradient passes unchanged wherever the transformed value is > 0.
  using ActivationHook = std::function<void(int relu_index, T* data, int64_t count)>;
  void set_activation_hook(ActivationHook hook) { activation_hook_ = std::move(hook); }

  // Backpropagates the seed dz [n, classes] (a backend pointer) through all layers; `out` holds num_params()
  // values on the backend (see BackwardMode for overwrite vs accumulate).
  void backward(BackwardMode mode, const T* dz, T* out);

 private:
  struct Layer {
    LayerSpec spec;
    int64_t in_c, in_h, in_w, out_c, out_h, out_w;  // per-sample shapes
    int64_t w_offset = -1, b_offset = -1;           // into the flat parameters
    Buffer<T> out;                                   // activation (not for Flatten: aliases the input)
    Buffer<T> col;                                   // Conv2d: im2col of the input
    Buffer<int32_t> arg;                             // MaxPool2d: arg-max
    int64_t in_size() const { return in_c * in_h * in_w; }
    int64_t out_size() const { return out_c * out_h * out_w; }
    Conv2dShape geometry(int64_t n) const;
  };

  NetSpec spec_;
  Backend backend_;
  std::vector<ParamInfo> params_;
  int64_t num_params_ = 0;
  std::vector<Layer> layers_;
  Buffer<T> weights_;
  const T* external_weights_ = nullptr;
  const T* active_weights() const { return external_weights_ ? external_weights_ : weights_.data(); }
  int64_t n_ = 0;
  std::vector<const T*> act_;  // act_[i] = input of layer i; act_.back() = logits
  const int32_t* labels_ = nullptr;
  Buffer<T> probs_, loss_, correct_;
  Buffer<T> seed_a_, seed_b_;  // ping-pong buffers for activation gradients
  ActivationHook activation_hook_;
};

extern template class Network<float>;
extern template class Network<double>;

}  // namespace nq::nn
