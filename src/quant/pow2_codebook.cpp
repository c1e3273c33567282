// Powers-of-two codebook {±a·2^−e : e = 0..levels−1} with a learned scale a (a C step of [LC],
// Carreira-Perpiñán & Idelbayev 2017).
#include <algorithm>
#include <cmath>

#include "netquant/error.h"
#include "quant/fixed_codebooks.h"

namespace nq::quant {
namespace {

double level_unit_value(int64_t level, int levels) {
  const double mag = std::ldexp(1.0, static_cast<int>(std::llabs(level)) - levels);
  return level < 0 ? -mag : mag;
}

struct Pow2State {
  double a = 0;
  std::vector<int64_t> level;  // sign · (e + levels), e the exponent in [−(levels−1), 0]; never 0
  double objective = 0;
};

// Nearest codebook element for every weight at scale a (optimal for a fixed a), and the objective there.
void round_to_pow2(const float* w, const float* h, size_t n, int levels, Pow2State& st) {
  const int e_min = -(levels - 1);
  double obj = 0.0;
  st.level.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const double wi = w[i];
    const int e = nearest_pow2_exponent(std::fabs(wi) / st.a, e_min, 0);
    const double q = std::ldexp(1.0, e);
    const bool neg = wi < 0.0;  // w == 0 -> + (no zero level; either sign is equally near)
    st.level[i] = neg ? -(e + levels) : (e + levels);
    const double d = (neg ? -q : q) * st.a - wi;
    obj += (h ? static_cast<double>(h[i]) : 1.0) * d * d;
  }
  st.objective = obj;
}

// Alternation from st.a until the objective stops decreasing; appends to r's history and iteration count.
void alternate_pow2(const float* w, const float* hw, size_t n, int levels, int max_iter, Pow2State& cur,
                    FixedCodebookResult& r) {
  round_to_pow2(w, hw, n, levels, cur);
  r.objective_history.push_back(cur.objective);
  r.converged = false;
  for (int it = 0; it < max_iter; ++it) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double hi = hw ? static_cast<double>(hw[i]) : 1.0;
      const double q = level_unit_value(cur.level[i], levels);
      num += hi * w[i] * q;
      den += hi * q * q;
    }
    ++r.iterations;
    const double a_new = den > 0.0 ? num / den : 0.0;
    if (!(a_new > 0.0) || !std::isfinite(a_new)) {  // only zero-importance weights are non-zero: keep a
      r.converged = true;
      return;
    }
    Pow2State next;
    next.a = a_new;
    round_to_pow2(w, hw, n, levels, next);
    if (!(next.objective < cur.objective)) {  // stopped decreasing (>= also guards rounding noise)
      r.converged = true;
      return;
    }
    const bool same_codes = next.level == cur.level;
    cur = std::move(next);
    r.objective_history.push_back(cur.objective);
    if (same_codes) {  // a is already least-squares for these codes: a fixed point
      r.converged = true;
      return;
    }
  }
}

}  // namespace

FixedCodebookResult quantize_pow2(const float* w, const float* h, size_t n, int levels, int max_iter) {
  const bool use_h = detail::validate_inputs(w, h, n, "pow2");
  NQ_CHECK(levels >= 1 && levels <= 32, ErrorCode::kInvalidArgument,
           "pow2: levels (exponents per sign) must be in [1, 32], got " << levels);
  NQ_CHECK(max_iter >= 1, ErrorCode::kInvalidArgument, "pow2: max_iter must be >= 1, got " << max_iter);
  const float* hw = use_h ? h : nullptr;

  double max_abs = 0.0;
  for (size_t i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(static_cast<double>(w[i])));
  FixedCodebookResult r;
  if (!(static_cast<float>(max_abs) > 0.0f)) {  // all zero: the best scale is 0, one level
    r.codebook = {0.0f};
    r.indices.assign(n, 0);
    return r;
  }

  // Alternate the two exact partial minimisations (nearest rounding for fixed a, least squares for fixed
  // codes); each cannot increase Σ h (a q − w)², so the objective is monotone [LC, C step with a scale].
  // The alternation stops at a fixed point that need not be the best scale (f(a) is multi-modal), so when
  // affordable the exact sweep over all pieces of f(a) supplies further starts; the best polished one wins
  // and the history goes on from the max|w| start only when it improves.
  Pow2State cur;
  cur.a = max_abs;  // the largest level covers the largest weight
  alternate_pow2(w, hw, n, levels, max_iter, cur, r);
  if (static_cast<double>(n) * levels <= detail::kSweepScalesLimit && levels > 1) {
    std::vector<double> mags;
    for (int e = 0; e < levels; ++e) mags.push_back(std::ldexp(1.0, -e));
    for (double a : detail::sweep_scales(w, hw, n, mags, 8)) {
      Pow2State st;
      st.a = a;
      FixedCodebookResult scratch;
      alternate_pow2(w, hw, n, levels, max_iter, st, scratch);
      if (st.objective < cur.objective) {
        cur = std::move(st);
        r.objective_history.push_back(cur.objective);
        r.iterations += scratch.iterations;
        r.converged = scratch.converged;
      }
    }
  }

  r.scale = cur.a;
  const std::vector<int64_t> used = detail::compact_levels(cur.level, r.indices);
  r.codebook.resize(used.size());
  for (size_t j = 0; j < used.size(); ++j) {
    r.codebook[j] = static_cast<float>(cur.a * level_unit_value(used[j], levels));
  }
  return r;
}

}  // namespace nq::quant
