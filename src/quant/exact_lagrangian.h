// Internal: optimal 1-D k-means over many items by the Lagrangian relaxation (Grønlund et al. 2017, §4; the
// "Aliens" or WQS method): for a price λ per cluster, the least cost of any clustering plus λ·clusters is one
// left-to-right DP over the items, O(L log L) with a monotone queue of candidate cluster starts (the k-means cost
// obeys the quadrangle inequality, so the best start of the last cluster never moves left). Its cluster count
// falls as λ grows; a search over log λ finds a λ whose optimum has exactly m clusters, and that clustering is
// optimal for m (it beats every clustering with m clusters by the same penalised cost). Some m are reached by no λ
// (clusterings with fewer and more clusters tie at the critical price: symmetric or repeated data); there the two
// sides are spliced into an optimal clustering of m (Schieber's exchange). Should that fail, the search reports
// it and exact_dp.cpp solves the problem layer by layer instead.
#pragma once

#include <cstddef>
#include <vector>

#include "quant/exact_row.h"

namespace nq::quant {

struct LagrangianStats {
  int dp_runs = 0;       // penalised DPs run by the search
  bool spliced = false;  // m clusters came from splicing the two sides of a tie
};

// Items [0, items) with prefix sums `it`, 2 ≤ m < items. On success writes the m cluster starts (item indices,
// ascending, the first 0) to `starts` and returns true; false when the search found no clustering of m.
bool lagrangian_partition(const exact_row::ItemSums& it, size_t items, int m, std::vector<size_t>& starts,
                          LagrangianStats* stats = nullptr);

}  // namespace nq::quant
