// NumPy <-> nq::Tensor without copies: arrays in are viewed in place (kept alive by the tensor), tensors out are
// handed to NumPy with a capsule that owns the C++ storage.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "netquant/tensor.h"

namespace nq::python {

namespace py = pybind11;

// The engine's dtype for a NumPy dtype; throws py::type_error naming `what` for unsupported dtypes.
DType dtype_from_numpy(const py::dtype& dt, const std::string& what);
py::dtype numpy_dtype(DType dtype);

// A read-only view of `array` (no copy). The array must be C-contiguous and in native byte order
// (py::value_error otherwise); `floats_only` further restricts it to float32/float16 (py::type_error).
// The view holds a reference to the array, released with the GIL held.
Tensor tensor_view(const py::array& array, const std::string& name, bool floats_only);

// A tensor as a NumPy array sharing its storage. writable: the array may be written to (storage that is a
// read-only view, e.g. a memory-mapped file, is copied first); else a read-only array over the storage as is.
// BF16 (which NumPy lacks) is converted to float32.
py::array tensor_to_numpy(Tensor tensor, bool writable);

// Moves a vector into a NumPy array of the given shape (its storage becomes the array's).
template <class T>
py::array vector_to_numpy(std::vector<T>&& values, const std::vector<int64_t>& shape) {
  auto* heap = new std::vector<T>(std::move(values));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  return py::array_t<T>(dims, heap->data(), owner);
}

// An ordered dict name -> array as a TensorSet of views (floats_only as in tensor_view).
TensorSet tensor_set_view(const py::dict& tensors, bool floats_only);

}  // namespace nq::python
