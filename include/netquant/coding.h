// Entropy coding of quantized models and the `.nq` compressed file (format: README "The .nq file").
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq {

// The most levels one codebook of a .nq file holds (its indices are code symbols 0 … 65535).
constexpr int kNqMaxLevels = 1 << 16;

IndexCoder parse_index_coder(const std::string& name);  // "auto" | "huffman" | "rans"; throws kInvalidArgument
const char* index_coder_name(IndexCoder coder);

// Fills huffman_bits_per_weight, ratio_huffman and ratio_file of every tensor's stats and of model.total by
// coding the model exactly as write_nq_file would (no file is written, model.index_coder as there). The first two
// are the paper's Huffman figures whichever coder the file uses; ratio_file is the file's. A model the format cannot hold (a codebook
// of more than kNqMaxLevels levels) gets NaN for all three.
//  - huffman_bits_per_weight: bits of the Huffman-coded index stream plus the coded positions, per weight;
//  - ratio_huffman: the paper's formula N·32 / (Σ_j (n_j+1)·b_j + k·32 [+ position bits]) (Choi et al. eqs. 1, 2, 10),
//    per codebook; a tensor's ratio counts the codebook(s) and code table it uses in full, the total counts
//    a shared (global) codebook or table once; tensors left in float count their stored bits;
//  - ratio_file: float32 bytes of the weights (4·N) over the bytes the file spends on them (tensor: its
//    directory record and payload; total: the whole file).
void account_coding(QuantizedModel& model);

// Writes `model` as a .nq file (atomic: temporary + rename). Also fills the coding statistics.
void write_nq_file(const std::string& path, QuantizedModel& model);

// Reads a .nq file back into a QuantizedModel (indices, codebooks, tensors left in float). Codebooks come
// back in file order (global scope: exactly one; otherwise each tensor's, tensor by tensor) with
// first_codebook renumbered accordingly; a tensor's codebooks, when it has several (row and group scopes), with
// their levels ascending (NaN last, equal values in stored order) whatever order the file stores them in (README
// "Order of a codebook's levels"), the indices with them. Coding statistics are filled, quantizer statistics are
// not stored. index_coder is the coder that writes the same file again (version 1: kHuffman; rANS in every tensor
// with a kept weight: kRans; else kAuto), so the statistics are the file's.
QuantizedModel read_nq_file(const std::string& path);

// ---- a budget on the file -------------------------------------------------------------------------------
// ECSQ with one λ for every codebook (in any scope), searched so that the .nq file of the result (what
// write_nq_file writes) takes at most `max_bytes`: the largest such file the search meets, within 0.5% of the
// budget when the rate's steps allow, bit for bit the model quantize_model makes at its λ (QuantStats::lambda).
// The coding statistics are filled. `params` asks for ecsq with neither a λ nor a target rate (the budget is the
// target); its rate_allocation is not read. Errors (kInvalidArgument): another method or a target given too, a
// budget of 0, a model whose quantization cannot be a .nq file (more than kNqMaxLevels levels), and a budget below
// the file with one level per codebook, naming the least size found (the tensors kept in float, the codebooks and
// the position streams are its floor). The file is coded with `coder` (the model returned carries it).
QuantizedModel quantize_model_to_file_size(const TensorSet& model, const TensorSet* importance,
                                           const ModelQuantizeParams& params, uint64_t max_bytes,
                                           IndexCoder coder = IndexCoder::kAuto);
// The checks of `params` above that need no model (for callers that check before reading their inputs).
void check_file_size_target(const ModelQuantizeParams& params);
// The budget that gives ratio_file ≥ `ratio`: ⌊4·(weights of every tensor) / ratio⌋ bytes (float32 bytes over file
// bytes, as account_coding counts it). kInvalidArgument unless ratio > 0 and the budget is at least one byte.
uint64_t file_bytes_for_ratio(const TensorSet& model, double ratio);

// ---- lower level: memory, inspection, streaming ---------------------------------------------------------

// Caps for hostile input: a file may legitimately decode to far more weights than it has bytes (pruned runs
// cost as little as 1 bit per 65535 weights), so callers that must bound memory (fuzzers, services) set
// max_elements, the total of decoded weights allowed; exceeding it is a kBadFile error.
struct NqLimits {
  uint64_t max_elements = std::numeric_limits<uint64_t>::max();
};

// The exact bytes write_nq_file writes (and fills the coding statistics).
std::vector<uint8_t> serialize_nq(QuantizedModel& model);
// Parses an in-memory .nq file; `source` names it in errors.
QuantizedModel parse_nq(const uint8_t* data, size_t size, const std::string& source, const NqLimits& limits = {});

struct NqTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  bool quantized = true;
  int64_t params = 0;
  int64_t pruned = 0;
  int64_t problem_size = 0;
  int64_t num_problems = 0;
  int max_k = 0;                 // largest codebook this tensor uses
  bool shared_table = false;     // global scope: indices coded with the file's shared table (unless rans)
  bool rans = false;             // indices coded with rANS (version 2), not Huffman
  uint64_t payload_offset = 0;
  uint64_t payload_bytes = 0;
  uint64_t index_bits = 0;       // coded index stream (rANS: its section, chunk sizes included)
  uint64_t table_bits = 0;       // stored code table(s) of this tensor (index lengths or rANS frequencies + gap code)
  uint64_t codebook_bits = 0;    // 32 per codebook entry stored in this tensor's payload
  uint64_t position_bits = 0;    // coded gap stream
  int gap_width = 0;             // 0 = no pruned weights
  uint64_t record_bytes = 0;     // its record in the directory
  double bits_per_weight = 0;    // bits of its record and payload / params
  double ratio_file = 0;         // 4·params / bytes of its record and payload (account_coding's ratio_file)
  bool crc_ok = false;
};

struct NqFileInfo {
  std::string path;
  int version = 0;
  uint16_t flags = 0;
  Method method = Method::kHwKmeans;
  Scope scope;
  bool shared_table = false;
  int global_k = 0;              // global scope: the shared codebook's size
  uint64_t file_size = 0;
  uint64_t header_bytes = 0;     // header, global section and directory (payloads start here)
  bool header_crc_ok = false;
  bool file_crc_ok = false;
  int64_t params = 0;
  double bits_per_weight = 0;    // file bits / params
  double ratio_file = 0;         // 4·params / file bytes
  std::vector<NqTensorInfo> tensors;
};
// Structure and checksums of a .nq file without decoding the weights. Malformed structure is a kBadFile
// error; checksum mismatches are reported in the result (header_crc_ok, file_crc_ok, crc_ok).
NqFileInfo describe_nq_file(const std::string& path);

// What decompress_nq_file writes for a quantized tensor W (a tensor kept in float is written as it is either way).
//  kValues: W, its dequantized values.
//  kCodes: what lookup-table kernels read (README "netquant decompress"). W.codes has W's shape and gives each weight's
//    column in its problem's row of W.codebook; it is U8 when the columns fit 0…255, else I16 up to 32767, else I32.
//    W.codebook is [problems, columns] in W's dtype (or `dtype`): weight i of W is
//    W.codebook[i / problem_size][W.codes[i]], bit for bit the value kValues writes. The columns are the largest
//    codebook's levels (a shorter codebook's row padded with +0; with several codebooks each row ascending, as
//    read_nq_file gives them, else as stored), then, when a weight is pruned, one +0 column that the pruned weights
//    use. A table of more than 64 entries per weight and stored level is refused (kUnsupported). The safetensors
//    metadata says netquant.layout = codes, netquant.method, netquant.scope, and per tensor "W.problem_size" and
//    (with pruned weights) "W.pruned_code".
enum class DecompressLayout { kValues, kCodes };

// Streams a .nq file into a safetensors file, one batch of tensors in memory at a time: the safetensors header is
// computed from the .nq directory first (kCodes: and each payload's codebooks), then each payload is read, verified
// (CRC), decoded, dequantized (or laid out as codes) and appended. Values equal QuantizedModel::dequantize():
// codebook value (pruned: +0) as float32, converted to the original dtype (or `dtype`) with round-to-nearest-even.
// Atomic output; refuses to overwrite the input, an output not named *.safetensors, and (kCodes) two outputs of
// one name (tensors "W" and "W.codes").
void decompress_nq_file(const std::string& nq_path, const std::string& out_path,
                        std::optional<DType> dtype = std::nullopt, DecompressLayout layout = DecompressLayout::kValues);

// The codes layout (DecompressLayout::kCodes) of a model in memory (read_nq_file's, or quantize_model's), with its
// metadata: the tensors and bytes decompress_nq_file writes for the model's file. `source` names the model in errors.
TensorSet codes_layout(const QuantizedModel& model, std::optional<DType> dtype = std::nullopt,
                       const std::string& source = "the model");

}  // namespace nq
