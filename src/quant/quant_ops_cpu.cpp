// CPU (OpenMP) implementation of the quantizer ops declared in quant_ops.h, and the backend dispatch point.
#include "quant/quant_ops.h"

#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/iteration_errors.h"
#include "core/parallel_for.h"
#include "core/target_clones.h"
#include "netquant/error.h"
#include "quant/binned_pass.h"
#include "quant/lazy_labels.h"
#include "quant/count_positions_wide.h"
#include "quant/nearest_thresholds.h"
#include "quant/quant_formulas.h"
#include "quant/window_argmin_wide.h"

namespace nq::cpu {

namespace {

// Per-pass constants of assign_accumulate, hoisted out of the element loop. Costs are assembled with exactly
// the expressions of quant_formulas.h (the products λ·l_j and λ·lmin are computed once here with quant::fmul,
// which gives the same bits as computing them per element).
constexpr int kPad = 8;

struct AssignPrep {
  int k = 0;
  const double* c = nullptr;
  std::vector<double> rl;     // λ·l_j, or +inf for a dead cluster (assign_cost's value for it)
  std::vector<double> rbl;    // λ·lmin_left[j]  (assign_cost_bound's rate term, same bits)
  std::vector<double> rbr;    // λ·lmin_right[j]
  const double* l = nullptr;  // code lengths (for the rare h <= 0 scan)
  double lambda = 0;
  bool nearest = false;       // λ = 0 and every cluster live: the cost is h·(w − c)², see nearest_cluster
  // The same arrays with kPad guard entries each side (centre −inf below, +inf above, rate +inf: never a finite
  // cost, bounds +inf), so a fixed candidate window around p needs no clamping. pc/prl/prbl/prbr: entry 0.
  std::vector<double> cpad, rlpad, rblpad, rbrpad;
  const double *pc = nullptr, *prl = nullptr, *prbl = nullptr, *prbr = nullptr;
  // Bucket table on w: table[b] ≈ #{j : c_j < base + b / inv}; a guess corrected exactly by comparisons.
  std::vector<int32_t> table;
  double base = 0, inv = 0, gmax = 0;
  std::vector<double> lmin_left, lmin_right;  // prepare's scratch (kept with the rest between passes)
  // λ = 0, every cluster live, a pass long enough to repay building it: labels by float thresholds, which the
  // compiler vectorises, with nearest_cluster only for the few values that floors cannot settle (null: unused).
  std::unique_ptr<quant::NearestThresholds> rule;
  std::vector<float> floors;  // rule->weighted_floors()
  // Up to kMaxCountedCentres: p = #{j : w > below[j]} (count_positions), below[j] the float at or below c_j
  // (−inf under the float range), padded with +inf to count_size entries; count_size 0: split_position instead.
  std::vector<float> below;
  int count_size = 0;
  // k ≤ kWideWindowMaxK on an AVX-512 CPU: the window search eight values at a time (window_argmin_wide.h).
  bool wide = false;
};
// Each host thread keeps one: a pass over a short row (row/group scopes) then allocates nothing.
thread_local AssignPrep t_prep;

inline double cost_of(double wd, double h, const AssignPrep& P, int j) {
  const double d = quant::fadd(wd, -P.c[j]);
  return quant::fadd(quant::fmul(h, quant::fmul(d, d)), P.rl[j]);
}

// Exact argmin_j assign_cost (ties to the lowest index; for h = 0 see quant::zero_importance_argmin).
// p = #{j : c_j < w} splits the centres into those strictly below w (left) and those at or above it (right).
// The window p−W .. p+W−1 is evaluated without branches (guard entries cost +inf), then the rounding-monotone
// lower bounds (quant::assign_cost_bound with lmin over everything beyond) just outside it prove that no farther
// cluster can win or tie-win; when they do not, the local search walks on outwards exactly as far as needed. Valid
// because every centre left of j <= p−1 is below w and farther than c_j, every centre right of j >= p is at or
// above w and farther.
// p = #{j : c_j < w}: a guess from the bucket table, then exact. Branches on purpose: they are well predicted
// (the buckets are much narrower than the gaps between centres).
inline int32_t split_position(float w, const AssignPrep& P) {
  const int k = P.k;
  const double* c = P.c;
  const double wd = static_cast<double>(w);
  double t = (wd - P.base) * P.inv;
  if (!(t >= 0.0)) t = 0.0;
  if (t > P.gmax) t = P.gmax;
  int p = P.table[static_cast<size_t>(t)];
  while (p < k && wd > c[p]) ++p;
  while (p > 0 && !(wd > c[p - 1])) --p;
  return p;
}

// p = #{j : c_j < w} for a run of values by counting compares over the whole padded table: the compiler
// vectorises over the values, and for a float w, w > c_j exactly when w > below[j]. NaN counts 0, as in
// split_position.
template <int kSize>
NQ_TARGET_CLONES void count_positions(const float* __restrict w, size_t n, const float* __restrict below,
                                      int32_t* __restrict lab) {
  for (size_t i = 0; i < n; ++i) {
    const float x = w[i];
    int32_t count = 0;
#pragma GCC unroll 64
    for (int j = 0; j < kSize; ++j) count += x > below[j] ? 1 : 0;
    lab[i] = count;
  }
}

constexpr int kMaxCountedCentres = 64;

inline void positions(const float* w, size_t n, const AssignPrep& P, int32_t* lab) {
  // count_size ≤ 64 = kWideWindowMaxK, so P.wide (set once per pass) says whether the AVX-512 path runs.
  if (P.count_size && P.wide) return wide_count_positions(w, n, P.below.data(), P.count_size, lab);
  switch (P.count_size) {
    case 16: count_positions<16>(w, n, P.below.data(), lab); return;
    case 32: count_positions<32>(w, n, P.below.data(), lab); return;
    case 64: count_positions<64>(w, n, P.below.data(), lab); return;
    default:
      for (size_t i = 0; i < n; ++i) lab[i] = split_position(w[i], P);
  }
}

// The vector window needs __builtin_shufflevector (GCC 12 and later); older compilers take the scalar loop,
// which gives the same labels.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define NQ_VECTOR_WINDOW 1
constexpr bool kVectorWindow = true;
#else
constexpr bool kVectorWindow = false;
#endif

typedef double Double8 __attribute__((vector_size(64)));
typedef double Double4 __attribute__((vector_size(32)));
typedef double Double2 __attribute__((vector_size(16)));
typedef int64_t Int4 __attribute__((vector_size(32)));
typedef int64_t Int2 __attribute__((vector_size(16)));

// The window p−4 … p+3 of argmin_cluster<4> as one 8-lane vector (GCC/Clang vector extension: a zmm register
// in the AVX-512 clone, two ymm or four xmm elsewhere). Each lane computes its cost with exactly the scalar
// operations (wd − c ≡ wd + (−c) in IEEE arithmetic), and the minimum is reduced over adjacent pairs, keeping
// the lower group on a tie, so the winner is the lowest index among the smallest costs — the scalar loop's
// answer. Costs are never NaN here: h is finite and positive, and the guards give +inf, not inf − inf.
#ifdef NQ_VECTOR_WINDOW
__attribute__((always_inline)) inline void window_argmin8(double wd, double h, int p, const AssignPrep& P,
                                                          int32_t& best, double& bc) {
  Double8 c, r;
  std::memcpy(&c, P.pc + (p - 4), sizeof c);
  std::memcpy(&r, P.prl + (p - 4), sizeof r);
  const Double8 d = wd - c;
  const Double8 cost = h * (d * d) + r;
  const Double4 lo4 = __builtin_shufflevector(cost, cost, 0, 2, 4, 6);
  const Double4 hi4 = __builtin_shufflevector(cost, cost, 1, 3, 5, 7);
  const Int4 take4 = hi4 < lo4;
  const Double4 m4 = take4 ? hi4 : lo4;
  const Int4 i4 = take4 ? Int4{1, 3, 5, 7} : Int4{0, 2, 4, 6};
  const Double2 lo2 = __builtin_shufflevector(m4, m4, 0, 2), hi2 = __builtin_shufflevector(m4, m4, 1, 3);
  const Int2 ilo2 = __builtin_shufflevector(i4, i4, 0, 2), ihi2 = __builtin_shufflevector(i4, i4, 1, 3);
  const Int2 take2 = hi2 < lo2;
  const Double2 m2 = take2 ? hi2 : lo2;
  const Int2 i2 = take2 ? ihi2 : ilo2;
  // The last pair without a branch (the winning side is a coin toss per value): the same value on a tie.
  bc = std::min(m2[0], m2[1]);
  best = p - 4 + static_cast<int32_t>(i2[m2[1] < m2[0] ? 1 : 0]);
}
#else
inline void window_argmin8(double, double, int, const AssignPrep&, int32_t&, double&) {}
#endif

// The label of w given p = split_position(w). The positions of a run of values are found first, in a separate
// loop: the two dependent load chains then overlap across many values instead of lengthening each one.
template <int W>
__attribute__((always_inline)) inline int32_t argmin_cluster(float w, double h, int p, const AssignPrep& P) {
  const int k = P.k;
  const double* c = P.c;
  const double wd = static_cast<double>(w);
  if (!(h > 0.0)) {  // the distortion term vanishes: no locality to exploit, scan (rare: zero importance)
    double best_cost;
    return quant::zero_importance_argmin(w, h, c, P.l, k, P.lambda, &best_cost);
  }
  const double* pc = P.pc;  // guards: −inf below index 0, +inf from index k
  int32_t best;
  double bc;
  if (kVectorWindow && W == 4 && h <= DBL_MAX) {  // (an infinite h can make a cost NaN: the scalar loop's rules)
    window_argmin8(wd, h, p, P, best, bc);
  } else {
    const double* prl = P.prl;
    auto cw = [&](int j) {
      const double d = quant::fadd(wd, -pc[j]);
      return quant::fadd(quant::fmul(h, quant::fmul(d, d)), prl[j]);
    };
    best = p - W;
    bc = cw(p - W);
#pragma GCC unroll 8
    for (int u = 1; u < 2 * W; ++u) {
      const double x = cw(p - W + u);
      best = x < bc ? p - W + u : best;
      bc = x < bc ? x : bc;
    }
  }
  int jl = p - W - 1, jr = p + W;
  if (bc < quant::infinity()) {
    const double dl = quant::fadd(wd, -pc[jl]), dr = quant::fadd(wd, -pc[jr]);
    const bool left_done = quant::fadd(quant::fmul(h, quant::fmul(dl, dl)), P.prbl[jl]) > bc;
    const bool right_done = quant::fadd(quant::fmul(h, quant::fmul(dr, dr)), P.prbr[jr]) >= bc;
    if (left_done & right_done) return best;
    // (a failed bound is re-evaluated by the loops below, which continue from the window's edges)
  } else {  // every candidate in the window is dead or overflowed: the plain exact search from p
    if (p == 0) {
      best = 0; bc = cost_of(wd, h, P, 0); jl = -1; jr = 1;
    } else if (p == k) {
      best = k - 1; bc = cost_of(wd, h, P, k - 1); jl = k - 2; jr = k;
    } else {
      const double c0 = cost_of(wd, h, P, p - 1), c1 = cost_of(wd, h, P, p);
      if (quant::better(c1, p, c0, p - 1)) { best = p; bc = c1; } else { best = p - 1; bc = c0; }
      jl = p - 2; jr = p + 1;
    }
  }
  for (int j = jl; j >= 0; --j) {  // lower indices win ties: continue while the bound can still tie
    const double d = quant::fadd(wd, -c[j]);
    const double dd = quant::fmul(h, quant::fmul(d, d));
    if (quant::fadd(dd, P.rbl[j]) > bc) break;
    const double cost = quant::fadd(dd, P.rl[j]);
    if (quant::better(cost, j, bc, best)) { bc = cost; best = j; }
  }
  for (int j = jr; j < k; ++j) {
    const double d = quant::fadd(wd, -c[j]);
    const double dd = quant::fmul(h, quant::fmul(d, d));
    if (quant::fadd(dd, P.rbr[j]) >= bc) break;
    const double cost = quant::fadd(dd, P.rl[j]);
    if (quant::better(cost, j, bc, best)) { bc = cost; best = j; }
  }
  return best;
}

// argmin_cluster for λ = 0 with every cluster live (k-means, ECSQ's first pass): the cost is h·(w − c_j)²
// (+0), and rounding is monotone, so no centre farther than c_{p−1} on the left or c_p on the right costs less
// than the nearer one on its side. The winner is c_{p−1} or c_p (ties to p − 1), unless c_{p−2} ties with it —
// then a lower index could win the tie, and argmin_cluster decides. Three costs instead of the window's six.
// The rare cases, kept out of line so that the hot path stays small.
__attribute__((noinline)) int32_t nearest_fallback(float w, double h, int p, const AssignPrep& P) {
  return argmin_cluster<2>(w, h, p, P);
}

inline int32_t nearest_cluster(float w, double h, int p, const AssignPrep& P) {
  if (!(h > 0.0)) return nearest_fallback(w, h, p, P);
  const double wd = static_cast<double>(w);
  auto cw = [&](int j) {  // guards: −inf below index 0, +inf from index k: cost +inf
    const double d = quant::fadd(wd, -P.pc[j]);
    return quant::fadd(quant::fmul(h, quant::fmul(d, d)), P.prl[j]);
  };
  const double left = cw(p - 1), right = cw(p), farther = cw(p - 2);
  // Branch-free on purpose: which side wins is a coin toss per value, a branch on it mispredicts half the time.
  const int32_t label = p - 1 + static_cast<int32_t>(right < left);
  const double bc = std::min(left, right);  // the same value on a tie
  if (__builtin_expect(farther > bc, 1)) return label;
  return nearest_fallback(w, h, p, P);
}

// The λ = 0 labels of w[0, n) by P.rule: the thresholds' label is the weighted rule's wherever floors settle it
// (nearest_thresholds.h), nearest_cluster decides the rest — values at a midpoint, beyond safe_max, not finite,
// or with an importance outside [FLT_MIN, FLT_MAX]. Without h the thresholds' label is the rule itself.
inline void label_by_thresholds(const float* w, const float* h, size_t n, const AssignPrep& P, int32_t* lab) {
  P.rule->label_all(w, n, lab);
  if (!h) return;
  const float* floors = P.floors.data();
  const float safe_max = P.rule->safe_max();
  for (size_t i = 0; i < n; ++i) {
    const float x = w[i], hx = h[i];
    if (__builtin_expect(x >= floors[lab[i]] && x <= safe_max && hx >= FLT_MIN && hx <= FLT_MAX, 1)) continue;
    lab[i] = nearest_cluster(x, static_cast<double>(hx), split_position(x, P), P);
  }
}

// Labels of w[0, n) in place of their positions p in lab: lab[i] = label(w_i, h_i, p_i), h ≡ 1 without h.
template <class Label>
__attribute__((always_inline)) inline void label_run(const float* w, const float* h, size_t n, int32_t* lab,
                                                     Label&& label) {
  if (h) {
    for (size_t i = 0; i < n; ++i) lab[i] = label(w[i], static_cast<double>(h[i]), lab[i]);
  } else {
    for (size_t i = 0; i < n; ++i) lab[i] = label(w[i], 1.0, lab[i]);
  }
}

// The exact window search for a whole run, cloned so that window_argmin8 gets the widest vectors the CPU has
// (everything it calls is inlined into each clone).
NQ_TARGET_CLONES void label_by_window(const float* w, const float* h, size_t n, const AssignPrep& P,
                                      int32_t* lab) {
  label_run(w, h, n, lab,
            [&](float x, double hx, int p) __attribute__((always_inline)) { return argmin_cluster<4>(x, hx, p, P); });
}

// The window search of a run by the widest path the CPU has: eight values at a time where it can (the values it
// hands back, −1 − p, are decided by the scalar search), else label_by_window. The same labels either way.
void label_by_window_widest(const float* w, const float* h, size_t n, const AssignPrep& P, int32_t* lab) {
  if (!P.wide) return label_by_window(w, h, n, P, lab);
  const WideWindowTables tables{P.c, P.rl.data(), P.rbl.data(), P.rbr.data(), P.k};
  if (wide_window_labels(w, h, n, tables, lab) == 0) return;
  for (size_t i = 0; i < n; ++i)
    if (lab[i] < 0) lab[i] = argmin_cluster<4>(w[i], h ? static_cast<double>(h[i]) : 1.0, -1 - lab[i], P);
}

// Cluster sums are added as Double2 pairs: each lane rounds exactly as the scalar add would, so pairing two
// sums that take the same operand count halves the adds without changing a bit.
// One cluster's sums in a block: {Σh, Σh·w} and {Σw, count}. The count rides in a double, exact below 2⁵³.
struct ClusterAcc {
  Double2 h_hw, w_count;
  double sh() const { return h_hw[0]; }
  double shw() const { return h_hw[1]; }
  double sw() const { return w_count[0]; }
  int64_t count() const { return static_cast<int64_t>(w_count[1]); }
};

struct BlockSums {
  std::vector<ClusterAcc> acc;
  double dist = 0, sq = 0, cost = 0;
  void reset(int k) {
    acc.assign(static_cast<size_t>(k), ClusterAcc{Double2{0.0, 0.0}, Double2{0.0, 0.0}});
    dist = sq = cost = 0;
  }
};

// Blocks accumulated in lockstep by one thread: each block's sums stay in element order (one serial chain per
// block), the chains are independent so the core overlaps their latencies. Four, not eight: with eight the
// accumulators spill to the stack and the pass is 30 % slower (λ = 0, k = 32: 19.1 → 14.7 ns/weight on one
// core with four, bit-identical results).
constexpr int kLockstep = 4;

// dist_sq: the block's {Σh·d², Σd²}.
inline void accum_one(float wi, double hi, int32_t j, const AssignPrep& P, ClusterAcc* a, Double2& dist_sq,
                      double& cost) {
  const double d = static_cast<double>(wi) - P.c[j];
  const double dd = d * d;
  const double hdd = hi * dd;
  ClusterAcc& s = a[j];
  s.h_hw += Double2{hi, hi * wi};
  s.w_count += Double2{static_cast<double>(wi), 1.0};
  dist_sq += Double2{hdd, dd};
  cost += quant::fadd(hdd, P.rl[j]);  // == assign_cost(w, h, c_j, l_j, λ) of the chosen (live or not) cluster
}

// Validates the codebook (ascending centres, at least one live cluster) and fills the per-pass constants.
// n: the values the pass will label. The bucket table only speeds up the first guess of split_position (which
// corrects it exactly), so its size is free: 64 per centre, but not many more than the values to label — a row
// of 64 values would otherwise spend more on building the table than on the pass — and one bucket where
// split_position is not the pass's position search.
void prepare(AssignPrep& P, const double* centers, const double* code_len, int k, double lambda, size_t n) {
  NQ_ASSERT(k >= 1);
  std::vector<double>& lmin_left = P.lmin_left;
  std::vector<double>& lmin_right = P.lmin_right;
  lmin_left.resize(static_cast<size_t>(k));
  lmin_right.resize(static_cast<size_t>(k));
  for (int j = 0; j < k; ++j) lmin_left[j] = std::min(code_len[j], j ? lmin_left[j - 1] : quant::infinity());
  for (int j = k - 1; j >= 0; --j)
    lmin_right[j] = std::min(code_len[j], j + 1 < k ? lmin_right[j + 1] : quant::infinity());
  NQ_ASSERT_MSG(lmin_left[k - 1] < quant::infinity(), "assign_accumulate: every cluster is dead");
  for (int j = 0; j + 1 < k; ++j) NQ_ASSERT(centers[j] < centers[j + 1]);
  P.k = k;
  P.c = centers;
  P.l = code_len;
  P.lambda = lambda;
  P.nearest = lambda == 0.0;
  for (int j = 0; j < k; ++j) P.nearest = P.nearest && code_len[j] < quant::infinity();
  P.rl.resize(k); P.rbl.resize(k); P.rbr.resize(k);
  for (int j = 0; j < k; ++j) {
    P.rl[j] = code_len[j] < quant::infinity() ? quant::fmul(lambda, code_len[j]) : quant::infinity();
    P.rbl[j] = quant::fmul(lambda, lmin_left[j]);
    P.rbr[j] = quant::fmul(lambda, lmin_right[j]);
  }
  {
    const size_t m = static_cast<size_t>(k) + 2 * kPad;
    P.cpad.assign(m, quant::infinity());
    for (int j = 0; j < kPad; ++j) P.cpad[static_cast<size_t>(j)] = -quant::infinity();
    P.rlpad.assign(m, quant::infinity());
    P.rblpad.assign(m, quant::infinity());
    P.rbrpad.assign(m, quant::infinity());
    for (int j = 0; j < k; ++j) {
      P.cpad[kPad + j] = centers[j];
      P.rlpad[kPad + j] = P.rl[j];
      P.rblpad[kPad + j] = P.rbl[j];
      P.rbrpad[kPad + j] = P.rbr[j];
    }
    P.pc = P.cpad.data() + kPad;
    P.prl = P.rlpad.data() + kPad;
    P.prbl = P.rblpad.data() + kPad;
    P.prbr = P.rbrpad.data() + kPad;
  }
  P.wide = k <= kWideWindowMaxK && wide_window_available();
  P.count_size = 0;
  if (k <= kMaxCountedCentres && n >= size_t{64}) {
    P.count_size = k <= 16 ? 16 : (k <= 32 ? 32 : 64);
    P.below.assign(static_cast<size_t>(P.count_size), quant::infinity());
    for (int j = 0; j < k; ++j)
      P.below[static_cast<size_t>(j)] =
          centers[j] < -static_cast<double>(FLT_MAX) ? -quant::infinity() : quant::float_at_or_below(centers[j]);
  }
  // The thresholds cost two bisections over the float keys per centre (~64 cost evaluations each).
  P.rule.reset();
  P.floors.clear();
  if (P.nearest && k > 1 && n >= size_t{256} * static_cast<size_t>(k)) {
    P.rule = std::make_unique<quant::NearestThresholds>(std::vector<double>(centers, centers + k));
    P.floors = P.rule->weighted_floors();
    if (P.floors.empty()) P.rule.reset();
  }
  {
    const double span = centers[k - 1] - centers[0];
    const int by_values = static_cast<int>(std::min<size_t>(std::max<size_t>(n / 2, 16), size_t{1} << 14));
    // Only split_position reads the table: the passes that count positions by compares (k ≤ 64) use it just
    // for the threshold rule's rare fallbacks. Elsewhere one bucket (a walk from 0, still exact) saves building
    // up to 64·k entries with a division each for every row of every pass (~15 % of a row ECSQ search).
    const bool searched = P.count_size == 0 || P.rule != nullptr;
    int buckets = k > 1 && searched ? std::min({64 * k, 1 << 14, by_values}) : 1;
    P.base = centers[0];
    P.inv = k > 1 ? buckets / span : 0.0;
    if (!(P.inv < 1e300) || !(P.inv > 0)) { buckets = 1; P.inv = 0.0; }
    P.gmax = buckets - 1;
    P.table.resize(static_cast<size_t>(buckets));
    int p = 0;
    for (int b = 0; b < buckets; ++b) {
      const double lo = P.base + b / (P.inv > 0 ? P.inv : 1.0);
      while (p < k && centers[p] < lo) ++p;
      P.table[static_cast<size_t>(b)] = p;
    }
  }
}

// The pass shared by both entry points: labels for every element, and for each segment s = [seg_end[s − 1],
// seg_end[s]) (seg_end[−1] = 0) the sums of its members in element order, starting from zero. Segments are
// processed in waves of groups; `consume(s, sums)` sees every segment's sums in segment order, so whatever it
// folds is the same for any thread count while the scratch stays bounded.
template <class Consume>
void segmented_pass(const float* w, const float* h, const size_t* seg_end, size_t nseg, const AssignPrep& P,
                    int32_t* labels, Consume&& consume) {
  const int k = P.k;
  auto seg_begin = [&](size_t s) { return s == 0 ? size_t{0} : seg_end[s - 1]; };
  const size_t ngroups = (nseg + kLockstep - 1) / kLockstep;
  const int threads = std::max(1, omp_get_max_threads());
  // As many groups per wave as fit ~8 MB of partials (one wave, one barrier, for k = 32 up to N ≈ 2.6e8).
  const size_t wave = std::max(static_cast<size_t>(threads) * 2,
                               (size_t{8} << 20) / (sizeof(ClusterAcc) * kLockstep * static_cast<size_t>(k)));
  // Partials and label scratch are the calling thread's, kept between passes (a row of a few dozen values would
  // otherwise spend more on allocating them than on the pass); the workers index the scratch by thread number.
  thread_local std::vector<BlockSums> t_part;
  thread_local std::vector<std::vector<int32_t>> t_scratch;
  std::vector<BlockSums>& part = t_part;
  std::vector<std::vector<int32_t>>& scratch = t_scratch;
  part.resize(std::min(wave, ngroups) * kLockstep);
  if (!labels && scratch.size() < static_cast<size_t>(threads)) scratch.resize(static_cast<size_t>(threads));
  for (size_t g0 = 0; g0 < ngroups; g0 += wave) {
    const size_t g1 = std::min(ngroups, g0 + wave);
    auto run_group = [&](int64_t gg, int thread) {
      const size_t b0 = static_cast<size_t>(gg) * kLockstep, b1 = std::min(nseg, b0 + kLockstep);
      const size_t i0 = seg_begin(b0), i1 = seg_end[b1 - 1];
      int32_t* lab;
      if (labels) {
        lab = labels + i0;
      } else {
        auto& buf = scratch[static_cast<size_t>(thread)];
        if (buf.size() < i1 - i0) buf.resize(i1 - i0);
        lab = buf.data();
      }
      // Labels (independent per element): by thresholds where P.rule exists, else from the positions p by the
      // three-candidate nearest rule or the exact window search (8 centres around w, measured on Student-t
      // weights at k = 32; the bounds fall back to the walk when that is not enough).
      const float* hs = h ? h + i0 : nullptr;
      if (P.rule) {
        label_by_thresholds(w + i0, hs, i1 - i0, P, lab);
      } else {
        positions(w + i0, i1 - i0, P, lab);
        if (P.nearest)
          label_run(w + i0, hs, i1 - i0, lab, [&](float x, double hx, int p) { return nearest_cluster(x, hx, p, P); });
        else
          label_by_window_widest(w + i0, hs, i1 - i0, P, lab);
      }
      // Sums: each segment in element order; a full group of equal segments is interleaved.
      const size_t nb = b1 - b0;
      ClusterAcc* acc[kLockstep];
      Double2 dist_sq[kLockstep];
      double cst[kLockstep];
      bool equal = nb == kLockstep;
      for (size_t b = 0; b < nb; ++b) {
        BlockSums& s = part[(static_cast<size_t>(gg) - g0) * kLockstep + b];
        s.reset(k);
        acc[b] = s.acc.data();
        dist_sq[b] = Double2{0.0, 0.0};
        cst[b] = 0.0;
        equal = equal && seg_end[b0 + b] - seg_begin(b0 + b) == seg_end[b0] - i0;
      }
      if (equal) {
        const size_t len = seg_end[b0] - i0;
        for (size_t r = 0; r < len; ++r) {
#pragma GCC unroll 4
          for (int b = 0; b < kLockstep; ++b) {
            const size_t off = static_cast<size_t>(b) * len + r, i = i0 + off;
            accum_one(w[i], h ? static_cast<double>(h[i]) : 1.0, lab[off], P, acc[b], dist_sq[b], cst[b]);
          }
        }
      } else {
        for (size_t b = 0; b < nb; ++b) {
          const size_t s0 = seg_begin(b0 + b), s1 = seg_end[b0 + b];
          for (size_t i = s0; i < s1; ++i)
            accum_one(w[i], h ? static_cast<double>(h[i]) : 1.0, lab[i - i0], P, acc[b], dist_sq[b], cst[b]);
        }
      }
      for (size_t b = 0; b < nb; ++b) {
        BlockSums& s = part[(static_cast<size_t>(gg) - g0) * kLockstep + b];
        s.dist = dist_sq[b][0]; s.sq = dist_sq[b][1]; s.cost = cst[b];
      }
    };
    if (g1 - g0 == 1) {
      run_group(static_cast<int64_t>(g0), 0);  // one group (a short row): no parallel region to enter
    } else {
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t gg = static_cast<int64_t>(g0); gg < static_cast<int64_t>(g1); ++gg)
        run_group(gg, omp_get_thread_num());
    }
    const size_t first = g0 * kLockstep, last = std::min(nseg, g1 * kLockstep);
    for (size_t s = first; s < last; ++s) consume(s, part[s - first]);
  }
}

}  // namespace

void assign_accumulate(const float* w, const float* h, size_t n, const double* centers, const double* code_len,
                       int k, double lambda, int32_t* labels, quant::AssignAccum& out) {
  AssignPrep& P = t_prep;
  prepare(P, centers, code_len, k, lambda, n);
  out.reset(k);
  if (n == 0) return;
  // Fixed blocks of accum_block_size(n), folded into `out` in block order.
  const size_t block = quant::accum_block_size(n);
  std::vector<size_t> ends((n + block - 1) / block);
  for (size_t b = 0; b < ends.size(); ++b) ends[b] = std::min(n, (b + 1) * block);
  segmented_pass(w, h, ends.data(), ends.size(), P, labels, [&](size_t, const BlockSums& s) {
    for (int j = 0; j < k; ++j) {
      out.sum_h[j] += s.acc[j].sh();
      out.sum_hw[j] += s.acc[j].shw();
      out.sum_w[j] += s.acc[j].sw();
      out.count[j] += s.acc[j].count();
    }
    out.distortion += s.dist;
    out.sq_error += s.sq;
    out.cost += s.cost;
  });
}

void assign_accumulate_segments(const float* w, const float* h, const size_t* seg_end, size_t nseg,
                                const double* centers, const double* code_len, int k, double lambda, int32_t* labels,
                                std::vector<quant::AssignAccum>& out) {
  AssignPrep& P = t_prep;
  prepare(P, centers, code_len, k, lambda, nseg ? seg_end[nseg - 1] : 0);
  for (size_t s = 0; s + 1 < nseg; ++s) NQ_ASSERT(seg_end[s] <= seg_end[s + 1]);
  out.resize(nseg);
  if (nseg == 0) return;
  segmented_pass(w, h, seg_end, nseg, P, labels, [&](size_t seg, const BlockSums& s) {
    quant::AssignAccum& o = out[seg];
    o.reset(k);
    for (int j = 0; j < k; ++j) {
      o.sum_h[j] = s.acc[j].sh();
      o.sum_hw[j] = s.acc[j].shw();
      o.sum_w[j] = s.acc[j].sw();
      o.count[j] = s.acc[j].count();
    }
    o.distortion = s.dist;
    o.sq_error = s.sq;
    o.cost = s.cost;
  });
}

void prefix_sums(const float* ws, const float* hs, size_t n, double shift, size_t block, double* ph, double* phx,
                 double* phx2) {
  NQ_ASSERT(block >= 1);
  const size_t nb = (n + block - 1) / block;
  ph[0] = phx[0] = phx2[0] = 0.0;
  if (block == 1) {  // plain sequential prefix sums (the exact DP needs every position)
    quant::Moments m;
    for (size_t i = 0; i < n; ++i) {
      quant::add_moments(m, ws[i], hs ? static_cast<double>(hs[i]) : 1.0, shift);
      ph[i + 1] = m.s0; phx[i + 1] = m.s1; phx2[i + 1] = m.s2;
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t bb = 0; bb < static_cast<int64_t>(nb); ++bb) {
    const size_t i0 = static_cast<size_t>(bb) * block, i1 = std::min(n, i0 + block);
    quant::Moments m;
    for (size_t i = i0; i < i1; ++i) quant::add_moments(m, ws[i], hs ? static_cast<double>(hs[i]) : 1.0, shift);
    ph[bb + 1] = m.s0; phx[bb + 1] = m.s1; phx2[bb + 1] = m.s2;
  }
  for (size_t bb = 1; bb <= nb; ++bb) {
    ph[bb] += ph[bb - 1]; phx[bb] += phx[bb - 1]; phx2[bb] += phx2[bb - 1];
  }
}

void label_histogram(const int32_t* labels, size_t n, int k, int64_t* counts) {
  std::fill(counts, counts + k, int64_t{0});
  if (static_cast<int64_t>(n) <= kInlineLoopMax) {  // a row or group: no OpenMP region (core/parallel_for.h)
    bool bad = false;
    for (size_t i = 0; i < n; ++i) {
      const int32_t l = labels[i];
      if (l >= k) bad = true;
      else if (l >= 0) ++counts[l];
    }
    NQ_ASSERT_MSG(!bad, "label_histogram: a label is >= k = " << k);
    return;
  }
  const int threads = std::max(1, omp_get_max_threads());
  std::vector<int64_t> part(static_cast<size_t>(threads) * k, 0);
  bool bad = false;
#pragma omp parallel num_threads(threads) reduction(|| : bad)
  {
    int64_t* c = &part[static_cast<size_t>(omp_get_thread_num()) * k];
#pragma omp for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      const int32_t l = labels[i];
      if (l >= k) bad = true;
      else if (l >= 0) ++c[l];
    }
  }
  NQ_ASSERT_MSG(!bad, "label_histogram: a label is >= k = " << k);
  for (int t = 0; t < threads; ++t)
    for (int j = 0; j < k; ++j) counts[j] += part[static_cast<size_t>(t) * k + j];
}

namespace {

class CpuResidentValues final : public quant::LazyLabelsValues {
 public:
  CpuResidentValues(const float* w, const float* h, size_t n, quant::SortedView sorted)
      : w_(w), h_(h), n_(n),
        binned_(quant::use_binned_pass(n) ? std::make_unique<quant::BinnedValues>(w, h, n, 0, sorted) : nullptr) {}

 private:
  bool binned() const override { return binned_ != nullptr; }
  void pass_all(const double* centers, const double* code_len, int k, double lambda,
                quant::AssignAccum& out) override {
    labels_.resize(n_);
    cpu::assign_accumulate(w_, h_, n_, centers, code_len, k, lambda, labels_.data(), out);
  }
  void pass_all_multi(const quant::CodebookBatch& books, std::vector<quant::AssignAccum>& out) override {
    out.resize(static_cast<size_t>(books.size()));
    for (int m = 0; m < books.size(); ++m) {
      const size_t o = static_cast<size_t>(books.offsets[static_cast<size_t>(m)]);
      cpu::assign_accumulate(w_, h_, n_, books.centers.data() + o, books.code_len.data() + o, books.k(m),
                             books.lambda[static_cast<size_t>(m)], nullptr, out[static_cast<size_t>(m)]);
    }
  }
  void pass_binned(const double* centers, const double* code_len, int k, double lambda,
                   quant::AssignAccum& out) override {
    binned_->assign_accumulate(centers, code_len, k, lambda, out);
  }
  std::vector<int32_t> move_labels() override {
    std::vector<int32_t> labels;
    labels.swap(labels_);
    return labels;
  }

  const float* w_;
  const float* h_;
  size_t n_;
  std::unique_ptr<quant::BinnedValues> binned_;  // problems of kBinnedMinValues values or more
  std::vector<int32_t> labels_;                  // pass_all's
};

// quant_ops.h (f): the rows read in place; tasks in parallel, each one op (a) call on its row (a single task keeps
// op (a)'s own threads). Op (a)'s sums do not depend on the thread count, so out[i] is its bits.
class CpuResidentRows final : public quant::ResidentRows {
 public:
  CpuResidentRows(const float* w, const float* h, const int64_t* row_begin, int64_t rows, const uint8_t* weighted)
      : w_(w), h_(h), begin_{0} {
    if (rows > 0) begin_.assign(row_begin, row_begin + rows + 1);
    if (h && weighted) weighted_.assign(weighted, weighted + rows);
  }
  void assign_accumulate(const int64_t* rows, const quant::CodebookBatch& books, int32_t* labels,
                         std::vector<quant::AssignAccum>& out) override {
    const int64_t tasks = books.size();
    NQ_CHECK(tasks == 0 || rows, ErrorCode::kInvalidArgument, "resident rows: no row list for " << tasks << " tasks");
    out.resize(static_cast<size_t>(tasks));
    std::vector<int64_t> label_at(static_cast<size_t>(tasks) + 1, 0);
    for (int64_t i = 0; i < tasks; ++i) {
      const int64_t r = rows[i];
      NQ_CHECK(r >= 0 && r + 1 < static_cast<int64_t>(begin_.size()), ErrorCode::kInvalidArgument,
               "resident rows: task " << i << " names row " << r << " of " << begin_.size() - 1);
      label_at[static_cast<size_t>(i) + 1] = label_at[static_cast<size_t>(i)] + begin_[r + 1] - begin_[r];
    }
    IterationErrors failed;
#pragma omp parallel for schedule(dynamic, 4) if (tasks > 1)
    for (int64_t i = 0; i < tasks; ++i) {
      const size_t t = static_cast<size_t>(i);
      const int64_t r = rows[i];
      const float* h = h_ && (weighted_.empty() || weighted_[static_cast<size_t>(r)]) ? h_ + begin_[r] : nullptr;
      const size_t o = static_cast<size_t>(books.offsets[t]);
      failed.run(t, [&] {
        cpu::assign_accumulate(w_ + begin_[r], h, static_cast<size_t>(begin_[r + 1] - begin_[r]),
                               books.centers.data() + o, books.code_len.data() + o, books.k(static_cast<int>(i)),
                               books.lambda[t], labels ? labels + label_at[t] : nullptr, out[t]);
      });
    }
    failed.rethrow_first();
  }

 private:
  const float* w_;
  const float* h_;
  std::vector<int64_t> begin_;
  std::vector<uint8_t> weighted_;
};

}  // namespace

std::unique_ptr<quant::ResidentValues> make_resident_values(const float* w, const float* h, size_t n,
                                                            quant::SortedView sorted) {
  return std::make_unique<CpuResidentValues>(w, h, n, sorted);
}

std::unique_ptr<quant::ResidentRows> make_resident_rows(const float* w, const float* h, const int64_t* row_begin,
                                                        int64_t rows, const uint8_t* weighted) {
  NQ_CHECK(rows >= 0 && (rows == 0 || (row_begin && row_begin[0] == 0)), ErrorCode::kInvalidArgument,
           "resident rows: missing row offsets");
  for (int64_t r = 0; r < rows; ++r)
    NQ_CHECK(row_begin[r + 1] >= row_begin[r], ErrorCode::kInvalidArgument,
             "resident rows: row " << r << " has negative length");
  NQ_CHECK(rows == 0 || row_begin[rows] == 0 || w, ErrorCode::kInvalidArgument, "resident rows: null values");
  return std::make_unique<CpuResidentRows>(w, h, row_begin, rows, weighted);
}

}  // namespace nq::cpu

namespace nq::quant {

#define NQ_QUANT_DISPATCH(backend, call)                          \
  do {                                                            \
    if ((backend) == Backend::kCuda) return ::nq::cuda::call;     \
    NQ_ASSERT((backend) == Backend::kCpu);                        \
    return ::nq::cpu::call;                                       \
  } while (0)

void ops_assign_accumulate(Backend backend, const float* w, const float* h, size_t n, const double* centers,
                           const double* code_len, int k, double lambda, int32_t* labels, AssignAccum& out) {
  NQ_QUANT_DISPATCH(backend, assign_accumulate(w, h, n, centers, code_len, k, lambda, labels, out));
}
void ops_sort_pairs(Backend backend, const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  NQ_QUANT_DISPATCH(backend, sort_pairs(w, h, n, w_sorted, h_sorted));
}
void ops_prefix_sums(Backend backend, const float* ws, const float* hs, size_t n, double shift, size_t block,
                     double* ph, double* phx, double* phx2) {
  NQ_QUANT_DISPATCH(backend, prefix_sums(ws, hs, n, shift, block, ph, phx, phx2));
}
void ops_label_histogram(Backend backend, const int32_t* labels, size_t n, int k, int64_t* counts) {
  NQ_QUANT_DISPATCH(backend, label_histogram(labels, n, k, counts));
}
std::unique_ptr<ResidentValues> ops_make_resident_values(Backend backend, const float* w, const float* h, size_t n,
                                                         SortedView sorted) {
  NQ_QUANT_DISPATCH(backend, make_resident_values(w, h, n, sorted));
}
std::unique_ptr<ResidentRows> ops_make_resident_rows(Backend backend, const float* w, const float* h,
                                                     const int64_t* row_begin, int64_t rows, const uint8_t* weighted) {
  NQ_QUANT_DISPATCH(backend, make_resident_rows(w, h, row_begin, rows, weighted));
}
void ops_rows_kmeans(Backend backend, const RowsKmeansJob& job, const RowsKmeansOut& out) {
  NQ_QUANT_DISPATCH(backend, rows_kmeans(job, out));
}
void ops_select_pruned(Backend backend, const PruneArrays& arrays, int64_t count) {
  NQ_QUANT_DISPATCH(backend, select_pruned(arrays, count));
}

double histogram_entropy(const int64_t* counts, int k) {
  int64_t total = 0;
  for (int j = 0; j < k; ++j) total += counts[j];
  if (total == 0) return 0.0;
  double hsum = 0;
  for (int j = 0; j < k; ++j)
    if (counts[j] > 0) {
      const double p = static_cast<double>(counts[j]) / static_cast<double>(total);
      hsum -= p * std::log2(p);
    }
  return hsum > 0 ? hsum : 0.0;
}

}  // namespace nq::quant
