// Internal: a quantized tensor's values in a float dtype. QuantizedModel::dequantize and the .nq decompressor
// (coding::dequantize_tensor) both call it, so a weight read back from a file and one from memory are the same
// bits by construction.
#pragma once

#include <vector>

#include "netquant/quantize.h"

namespace nq::quant {

// Each weight is its codebook's value as float32 converted to `dtype` (round to nearest even for F16/BF16, exact
// for F64); a pruned weight is +0. The conversion is per value, so converting each codebook once and looking the
// weights up gives those bits: one table read per weight, in parallel chunks, at the indices' stored width. The
// indices must be valid for their codebooks (the callers have checked them). `dtype` must be a float dtype.
Tensor dequantize_indices(const QuantizedTensor& qt, const std::vector<std::vector<float>>& codebooks, DType dtype);

}  // namespace nq::quant
