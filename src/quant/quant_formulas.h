// Internal: the quantizers' cost and tie-breaking formulas, written once for the host and the device.
// Every backend must evaluate costs with exactly these expressions (IEEE fp64, no contraction into FMAs) so
// that CPU and CUDA agree bit for bit except where the design allows (DESIGN "Determinism contract").
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__)
#define NQ_HD __host__ __device__
#else
#define NQ_HD
#endif

namespace nq::quant {

// fp64 multiply/add that never fuse: nvcc contracts a*b+c into an FMA by default, and so does GCC in C++ on any
// target with FMA; the explicit intrinsics keep the device exact, and the build's -ffp-contract=off the host.
NQ_HD inline double fmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
NQ_HD inline double fadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

NQ_HD inline double infinity() { return std::numeric_limits<double>::infinity(); }

// The ECSQ assignment cost of value w (importance h) in cluster j: h (w − c_j)² + λ l_j, l_j = −log2 p_j
// ([C] §5.4). A dead cluster has l_j = +inf and is never chosen (also at λ = 0, where 0·inf would be NaN).
NQ_HD inline double assign_cost(float w, double h, double c, double code_len, double lambda) {
  if (!(code_len < infinity())) return infinity();
  const double d = fadd(static_cast<double>(w), -c);
  return fadd(fmul(h, fmul(d, d)), fmul(lambda, code_len));
}

// Lower bound of assign_cost over clusters at least as far from w as c: rounding is monotone, so
// assign_cost(w, h, c', l', λ) >= this whenever |w − c'| >= |w − c| and l' >= lmin. Lets the CPU op stop a
// local search around the nearest centre exactly (same answer as the brute-force argmin).
NQ_HD inline double assign_cost_bound(float w, double h, double c, double lmin, double lambda) {
  const double d = fadd(static_cast<double>(w), -c);
  return fadd(fmul(h, fmul(d, d)), fmul(lambda, lmin));
}

// Tie-breaking: (cost, index) compared lexicographically, so equal costs go to the lowest index.
NQ_HD inline bool better(double cost, int32_t j, double best_cost, int32_t best_j) {
  return cost < best_cost || (cost == best_cost && j < best_j);
}

// The argmin for a weight of importance 0 (h ≤ 0: the ops take only h ≥ 0): its cost λ·l_j does not depend on
// where c_j lies, so the clusters of the least rate tie (at λ = 0 every live one, and at λ > 0 those of equal
// code lengths, as in ECSQ's first pass). Those ties go to the nearest centre, then to the lower index:
// lexicographic (cost, (w − c_j)², j). The lowest index alone would send every such weight to the lowest level,
// far outside most tensors' range. Every backend's op (a) calls this for such weights, and the binned pass hands
// them to op (a) whenever more than one cluster ties.
NQ_HD inline int32_t zero_importance_argmin(float w, double h, const double* c, const double* l, int k,
                                            double lambda, double* best_cost_out) {
  int32_t best = -1;
  double best_cost = infinity(), best_dd = infinity();
  for (int32_t j = 0; j < k; ++j) {
    const double cost = assign_cost(w, h, c[j], l[j], lambda);
    const double d = fadd(static_cast<double>(w), -c[j]);
    const double dd = fmul(d, d);
    if (best < 0 || cost < best_cost || (cost == best_cost && dd < best_dd)) {
      best = j;
      best_cost = cost;
      best_dd = dd;
    }
  }
  *best_cost_out = best_cost;
  return best;
}

// λ = 0 nearest-centre rule between neighbouring sorted centres c_lo < c_hi: true when w goes to c_hi, i.e. it
// is strictly closer (ties go to the lower index, as in `better`). Monotone in w, so on sorted values the
// boundary is found by binary search (the sorted path of the k-means driver).
NQ_HD inline bool closer_to_upper(float w, double c_lo, double c_hi) {
  const double a = fadd(static_cast<double>(w), -c_lo);
  const double b = fadd(static_cast<double>(w), -c_hi);
  return fmul(b, b) < fmul(a, a);
}

// First position of the sorted ws[0, n) whose value goes to c_hi rather than c_lo (the λ = 0 sorted path's
// cluster boundary), by std::partition_point's bisection sequence (libstdc++ and libc++ alike). Written out so the
// device takes the very same probes: where rounding makes closer_to_upper non-monotone (centres a few ulps apart,
// values far away) another bisection could stop elsewhere.
template <class Index>
NQ_HD inline Index sorted_boundary(const float* ws, Index n, double c_lo, double c_hi) {
  Index first = 0, len = n;
  while (len > 0) {
    const Index half = len >> 1;
    if (!closer_to_upper(ws[first + half], c_lo, c_hi)) {
      first += half + 1;
      len -= half + 1;
    } else {
      len = half;
    }
  }
  return first;
}

// Weighted moments about `shift` of a run of sorted values: S0 = Σh, S1 = Σh·x, S2 = Σh·x² (x = w − shift) — the
// sums every sorted path keeps (prefix tables, items of the exact DP, the device's row drivers). One step, written
// once, so that every place that must agree bit for bit adds the same products in the same way.
struct Moments {
  double s0 = 0, s1 = 0, s2 = 0;
};
NQ_HD inline void add_moments(Moments& m, float w, double h, double shift) {
  const double x = fadd(static_cast<double>(w), -shift);
  const double hx = fmul(h, x);
  m.s0 = fadd(m.s0, h);
  m.s1 = fadd(m.s1, hx);
  m.s2 = fadd(m.s2, fmul(hx, x));
}

// The sorted paths' exact-representation shortcut (nq::quantize: k ≥ the number of distinct values gives one level
// per value): for sorted ws[0, n), n ≥ 1, writes the distinct values (the first of each run) to levels and returns
// how many, or returns 0 and writes nothing when there are more than k.
NQ_HD inline int exact_representation(const float* ws, int n, int k, double* levels) {
  int distinct = 0;
  for (int i = 0; i < n && distinct <= k; ++i) distinct += (i == 0 || ws[i] != ws[i - 1]);
  if (distinct > k) return 0;
  int m = 0;
  for (int i = 0; i < n; ++i)
    if (i == 0 || ws[i] != ws[i - 1]) levels[m++] = ws[i];
  return m;
}

// The centre of a run of sorted values lo ≤ … ≤ hi with positive weight, from its sums S0 = Σh > 0 and
// S1 = Σh·x (x = w − shift): their weighted mean, kept within [lo, hi]. Exact arithmetic puts it there, but the
// sorted paths take a run's sums as differences of prefix sums, and where the run's importance is tiny next to
// the importance before it (importances over 16 decades) the difference cancels and the quotient can land
// anywhere, even beyond a neighbouring centre. Consecutive runs split between distinct values (ties go to one
// side), so clamped centres stay strictly ascending, which every labelling rule needs.
NQ_HD inline double run_mean(double s0, double s1, double shift, float lo, float hi) {
  const double c = shift + s1 / s0;
  return c < lo ? static_cast<double>(lo) : c > hi ? static_cast<double>(hi) : c;
}

// Weighted within-cluster scatter of an interval from its sums S0 = Σh, S1 = Σh·x, S2 = Σh·x² (x = w − shift):
// Σh (x − S1/S0)² = S2 − S1²/S0, clamped at 0 against rounding; 0 for a weightless interval.
NQ_HD inline double interval_scatter(double s0, double s1, double s2) {
  if (!(s0 > 0)) return 0.0;
  const double v = s2 - s1 * s1 / s0;
  return v > 0 ? v : 0.0;
}

// Floats in their numeric order as unsigned keys (negatives bit-reversed, the sign bit set on the others), so
// −0 sorts just below +0; and back. The radix sorts (CPU and CUDA) and the threshold bisection order by these.
NQ_HD inline uint32_t float_order_key(float f) {
#if defined(__CUDA_ARCH__)
  const uint32_t u = __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
NQ_HD inline float float_from_order_key(uint32_t key) {
  const uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// p = #{j : c_j < w} over ascending centres, by exact comparisons: every centre left of p is below w, every
// one from p on is at or above it, so on each side distances grow monotonically away from p. (A bisection on
// closer_to_upper itself is not safe: with two centres closer together than the rounding step of w − c, or
// equal, that predicate is false inside a run of trues.)
NQ_HD inline int count_below(float w, const double* c, int k) {
  const double wd = static_cast<double>(w);
  int lo = 0, hi = k;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (c[mid] < wd) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Index of the nearest centre among ascending c (equal centres allowed): exactly the brute-force argmin of
// fl((w − c_j)²) with ties to the lowest index (NearestThresholds' rule). By monotone rounding the winner is
// c_{p−1} or c_p (p = count_below), except that centres further left may tie with c_{p−1} (equal or
// near-coincident centres), and a tie goes to the lowest of them.
NQ_HD inline int nearest_center(float w, const double* c, int k) {
  int lo = count_below(w, c, k);
  if (lo == k || (lo > 0 && !closer_to_upper(w, c[lo - 1], c[lo]))) --lo;
  while (lo > 0 && !closer_to_upper(w, c[lo - 1], c[lo])) --lo;  // ties with farther-left centres
  return lo;
}

// The span [lo, hi] that --init linear spreads its centres over, on n ≥ 1 values sorted ascending with their
// importances: from the smallest to the largest value whose importance is positive. A value of importance 0 adds
// nothing to the weighted objective, so centres stretched out to reach one (a weight of zero curvature far out)
// are wasted; with no positive importance at all, the whole range. Unweighted problems carry importance 1.
NQ_HD inline void linear_span(const float* ws, const float* hs, size_t n, double& lo, double& hi) {
  size_t a = 0, b = n;
  while (a < n && !(hs[a] > 0.0f)) ++a;
  if (a == n) a = 0, b = n;
  else
    while (!(hs[b - 1] > 0.0f)) --b;
  lo = static_cast<double>(ws[a]);
  hi = static_cast<double>(ws[b - 1]);
}

// The same rule over values in any order (uniform's cells, the sharded driver's ranks): the range of every value
// and of those of positive importance (h null: every value has importance 1); span() is linear_span's choice.
struct ValueRange {
  double lo = infinity(), hi = -infinity();    // every value
  double wlo = infinity(), whi = -infinity();  // values of positive importance (empty: wlo > whi)
  void span(double& a, double& b) const {
    const bool weighted = wlo <= whi;
    a = weighted ? wlo : lo;
    b = weighted ? whi : hi;
  }
};
inline ValueRange value_range(const float* w, const float* h, size_t n) {
  ValueRange r;
  for (size_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(w[i]);
    r.lo = v < r.lo ? v : r.lo;
    r.hi = v > r.hi ? v : r.hi;
    if (!h || h[i] > 0.0f) {
      r.wlo = v < r.wlo ? v : r.wlo;
      r.whi = v > r.whi ? v : r.whi;
    }
  }
  return r;
}

// The pruning score of a weight: h·w² in fp64, evaluated as (h·w)·w, plus +0 so that an importance of −0 (which
// validation accepts) gives +0 rather than −0. Never negative then, so the IEEE bits order the scores as unsigned
// integers (the device's radix selection) exactly as the host's double comparisons do.
//   Where h·w² is 0 and w is not (h = 0: a weight no loss sees, e.g. one from an always-blank pixel), the score is
// |w|'s float bits taken as a double's: a positive subnormal, below every non-zero h·w² of float inputs (at least
// 2^-149·2^-298 = 2^-447, a normal double), in |w|'s order. So such weights are pruned first, the smallest
// magnitudes first, instead of in file order (with an all-zero importance, the first tensors whole).
NQ_HD inline double prune_score(float w, double h) {
  const double wd = static_cast<double>(w);
  const double s = fadd(fmul(fmul(h, wd), wd), 0.0);
  // Both computed and one selected, without a branch, so that the host's mark loop stays vectorised.
#if defined(__CUDA_ARCH__)
  const double by_magnitude = __longlong_as_double(static_cast<long long>(__float_as_uint(w) & 0x7fffffffu));
#else
  uint32_t bits;
  std::memcpy(&bits, &w, sizeof bits);
  const uint64_t magnitude = bits & 0x7fffffffu;
  double by_magnitude;
  std::memcpy(&by_magnitude, &magnitude, sizeof by_magnitude);
#endif
  return s > 0.0 ? s : by_magnitude;
}

// Uniform quantizer cell of w for step Δ with 0 a cell centre: cells [(m − ½)Δ, (m + ½)Δ) ([C] §5.3). Cells
// saturate at ±2^61, where w/Δ would no longer convert to int64 (undefined behaviour) and differences of two cells
// would overflow; the callers refuse spans of more than 2^26 cells anyway.
NQ_HD inline int64_t uniform_cell(float w, double step) {
  constexpr double kMaxCell = 2305843009213693952.0;  // 2^61
  double t = static_cast<double>(w) / step + 0.5;
  t = t < -kMaxCell ? -kMaxCell : t > kMaxCell ? kMaxCell : t;
  double f = static_cast<double>(static_cast<int64_t>(t));
  if (f > t) f -= 1.0;  // floor for negatives
  return static_cast<int64_t>(f);
}

}  // namespace nq::quant
