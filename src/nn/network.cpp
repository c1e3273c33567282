// The sequential-network driver (host code, written once): shapes, parameter layout, and the forward and
// backward walks that call the layer ops on the selected backend. The Hessian walk is the OBD recursion of
// Becker & LeCun (1988) / LeCun et al. (1990): same walk as the gradient, ops replaced by their squared forms.
#include "nn/network.h"

#include <algorithm>

#include "netquant/tensor.h"

namespace nq::nn {
namespace {

struct Shape3 {
  int64_t c, h, w;
};

// Sizes from a model JSON are the user's: products and sums of them are checked, so that a huge layer is a clear
// error instead of a signed overflow (undefined behaviour) that comes out as a negative or wrapped shape.
constexpr int64_t kMaxNetworkSize = int64_t{1} << 46;  // elements of one activation or of all parameters
int64_t checked_size(std::initializer_list<int64_t> factors, const std::string& where, const char* what) {
  int64_t product = 1;
  for (const int64_t f : factors)
    NQ_CHECK(!__builtin_mul_overflow(product, f, &product) && product <= kMaxNetworkSize,
             ErrorCode::kInvalidArgument, where << what << " exceeds 2^46 elements");
  return product;
}

// Output shape of one layer; checks that the layer fits its input.
Shape3 layer_output(const LayerSpec& l, const Shape3& in, const std::string& net) {
  const std::string where = "network '" + net + "' layer '" + (l.name.empty() ? "?" : l.name) + "': ";
  switch (l.kind) {
    case LayerKind::kLinear:
      NQ_CHECK(l.out > 0, ErrorCode::kInvalidArgument, where << "Linear needs out > 0");
      return {l.out, 1, 1};
    case LayerKind::kConv2d: {
      NQ_CHECK(l.out > 0 && l.kernel > 0 && l.stride > 0 && l.padding >= 0, ErrorCode::kInvalidArgument,
               where << "Conv2d needs out, kernel, stride > 0 and padding >= 0");
      NQ_CHECK(l.padding <= kMaxNetworkSize && l.kernel <= kMaxNetworkSize, ErrorCode::kInvalidArgument,
               where << "padding " << l.padding << " or kernel " << l.kernel << " exceeds 2^46");
      const int64_t oh = (in.h + 2 * l.padding - l.kernel) / l.stride + 1;
      const int64_t ow = (in.w + 2 * l.padding - l.kernel) / l.stride + 1;
      NQ_CHECK(in.h + 2 * l.padding >= l.kernel && in.w + 2 * l.padding >= l.kernel, ErrorCode::kInvalidArgument,
               where << "kernel " << l.kernel << " larger than the padded input " << in.h << "x" << in.w);
      checked_size({l.out, oh, ow}, where, "the output");
      return {l.out, oh, ow};
    }
    case LayerKind::kMaxPool2d: {
      const int64_t s = l.stride > 0 ? l.stride : l.kernel;
      NQ_CHECK(l.kernel > 0 && in.h >= l.kernel && in.w >= l.kernel, ErrorCode::kInvalidArgument,
               where << "MaxPool2d window " << l.kernel << " does not fit the input " << in.h << "x" << in.w);
      return {in.c, (in.h - l.kernel) / s + 1, (in.w - l.kernel) / s + 1};
    }
    case LayerKind::kFlatten: return {checked_size({in.c, in.h, in.w}, where, "the flattened input"), 1, 1};
    case LayerKind::kReLU: return in;
  }
  return in;
}

}  // namespace

std::vector<ParamInfo> param_layout(const NetSpec& spec) {
  std::vector<ParamInfo> out;
  Shape3 s{spec.in_c, spec.in_h, spec.in_w};
  NQ_CHECK(s.c > 0 && s.h > 0 && s.w > 0, ErrorCode::kInvalidArgument, "network '" << spec.name << "': empty input");
  checked_size({s.c, s.h, s.w}, "network '" + spec.name + "': ", "the input");
  int64_t offset = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
    ParamInfo p;
    p.name = name;
    p.shape = std::move(shape);
    p.numel = shape_numel(p.shape);
    p.offset = offset;
    p.fan_in = fan_in;
    NQ_CHECK(p.numel <= kMaxNetworkSize - offset, ErrorCode::kInvalidArgument,
             "network '" << spec.name << "': the parameters exceed 2^46 elements (at '" << name << "')");
    offset += p.numel;
    out.push_back(std::move(p));
  };
  for (const LayerSpec& l : spec.layers) {
    if (l.kind == LayerKind::kLinear) {
      const int64_t in = s.c * s.h * s.w;  // checked by the layer before (or the input's check)
      add(l.name + ".weight", {l.out, in}, in);
      add(l.name + ".bias", {l.out}, in);
    } else if (l.kind == LayerKind::kConv2d) {
      const int64_t fan_in =
          checked_size({s.c, l.kernel, l.kernel}, "network '" + spec.name + "' layer '" + l.name + "': ", "fan-in");
      add(l.name + ".weight", {l.out, s.c, l.kernel, l.kernel}, fan_in);
      add(l.name + ".bias", {l.out}, fan_in);
    }
    s = layer_output(l, s, spec.name);
  }
  NQ_CHECK(s.c * s.h * s.w == spec.num_classes, ErrorCode::kInvalidArgument,
           "network '" << spec.name << "' ends with " << s.c * s.h * s.w << " outputs, expected "
                       << spec.num_classes << " classes");
  return out;
}

int64_t param_count(const NetSpec& spec) {
  int64_t n = 0;
  for (const ParamInfo& p : param_layout(spec)) n += p.numel;
  return n;
}

template <class T>
Conv2dShape Network<T>::Layer::geometry(int64_t n) const {
  Conv2dShape g;
  g.n = n;
  g.in_c = in_c, g.in_h = in_h, g.in_w = in_w;
  g.out_c = out_c;
  g.kh = g.kw = spec.kernel;
  g.stride = spec.stride > 0 ? spec.stride : spec.kernel;
  g.padding = spec.kind == LayerKind::kConv2d ? spec.padding : 0;
  return g;
}

template <class T>
Network<T>::Network(const NetSpec& spec, Backend backend, bool own_weights)
    : spec_(spec), backend_(backend), weights_(backend), probs_(backend), loss_(backend), correct_(backend),
      seed_a_(backend), seed_b_(backend) {
  NQ_CHECK(backend != Backend::kAuto, ErrorCode::kInternal, "Network needs a resolved backend");
  params_ = param_layout(spec_);
  for (const ParamInfo& p : params_) num_params_ += p.numel;
  Shape3 s{spec_.in_c, spec_.in_h, spec_.in_w};
  size_t pi = 0;
  for (const LayerSpec& l : spec_.layers) {
    Layer layer{l, s.c, s.h, s.w, 0, 0, 0, -1, -1, Buffer<T>(backend), Buffer<T>(backend), Buffer<int32_t>(backend)};
    const Shape3 o = layer_output(l, s, spec_.name);
    layer.out_c = o.c, layer.out_h = o.h, layer.out_w = o.w;
    if (l.kind == LayerKind::kLinear || l.kind == LayerKind::kConv2d) {
      layer.w_offset = params_[pi++].offset;
      layer.b_offset = params_[pi++].offset;
    }
    layers_.push_back(std::move(layer));
    s = o;
  }
  if (own_weights) weights_.resize(num_params_);
}

template <class T>
int64_t Network<T>::forward_flops_per_sample() const {
  int64_t flops = 0;
  for (const Layer& l : layers_) {
    if (l.spec.kind == LayerKind::kLinear) flops += 2 * l.in_size() * l.out_c;
    if (l.spec.kind == LayerKind::kConv2d)
      flops += 2 * l.out_size() * l.in_c * l.spec.kernel * l.spec.kernel;
  }
  return flops;
}

template <class T>
void Network<T>::set_weights(const std::vector<T>& flat) {
  NQ_CHECK(static_cast<int64_t>(flat.size()) == num_params_, ErrorCode::kShapeMismatch,
           "network '" << spec_.name << "' has " << num_params_ << " parameters, got " << flat.size());
  weights_.upload(flat.data(), num_params_);
}

template <class T>
void Network<T>::forward(const T* x, const int32_t* labels, int64_t n) {
  NQ_CHECK(n > 0, ErrorCode::kInvalidArgument, "forward on an empty batch");
  n_ = n;
  labels_ = labels;
  act_.assign(1, x);
  const T* w = active_weights();
  NQ_CHECK(w || num_params_ == 0, ErrorCode::kInternal, "network '" << spec_.name << "' has no weights to run on");
  int relu_index = 0;
  for (Layer& l : layers_) {
    const T* in = act_.back();
    if (l.spec.kind == LayerKind::kFlatten) {
      act_.push_back(in);
      continue;
    }
    l.out.ensure(n * l.out_size());
    T* out = l.out.data();
    switch (l.spec.kind) {
      case LayerKind::kLinear:
        NQ_NN_OP(backend_, linear_forward, in, w + l.w_offset, w + l.b_offset, out, n, l.in_size(), l.out_c);
        break;
      case LayerKind::kConv2d: {
        const Conv2dShape g = l.geometry(n);
        l.col.ensure(g.col_rows() * g.col_cols());
        NQ_NN_OP(backend_, conv2d_forward, in, w + l.w_offset, w + l.b_offset, out, l.col.data(), g);
        break;
      }
      case LayerKind::kReLU:
        NQ_NN_OP(backend_, relu_forward, in, out, n * l.out_size());
        if (activation_hook_) activation_hook_(relu_index, out, n * l.out_size());
        ++relu_index;
        break;
      case LayerKind::kMaxPool2d:
        l.arg.ensure(n * l.out_size());
        NQ_NN_OP(backend_, maxpool2d_forward, in, out, l.arg.data(), l.geometry(n));
        break;
      case LayerKind::kFlatten: break;
    }
    act_.push_back(out);
  }
  const int64_t c = spec_.num_classes;
  probs_.ensure(n * c);
  loss_.ensure(n);
  correct_.ensure(n);
  NQ_NN_OP(backend_, softmax_ce_forward, act_.back(), labels, probs_.data(), loss_.data(), correct_.data(), n, c);
}

template <class T>
void Network<T>::backward(BackwardMode mode, const T* dz, T* out) {
  NQ_CHECK(n_ > 0, ErrorCode::kInternal, "backward before forward");
  const int64_t n = n_;
  int64_t max_size = 0;
  for (const Layer& l : layers_) max_size = std::max({max_size, l.in_size(), l.out_size()});
  seed_a_.ensure(n * max_size);
  seed_b_.ensure(n * max_size);
  const T* w = active_weights();
  NQ_CHECK(w || num_params_ == 0, ErrorCode::kInternal, "network '" << spec_.name << "' has no weights to run on");
  const T* g = dz;             // gradient (or H) w.r.t. the output of layer i
  const Buffer<T>* holder = nullptr;  // which ping-pong buffer holds g (null: the caller's seed)
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& l = layers_[i];
    if (l.spec.kind == LayerKind::kFlatten) continue;  // same memory, new shape
    Buffer<T>* next = holder == &seed_a_ ? &seed_b_ : &seed_a_;
    T* gx = i > 0 ? next->data() : nullptr;  // the input image needs no gradient
    const T* x = act_[i];
    switch (l.spec.kind) {
      case LayerKind::kLinear: {
        const int64_t in = l.in_size(), o = l.out_c;
        T* ow = out + l.w_offset;
        T* ob = out + l.b_offset;
        if (mode == BackwardMode::kGradient)
          NQ_NN_OP(backend_, linear_backward, x, w + l.w_offset, g, gx, ow, ob, n, in, o);
        else if (mode == BackwardMode::kHessian)
          NQ_NN_OP(backend_, linear_hessian_backward, x, w + l.w_offset, g, gx, ow, ob, n, in, o);
        else
          NQ_NN_OP(backend_, linear_backward_sqgrad, x, w + l.w_offset, g, gx, ow, ob, n, in, o);
        break;
      }
      case LayerKind::kConv2d: {
        const Conv2dShape geo = l.geometry(n);
        T* ow = out + l.w_offset;
        T* ob = out + l.b_offset;
        if (mode == BackwardMode::kGradient)
          NQ_NN_OP(backend_, conv2d_backward, l.col.data(), w + l.w_offset, g, gx, ow, ob, geo);
        else if (mode == BackwardMode::kHessian)
          NQ_NN_OP(backend_, conv2d_hessian_backward, l.col.data(), w + l.w_offset, g, gx, ow, ob, geo);
        else
          NQ_NN_OP(backend_, conv2d_backward_sqgrad, l.col.data(), w + l.w_offset, g, gx, ow, ob, geo);
        break;
      }
      case LayerKind::kReLU:  // Gauss-Newton: the same mask for gradients and H (f'(a)^2 = f'(a) = 1[a>0])
        if (gx) NQ_NN_OP(backend_, relu_backward, l.out.data(), g, gx, n * l.out_size());
        break;
      case LayerKind::kMaxPool2d:
        if (gx) NQ_NN_OP(backend_, maxpool2d_backward, l.arg.data(), g, gx, l.geometry(n));
        break;
      case LayerKind::kFlatten: break;
    }
    if (!gx) break;
    g = gx;
    holder = next;
  }
}

template class Network<float>;
template class Network<double>;

}  // namespace nq::nn
