// The row/group scopes' k-means through op (e): a tensor's rows in one call, then each row's result compacted by
// finalize exactly as nq::quantize compacts it (quantizers.h quantize_rows_kmeans).
#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/iteration_errors.h"
#include "core/scratch_vector.h"
#include "netquant/error.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "quant/row_lloyd.h"

namespace nq::quant {

std::vector<QuantizeResult> quantize_rows_kmeans(const float* w, const float* h, const std::vector<int64_t>& row_begin,
                                                 const QuantizeParams& q, Backend backend,
                                                 const std::vector<const std::vector<float>*>& warm,
                                                 int64_t slice_values) {
  const auto t0 = std::chrono::steady_clock::now();
  check_quantize_params(q);
  const int64_t rows = static_cast<int64_t>(row_begin.size()) - 1;
  NQ_ASSERT(rows >= 0 && (warm.empty() || static_cast<int64_t>(warm.size()) == rows));
  check_warm_starts(warm);
  const bool exact = q.method == Method::kExact;
  if (q.method != Method::kKmeans && q.method != Method::kHwKmeans && !exact) return {};
  if (!exact && q.init == Init::kKmeansPP) return {};  // its D² sampling stays on the host driver
  if (exact && q.exact_histogram_bins > 0) return {};   // binned items: the host driver
  int64_t longest = 0;
  for (int64_t r = 0; r < rows; ++r) longest = std::max(longest, row_begin[r + 1] - row_begin[r]);
  if (longest > (backend == Backend::kCuda && !exact ? kRowsKmeansCudaMaxRow : kRowsKmeansMaxRow)) return {};
  if (!method_traits(q.method).uses_importance) h = nullptr;

  // Every per-row array of the op is strided by k_op = min(k, longest row), not k: a row with k ≥ its distinct
  // count takes the exact-representation shortcut (at most its length in centres), and any other row has
  // k < distinct ≤ length ≤ longest, so it sees the same k. The same bits, and arrays bounded by the values
  // (group:1 at k = 256 would otherwise ask for 256 centres per value, on the host and on the device).
  const int k_op = static_cast<int>(std::min<int64_t>(q.k, std::max<int64_t>(longest, 1)));
  const size_t k = static_cast<size_t>(k_op);
  // Warm starts as warm_start() makes them: sorted, equal levels merged; at most k of them fit the op.
  std::vector<double> initial;
  std::vector<int32_t> initial_count;
  const bool any_warm =
      !exact && std::any_of(warm.begin(), warm.end(), [](const auto* c) { return c && !c->empty(); });
  if (any_warm) {
    initial.assign(static_cast<size_t>(rows) * k, 0.0);
    initial_count.assign(static_cast<size_t>(rows), 0);
    for (int64_t r = 0; r < rows; ++r) {
      if (!warm[r] || warm[r]->empty()) continue;
      std::vector<double> c(warm[r]->begin(), warm[r]->end());
      std::sort(c.begin(), c.end());
      c.erase(std::unique(c.begin(), c.end()), c.end());
      if (c.size() > static_cast<size_t>(q.k)) return {};
      if (c.size() > k) continue;  // only when k > longest: every row takes the shortcut, the start is unused
      std::copy(c.begin(), c.end(), initial.begin() + static_cast<ptrdiff_t>(static_cast<size_t>(r) * k));
      initial_count[static_cast<size_t>(r)] = static_cast<int32_t>(c.size());
    }
  }

  RowsKmeansJob job;  // the settings every slice shares; the data pointers are set per slice below
  job.k = k_op;
  job.init =
      static_cast<int>(q.init == Init::kQuantile ? row_lloyd::InitRule::kQuantile : row_lloyd::InitRule::kLinear);
  job.max_iter = q.max_iter;
  job.tol = q.tol;
  job.exact = exact;
  const size_t n = static_cast<size_t>(row_begin.back());
  std::vector<double> centers(static_cast<size_t>(rows) * k);
  std::vector<int32_t> center_count(static_cast<size_t>(rows)), iterations(static_cast<size_t>(rows));
  ScratchVector<int32_t> labels(n);  // the op writes every row's labels: no serial zero fill of n values first
  std::vector<uint8_t> converged(static_cast<size_t>(rows));
  // Rows in slices of at most slice_values values per op call (rows are independent, so slicing changes no bit):
  // the device then holds ~12 B per value of one slice, whatever the tensor's size.
  std::vector<int64_t> slice_begin;
  for (int64_t r0 = 0; r0 < rows;) {
    const int64_t r1 = next_slice(row_begin, r0, slice_values, slice_begin);
    RowsKmeansJob part = job;
    part.w = w + row_begin[r0];
    part.h = h ? h + row_begin[r0] : nullptr;
    part.row_begin = slice_begin.data();
    part.rows = r1 - r0;
    part.initial = any_warm ? initial.data() + static_cast<size_t>(r0) * k : nullptr;
    part.initial_count = any_warm ? initial_count.data() + r0 : nullptr;
    const RowsKmeansOut out{centers.data() + static_cast<size_t>(r0) * k, center_count.data() + r0,
                            labels.data() + row_begin[r0], iterations.data() + r0, converged.data() + r0};
    try {
      ops_rows_kmeans(backend, part, out);
    } catch (const Error& e) {
      // A codebook too large for the device's shared memory, or a slice beyond its memory: the host driver.
      if (e.code() == ErrorCode::kUnsupported || e.code() == ErrorCode::kOutOfMemory) return {};
      throw;
    }
    r0 = r1;
  }

  // Each row compacted as quantize() compacts it; rows are independent.
  std::vector<QuantizeResult> results(static_cast<size_t>(rows));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  IterationErrors errors;  // nothing may throw out of the region: rethrown below
#pragma omp parallel for schedule(dynamic, 16) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) errors.run(static_cast<size_t>(r), [&] {
    const size_t ri = static_cast<size_t>(r), begin = static_cast<size_t>(row_begin[r]);
    const Problem p = row_problem(w, h, row_begin[r], row_begin[r + 1], backend);
    RawResult raw;
    raw.centers.assign(centers.begin() + static_cast<ptrdiff_t>(ri * k),
                       centers.begin() + static_cast<ptrdiff_t>(ri * k + static_cast<size_t>(center_count[ri])));
    raw.labels.assign(labels.begin() + static_cast<ptrdiff_t>(begin),
                      labels.begin() + static_cast<ptrdiff_t>(begin + p.n));
    raw.iterations = iterations[ri];
    raw.converged = converged[ri] != 0;
    if (exact) raw.zero_importance = RawResult::ZeroImportance::kNearestUsed;  // as exact_dp hands it back
    results[ri] = finalize(p, std::move(raw));
    results[ri].backend = backend;
    results[ri].seconds = seconds * static_cast<double>(p.n) / static_cast<double>(std::max<size_t>(n, 1));
  });
  errors.rethrow_first();
  return results;
}

}  // namespace nq::quant
