// Globally optimal weighted 1-D k-means by dynamic programming over the sorted distinct values (Wu 1991;
// Grønlund et al. 2017, arXiv 1701.07204; Ckmeans.1d.dp) in O(N) memory. Many items take the Lagrangian search
// of exact_lagrangian.h; otherwise (or should it fail) each DP layer is computed by
// divide and conquer over the monotone split points (plus Ckmeans' cross-layer lower bound), only two rows are
// kept, and the split points are recovered Hirschberg-style (forward rows meet backward rows at the middle
// cluster, then recurse on both halves), which costs about twice one forward pass.
#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>

#include "core/parallel_for.h"
#include "netquant/error.h"
#include "quant/exact_lagrangian.h"
#include "quant/exact_row.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {
namespace {

// Above this many items exact_dp prices clusters (exact_lagrangian.h): at 10^5 items and k = 256, 0.04 s against
// 2.7 s layer by layer. Up to it, the layers: op (e) solves rows of up to kRowsKmeansMaxRow (= this) values that
// way, and quantize() on such a row must give its bits.
constexpr size_t kLayeredMaxItems = size_t{1} << 16;
static_assert(kLayeredMaxItems == static_cast<size_t>(kRowsKmeansMaxRow), "rows of op (e) stay on the layered DP");

// Items (distinct values or histogram bins) as fp64 prefix sums of h, h·x, h·x² (x = w − shift).
struct Items {
  std::vector<double> p0, p1, p2;
  std::vector<float> value;    // representative (first) value of each item, ascending
  size_t size() const { return value.size(); }
  exact_row::ItemSums sums() const { return {p0.data(), p1.data(), p2.data()}; }
};

// exact_row::forward_rows over items [a, b) with its scratch allocated here (the two sides of a split run on two
// threads for long ranges, so each call has its own).
void forward_rows(const Items& it, size_t a, size_t b, int m, bool mirror, std::vector<double>& row) {
  const size_t len = b - a;
  std::vector<double> work(len + 1);
  std::vector<int32_t> opt_a(len + 1), opt_b(len + 1);  // int32: 8 bytes/item less
  row.resize(len + 1);
  exact_row::forward_rows(it.sums(), static_cast<int>(a), static_cast<int>(b), m, mirror, row.data(), work.data(),
                          opt_a.data(), opt_b.data());
}

// Appends the starts of the m clusters covering items [a, b) (len >= m) to `starts`, in order.
void solve(const Items& it, size_t a, size_t b, int m, std::vector<size_t>& starts) {
  const size_t len = b - a;
  if (m <= 1) { starts.push_back(a); return; }
  if (static_cast<size_t>(m) >= len) {
    for (size_t i = a; i < b; ++i) starts.push_back(i);
    return;
  }
  const int ml = m / 2, mr = m - ml;
  std::vector<double> fwd, bwd;
#pragma omp parallel sections if (len > 100000)
  {
#pragma omp section
    forward_rows(it, a, b, ml, false, fwd);
#pragma omp section
    forward_rows(it, a, b, mr, true, bwd);
  }
  // Split x: [a, a+x) gets ml clusters, [a+x, b) gets mr; bwd[len − x] covers the last len − x items.
  size_t best_x = static_cast<size_t>(ml);
  double best = std::numeric_limits<double>::infinity();
  for (size_t x = static_cast<size_t>(ml); x + static_cast<size_t>(mr) <= len; ++x) {
    const double v = fwd[x] + bwd[len - x];
    if (v < best) { best = v; best_x = x; }
  }
  fwd.clear(); fwd.shrink_to_fit();
  bwd.clear(); bwd.shrink_to_fit();
  solve(it, a, a + best_x, ml, starts);
  solve(it, a + best_x, b, mr, starts);
}

}  // namespace

RawResult exact_dp(const Problem& p, const SortedData& s, const QuantizeParams& q) {
  RawResult out;
  const size_t n = s.size();
  const auto& w = s.w();
  const auto& h = s.h();
  const double shift = s.shift();
  // Items: distinct values, or (huge inputs) bins of consecutive distinct values with about equal counts.
  const size_t distinct = s.distinct();
  int64_t bins = q.exact_histogram_bins;
  if (bins == 0) bins = distinct > (size_t{1} << 22) ? (int64_t{1} << 20) : 0;
  const size_t per_bin = (bins > 0 && distinct > static_cast<size_t>(bins))
                             ? (n + static_cast<size_t>(bins) - 1) / static_cast<size_t>(bins)
                             : 0;  // 0: one item per distinct value (exact)
  Items it;
  const size_t items_max = per_bin ? static_cast<size_t>(bins) + 1 : distinct;  // reserved: no growth copies
  it.p0.reserve(items_max + 1); it.p1.reserve(items_max + 1); it.p2.reserve(items_max + 1);
  it.value.reserve(items_max);
  it.p0.push_back(0); it.p1.push_back(0); it.p2.push_back(0);
  std::vector<size_t> item_start;  // sorted position where each item begins
  item_start.reserve(items_max + 1);
  Moments a;
  for (size_t i = 0; i < n; ++i) {
    const bool new_value = i == 0 || w[i] != w[i - 1];
    const bool new_item = i == 0 || (new_value && (per_bin == 0 || i - item_start.back() >= per_bin));
    if (new_item) {
      if (i) { it.p0.push_back(a.s0); it.p1.push_back(a.s1); it.p2.push_back(a.s2); }
      item_start.push_back(i);
      it.value.push_back(w[i]);
    }
    add_moments(a, w[i], h[i], shift);
  }
  it.p0.push_back(a.s0); it.p1.push_back(a.s1); it.p2.push_back(a.s2);
  item_start.push_back(n);

  NQ_CHECK(it.size() < static_cast<size_t>(INT32_MAX), ErrorCode::kUnsupported,
           "exact: " << it.size() << " items exceed the DP's 32-bit split points (set exact_histogram_bins)");
  const int m = static_cast<int>(std::min<size_t>(static_cast<size_t>(q.k), it.size()));
  std::vector<size_t> starts;
  // Many items: the Lagrangian search (a few O(L log L) penalised DPs); for fewer items (rows, groups: op (e) runs
  // the layer-by-layer DP of exact_row.h, and the two agree bit for bit there), or should that search fail, the
  // layers by divide and conquer.
  const bool priced = it.size() > kLayeredMaxItems && m >= 2 && static_cast<size_t>(m) < it.size() &&
                      lagrangian_partition(it.sums(), it.size(), m, starts);
  if (!priced) {
    starts.clear();
    solve(it, 0, it.size(), m, starts);
  }
  NQ_ASSERT(static_cast<int>(starts.size()) == m);
  starts.push_back(it.size());
  // Centres: weighted mean of each cluster (plain mean of its members when all are weightless).
  out.centers.resize(static_cast<size_t>(m));
  std::vector<double> first_value(static_cast<size_t>(m));
  double total = 0;
  for (int j = 0; j < m; ++j) {
    const size_t ia = starts[j], ib = starts[j + 1];
    const double s0 = it.p0[ib] - it.p0[ia], s1 = it.p1[ib] - it.p1[ia], s2 = it.p2[ib] - it.p2[ia];
    total += interval_scatter(s0, s1, s2);
    if (s0 > 0) {
      out.centers[j] = run_mean(s0, s1, shift, w[item_start[ia]], w[item_start[ib] - 1]);
    } else {
      double sum = 0;
      for (size_t i = item_start[ia]; i < item_start[ib]; ++i) sum += w[i];
      out.centers[j] = sum / static_cast<double>(item_start[ib] - item_start[ia]);
    }
    first_value[j] = it.value[ia];
  }
  // Label = the cluster whose first value is the last one <= w (clusters are intervals of the sorted values).
  out.labels.resize(p.n);
  parallel_for(static_cast<int64_t>(p.n), kInlineLoopMax, [&](int64_t i) {
    out.labels[static_cast<size_t>(i)] = exact_row::label(p.w[i], first_value.data(), m);
  });
  out.zero_importance = RawResult::ZeroImportance::kNearestUsed;
  out.iterations = 1;
  out.converged = true;
  std::vector<int64_t> counts(static_cast<size_t>(m));
  for (int j = 0; j < m; ++j) counts[j] = static_cast<int64_t>(item_start[starts[j + 1]] - item_start[starts[j]]);
  const double d = total / static_cast<double>(n);
  out.history.push_back({1, d, d, histogram_entropy(counts.data(), m), m});
  return out;
}

}  // namespace nq::quant
