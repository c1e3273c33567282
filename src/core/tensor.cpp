// Tensor storage, conversions between float dtypes, and TensorSet bookkeeping.
#include "netquant/tensor.h"

#include <cstring>
#include <limits>
#include <sstream>

#include "core/huge_pages.h"
#include "netquant/error.h"

namespace nq {

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    NQ_CHECK(d >= 0, ErrorCode::kInvalidArgument, "negative dimension " << d << " in shape " << shape_to_string(shape));
    NQ_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, ErrorCode::kInvalidArgument,
             "shape " << shape_to_string(shape) << " has too many elements");
    n *= d;
  }
  return n;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

namespace {
std::shared_ptr<void> allocate_bytes(const std::string& name, size_t n, bool zeroed) {
  try {
    // Large buffers: a huge-page mapping of their own, whose fresh pages already read as zero (core/huge_pages.h).
    if (kHugePageArrays && n >= kHugePagesFrom)
      return std::shared_ptr<void>(allocate_huge(n), [n](void* p) { free_huge(p, n); });
    // operator new[] of unsigned char, value-initialized (zeroed) unless not wanted; at least one byte so data()
    // is never null.
    if (!zeroed) return std::shared_ptr<void>(new unsigned char[n ? n : 1], [](void* p) { delete[] static_cast<unsigned char*>(p); });
    return std::shared_ptr<void>(new unsigned char[n ? n : 1](), [](void* p) { delete[] static_cast<unsigned char*>(p); });
  } catch (const std::bad_alloc&) {
    NQ_FAIL(ErrorCode::kOutOfMemory, "tensor '" << name << "': out of memory for its " << n << " bytes");
  }
}
}  // namespace

Tensor::Tensor(std::string name, DType dtype, std::vector<int64_t> shape)
    : Tensor(owned(std::move(name), dtype, std::move(shape), /*zeroed=*/true)) {}

Tensor Tensor::uninitialized(std::string name, DType dtype, std::vector<int64_t> shape) {
  return owned(std::move(name), dtype, std::move(shape), /*zeroed=*/false);
}

Tensor Tensor::owned(std::string name, DType dtype, std::vector<int64_t> shape, bool zeroed) {
  Tensor t;
  t.name_ = std::move(name);
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = shape_numel(t.shape_);
  NQ_CHECK(t.numel_ <= static_cast<int64_t>(std::numeric_limits<size_t>::max() / 8), ErrorCode::kInvalidArgument,
           "tensor '" << t.name_ << "' is too large");
  auto buf = allocate_bytes(t.name_, t.nbytes(), zeroed);
  t.data_ = buf.get();
  t.owner_ = std::move(buf);
  t.writable_ = true;
  return t;
}

Tensor Tensor::view(std::string name, DType dtype, std::vector<int64_t> shape, const void* data,
                    std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.name_ = std::move(name);
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = shape_numel(t.shape_);
  t.data_ = data;
  t.owner_ = std::move(keepalive);
  t.writable_ = false;
  return t;
}

Tensor Tensor::from_f32(std::string name, std::vector<int64_t> shape, const std::vector<float>& values) {
  Tensor t(std::move(name), DType::kF32, std::move(shape));
  NQ_CHECK(static_cast<int64_t>(values.size()) == t.numel(), ErrorCode::kInvalidArgument,
           "tensor '" << t.name() << "': " << values.size() << " values for shape " << shape_to_string(t.shape()));
  if (!values.empty()) std::memcpy(t.mutable_data(), values.data(), values.size() * 4);
  return t;
}

Tensor Tensor::from_f64(std::string name, std::vector<int64_t> shape, const std::vector<double>& values) {
  Tensor t(std::move(name), DType::kF64, std::move(shape));
  NQ_CHECK(static_cast<int64_t>(values.size()) == t.numel(), ErrorCode::kInvalidArgument,
           "tensor '" << t.name() << "': " << values.size() << " values for shape " << shape_to_string(t.shape()));
  if (!values.empty()) std::memcpy(t.mutable_data(), values.data(), values.size() * 8);
  return t;
}

void* Tensor::mutable_data() {
  if (!writable_ || owner_.use_count() > 1) {
    auto buf = allocate_bytes(name_, nbytes(), /*zeroed=*/false);
    if (nbytes()) std::memcpy(buf.get(), data_, nbytes());
    data_ = buf.get();
    owner_ = std::move(buf);
    writable_ = true;
  }
  return const_cast<void*>(data_);
}

template <> int Tensor::type_tag<float>() { return static_cast<int>(DType::kF32); }
template <> int Tensor::type_tag<double>() { return static_cast<int>(DType::kF64); }
template <> int Tensor::type_tag<uint16_t>() { return -2; }  // f16 or bf16 raw bits
template <> int Tensor::type_tag<int8_t>() { return static_cast<int>(DType::kI8); }
template <> int Tensor::type_tag<uint8_t>() { return -1; }  // u8 or bool
template <> int Tensor::type_tag<int16_t>() { return static_cast<int>(DType::kI16); }
template <> int Tensor::type_tag<int32_t>() { return static_cast<int>(DType::kI32); }
template <> int Tensor::type_tag<int64_t>() { return static_cast<int>(DType::kI64); }

void Tensor::check_element_type(size_t size, int tag) const {
  bool ok = size == dtype_size(dtype_);
  if (tag >= 0) ok = ok && tag == static_cast<int>(dtype_);
  if (tag == -2) ok = ok && (dtype_ == DType::kF16 || dtype_ == DType::kBF16 || dtype_ == DType::kI16);
  if (tag == -1) ok = ok && (dtype_ == DType::kU8 || dtype_ == DType::kBool);
  NQ_ASSERT_MSG(ok, "tensor '" << name_ << "' has dtype " << dtype_name(dtype_) << ", accessed as another type");
}

namespace {
// Elements [begin, end) of t converted to Out, into out[0, end − begin).
template <class Out>
void convert_range(const Tensor& t, int64_t begin, int64_t end, Out* out) {
  const unsigned char* p = static_cast<const unsigned char*>(t.data());
  const size_t b = static_cast<size_t>(begin), n = static_cast<size_t>(end - begin);
  auto load = [p, b](size_t i, auto tag) {
    decltype(tag) v;
    std::memcpy(&v, p + (b + i) * sizeof(v), sizeof(v));
    return v;
  };
  switch (t.dtype()) {
    case DType::kF32: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, float{})); break;
    case DType::kF64: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, double{})); break;
    case DType::kF16: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(f16_to_f32(load(i, uint16_t{}))); break;
    case DType::kBF16: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(bf16_to_f32(load(i, uint16_t{}))); break;
    case DType::kI8: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, int8_t{})); break;
    case DType::kU8: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, uint8_t{})); break;
    // Any non-zero byte is true (1), as numpy and PyTorch cast a bool: a file's 0x02 is not the number 2.
    case DType::kBool: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, uint8_t{}) != 0); break;
    case DType::kI16: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, int16_t{})); break;
    case DType::kI32: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, int32_t{})); break;
    case DType::kI64: for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load(i, int64_t{})); break;
  }
}

template <class Out>
std::vector<Out> convert_all(const Tensor& t) {
  std::vector<Out> out(static_cast<size_t>(t.numel()));
  convert_range(t, 0, t.numel(), out.data());
  return out;
}
}  // namespace

std::vector<float> Tensor::to_f32() const { return convert_all<float>(*this); }
std::vector<double> Tensor::to_f64() const { return convert_all<double>(*this); }

void Tensor::to_f32(int64_t begin, int64_t end, float* out) const {
  NQ_CHECK(0 <= begin && begin <= end && end <= numel_, ErrorCode::kInvalidArgument,
           "tensor '" << name_ << "': elements [" << begin << ", " << end << ") are outside its " << numel_);
  convert_range(*this, begin, end, out);
}

Tensor Tensor::converted(DType dtype) const {
  NQ_CHECK(dtype_is_float(dtype), ErrorCode::kUnsupported,
           "tensor '" << name_ << "': conversion to " << dtype_name(dtype) << " is not supported");
  if (dtype == dtype_) {
    Tensor copy = *this;
    return copy;
  }
  Tensor out(name_, dtype, shape_);
  const size_t n = static_cast<size_t>(numel_);
  if (dtype == DType::kF64) {
    auto v = to_f64();
    if (n) std::memcpy(out.mutable_data(), v.data(), n * 8);
    return out;
  }
  auto v = to_f32();
  if (dtype == DType::kF32) {
    if (n) std::memcpy(out.mutable_data(), v.data(), n * 4);
  } else {
    auto* dst = static_cast<uint16_t*>(out.mutable_data());
    for (size_t i = 0; i < n; ++i) dst[i] = dtype == DType::kF16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
  }
  return out;
}

void TensorSet::add(Tensor tensor) {
  NQ_CHECK(!contains(tensor.name()), ErrorCode::kInvalidArgument, "duplicate tensor name '" << tensor.name() << "'");
  index_.emplace(tensor.name(), tensors_.size());
  tensors_.push_back(std::move(tensor));
}

const Tensor* TensorSet::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}
Tensor* TensorSet::find(const std::string& name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}
const Tensor& TensorSet::at(const std::string& name) const {
  const Tensor* t = find(name);
  NQ_CHECK(t != nullptr, ErrorCode::kInvalidArgument, "no tensor named '" << name << "'");
  return *t;
}
int64_t TensorSet::total_numel() const {
  int64_t n = 0;
  for (const auto& t : tensors_) n += t.numel();
  return n;
}

}  // namespace nq
