// The up-front memory check for many small problems (see problem_memory.h).
#include "quant/problem_memory.h"

#include <iomanip>

#include "netquant/error.h"

namespace nq::quant {

void check_problem_memory(const ProblemLoad& load, uint64_t available) {
  if (available == 0 || load.problems <= 0) return;
  const double per_set =
      static_cast<double>(load.problems) * static_cast<double>(kBytesPerProblem) + load.codebook_bytes;
  const double need = per_set * static_cast<double>(load.sets);
  if (need <= static_cast<double>(available)) return;
  const double gb = 1e9;
  NQ_FAIL(ErrorCode::kOutOfMemory,
          "scope " << load.scope << " makes " << load.problems << " problems"
                   << (load.sets > 1 ? " for each of " + std::to_string(load.sets) + " λ" : std::string())
                   << " (tensor '" << load.busiest << "' alone " << load.busiest_problems << " of "
                   << load.busiest_size << (load.busiest_size == 1 ? " value" : " values") << " each); their results need about "
                   << std::fixed << std::setprecision(1) << need / gb << " GB, more than the "
                   << static_cast<double>(available) / gb
                   << " GB of memory available. Use a coarser --scope (tensor, or group:G with a larger G), "
                      "--skip-1d to leave 1-D tensors (biases, norms) unquantized, or fewer λ per run");
}

}  // namespace nq::quant
