// Internal: quantize_model's memory for many small problems. Each problem's result (its QuantizeResult, codebook
// and spec) costs a few hundred bytes beyond the weights: nothing for tensor scope, but rows or groups of a few
// values (a 1-D tensor under `--scope row` has rows of one value) multiply it by the weight count. Such a run is
// refused before it starts when that alone cannot fit, instead of being killed by the kernel.
#pragma once

#include <cstdint>
#include <string>

namespace nq::quant {

// Bytes per problem result at the peak of quantize_model (measured: ~390 with 16 levels, group:16 on 10^7 weights,
// bench/RESULTS.md "CPU quantizers").
constexpr uint64_t kBytesPerProblem = 384;

struct ProblemLoad {
  int64_t problems = 0;  // in the whole model
  size_t sets = 1;       // result sets (one per λ of a batched sweep)
  std::string scope;     // as the user wrote it (row, group:16, …)
  std::string busiest;   // the tensor with the most problems, its count and size
  int64_t busiest_problems = 0, busiest_size = 0;
  // Bytes beyond kBytesPerProblem for codebooks of more than 16 levels, over all problems of one set: a problem of
  // `size` values holds up to min(k, size) levels, each a float in its result and an fp64 centre in the row op.
  double codebook_bytes = 0;
};

// What one problem's codebook adds to kBytesPerProblem (which was measured with 16 levels).
inline double extra_codebook_bytes(int64_t k, int64_t size) {
  const int64_t levels = k < size ? k : size;
  return levels > 16 ? 12.0 * static_cast<double>(levels - 16) : 0.0;
}

// Throws Error(kOutOfMemory) naming the scope, the busiest tensor and the remedies when the problems' results
// would need more than `available` bytes; available = 0 (unknown) checks nothing.
void check_problem_memory(const ProblemLoad& load, uint64_t available);

}  // namespace nq::quant
