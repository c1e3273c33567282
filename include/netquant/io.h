// Model and data files: safetensors, .npy, IDX (MNIST format, .gz accepted). Parsers bound every length and
// offset; malformed input is an nq::Error (kBadFile) naming the file, the tensor and the problem.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "netquant/tensor.h"

namespace nq {

// ---- safetensors ----------------------------------------------------------------------------------------
// Reads every tensor in its stored dtype. Large files are memory-mapped; tensors are views into the map.
TensorSet read_safetensors(const std::string& path);
// Parses an in-memory file. `keepalive` owns `data` (tensors view into it); `source` names it in errors.
TensorSet parse_safetensors(const uint8_t* data, size_t size, const std::string& source,
                            std::shared_ptr<const void> keepalive);
// Writes tensors in their own dtypes (atomic: temporary + rename). `__metadata__` from tensors.metadata().
void write_safetensors(const std::string& path, const TensorSet& tensors);
std::string serialize_safetensors(const TensorSet& tensors);

// Tensor names and byte ranges only (for sharded loading: read just a slice of the file).
struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;  // absolute file offset of the first byte
  uint64_t end;    // one past the last byte
};
std::vector<SafetensorsEntry> read_safetensors_index(const std::string& path);
// Elements [first, first + count) of one indexed tensor (flat, C order), read from the file with one seek and
// one read: a 1-D tensor named after the entry, in its stored dtype. Bounds are checked against the entry.
Tensor read_safetensors_range(const std::string& path, const SafetensorsEntry& entry, int64_t first, int64_t count);

// ---- .npy -----------------------------------------------------------------------------------------------
// v1-v3 headers, '<f4' '<f8' '<f2' (and integer types), C order. Fortran order and pickles are errors.
Tensor read_npy(const std::string& path);
Tensor parse_npy(const uint8_t* data, size_t size, const std::string& source);
void write_npy(const std::string& path, const Tensor& tensor);
std::string serialize_npy(const Tensor& tensor);

// ---- IDX (MNIST) ----------------------------------------------------------------------------------------
// Any IDX file (u8/i8/i16/i32/f32/f64, big-endian), plain or gzip-compressed, as a tensor of its own dtype.
Tensor read_idx(const std::string& path);
Tensor parse_idx(const uint8_t* data, size_t size, const std::string& source);

struct Dataset {
  Tensor images;                // F32 [n, 1, rows, cols], values in [0, 1]
  std::vector<int32_t> labels;  // n labels in [0, num_classes)
  int num_classes = 10;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};
// Loads train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] (or t10k-* when !train) from `dir`.
Dataset load_mnist(const std::string& dir, bool train);
// The default data directory (Debian's dataset-fashion-mnist).
inline const char* default_data_dir() { return "/usr/share/datasets/fashion-mnist"; }

// ---- by extension ---------------------------------------------------------------------------------------
// .safetensors, .npy (one tensor named after the file stem), IDX (*-ubyte, *.idx*, .gz). Throws kUnsupported
// for unknown extensions.
TensorSet read_tensors(const std::string& path);
// .safetensors or .npy (a single tensor) by extension.
void write_tensors(const std::string& path, const TensorSet& tensors);

}  // namespace nq
