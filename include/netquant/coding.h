// Entropy coding of quantized models and the `.nq` compressed file (format: README "The .nq file").
#pragma once

#include <string>

#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq {

// Fills huffman_bits_per_weight, ratio_huffman and ratio_file of every tensor's stats and of model.total by
// coding the model exactly as write_nq_file would (no file is written).
void account_coding(QuantizedModel& model);

// Writes `model` as a .nq file (atomic: temporary + rename). Also fills the coding statistics.
void write_nq_file(const std::string& path, QuantizedModel& model);

// Reads a .nq file back into a QuantizedModel (indices, codebooks, tensors left in float).
QuantizedModel read_nq_file(const std::string& path);

}  // namespace nq
