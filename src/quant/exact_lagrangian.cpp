// The Lagrangian search of exact_lagrangian.h: a penalised DP per price, the price searched on a log scale.
#include "quant/exact_lagrangian.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "netquant/error.h"

namespace nq::quant {
namespace {

// best(x) = min over j < x of best(j) + cost(j, x) + λ: the least penalised cost of items [0, x), with the last
// cluster's start of one clustering that reaches it (ties: the later start). 16 bytes per item.
class PenalisedDp {
 public:
  PenalisedDp(const exact_row::ItemSums& it, int items)
      : it_(it), items_(items), best_(items + 1), parent_(items + 1), cand_(items + 1), from_(items + 1) {}

  // Runs the DP at price λ; returns the number of clusters of the optimum found.
  int run(double lambda) {
    best_[0] = 0.0;
    // The queue: candidate starts cand_[q] in increasing order, cand_[q] the best start for the items' ends in
    // [from_[q], from_[q + 1]). By the quadrangle inequality a later start that wins at some end wins at every
    // later end, so each new candidate displaces a suffix of the queue and claims the ends from a crossing on.
    int head = 0, tail = 0;
    cand_[tail] = 0;
    from_[tail] = 1;
    ++tail;
    for (int x = 1; x <= items_; ++x) {
      while (tail - head >= 2 && from_[head + 1] <= x) ++head;
      const int j = cand_[head];
      best_[x] = value(j, x) + lambda;
      parent_[x] = j;
      if (x == items_) break;
      // Candidate x for the ends after x.
      bool placed = false;
      while (tail > head) {
        const int jb = cand_[tail - 1];
        const int s = std::max(from_[tail - 1], x + 1);
        if (wins(x, jb, s)) {  // x beats jb from jb's first end on: jb is never needed again
          --tail;
          continue;
        }
        // The first end where x wins (items_ + 1 when none), known to lie after s: galloping from s, then
        // bisection. The crossing is usually about a cluster's length away, so the probes stay near s in memory
        // instead of starting half the items away (a cache miss per step).
        int lo = s + 1, hi = items_ + 1;
        for (int64_t step = 1;; step *= 2) {
          const int64_t probe = static_cast<int64_t>(s) + step;
          if (probe > items_) break;
          if (wins(x, jb, static_cast<int>(probe))) {
            hi = static_cast<int>(probe);
            break;
          }
          lo = static_cast<int>(probe) + 1;
        }
        while (lo < hi) {
          const int mid = lo + (hi - lo) / 2;
          if (wins(x, jb, mid)) hi = mid; else lo = mid + 1;
        }
        if (lo <= items_) {
          cand_[tail] = x;
          from_[tail] = lo;
          ++tail;
        }
        placed = true;
        break;
      }
      if (!placed) {
        cand_[tail] = x;
        from_[tail] = x + 1;
        ++tail;
      }
    }
    int clusters = 0;
    for (int x = items_; x > 0; x = parent_[x]) ++clusters;
    return clusters;
  }

  // The cluster starts of the latest run's optimum, ascending.
  void starts(std::vector<size_t>& out) const {
    out.clear();
    for (int x = items_; x > 0; x = parent_[x]) out.push_back(static_cast<size_t>(parent_[x]));
    std::reverse(out.begin(), out.end());
  }

 private:
  double value(int j, int x) const { return best_[j] + exact_row::item_cost(it_, j, x); }
  // Start i (later than j) is at least as good as j for the items [.., x).
  bool wins(int i, int j, int x) const { return value(i, x) <= value(j, x); }

  const exact_row::ItemSums& it_;
  int items_;
  std::vector<double> best_;
  std::vector<int32_t> parent_, cand_, from_;
};

// P (fewer than m clusters) and Q (more), both optimal at one price, given by their starts. Exchanging the tails
// at a cluster of Q that lies inside a cluster of P gives two clusterings whose costs add to at most P's plus Q's
// (the quadrangle inequality), so both are optimal at that price too; the cut is chosen so that one of them has
// exactly m clusters. With d(j) = j − (the cluster of P holding q_j), which grows by at most 1 per step from
// d(0) = 0 to d(b − 1) ≥ b − a, the first j with d(j) = b − m + 1 has q_{j−1} and q_j in one cluster i of P;
// P's starts up to p_i followed by Q's from q_j on are m clusters.
bool splice(const std::vector<size_t>& p, const std::vector<size_t>& q, int m, std::vector<size_t>& out) {
  const int a = static_cast<int>(p.size()), b = static_cast<int>(q.size());
  if (!(a < m && m < b)) return false;
  int i = 0;  // the cluster of P holding q_j: p[i] ≤ q[j] < p[i + 1]
  for (int j = 0; j < b; ++j) {
    while (i + 1 < a && p[static_cast<size_t>(i) + 1] <= q[static_cast<size_t>(j)]) ++i;
    if (j - i == b - m + 1) {
      out.assign(p.begin(), p.begin() + i + 1);
      out.insert(out.end(), q.begin() + j, q.end());
      return static_cast<int>(out.size()) == m;
    }
  }
  return false;
}

}  // namespace

bool lagrangian_partition(const exact_row::ItemSums& it, size_t items, int m, std::vector<size_t>& starts,
                          LagrangianStats* stats) {
  NQ_ASSERT(m >= 2 && static_cast<size_t>(m) < items && items < static_cast<size_t>(INT32_MAX));
  const int L = static_cast<int>(items);
  const double total = exact_row::item_cost(it, 0, L);
  if (!(total > 0) || !std::isfinite(total)) return false;
  PenalisedDp dp(it, L);
  // The count falls roughly as λ^(−1/3) (high-resolution theory: cost(k) ∝ 1/k², so the saving of the k-th
  // cluster ∝ 1/k³); the first price assumes cost(k) ≈ total / (2k²). Each next price is the secant step on log
  // count against log λ through the last two prices (the λ^(−1/3) law after the first). Once both sides of the
  // target are known, a step that leaves the bracket, or a second one in a row on the same side, is replaced by
  // interpolation between the bracket's ends or by bisection (Illinois).
  const double log_m = std::log(static_cast<double>(m));
  double x = std::log(total) - 3.0 * log_m;
  bool have_lo = false, have_hi = false;  // lo: too many clusters (λ too low); hi: too few
  double lo_x = 0, lo_y = 0, hi_x = 0, hi_y = 0, prev_x = 0, prev_y = 0, stall_step = 0;
  int last_side = 0, last_n = 0;
  std::vector<size_t> lo_starts, hi_starts;
  for (int runs = 1; runs <= 200; ++runs) {
    const int n = dp.run(std::exp(x));
    if (stats) stats->dp_runs = runs;
    if (n == m) {
      dp.starts(starts);
      return static_cast<int>(starts.size()) == m;
    }
    const double y = std::log(static_cast<double>(n));
    const int side = n > m ? -1 : 1;
    const bool repeated = side == last_side;
    last_side = side;
    if (side < 0) {
      have_lo = true; lo_x = x; lo_y = y;
      dp.starts(lo_starts);
    } else {
      have_hi = true; hi_x = x; hi_y = y;
      dp.starts(hi_starts);
    }
    const double slope = runs > 1 && x != prev_x ? (y - prev_y) / (x - prev_x) : 0.0;
    double next = slope < 0 && std::isfinite(slope) ? x + (log_m - y) / slope : x + 3.0 * (y - log_m);
    if (have_lo && have_hi) {
      // Prices equal to 1e-12 that still straddle m: a tie (m is no single price's optimum, or only of a price
      // too narrow to hit). Both sides are optimal at that price to within its width: splice them.
      if (hi_x - lo_x < 1e-12 * std::max(1.0, std::fabs(lo_x))) {
        if (stats) stats->spliced = true;
        return splice(hi_starts, lo_starts, m, starts);
      }
      const double margin = 0.05 * (hi_x - lo_x);
      if (repeated || !(next > lo_x + margin && next < hi_x - margin)) {
        double t = repeated ? 0.5 : (lo_y - log_m) / (lo_y - hi_y);
        t = std::min(0.95, std::max(0.05, t));
        next = lo_x + t * (hi_x - lo_x);
      }
    } else {
      // A count can stay put over a wide range of prices (100 far-apart clumps keep 100 clusters until λ drops
      // to their spread): while it does, the step doubles.
      stall_step = n == last_n ? std::max(0.25, 2 * stall_step) : 0.0;
      const double step = next - x;
      next = x + std::copysign(std::min(30.0, std::max(std::fabs(step), stall_step)), -static_cast<double>(side));
    }
    prev_x = x;
    prev_y = y;
    last_n = n;
    x = next;
  }
  return false;
}

}  // namespace nq::quant
