// Internal: the codes layout of a quantized tensor (coding.h, DecompressLayout::kCodes), what lookup-table kernels
// read: W.codes (each weight's column in its problem's row of the table) and W.codebook ([problems, columns]).
// decompress_nq_file streams it from a file, codes_layout() builds it from a model in memory; both call these, so
// the two give the same bytes by construction.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq::coding {

// The shape of one tensor's layout, known before its indices are decoded (from the file's structure alone).
struct CodesShape {
  int64_t problems = 0;     // rows of W.codebook: one per codebook problem (global and tensor scopes: 1)
  int64_t columns = 0;      // the largest codebook's levels, +1 for the +0 column of pruned weights
  int64_t pruned_code = -1; // the pruned weights' column (the last), or -1 when no weight is pruned
  DType codes_dtype = DType::kU8;  // U8 when the columns fit 0…255, else I16 up to 32767, else I32
};

// `levels` is the sum of the tensor's codebook sizes (its stored levels), `max_k` the largest; an empty tensor gets a
// [0, 0] table whatever its codebooks. Throws kUnsupported naming `what` when the padded table would take more than
// 64 entries per weight and stored level (+65,537): one codebook far longer than the rest, which no quantizer makes
// (theirs stay under 3 per weight) but a hand-made model or a hostile file could ask for.
CodesShape codes_shape(const std::string& what, int64_t numel, int64_t problem_size, int64_t num_problems,
                       int64_t max_k, int64_t levels, bool any_pruned);

// W.codes and W.codebook of `t` (indices valid for `codebooks`, as a decoded or quantized tensor's are), the table in
// `codebook_dtype` (a float dtype): each level as float32 converted as dequantization converts it, the padding +0.
Tensor tensor_codes(const QuantizedTensor& t, const CodesShape& shape);
Tensor tensor_codebook(const QuantizedTensor& t, const std::vector<std::vector<float>>& codebooks,
                       const CodesShape& shape, DType codebook_dtype);

std::string codes_name(const std::string& tensor);     // "W.codes"
std::string codebook_name(const std::string& tensor);  // "W.codebook"

// The layout's safetensors metadata: netquant.layout = codes, the method and scope, and per quantized tensor
// "W.problem_size" and, with pruned weights, "W.pruned_code".
void add_layout_metadata(std::map<std::string, std::string>& metadata, Method method, const Scope& scope);
void add_tensor_metadata(std::map<std::string, std::string>& metadata, const std::string& tensor,
                         int64_t problem_size, const CodesShape& shape);

// Throws kInvalidArgument when two outputs share a name (a model with tensors "W" and "W.codes"), naming the
// tensors both come from, or when one is named "__metadata__" (safetensors' key for the metadata). `outputs`
// pairs each output's name with its tensor's.
void check_output_names(const std::string& source, const std::vector<std::pair<std::string, std::string>>& outputs);

}  // namespace nq::coding
