// Binary {±a} and ternary {−a, 0, +a} C steps (closed forms of [LC]) and the input checks and level
// compaction shared by every fixed-codebook quantizer.
#include "quant/fixed_codebooks.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <queue>

#include "netquant/error.h"

namespace nq::quant {
namespace detail {

bool validate_inputs(const float* w, const float* h, size_t n, const char* what) {
  NQ_CHECK(n > 0, ErrorCode::kInvalidArgument, what << ": no values to quantize (n == 0)");
  NQ_CHECK(w != nullptr, ErrorCode::kInvalidArgument, what << ": values pointer is null");
  for (size_t i = 0; i < n; ++i) {
    NQ_CHECK(std::isfinite(w[i]), ErrorCode::kInvalidArgument,
             what << ": value " << i << " is not finite (" << w[i] << ")");
  }
  if (h == nullptr) return false;
  bool any_positive = false;
  for (size_t i = 0; i < n; ++i) {
    NQ_CHECK(std::isfinite(h[i]) && h[i] >= 0.0f, ErrorCode::kInvalidArgument,
             what << ": importance " << i << " must be finite and >= 0, got " << h[i]);
    any_positive = any_positive || h[i] > 0.0f;
  }
  // All-zero importance says nothing about which weights matter: fall back to the unweighted fit rather
  // than dividing by Σh = 0.
  return any_positive;
}

double weighted_sq_error(const float* w, const float* h, size_t n, const std::vector<float>& codebook,
                         const std::vector<int32_t>& indices) {
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(codebook[static_cast<size_t>(indices[i])]) - w[i];
    sum += (h ? static_cast<double>(h[i]) : 1.0) * d * d;
  }
  return sum;
}

std::vector<int64_t> compact_levels(const std::vector<int64_t>& level_of, std::vector<int32_t>& indices) {
  std::vector<int64_t> used(level_of);
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  indices.resize(level_of.size());
  for (size_t i = 0; i < level_of.size(); ++i) {
    indices[i] = static_cast<int32_t>(std::lower_bound(used.begin(), used.end(), level_of[i]) - used.begin());
  }
  return used;
}

std::vector<double> sweep_scales(const float* w, const float* h, size_t n, const std::vector<double>& mags,
                                 size_t keep) {
  NQ_ASSERT(!mags.empty() && keep > 0);
  // As a -> 0+ every |w|/a is huge, so every non-zero value sits on the largest magnitude; w == 0 sits on
  // the smallest for every a. Zero-importance values never change f.
  double A = 0, B = 0, C = 0;
  struct Value {
    double m;
    size_t i;
  };
  std::vector<Value> moving;  // the values that cross boundaries: m > 0, h > 0, more than one magnitude
  for (size_t i = 0; i < n; ++i) {
    const double hi = h ? static_cast<double>(h[i]) : 1.0;
    if (!(hi > 0.0)) continue;
    const double m = std::fabs(static_cast<double>(w[i]));
    C += hi * m * m;
    if (m == 0.0 || mags.size() == 1) {
      const double q = m == 0.0 ? mags.back() : mags[0];
      A += hi * m * q;
      B += hi * q * q;
      continue;
    }
    A += hi * m * mags[0];
    B += hi * mags[0] * mags[0];
    moving.push_back({m, i});
  }
  // Value i leaves level l at a = 2|w_i| / (mags[l] + mags[l+1]). The boundaries are merged in increasing a from
  // sorted runs, whichever runs are fewer: for one l they rise with |w| (so with the values sorted once by |w| each
  // level is a run), and for one value they rise with l (the midpoints fall). A heap of one head per run then
  // costs log(min(n, |mags|)) a boundary. Equal boundaries go by value index, then level.
  const bool runs_per_value = moving.size() < mags.size() - 1;
  if (!runs_per_value)  // each level's run in order of |w|
    std::sort(moving.begin(), moving.end(),
              [](const Value& x, const Value& y) { return x.m != y.m ? x.m < y.m : x.i < y.i; });
  struct Head {
    double a;
    size_t i;
    size_t level;  // the boundary from mags[level] to mags[level + 1]
    size_t pos;    // the value's place in `moving`
    bool operator>(const Head& o) const {
      return a != o.a ? a > o.a : i != o.i ? i > o.i : level > o.level;
    }
  };
  auto boundary = [&](size_t level, size_t pos) {
    return Head{2.0 * moving[pos].m / (mags[level] + mags[level + 1]), moving[pos].i, level, pos};
  };
  std::priority_queue<Head, std::vector<Head>, std::greater<Head>> heads;
  if (runs_per_value)
    for (size_t pos = 0; pos < moving.size(); ++pos) heads.push(boundary(0, pos));
  else if (!moving.empty())
    for (size_t l = 0; l + 1 < mags.size(); ++l) heads.push(boundary(l, 0));

  std::vector<std::pair<double, double>> best;  // (f, a), at most `keep`, ascending f
  auto consider = [&](double lo, double hi) {
    if (!(B > 0.0)) return;
    const double a = std::min(std::max(A / B, lo), hi);
    if (!(a > 0.0) || !std::isfinite(a)) return;
    const double f = C - 2.0 * a * A + a * a * B;
    if (best.size() == keep && !(f < best.back().first)) return;
    best.insert(std::upper_bound(best.begin(), best.end(), std::make_pair(f, a)), {f, a});
    if (best.size() > keep) best.pop_back();
  };
  double lo = 0.0;
  while (!heads.empty()) {
    const Head b = heads.top();
    heads.pop();
    consider(lo, b.a);  // the piece (lo, b.a] has constant levels
    const double hi = h ? static_cast<double>(h[b.i]) : 1.0, m = moving[b.pos].m;
    const double q0 = mags[b.level], q1 = mags[b.level + 1];
    A += hi * m * (q1 - q0);
    B += hi * (q1 * q1 - q0 * q0);
    if (runs_per_value ? b.level + 2 < mags.size() : b.pos + 1 < moving.size())
      heads.push(runs_per_value ? boundary(b.level + 1, b.pos) : boundary(b.level, b.pos + 1));
    lo = b.a;
  }
  consider(lo, std::numeric_limits<double>::infinity());
  std::vector<double> out;
  for (const auto& fa : best) out.push_back(fa.second);
  return out;
}

}  // namespace detail

namespace {
// The all-zero reconstruction: a == 0 makes every fixed shape collapse to the single level 0.
FixedCodebookResult all_zero(size_t n, double scale) {
  FixedCodebookResult r;
  r.codebook = {0.0f};
  r.indices.assign(n, 0);
  r.scale = scale;
  return r;
}
}  // namespace

FixedCodebookResult quantize_binary(const float* w, const float* h, size_t n, bool scaled) {
  const bool use_h = detail::validate_inputs(w, h, n, "binary");
  double a = 1.0;
  if (scaled) {
    // For the fixed sign pattern q_i = sgn(w_i), Σ h (a·sgn(w) − w)² is a parabola in a with minimum at the
    // h-weighted mean magnitude [LC, C step; weighted by h here].
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double hi = use_h ? h[i] : 1.0;
      num += hi * std::fabs(static_cast<double>(w[i]));
      den += hi;
    }
    a = num / den;
    if (!(static_cast<float>(a) > 0.0f)) return all_zero(n, 0.0);
  }
  FixedCodebookResult r;
  r.scale = a;
  r.codebook = {-static_cast<float>(a), static_cast<float>(a)};
  r.indices.resize(n);
  for (size_t i = 0; i < n; ++i) r.indices[i] = w[i] >= 0.0f ? 1 : 0;  // w == 0 -> +a (documented)
  return r;
}

FixedCodebookResult quantize_ternary(const float* w, const float* h, size_t n) {
  const bool use_h = detail::validate_inputs(w, h, n, "ternary");
  // For a fixed set T of non-zero codes the best a is the h-weighted mean of |w| over T and the objective
  // drops by (Σ_T h|w|)² / Σ_T h. For any a the nearest-level set is {|w| > a/2}, a top set of the sorted
  // magnitudes, so the global optimum is the best top-j set: scan j over |w| sorted descending [LC §8].
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [w](size_t x, size_t y) {
    const float ax = std::fabs(w[x]), ay = std::fabs(w[y]);
    return ax != ay ? ax > ay : x < y;  // index tie-break keeps the result deterministic
  });
  double sum_hs = 0.0, sum_h = 0.0, best_score = 0.0, best_a = 0.0;
  for (size_t j = 0; j < n; ++j) {
    const size_t i = order[j];
    const double hi = use_h ? h[i] : 1.0;
    sum_hs += hi * std::fabs(static_cast<double>(w[i]));
    sum_h += hi;
    if (sum_h <= 0.0) continue;  // top entries with zero importance: score undefined, a free
    const double score = sum_hs * sum_hs / sum_h;  // unweighted: (Σ s)²/j, the (Σ s)/√j criterion squared
    if (score > best_score) {                        // strict: the smallest j* wins ties
      best_score = score;
      best_a = sum_hs / sum_h;
    }
  }
  const float a = static_cast<float>(best_a);
  if (!(a > 0.0f)) return all_zero(n, 0.0);
  FixedCodebookResult r;
  r.scale = best_a;
  r.codebook = {-a, 0.0f, a};  // all three kept even if one is unused (the shape is the method)
  r.indices.resize(n);
  const double half = 0.5 * static_cast<double>(a);
  for (size_t i = 0; i < n; ++i) {
    // Nearest level of {−a, 0, a}; |w| == a/2 is a tie and goes to 0 (the sparser code).
    const double m = std::fabs(static_cast<double>(w[i]));
    r.indices[i] = m > half ? (w[i] > 0.0f ? 2 : 0) : 1;
  }
  return r;
}

}  // namespace nq::quant
