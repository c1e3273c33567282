// Op (g) on the CPU: the cut from histograms of the scores (quant/prune_cut.h), then each array marked by it. No
// score is stored per weight: the op used to sort an 8-byte score per weight (nth_element), a third of a pruned
// row-scope run's peak memory.
#include <algorithm>

#include "netquant/error.h"
#include "quant/prune_cut.h"
#include "quant/quant_ops.h"

namespace nq::cpu {

void select_pruned(const quant::PruneArrays& a, int64_t count) {
  const size_t arrays = a.w.size();
  NQ_ASSERT(a.n.size() == arrays && a.mask.size() == arrays && (a.h.empty() || a.h.size() == arrays));
  int64_t total = 0;
  for (const size_t n : a.n) total += static_cast<int64_t>(n);
  NQ_CHECK(count >= 0 && count <= total, ErrorCode::kInvalidArgument,
           "select_pruned: cannot prune " << count << " of " << total << " values");
  if (count == 0) {
    for (size_t t = 0; t < arrays; ++t) std::fill(a.mask[t], a.mask[t] + a.n[t], uint8_t{0});
    return;
  }
  const quant::PruneCut cut = quant::find_prune_cut(a, count);
  for (size_t t = 0; t < arrays; ++t)
    quant::mark_pruned(cut, t, a.w[t], a.h.empty() ? nullptr : a.h[t], static_cast<int64_t>(a.n[t]), a.mask[t]);
}

}  // namespace nq::cpu
