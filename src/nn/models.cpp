// The built-in networks (LeNet-300-100, Caffe LeNet-5, JSON-described sequential nets), PyTorch-default
// initialization, and named weights in and out (safetensors/.npy through io.h).
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/memory_info.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/nn.h"
#include "nn/model_internal.h"

namespace nq {
namespace {

using nn::LayerKind;
using nn::LayerSpec;
using nn::NetSpec;

LayerSpec linear(const std::string& name, int64_t out) { return {LayerKind::kLinear, name, out, 0, 1, 0}; }
LayerSpec conv(const std::string& name, int64_t out, int64_t k) { return {LayerKind::kConv2d, name, out, k, 1, 0}; }
LayerSpec relu() { return {LayerKind::kReLU, "", 0, 0, 1, 0}; }
LayerSpec maxpool(int64_t k) { return {LayerKind::kMaxPool2d, "", 0, k, k, 0}; }
LayerSpec flatten() { return {LayerKind::kFlatten, "", 0, 0, 1, 0}; }

NetSpec builtin_spec(const std::string& name) {
  NetSpec s;
  s.name = name;
  if (name == "lenet300") {  // LeNet-300-100 (LeCun et al. 1998; Han et al. 2016): 266,610 parameters
    s.layers = {flatten(), linear("fc1", 300), relu(), linear("fc2", 100), relu(), linear("fc3", 10)};
  } else if (name == "lenet5") {  // Caffe's LeNet-5 (no activation after the convolutions): 431,080 parameters
    s.layers = {conv("conv1", 20, 5), maxpool(2), conv("conv2", 50, 5), maxpool(2), flatten(),
                linear("fc1", 500),   relu(),     linear("fc2", 10)};
  } else {
    NQ_FAIL(ErrorCode::kInvalidArgument, "unknown model '" << name << "' (built-in: lenet300, lenet5)");
  }
  return s;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// PyTorch's defaults for Linear and Conv2d: kaiming_uniform_(a=sqrt(5)) on weights is U(-1/sqrt(fan_in), ..),
// and the bias uses the same bound. Each tensor draws from its own stream (seed, tensor index): portable.
TensorSet init_params(const NetSpec& spec, uint64_t seed) {
  std::vector<float> flat(static_cast<size_t>(nn::param_count(spec)));
  const auto layout = nn::param_layout(spec);
  for (size_t t = 0; t < layout.size(); ++t) {
    uint64_t state = seed * 0x100000001B3ull + t * 0x9E3779B97F4A7C15ull + 1;
    const double bound = 1.0 / std::sqrt(static_cast<double>(layout[t].fan_in));
    for (int64_t i = 0; i < layout[t].numel; ++i) {
      const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;  // [0, 1)
      flat[static_cast<size_t>(layout[t].offset + i)] = static_cast<float>((2 * u - 1) * bound);
    }
  }
  return nn::unflatten_params(spec, flat);
}

const char* kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::kLinear: return "linear";
    case LayerKind::kConv2d: return "conv2d";
    case LayerKind::kReLU: return "relu";
    case LayerKind::kMaxPool2d: return "maxpool2d";
    case LayerKind::kFlatten: return "flatten";
  }
  return "?";
}

}  // namespace

std::vector<std::string> builtin_model_names() { return {"lenet300", "lenet5"}; }

const std::string& Model::name() const { return spec().name; }
const nn::NetSpec& Model::spec() const {
  NQ_CHECK(spec_ != nullptr, ErrorCode::kInvalidArgument, "empty Model: build it with build_model()");
  return *spec_;
}
int64_t Model::num_parameters() const { return weights_.total_numel(); }
int64_t Model::num_classes() const { return spec().num_classes; }
std::vector<int64_t> Model::input_shape() const { return {spec().in_c, spec().in_h, spec().in_w}; }

std::string Model::describe() const {
  std::ostringstream os;
  const NetSpec& s = spec();
  os << s.name << ": input [" << s.in_c << ", " << s.in_h << ", " << s.in_w << "], " << s.num_classes
     << " classes, " << num_parameters() << " parameters\n";
  for (const LayerSpec& l : s.layers) {
    os << "  " << kind_name(l.kind);
    if (!l.name.empty()) os << " " << l.name;
    if (l.out) os << " out=" << l.out;
    if (l.kernel) os << " kernel=" << l.kernel << " stride=" << l.stride;
    if (l.padding) os << " padding=" << l.padding;
    os << "\n";
  }
  return os.str();
}

void Model::set_weights(const TensorSet& weights) {
  weights_ = nn::unflatten_params(spec(), nn::flatten_params<float>(spec(), weights, "weights"));
}

Model build_model(const std::string& name, uint64_t seed) {
  const std::string ext = ".json";
  if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0) {
    const std::string text = read_file(name);
    try {
      return build_model_from_json(text, seed);
    } catch (const Error& e) {  // the JSON's own errors do not know the file
      throw Error(e.code(), name + ": " + e.what());
    }
  }
  Model m;
  m.spec_ = std::make_shared<NetSpec>(builtin_spec(name));
  m.weights_ = init_params(*m.spec_, seed);
  return m;
}

namespace nn {

namespace {
// A size field of a layer: a whole number (10 or 10.0; nlohmann's get<int64_t> would cut 1.5 to 1 without a word).
int64_t whole_field(const nlohmann::json& v, const char* field) {
  if (v.is_number_integer()) return v.get<int64_t>();
  const double d = v.is_number_float() ? v.get<double>() : 0.5;
  NQ_CHECK(d == std::floor(d) && std::fabs(d) < 9.2e18, ErrorCode::kInvalidArgument,
           "model JSON: \"" << field << "\" must be an integer, got " << v.dump());
  return static_cast<int64_t>(d);
}
int64_t whole_field(const nlohmann::json& layer, const char* field, int64_t fallback) {
  const auto it = layer.find(field);
  return it == layer.end() ? fallback : whole_field(*it, field);
}
}  // namespace

NetSpec parse_net_spec(const std::string& json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const std::exception& e) {
    NQ_FAIL(ErrorCode::kInvalidArgument, "model JSON does not parse: " << e.what());
  }
  NetSpec spec;
  try {
    spec.name = j.value("name", std::string("custom"));
    const auto& in = j.at("input");
    NQ_CHECK(in.is_array() && in.size() == 3, ErrorCode::kInvalidArgument,
             "model JSON: \"input\" must be [channels, height, width]");
    spec.in_c = whole_field(in[0], "input"), spec.in_h = whole_field(in[1], "input");
    spec.in_w = whole_field(in[2], "input");
    spec.num_classes = whole_field(j.at("classes"), "classes");
    for (const auto& l : j.at("layers")) {
      const std::string type = l.at("type").get<std::string>();
      LayerSpec ls;
      if (type == "linear") ls = linear(l.at("name").get<std::string>(), whole_field(l.at("out"), "out"));
      else if (type == "conv2d") {
        ls = conv(l.at("name").get<std::string>(), whole_field(l.at("out"), "out"),
                  whole_field(l.at("kernel"), "kernel"));
        ls.stride = whole_field(l, "stride", 1);
        ls.padding = whole_field(l, "padding", 0);
      } else if (type == "relu") ls = relu();
      else if (type == "maxpool2d") {
        ls = maxpool(whole_field(l.at("kernel"), "kernel"));
        ls.stride = whole_field(l, "stride", ls.kernel);
      } else if (type == "flatten") ls = flatten();
      else NQ_FAIL(ErrorCode::kInvalidArgument, "model JSON: unknown layer type '" << type << "'");
      spec.layers.push_back(ls);
    }
  } catch (const nlohmann::json::exception& e) {
    NQ_FAIL(ErrorCode::kInvalidArgument, "model JSON: " << e.what());
  }
  NQ_CHECK(spec.num_classes >= 2, ErrorCode::kInvalidArgument, "model JSON: need at least 2 classes");
  param_layout(spec);  // the shapes: every layer fits its input, sizes in range, the output has `classes` values
  return spec;
}

}  // namespace nn

Model build_model_from_json(const std::string& json_text, uint64_t seed) {
  auto spec = std::make_shared<NetSpec>(nn::parse_net_spec(json_text));
  // Refused up front when the weights alone, with their gradients and Adam's two moments (4 copies in float32),
  // cannot fit: a clear error instead of a bare "out of memory" from the first allocation.
  const int64_t params = nn::param_count(*spec);
  const uint64_t need = static_cast<uint64_t>(params) * 4 * sizeof(float), available = available_memory_bytes();
  NQ_CHECK(available == 0 || need <= available, ErrorCode::kOutOfMemory,
           "network '" << spec->name << "' has " << params << " parameters: " << need / (1u << 20)
                       << " MiB for its weights, gradients and optimizer state, more than the "
                       << available / (1u << 20) << " MiB available");
  Model m;
  m.spec_ = spec;
  m.weights_ = init_params(*spec, seed);
  return m;
}

void load_weights(Model& model, const std::string& path) { load_weights(model, read_tensors(path), path); }

void check_finite_weights(const TensorSet& weights, const std::string& what) {
  for (const Tensor& t : weights) {
    if (!dtype_is_float(t.dtype())) continue;
    const std::vector<double> v = t.to_f64();
    for (size_t i = 0; i < v.size(); ++i)
      NQ_CHECK(std::isfinite(v[i]), ErrorCode::kInvalidArgument,
               what << ": tensor '" << t.name() << "': weight " << i << " is not finite (" << v[i] << ")");
  }
}

void load_weights(Model& model, const TensorSet& weights, const std::string& source) {
  // A NaN or Inf weight (a diverged run's) would only come back as NaN losses, importances or gradients, written
  // as if they meant something: refuse it, as quantize refuses it.
  check_finite_weights(weights, "weights file " + source);
  try {
    model.set_weights(weights);
  } catch (const Error& e) {
    throw Error(e.code(), "weights file " + source + ": " + e.what());
  }
}

void save_weights(const Model& model, const std::string& path) {
  TensorSet out = model.weights();
  out.metadata()["netquant.model"] = model.name();
  write_tensors(path, out);
}

namespace nn {

template <class T>
std::vector<T> flatten_params(const NetSpec& spec, const TensorSet& weights, const std::string& source) {
  const auto layout = param_layout(spec);
  std::vector<T> flat(static_cast<size_t>(param_count(spec)));
  for (const ParamInfo& p : layout) {
    const Tensor* t = weights.find(p.name);
    NQ_CHECK(t != nullptr, ErrorCode::kShapeMismatch,
             source << " has no tensor '" << p.name << "' (model " << spec.name << " needs it)");
    NQ_CHECK(t->shape() == p.shape, ErrorCode::kShapeMismatch,
             source << ": tensor '" << p.name << "' has shape " << shape_to_string(t->shape()) << ", model "
                    << spec.name << " needs " << shape_to_string(p.shape));
    NQ_CHECK(dtype_is_float(t->dtype()), ErrorCode::kShapeMismatch,
             source << ": tensor '" << p.name << "' has non-float dtype " << dtype_name(t->dtype()));
    const std::vector<double> v = t->to_f64();
    for (int64_t i = 0; i < p.numel; ++i) flat[static_cast<size_t>(p.offset + i)] = static_cast<T>(v[size_t(i)]);
  }
  for (const Tensor& t : weights) {
    bool known = false;
    for (const ParamInfo& p : layout) known = known || p.name == t.name();
    NQ_CHECK(known, ErrorCode::kShapeMismatch,
             source << " has tensor '" << t.name() << "' that model " << spec.name << " does not have");
  }
  return flat;
}

template <class T>
TensorSet unflatten_params(const NetSpec& spec, const std::vector<T>& flat) {
  const auto layout = param_layout(spec);
  NQ_ASSERT(static_cast<int64_t>(flat.size()) == param_count(spec));
  TensorSet out;
  for (const ParamInfo& p : layout) {
    Tensor t(p.name, DType::kF32, p.shape);
    float* d = t.mutable_data_as<float>();
    for (int64_t i = 0; i < p.numel; ++i) d[i] = static_cast<float>(flat[static_cast<size_t>(p.offset + i)]);
    out.add(std::move(t));
  }
  return out;
}

template std::vector<float> flatten_params<float>(const NetSpec&, const TensorSet&, const std::string&);
template std::vector<double> flatten_params<double>(const NetSpec&, const TensorSet&, const std::string&);
template TensorSet unflatten_params<float>(const NetSpec&, const std::vector<float>&);
template TensorSet unflatten_params<double>(const NetSpec&, const std::vector<double>&);

}  // namespace nn
}  // namespace nq
