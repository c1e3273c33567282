// Op (g) on the CPU: the pruning threshold by nth_element over every score, then one pass in flat order that
// marks the scores below it and the earliest ties.
#include <algorithm>
#include <vector>

#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cpu {

void select_pruned(const quant::PruneArrays& a, int64_t count) {
  const size_t arrays = a.w.size();
  NQ_ASSERT(a.n.size() == arrays && a.mask.size() == arrays && (a.h.empty() || a.h.size() == arrays));
  int64_t total = 0;
  for (const size_t n : a.n) total += static_cast<int64_t>(n);
  NQ_CHECK(count >= 0 && count <= total, ErrorCode::kInvalidArgument,
           "select_pruned: cannot prune " << count << " of " << total << " values");
  auto score = [&](size_t t, size_t i) { return quant::prune_score(a.w[t][i], a.h.empty() ? 1.0 : a.h[t][i]); };
  for (size_t t = 0; t < arrays; ++t) std::fill(a.mask[t], a.mask[t] + a.n[t], uint8_t{0});
  if (count == 0) return;
  std::vector<double> all;
  all.reserve(static_cast<size_t>(total));
  for (size_t t = 0; t < arrays; ++t)
    for (size_t i = 0; i < a.n[t]; ++i) all.push_back(score(t, i));
  std::nth_element(all.begin(), all.begin() + (count - 1), all.end());
  const double thr = all[static_cast<size_t>(count - 1)];
  int64_t below = 0;
  for (const double v : all) below += v < thr;
  all.clear();
  all.shrink_to_fit();
  int64_t ties_left = count - below;  // scores equal to the threshold are pruned in flat order
  for (size_t t = 0; t < arrays; ++t)
    for (size_t i = 0; i < a.n[t]; ++i) {
      const double s = score(t, i);
      if (s < thr || (s == thr && ties_left > 0)) {
        if (s == thr) --ties_left;
        a.mask[t][i] = 1;
      }
    }
}

}  // namespace nq::cpu
