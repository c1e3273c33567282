// Uniform b-bit integer grids (symmetric q·s, asymmetric q·s + z) with the scale (and offset) fitted to the
// importance-weighted squared error; a fixed-codebook C step in the sense of [LC].
#include <algorithm>
#include <cmath>
#include <numeric>

#include "netquant/error.h"
#include "quant/fixed_codebooks.h"

namespace nq::quant {
namespace {

double weight_of(const float* h, size_t i) { return h ? static_cast<double>(h[i]) : 1.0; }

// Round-to-nearest (halves away from zero) clipped to [lo, hi]: the nearest grid level for s > 0.
int64_t round_clip(double t, int64_t lo, int64_t hi) {
  const double r = std::round(t);
  if (!(r > static_cast<double>(lo))) return lo;  // also catches NaN
  if (r > static_cast<double>(hi)) return hi;
  return static_cast<int64_t>(r);
}

// ---- symmetric grid: the objective f(s) = Σ h (round_clip(w/s)·s − w)² is piecewise quadratic in s with
// many local minima (every w/s crossing a half-integer starts a new piece), so no closed form; search.

// f(s) evaluated on the magnitudes sorted ascending with fp64 prefix sums of h, h|w|, h w²: each level's
// cell is an interval of |w|, so one evaluation costs O(qmax log n) instead of O(n).
class SymmetricCost {
 public:
  SymmetricCost(const float* w, const float* h, size_t n, int64_t qmax) : w_(w), h_(h), n_(n), qmax_(qmax) {
    // Sorting pays off only when a pass over the data costs more than qmax binary searches.
    use_sorted_ = static_cast<double>(qmax) * std::log2(static_cast<double>(n) + 2.0) * 2.0 < static_cast<double>(n);
    if (!use_sorted_) return;
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [w](size_t a, size_t b) { return std::fabs(w[a]) < std::fabs(w[b]); });
    mag_.resize(n);
    ph_.assign(n + 1, 0.0);
    pa_.assign(n + 1, 0.0);
    pc_.assign(n + 1, 0.0);
    for (size_t j = 0; j < n; ++j) {
      const double m = std::fabs(static_cast<double>(w[order[j]]));
      const double hi = weight_of(h, order[j]);
      mag_[j] = m;
      ph_[j + 1] = ph_[j] + hi;
      pa_[j + 1] = pa_[j] + hi * m;
      pc_[j + 1] = pc_[j] + hi * m * m;
    }
  }

  double operator()(double s) const {
    if (!use_sorted_) return direct(s);
    double total = 0.0;
    size_t begin = 0;
    for (int64_t q = 0; q <= qmax_ && begin < n_; ++q) {
      size_t end = n_;
      if (q < qmax_) {
        const double upper = (static_cast<double>(q) + 0.5) * s;  // |w| >= upper rounds up (halves away)
        end = static_cast<size_t>(std::lower_bound(mag_.begin() + begin, mag_.end(), upper) - mag_.begin());
      }
      const double qs = static_cast<double>(q) * s;
      total += (pc_[end] - pc_[begin]) - 2.0 * qs * (pa_[end] - pa_[begin]) + qs * qs * (ph_[end] - ph_[begin]);
      begin = end;
    }
    return std::max(total, 0.0);
  }

  double direct(double s) const {
    double total = 0.0;
    for (size_t i = 0; i < n_; ++i) {
      const double d = static_cast<double>(round_clip(w_[i] / s, -qmax_, qmax_)) * s - w_[i];
      total += weight_of(h_, i) * d * d;
    }
    return total;
  }

 private:
  const float* w_;
  const float* h_;
  size_t n_;
  int64_t qmax_;
  bool use_sorted_ = false;
  std::vector<double> mag_, ph_, pa_, pc_;
};

// Golden-section minimisation of f on [lo, hi]; f is only piecewise smooth, so this finds a good point of
// the bracket, and the least-squares refits that follow land on the exact minimum of its piece.
double golden_section(const SymmetricCost& f, double lo, double hi, double& best_s, double best_f) {
  const double g = 0.5 * (std::sqrt(5.0) - 1.0);
  double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
  double f1 = f(x1), f2 = f(x2);
  for (int it = 0; it < 40 && hi - lo > 1e-12 * hi; ++it) {
    if (f1 <= f2) {
      hi = x2; x2 = x1; f2 = f1; x1 = hi - g * (hi - lo); f1 = f(x1);
    } else {
      lo = x1; x1 = x2; f1 = f2; x2 = lo + g * (hi - lo); f2 = f(x2);
    }
    if (f1 < best_f) { best_f = f1; best_s = x1; }
    if (f2 < best_f) { best_f = f2; best_s = x2; }
  }
  return best_f;
}

struct GridState {
  double s = 0, z = 0;
  std::vector<int64_t> q;
  double objective = 0;
};

void assign(const float* w, const float* h, size_t n, int64_t lo, int64_t hi, GridState& st) {
  st.q.resize(n);
  double obj = 0.0;
  for (size_t i = 0; i < n; ++i) {
    st.q[i] = round_clip((static_cast<double>(w[i]) - st.z) / st.s, lo, hi);
    const double d = static_cast<double>(st.q[i]) * st.s + st.z - w[i];
    obj += weight_of(h, i) * d * d;
  }
  st.objective = obj;
}

// Weighted least squares for fixed codes: s (and z when `fit_offset`) minimising Σ h (q s + z − w)².
// Centred sums keep the 2×2 solve well conditioned. Returns false when the codes do not determine s.
bool refit(const float* w, const float* h, size_t n, bool fit_offset, GridState& st) {
  double sh = 0, shq = 0, shw = 0;
  for (size_t i = 0; i < n; ++i) {
    const double hi = weight_of(h, i);
    sh += hi;
    shq += hi * static_cast<double>(st.q[i]);
    shw += hi * w[i];
  }
  const double qb = fit_offset ? shq / sh : 0.0, wb = fit_offset ? shw / sh : 0.0;
  double sqq = 0, sqw = 0;
  for (size_t i = 0; i < n; ++i) {
    const double hi = weight_of(h, i), dq = static_cast<double>(st.q[i]) - qb;
    sqq += hi * dq * dq;
    sqw += hi * dq * (w[i] - wb);
  }
  if (!(sqq > 0.0)) return false;
  const double s = sqw / sqq;
  if (!(s > 0.0) || !std::isfinite(s)) return false;
  st.s = s;
  st.z = fit_offset ? wb - s * qb : 0.0;
  return true;
}

// Alternates refit and re-rounding while the objective strictly decreases; each half-step is an exact
// partial minimisation, so the history is non-increasing.
void alternate(const float* w, const float* h, size_t n, int64_t lo, int64_t hi, bool fit_offset, int max_iter,
               GridState& cur, FixedCodebookResult& r) {
  r.objective_history.push_back(cur.objective);
  r.converged = false;
  for (int it = 0; it < max_iter; ++it) {
    GridState next = cur;
    ++r.iterations;
    if (!refit(w, h, n, fit_offset, next)) { r.converged = true; return; }
    assign(w, h, n, lo, hi, next);
    if (!(next.objective < cur.objective)) { r.converged = true; return; }
    const bool same = next.q == cur.q;
    cur = std::move(next);
    r.objective_history.push_back(cur.objective);
    if (same) { r.converged = true; return; }
  }
}

void emit(const GridState& st, FixedCodebookResult& r) {
  r.scale = st.s;
  r.offset = st.z;
  const std::vector<int64_t> used = detail::compact_levels(st.q, r.indices);
  r.codebook.resize(used.size());
  for (size_t j = 0; j < used.size(); ++j) {
    r.codebook[j] = static_cast<float>(static_cast<double>(used[j]) * st.s + st.z);
  }
}

// Heuristic candidates for large n·qmax, where the objective is smooth enough for a scan: log-spaced scales.
// Above s_hi = max|w| / (qmax − ½) the top level is never used; below s_lo every weight that matters clips,
// where f only falls towards the binary-like fit at s·qmax ≈ mean|w|. The bracket is a heuristic (no closed
// form bounds the optimum); the best few local minima are refined by golden section.
std::vector<double> scan_scales(const float* w, const float* h, size_t n, int64_t qmax, double max_abs,
                                double mean_abs) {
  const SymmetricCost f(w, h, n, qmax);
  const double s_hi = max_abs / (static_cast<double>(qmax) - 0.5);
  const double s_lo = std::min(s_hi, std::max(mean_abs, 1e-30 * max_abs) / static_cast<double>(qmax)) / 16.0;
  const int grid = 384;
  std::vector<double> ss(grid + 1), fs(grid + 1);
  for (int g = 0; g <= grid; ++g) {
    ss[g] = s_lo * std::pow(s_hi / s_lo, static_cast<double>(g) / grid);
    fs[g] = f(ss[g]);
  }
  std::vector<int> minima;
  for (int g = 0; g <= grid; ++g) {
    if ((g == 0 || fs[g] <= fs[g - 1]) && (g == grid || fs[g] <= fs[g + 1])) minima.push_back(g);
  }
  std::sort(minima.begin(), minima.end(), [&](int a, int b) { return fs[a] < fs[b]; });
  if (minima.size() > 4) minima.resize(4);
  std::vector<double> out;
  for (int g : minima) {
    double s = ss[g];
    golden_section(f, ss[std::max(g - 1, 0)], ss[std::min(g + 1, grid)], s, fs[g]);
    out.push_back(s);
  }
  return out;
}

FixedCodebookResult symmetric(const float* w, const float* h, size_t n, int bits, int max_iter) {
  const int64_t qmax = (int64_t{1} << (bits - 1)) - 1;
  double max_abs = 0.0, sum_h = 0.0, sum_ha = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double m = std::fabs(static_cast<double>(w[i]));
    max_abs = std::max(max_abs, m);
    sum_h += weight_of(h, i);
    sum_ha += weight_of(h, i) * m;
  }
  FixedCodebookResult r;
  if (!(static_cast<float>(max_abs) > 0.0f)) {
    r.codebook = {0.0f};
    r.indices.assign(n, 0);
    return r;
  }
  // Candidate scales: the exact global sweep over the piecewise-quadratic f(s) when affordable, else a
  // log-spaced scan with golden-section refinement of its best local minima. Each candidate is then polished
  // by alternating refits, which land on the exact minimum of its piece.
  std::vector<double> candidates;
  if (static_cast<double>(n) * static_cast<double>(qmax + 1) <= detail::kSweepScalesLimit) {
    std::vector<double> mags;
    for (int64_t q = qmax; q >= 0; --q) mags.push_back(static_cast<double>(q));
    candidates = detail::sweep_scales(w, h, n, mags, 8);
  } else {
    candidates = scan_scales(w, h, n, qmax, max_abs, sum_h > 0.0 ? sum_ha / sum_h : max_abs);
  }
  candidates.push_back(max_abs / static_cast<double>(qmax));  // the plain max-abs grid, always a fallback
  GridState best;
  double best_start = candidates.back();
  bool have = false;
  for (double s : candidates) {
    GridState st;
    st.s = s;
    assign(w, h, n, -qmax, qmax, st);
    FixedCodebookResult scratch;
    alternate(w, h, n, -qmax, qmax, false, max_iter, st, scratch);
    if (!have || st.objective < best.objective) {
      best = std::move(st);
      best_start = s;
      have = true;
    }
  }
  // Re-run the winner's polish so the history shows its start and refits (cheap next to the search).
  GridState st;
  st.s = best_start;
  assign(w, h, n, -qmax, qmax, st);
  alternate(w, h, n, -qmax, qmax, false, max_iter, st, r);
  emit(st, r);
  return r;
}

FixedCodebookResult asymmetric(const float* w, const float* h, size_t n, int bits, int max_iter) {
  const int64_t qmax = (int64_t{1} << bits) - 1;
  const auto [mn, mx] = std::minmax_element(w, w + n);
  FixedCodebookResult r;
  if (!(*mx > *mn)) {  // one distinct value: represented exactly by one level
    r.codebook = {*mn};
    r.indices.assign(n, 0);
    r.offset = *mn;
    return r;
  }
  // Min/max init (the usual affine grid), then alternating weighted LS of (s, z) with re-rounding.
  GridState st;
  st.s = (static_cast<double>(*mx) - *mn) / static_cast<double>(qmax);
  st.z = *mn;
  assign(w, h, n, 0, qmax, st);
  alternate(w, h, n, 0, qmax, true, max_iter, st, r);
  emit(st, r);
  return r;
}

}  // namespace

FixedCodebookResult quantize_int(const float* w, const float* h, size_t n, int bits, bool symmetric_grid,
                                 int max_iter) {
  const bool use_h = detail::validate_inputs(w, h, n, "int");
  NQ_CHECK(bits >= (symmetric_grid ? 2 : 1) && bits <= 16, ErrorCode::kInvalidArgument,
           "int: bits must be in [" << (symmetric_grid ? 2 : 1) << ", 16] for a "
                                    << (symmetric_grid ? "symmetric" : "asymmetric") << " grid, got " << bits);
  NQ_CHECK(max_iter >= 1, ErrorCode::kInvalidArgument, "int: max_iter must be >= 1, got " << max_iter);
  const float* hw = use_h ? h : nullptr;
  return symmetric_grid ? symmetric(w, hw, n, bits, max_iter) : asymmetric(w, hw, n, bits, max_iter);
}

}  // namespace nq::quant
