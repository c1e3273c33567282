// (Hessian-weighted) k-means by Lloyd iterations on the sorted values [Choi et al. 2017 eq. 8]:
// in 1-D each cluster is an interval, so an iteration is k binary searches plus O(k) prefix-sum arithmetic.
#include <cmath>

#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {

RawResult lloyd_sorted(const SortedData& s, const QuantizeParams& q) {
  RawResult out;
  const size_t n = s.size();
  std::vector<double> c = q.initial_centers.empty() ? init_centers(s, q.k, q.init, q.seed) : warm_start(q);
  std::vector<size_t> bounds, prev_bounds;
  std::vector<int64_t> counts;
  double prev_obj = infinity();
  out.converged = false;
  for (int it = 1; it <= std::max(1, q.max_iter); ++it) {
    const int k = static_cast<int>(c.size());
    // Assignment: cluster j = sorted positions [bounds[j], bounds[j + 1]).
    bounds.assign(static_cast<size_t>(k) + 1, 0);
    bounds[k] = n;
    for (int j = 1; j < k; ++j) bounds[j] = std::max(bounds[j - 1], s.boundary(c[j - 1], c[j]));
    if (bounds == prev_bounds) {  // the assignment no longer changes: a fixed point
      out.converged = true;
      break;
    }
    // Update: weighted mean of each interval; empty intervals are dropped (centres stay strictly ascending).
    std::vector<double> next;
    counts.clear();
    std::vector<size_t> kept_bounds{0};
    double dist = 0;
    for (int j = 0; j < k; ++j) {
      const size_t a = bounds[j], b = bounds[j + 1];
      if (a == b) continue;
      const SortedData::Sums r = s.range(a, b);
      double center;
      if (r.s0 > 0) {
        center = run_mean(r.s0, r.s1, s.shift(), s.w()[a], s.w()[b - 1]);
        dist += interval_scatter(r.s0, r.s1, r.s2);
      } else {  // only weightless members: their plain mean (costs nothing either way)
        double sum = 0;
        for (size_t i = a; i < b; ++i) sum += s.w()[i];
        center = sum / static_cast<double>(b - a);
      }
      next.push_back(center);
      counts.push_back(static_cast<int64_t>(b - a));
      kept_bounds.push_back(b);
    }
    c.swap(next);
    prev_bounds.swap(kept_bounds);
    const double obj = dist / static_cast<double>(n);
    out.history.push_back({it, obj, obj, histogram_entropy(counts.data(), static_cast<int>(counts.size())),
                           static_cast<int>(c.size())});
    out.iterations = it;
    // A dropped cluster changes k, so compare boundaries only when the count is unchanged.
    if (static_cast<int>(c.size()) != k) prev_bounds.clear();
    if (prev_obj < infinity() && (prev_obj - obj) <= q.tol * prev_obj) {
      out.converged = true;
      break;
    }
    prev_obj = obj;
  }
  out.centers = c;
  out.labels_nearest = true;  // finalize labels them
  return out;
}

}  // namespace nq::quant
