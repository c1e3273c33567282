// Internal: exact λ = 0 nearest-centre labels by float thresholds, for the passes that need labels only (the
// k-means drivers' final labelling). The brute-force rule is label(w) = argmin_j fl(fl(w − c_j)²), ties to the
// lowest j (quant_formulas.h assign_cost at h = 1, λ = 0). Over a float w it is a step function, so it is
// precomputed as k − 1 float thresholds, and a label costs a branch-free search of a tiny table instead of
// fp64 costs of several centres.
//
// Why it is exact. Let U_j(w) = closer_to_upper(w, c_{j−1}, c_j). For w ≤ c_{j−1}, |w − c_{j−1}| ≤ |w − c_j| and
// rounding is monotone, so U_j is false; on (c_{j−1}, c_j) one squared difference only grows and the other only
// shrinks with w, so U_j switches from false to true at most once. For w ≥ c_j it is true unless rounding makes
// the two squares equal, which needs the gap g = c_j − c_{j−1} below ~4u·(w − c_j) (u = 2⁻⁵³): it cannot happen
// for w ≤ safe_max = c_0 + g_min·2⁴⁵, nor can two squares underflow together (g_min ≥ 1e-150) or overflow
// together (every |c_j| ≤ 1e150).
// Below safe_max every U_j is therefore monotone in w, the costs fall strictly up to the nearest centre and
// never fall after it, and the brute-force argmin equals #{j : U_j(w)} = #{j : w ≥ t_j} with t_j the smallest
// float where U_j holds. Values above safe_max (only with near-coincident centres far from the data) take the
// brute-force rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nq::quant {

// The largest float ≤ x (x finite; clamped to ±FLT_MAX). For a float w, w > x ⟺ w > float_at_or_below(x).
float float_at_or_below(double x);

class NearestThresholds {
 public:
  // centers: strictly ascending, finite, at least one.
  explicit NearestThresholds(const std::vector<double>& centers);

  // The brute-force label of any finite float w.
  int32_t label(float w) const { return w <= safe_max_ ? search(w) : brute_force(w); }

  // labels[i] = label(w[i]) for n finite floats. Up to 32 centres each label is the count #{j : w ≥ t_j} over
  // the whole (padded) table, the same number the search finds: compares and adds that the compiler vectorises
  // over values, 5× faster than searching value by value (10^7 values, k = 16: 26 → 5 ms on 2 threads, bound
  // by memory). Values above safe_max are relabelled by brute force afterwards.
  void label_all(const float* w, size_t n, int32_t* labels) const;

  // Thresholds t_1 … t_{k−1} (ascending; +inf where the threshold lies above safe_max) and the bound.
  std::vector<float> thresholds() const;
  float safe_max() const { return safe_max_; }

  // The brute-force argmin itself (the oracle and the fallback).
  int32_t brute_force(float w) const;

  // The weighted rule argmin_j fl(h·a_j), a_j = fl(fl(w − c_j)²) (assign_cost at λ = 0, ties to the lowest j),
  // from the same labels. floors[L] is a float at or just above t_L (floors[0] = −FLT_MAX) such that for every
  // float w in [floors[L], safe_max] with label(w) = L and every h in [FLT_MIN, FLT_MAX] the weighted argmin is
  // L as well; values in [t_L, floors[L]) — the float or two at a midpoint — and other h need the weighted rule
  // itself. Empty when no such guarantee holds (a gap below 1e-100, a centre beyond ±1e100).
  //
  // Why. Below t_L, a_{L−1} ≤ a_L ≤ a_{L+1} …: scaling by h keeps the order and a tie goes to the lower index,
  // which is L's side anyway. Above it, h·a_L could round onto h·a_{L−1} and the tie would go to L − 1; it
  // cannot once a_{L−1} ≥ a_L·(1 + 2⁻⁴⁶) at floors[L]: the exact ratio only grows up to c_L, stays above
  // 1 + 2⁻⁴⁴ from there to safe_max, and each a_j carries at most 2⁻⁵¹ relative error, so a_{L−1} ≥ a_L·(1 + 2⁻⁴⁷)
  // on the whole range. With the gap and range bounds h·a_{L−1} is a normal double (≥ 2.9e-239, ≤ 3.5e238), so
  // the two products stay apart after rounding.
  std::vector<float> weighted_floors() const;

 private:
  // #{j ≥ 1 : w ≥ t_j}: table_[j] = t_j, padded with +inf to a power of two; table_[0] is never read.
  int32_t search(float w) const {
    int32_t base = 0;
    for (int32_t step = half_; step > 0; step >>= 1) base += (w >= table_[base + step]) ? step : 0;
    return base;
  }

  template <int kSize>
  void count_all(const float* w, size_t n, int32_t* labels) const;

  std::vector<double> centers_;
  std::vector<float> table_;
  int32_t half_ = 0;  // table size / 2 (0 when k = 1)
  float safe_max_;
};

}  // namespace nq::quant
