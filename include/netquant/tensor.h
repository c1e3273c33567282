// Tensor (name, dtype, shape, bytes) and TensorSet (ordered, unique names, string metadata).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "netquant/dtype.h"

namespace nq {

// Element count of a shape; throws kInvalidArgument on negative dims or int64 overflow.
int64_t shape_numel(const std::vector<int64_t>& shape);
std::string shape_to_string(const std::vector<int64_t>& shape);  // "[300, 784]"

// A named, typed, row-major (C order) block of bytes. Storage is shared and may be a read-only view into a
// memory-mapped file (kept alive by the tensor); mutable access copies such a view first.
class Tensor {
 public:
  Tensor() = default;
  // Owned, zero-filled storage.
  Tensor(std::string name, DType dtype, std::vector<int64_t> shape);
  // Owned storage left uninitialized, for a caller that writes every element (on its threads, so each thread
  // touches its own pages first instead of one thread zero-filling them all).
  static Tensor uninitialized(std::string name, DType dtype, std::vector<int64_t> shape);
  // Read-only view of `data`, kept valid by `keepalive` (e.g. a memory map).
  static Tensor view(std::string name, DType dtype, std::vector<int64_t> shape, const void* data,
                     std::shared_ptr<const void> keepalive);
  static Tensor from_f32(std::string name, std::vector<int64_t> shape, const std::vector<float>& values);
  static Tensor from_f64(std::string name, std::vector<int64_t> shape, const std::vector<double>& values);

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  // The file the tensor was read from (the readers set it; empty for one made in memory), for messages that must
  // name the file as well as the tensor (a weight that is not finite, in a shard of a checkpoint).
  const std::string& source() const { return source_; }
  void set_source(std::string source) { source_ = std::move(source); }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  size_t ndim() const { return shape_.size(); }

  const void* data() const { return data_; }
  void* mutable_data();  // copies a shared or read-only buffer first (copy on write)

  template <class T>
  const T* data_as() const {
    check_element_type(sizeof(T), type_tag<T>());
    return static_cast<const T*>(data_);
  }
  template <class T>
  T* mutable_data_as() {
    check_element_type(sizeof(T), type_tag<T>());
    return static_cast<T*>(mutable_data());
  }

  // Values converted to float32 / float64 (any float dtype; integer dtypes convert exactly where they can).
  std::vector<float> to_f32() const;
  std::vector<double> to_f64() const;
  // Elements [begin, end) converted to float32 into out[0, end − begin): callers that fill large arrays in
  // parallel chunks (each thread's first touch of its pages, not one thread's zero fill).
  void to_f32(int64_t begin, int64_t end, float* out) const;
  // A copy in another float dtype (round to nearest even for f16/bf16).
  Tensor converted(DType dtype) const;

 private:
  static Tensor owned(std::string name, DType dtype, std::vector<int64_t> shape, bool zeroed);
  template <class T>
  static int type_tag();
  void check_element_type(size_t size, int tag) const;

  std::string name_;
  std::string source_;
  DType dtype_ = DType::kF32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::shared_ptr<const void> owner_;  // keeps data_ alive
  const void* data_ = nullptr;
  bool writable_ = false;  // true when owner_ is a buffer this tensor may write into
};

// An ordered collection of uniquely named tensors plus string metadata (safetensors' __metadata__).
class TensorSet {
 public:
  void add(Tensor tensor);  // throws kInvalidArgument on a duplicate name
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const Tensor* find(const std::string& name) const;
  Tensor* find(const std::string& name);
  const Tensor& at(const std::string& name) const;  // throws naming the missing tensor
  size_t size() const { return tensors_.size(); }
  bool empty() const { return tensors_.empty(); }
  const Tensor& operator[](size_t i) const { return tensors_[i]; }
  Tensor& operator[](size_t i) { return tensors_[i]; }
  std::vector<Tensor>::const_iterator begin() const { return tensors_.begin(); }
  std::vector<Tensor>::const_iterator end() const { return tensors_.end(); }
  std::vector<Tensor>::iterator begin() { return tensors_.begin(); }
  std::vector<Tensor>::iterator end() { return tensors_.end(); }
  int64_t total_numel() const;

  std::map<std::string, std::string>& metadata() { return metadata_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::vector<Tensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace nq
