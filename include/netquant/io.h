// Model and data files: safetensors, .npy, IDX (MNIST format, .gz accepted). Parsers bound every length and
// offset; malformed input is an nq::Error (kBadFile) naming the file, the tensor and the problem.
#pragma once

#include <cstdint>
#include <map>
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
// The same file written one tensor at a time, so that a model larger than memory can be written as it is made.
// The header comes first, from `layout` (its tensors' names, dtypes and shapes in order, and its metadata); each
// write() then brings the layout's next tensor (kInvalidArgument if its name, dtype or shape differ), and commit()
// after the last renames the file into place. Destroyed before commit(), it leaves nothing behind.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const TensorSet& layout);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  void write(const Tensor& t);
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The header the writers write (8-byte length prefix excluded): `__metadata__` first when not empty, then each
// tensor of `layout` (name, dtype, shape; its byte range follows from the ones before) in order, padded with
// spaces to a multiple of 8. For writers that stream tensors they make as they go (decompress): their files are
// then the bytes write_safetensors gives the same tensors.
struct SafetensorsLayout {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};
std::string safetensors_header(const std::vector<SafetensorsLayout>& layout,
                               const std::map<std::string, std::string>& metadata);

// Tensor names and byte ranges only (for sharded loading: read just a slice of a file).
struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;    // absolute file offset of the first byte
  uint64_t end;      // one past the last byte
  std::string file;  // the file holding the tensor (one shard of a sharded checkpoint)
};
// The entries of a .safetensors file (header only), or of every shard of a sharded checkpoint given by its index
// (a .json file, see below; shards in name order, each in file order) or by its directory (resolve_tensor_path),
// with the same checks as the readers.
std::vector<SafetensorsEntry> read_safetensors_entries(const std::string& path);
// Elements [first, first + count) of one entry (flat, C order), read from entry.file with one seek and one read:
// a 1-D tensor named after the entry, in its stored dtype. Bounds are checked against the entry.
Tensor read_safetensors_range(const SafetensorsEntry& entry, int64_t first, int64_t count);

// ---- sharded checkpoints ---------------------------------------------------------------------------------
// A model split over several safetensors files, as Hugging Face writes checkpoints past a few GB: an index,
// `model.safetensors.index.json`, whose "weight_map" maps every tensor name to the shard file holding it (a
// relative path below the index's directory, e.g. "model-00001-of-00004.safetensors"). Other keys ("metadata"
// with its "total_size") are not used. A shard must hold exactly the tensors the index maps to it.
struct CheckpointIndex {
  std::vector<std::string> shards;                         // shard paths as the index spells them, sorted, unique
  std::vector<std::pair<std::string, size_t>> weight_map;  // tensor name -> its shard in `shards`, sorted by name
};
CheckpointIndex parse_checkpoint_index(const uint8_t* data, size_t size, const std::string& source);
CheckpointIndex read_checkpoint_index(const std::string& path);
// The whole checkpoint as one set: shards in name order, each shard's tensors in file order, each shard memory-
// mapped (tensors view into the maps). Metadata: the `__metadata__` entries on which every shard agrees.
TensorSet read_sharded_safetensors(const std::string& index_path);

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
// .safetensors, .npy (one tensor named after the file stem), IDX (*-ubyte, *.idx*, .gz), a sharded checkpoint's
// index (*.json), or a directory (see resolve_tensor_path). Throws kUnsupported for unknown extensions.
TensorSet read_tensors(const std::string& path);
// A directory stands for its one *.safetensors.index.json, else its one *.safetensors file (a Hugging Face
// model folder); several candidates, or none, are an error listing what it holds. Any other path is returned as is.
std::string resolve_tensor_path(const std::string& path);
// A safetensors model in any of its forms: a .safetensors file, a sharded checkpoint's index (*.json), or a
// directory holding either (resolve_tensor_path). is_safetensors_model says whether `path` names one.
bool is_safetensors_model(const std::string& path);
// Whether `path` is named as a model or a data set is (.safetensors, a checkpoint index, .npy, .nq, IDX): text
// reports refuse such names, which a slip would otherwise overwrite.
bool named_like_model_or_data(const std::string& path);
TensorSet read_safetensors_model(const std::string& path);
// The files read_tensors(path) reads: the file itself, and for an index every shard it names (so that a command
// can refuse to write over any of them). Throws as read_checkpoint_index does.
std::vector<std::string> tensor_input_files(const std::string& path);
// .safetensors or .npy (a single tensor) by extension.
void write_tensors(const std::string& path, const TensorSet& tensors);

}  // namespace nq
