// Float thresholds of the λ = 0 nearest-centre rule (see nearest_thresholds.h for why they are exact).
#include "quant/nearest_thresholds.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

#include "core/target_clones.h"
#include "netquant/error.h"
#include "quant/quant_formulas.h"

namespace nq::quant {

float float_at_or_below(double x) {
  if (x >= static_cast<double>(FLT_MAX)) return FLT_MAX;
  if (x <= -static_cast<double>(FLT_MAX)) return -FLT_MAX;
  float f = static_cast<float>(x);
  if (static_cast<double>(f) > x) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

NearestThresholds::NearestThresholds(const std::vector<double>& centers) : centers_(centers) {
  const int k = static_cast<int>(centers.size());
  NQ_ASSERT(k >= 1);
  double gap_min = std::numeric_limits<double>::infinity();
  bool squares_finite = true;  // |w − c| < 1e154 for every float w, so no squared distance overflows
  for (int j = 0; j < k; ++j) squares_finite = squares_finite && std::fabs(centers[j]) <= 1e150;
  for (int j = 1; j < k; ++j) {
    NQ_ASSERT_MSG(centers[j - 1] < centers[j], "nearest thresholds: centres are not strictly ascending");
    gap_min = std::min(gap_min, centers[j] - centers[j - 1]);
  }
  // Everything up to safe_max is exact (header); with gaps that underflow when squared, or centres so far out
  // that squared distances overflow to a tie at +inf, nothing is.
  if (k == 1) safe_max_ = std::numeric_limits<float>::infinity();
  else if (!(gap_min >= 1e-150) || !squares_finite) safe_max_ = -std::numeric_limits<float>::infinity();
  else safe_max_ = float_at_or_below(centers[0] + std::ldexp(gap_min, 45));

  int32_t size = 1;
  while (size < k) size <<= 1;
  half_ = size / 2;
  table_.assign(static_cast<size_t>(size), std::numeric_limits<float>::infinity());
  table_[0] = -std::numeric_limits<float>::infinity();
  if (safe_max_ < -FLT_MAX) return;  // −inf: no fast path, every label by brute force
  // U_j is monotone over the floats [−FLT_MAX, safe_max]: bisect the keys for the first float where it holds.
  const uint32_t top = float_order_key(safe_max_);
  for (int j = 1; j < k; ++j) {
    uint32_t lo = float_order_key(-FLT_MAX), hi = top;
    if (!closer_to_upper(float_from_order_key(hi), centers[j - 1], centers[j])) continue;  // above safe_max: +inf
    while (lo < hi) {  // invariant: U_j(float_from_order_key(hi)) holds; the answer is in [lo, hi]
      const uint32_t mid = lo + (hi - lo) / 2;
      if (closer_to_upper(float_from_order_key(mid), centers[j - 1], centers[j])) hi = mid;
      else lo = mid + 1;
    }
    table_[j] = float_from_order_key(hi);
    NQ_ASSERT(j == 1 || !(table_[j] < table_[j - 1]));
  }
}

std::vector<float> NearestThresholds::thresholds() const {
  const int k = static_cast<int>(centers_.size());
  return std::vector<float>(table_.begin() + 1, table_.begin() + k);
}

namespace {

// labels[i] = #{j in [1, kSize) : w[i] ≥ t[j]}; returns how many w[i] exceed safe_max. One plain loop nest (the
// inner loop unrolled away, no branch) so that the compiler vectorises it over i.
template <int kSize>
NQ_TARGET_CLONES int count_run(const float* __restrict w, size_t n, const float* __restrict t, float safe_max,
              int32_t* __restrict labels) {
  int beyond = 0;
  for (size_t i = 0; i < n; ++i) {
    const float x = w[i];
    int32_t count = 0;
#pragma GCC unroll 32
    for (int j = 1; j < kSize; ++j) count += x >= t[j] ? 1 : 0;
    labels[i] = count;
    beyond += x > safe_max ? 1 : 0;
  }
  return beyond;
}

}  // namespace

template <int kSize>
void NearestThresholds::count_all(const float* w, size_t n, int32_t* labels) const {
  float t[kSize];
  std::copy(table_.begin(), table_.begin() + kSize, t);
  constexpr size_t kRun = 1024;  // the safe_max check per run keeps the rare brute-force fix-up local
  for (size_t i0 = 0; i0 < n; i0 += kRun) {
    const size_t m = std::min(n - i0, kRun);
    if (count_run<kSize>(w + i0, m, t, safe_max_, labels + i0) > 0)
      for (size_t i = i0; i < i0 + m; ++i)
        if (w[i] > safe_max_) labels[i] = brute_force(w[i]);
  }
}

void NearestThresholds::label_all(const float* w, size_t n, int32_t* labels) const {
  switch (table_.size()) {
    case 1: std::fill(labels, labels + n, 0); return;  // k = 1
    case 2: count_all<2>(w, n, labels); return;
    case 4: count_all<4>(w, n, labels); return;
    case 8: count_all<8>(w, n, labels); return;
    case 16: count_all<16>(w, n, labels); return;
    case 32: count_all<32>(w, n, labels); return;
    default:
      for (size_t i = 0; i < n; ++i) labels[i] = label(w[i]);
  }
}

std::vector<float> NearestThresholds::weighted_floors() const {
  const int k = static_cast<int>(centers_.size());
  for (int j = 0; j < k; ++j)
    if (!(std::fabs(centers_[j]) <= 1e100)) return {};
  for (int j = 1; j < k; ++j)
    if (!(centers_[j] - centers_[j - 1] >= 1e-100)) return {};
  if (!(safe_max_ >= -FLT_MAX)) return {};
  std::vector<float> floors(static_cast<size_t>(k), std::numeric_limits<float>::infinity());
  floors[0] = -FLT_MAX;
  // a_{j−1} ≥ a_j·(1 + 2⁻⁴⁶) (or a_j = 0: w on c_j) — see the header.
  auto settled = [&](float w, int j) {
    const double hi = assign_cost(w, 1.0, centers_[j - 1], 0.0, 0.0);
    const double lo = assign_cost(w, 1.0, centers_[j], 0.0, 0.0);
    return lo == 0.0 || hi >= lo * (1.0 + 0x1p-46);
  };
  for (int j = 1; j < k; ++j) {
    const float t = table_[static_cast<size_t>(j)];
    if (!(t <= safe_max_)) continue;  // no value ≤ safe_max has label ≥ j: floors[j] stays +inf
    // The predicate is not monotone within a few ulps of the midpoint, but any float where it holds will do
    // (everything above it up to safe_max then holds with margin): bisect between t and the last float at or
    // below c_j, where a_j is 0 or the ratio is at its largest.
    uint32_t lo = float_order_key(t);
    uint32_t hi = float_order_key(std::min(float_at_or_below(centers_[j]), safe_max_));
    if (hi < lo || !settled(float_from_order_key(hi), j)) hi = lo;  // cannot happen for t ≤ c_j; stay safe
    while (lo < hi) {  // invariant: settled(hi)
      const uint32_t mid = lo + (hi - lo) / 2;
      if (settled(float_from_order_key(mid), j)) hi = mid;
      else lo = mid + 1;
    }
    if (!settled(float_from_order_key(hi), j)) return {};
    floors[static_cast<size_t>(j)] = float_from_order_key(hi);
  }
  return floors;
}

int32_t NearestThresholds::brute_force(float w) const {
  int32_t best = 0;
  double best_cost = assign_cost(w, 1.0, centers_[0], 0.0, 0.0);
  for (int32_t j = 1; j < static_cast<int32_t>(centers_.size()); ++j) {
    const double c = assign_cost(w, 1.0, centers_[j], 0.0, 0.0);
    if (better(c, j, best_cost, best)) { best_cost = c; best = j; }
  }
  return best;
}

}  // namespace nq::quant
