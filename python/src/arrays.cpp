// NumPy <-> nq::Tensor conversions: views in, capsule-owned arrays out.
#include "arrays.h"

#include <memory>

#include "netquant/error.h"

namespace nq::python {

namespace {
std::string dtype_text(const py::dtype& dt) { return py::str(static_cast<const py::handle&>(dt)).cast<std::string>(); }
}  // namespace

DType dtype_from_numpy(const py::dtype& dt, const std::string& what) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return DType::kF32;
  if (kind == 'f' && size == 2) return DType::kF16;
  if (kind == 'f' && size == 8) return DType::kF64;
  if (kind == 'i' && size == 1) return DType::kI8;
  if (kind == 'i' && size == 2) return DType::kI16;
  if (kind == 'i' && size == 4) return DType::kI32;
  if (kind == 'i' && size == 8) return DType::kI64;
  if (kind == 'u' && size == 1) return DType::kU8;
  if (kind == 'b' && size == 1) return DType::kBool;
  throw py::type_error(what + ": dtype " + dtype_text(dt) +
                       " is not supported (float32, float16, float64, int8/16/32/64, uint8, bool)");
}

py::dtype numpy_dtype(DType dtype) {
  switch (dtype) {
    case DType::kF32: return py::dtype("float32");
    case DType::kF16: return py::dtype("float16");
    case DType::kF64: return py::dtype("float64");
    case DType::kI8: return py::dtype("int8");
    case DType::kU8: return py::dtype("uint8");
    case DType::kI16: return py::dtype("int16");
    case DType::kI32: return py::dtype("int32");
    case DType::kI64: return py::dtype("int64");
    case DType::kBool: return py::dtype("bool");
    case DType::kBF16: break;
  }
  NQ_FAIL(ErrorCode::kInternal, "no NumPy dtype for " << dtype_name(dtype));
}

namespace {
// Owns one Python reference; dropped with the GIL held, whichever thread releases the last tensor copy.
std::shared_ptr<const void> python_keepalive(py::object obj) {
  auto* holder = new py::object(std::move(obj));
  return std::shared_ptr<const void>(holder, [](const void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<const py::object*>(p);
  });
}
}  // namespace

Tensor tensor_view(const py::array& array, const std::string& name, bool floats_only) {
  const std::string what = "tensor '" + name + "'";
  const py::dtype dt = array.dtype();
  if (dt.kind() == 'O') throw py::type_error(what + ": object arrays are not supported; pass a numeric array");
  const DType dtype = dtype_from_numpy(dt, what);
  if (floats_only && dtype != DType::kF32 && dtype != DType::kF16) {
    throw py::type_error(what + ": expected a float32 or float16 array, got " + dtype_text(dt));
  }
  if (dt.byteorder() == '>') {
    throw py::value_error(what + ": big-endian arrays are not supported; use array.astype(array.dtype.newbyteorder('='))");
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(what + ": the array is not C-contiguous; pass numpy.ascontiguousarray(array)");
  }
  std::vector<int64_t> shape(array.shape(), array.shape() + array.ndim());
  return Tensor::view(name, dtype, std::move(shape), array.data(), python_keepalive(array));
}

py::array tensor_to_numpy(Tensor tensor, bool writable) {
  if (tensor.dtype() == DType::kBF16) tensor = tensor.converted(DType::kF32);
  auto* heap = new Tensor(std::move(tensor));
  py::capsule owner(heap, [](void* p) { delete static_cast<Tensor*>(p); });
  const void* data = writable ? heap->mutable_data() : heap->data();
  std::vector<py::ssize_t> dims(heap->shape().begin(), heap->shape().end());
  py::array out(numpy_dtype(heap->dtype()), dims, data, owner);
  if (!writable) {
    // An array over a base object is writable by default; read-only storage must not be.
    out.attr("flags").attr("writeable") = false;
  }
  return out;
}

TensorSet tensor_set_view(const py::dict& tensors, bool floats_only) {
  TensorSet set;
  for (auto item : tensors) {
    if (!py::isinstance<py::str>(item.first)) throw py::type_error("tensor names must be str");
    const auto name = item.first.cast<std::string>();
    if (!py::isinstance<py::array>(item.second)) {
      throw py::type_error("tensor '" + name + "': expected a numpy.ndarray");
    }
    set.add(tensor_view(py::reinterpret_borrow<py::array>(item.second), name, floats_only));
  }
  return set;
}

}  // namespace nq::python
