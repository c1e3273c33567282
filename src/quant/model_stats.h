// Internal: the statistics of a quantized model (per tensor and in total) from what every driver of a model
// hands back — the in-process quantize_model and the sharded one, which compute the error sums differently.
#pragma once

#include <cstdint>
#include <vector>

#include "netquant/quantize.h"

namespace nq::quant {

// Per quantized tensor: Σ h (ŵ − w)² and Σ (ŵ − w)² over all its weights (pruned ones with ŵ = 0).
struct TensorErrorSums {
  double weighted = 0;
  double squared = 0;
};

// Per problem (codebook), in codebook order: what the statistics need from its result.
struct ProblemSummary {
  int iterations = 0;
  bool converged = true;
  double lambda = 0;
  double seconds = 0;
  int levels = 0;             // codebook size
  double entropy_bits = 0;    // of the problem's index stream
  int64_t kept = 0;           // values in the problem (unpruned)
  static ProblemSummary of(const QuantizeResult& r) {
    return {r.iterations, r.converged, r.lambda, r.seconds, static_cast<int>(r.codebook.size()), r.entropy_bits,
            static_cast<int64_t>(r.indices.size())};
  }
};

// Fills out.tensors[*].stats and out.total from the indices and codebooks already in `out`, errors[t] for each
// quantized tensor t (indexed like out.tensors) and the problems. total_n: quantized weights in all.
void fill_model_stats(QuantizedModel& out, const std::vector<TensorErrorSums>& errors,
                      const std::vector<ProblemSummary>& problems, int64_t total_n);

}  // namespace nq::quant
