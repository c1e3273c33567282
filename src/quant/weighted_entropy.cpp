// Weighted-entropy quantization (Park, Ahn, Yoo, CVPR 2017): magnitude clusters over the
// sorted importances w², boundaries moved to maximise S = −Σ_n I_n P_n log P_n, RMS representatives.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "netquant/error.h"
#include "quant/fixed_codebooks.h"

namespace nq::quant {
namespace {

// A boundary moves only when S gains more than this (relative to |S|): far above the rounding error of S
// recomputed from scratch, so the recorded history is non-decreasing, and far below any real gain.
constexpr double kMoveTol = 1e-12;

// The clusters are intervals of the magnitudes sorted ascending, cut only between distinct magnitudes so
// that equal weights always share a level. With fp64 prefix sums of w², one cluster's term of S is O(1):
// I_n P_n = (Σ_n w²)/N, so the term is −(Σ_n w² / N) · log(n_n / N).
class EntropyScore {
 public:
  explicit EntropyScore(std::vector<double> prefix_imp)
      : prefix_(std::move(prefix_imp)), n_(static_cast<double>(prefix_.size() - 1)) {}

  // Term of the cluster holding sorted positions [begin, end).
  double term(size_t begin, size_t end) const {
    if (end <= begin) return 0.0;
    const double mass = (prefix_[end] - prefix_[begin]) / n_;
    return -mass * std::log(static_cast<double>(end - begin) / n_);
  }

 private:
  std::vector<double> prefix_;
  double n_;
};

}  // namespace

FixedCodebookResult quantize_wentropy(const float* w, size_t n, int levels, int max_iter) {
  detail::validate_inputs(w, nullptr, n, "wentropy");
  NQ_CHECK(levels >= 2 && levels <= 65536, ErrorCode::kInvalidArgument,
           "wentropy: levels must be in [2, 65536], got " << levels);
  NQ_CHECK(max_iter >= 1, ErrorCode::kInvalidArgument, "wentropy: max_iter must be >= 1, got " << max_iter);

  // Magnitudes sorted ascending (importance w² orders the same way), ties by index for determinism.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [w](size_t a, size_t b) {
    const float x = std::fabs(w[a]), y = std::fabs(w[b]);
    return x != y ? x < y : a < b;
  });
  std::vector<double> mag(n), prefix(n + 1, 0.0);
  for (size_t j = 0; j < n; ++j) {
    mag[j] = std::fabs(static_cast<double>(w[order[j]]));
    prefix[j + 1] = prefix[j] + mag[j] * mag[j];
  }
  // Allowed cut positions p (cluster boundary between sorted p−1 and p): only between distinct magnitudes.
  std::vector<size_t> cuts;
  for (size_t p = 1; p < n; ++p) {
    if (mag[p - 1] < mag[p]) cuts.push_back(p);
  }
  const size_t distinct = cuts.size() + 1;
  const bool has_zero = mag[0] == 0.0;
  const size_t nonzero_mags = distinct - (has_zero ? 1 : 0);

  // Level budget: K = ⌊L/2⌋ signed magnitude clusters, plus for odd L one exact-zero cluster that takes the
  // lowest-importance magnitudes (Park et al.'s zero level). If every distinct magnitude fits in the budget
  // as its own level pair (and 0 as a single level), quantization is lossless and no search is needed.
  const size_t signed_clusters = static_cast<size_t>(levels / 2);
  const bool zero_cluster = (levels % 2) == 1;
  const bool lossless = 2 * nonzero_mags + (has_zero ? 1 : 0) <= static_cast<size_t>(levels);
  // When not lossless, distinct >= K + [L odd]: e.g. L = 2K+1 without zeros needs 2·nonzero > 2K+1, so
  // distinct = nonzero >= K+1 (the other three parity/zero cases go the same way).
  const size_t clusters = lossless ? distinct : signed_clusters + (zero_cluster ? 1 : 0);
  NQ_ASSERT(clusters >= 1 && clusters <= distinct);

  // bound[c] = sorted position where cluster c starts; bound[0] = 0, bound[clusters] = n. For the search
  // the inner boundaries are kept as indices into `cuts` (cut_id), starting from equal counts.
  std::vector<size_t> cut_id(clusters + 1);
  const size_t m_cuts = cuts.size();
  auto pos_of = [&](size_t c) -> size_t {
    if (c == 0) return 0;
    if (c == clusters) return n;
    return cuts[cut_id[c]];
  };
  for (size_t c = 1; c < clusters; ++c) {
    const size_t target = static_cast<size_t>(std::llround(static_cast<double>(c) * n / clusters));
    size_t id = static_cast<size_t>(std::lower_bound(cuts.begin(), cuts.end(), target) - cuts.begin());
    const size_t lo = c == 1 ? 0 : cut_id[c - 1] + 1;
    const size_t hi = m_cuts - (clusters - c);  // leave room for the boundaries to the right
    cut_id[c] = std::min(std::max(id, lo), hi);
  }

  const EntropyScore score(prefix);
  auto total_score = [&]() {
    double s = 0.0;
    for (size_t c = 0; c < clusters; ++c) s += score.term(pos_of(c), pos_of(c + 1));
    return s;
  };

  FixedCodebookResult r;
  double s_cur = total_score();
  r.objective_history.push_back(s_cur);
  r.converged = true;
  if (clusters >= 2 && !lossless) {
    r.converged = false;
    for (int sweep = 0; sweep < max_iter; ++sweep) {
      ++r.iterations;
      bool moved = false;
      // Gauss–Seidel sweep: each boundary goes to the best cut strictly between its neighbours, which only
      // changes the two clusters it separates. The windows tile the cut list, so a sweep is O(N).
      for (size_t c = 1; c < clusters; ++c) {
        const size_t left = pos_of(c - 1), right = pos_of(c + 1);
        const size_t id_lo = c == 1 ? 0 : cut_id[c - 1] + 1;
        const size_t id_hi = c + 1 == clusters ? m_cuts - 1 : cut_id[c + 1] - 1;
        const double current = score.term(left, cuts[cut_id[c]]) + score.term(cuts[cut_id[c]], right);
        double best = current;
        size_t best_id = cut_id[c];
        for (size_t id = id_lo; id <= id_hi; ++id) {
          const double v = score.term(left, cuts[id]) + score.term(cuts[id], right);
          if (v > best) { best = v; best_id = id; }
        }
        // Move only on a gain above rounding noise, so S is non-decreasing as recomputed from scratch.
        if (best_id != cut_id[c] && best - current > kMoveTol * std::fabs(s_cur)) {
          cut_id[c] = best_id;
          moved = true;
        }
      }
      const double s_new = total_score();
      if (!moved) {
        r.converged = true;
        break;
      }
      s_cur = s_new;
      r.objective_history.push_back(s_new);
    }
  }

  // Representatives: RMS magnitude of each cluster [P]; the zero cluster (odd L, lowest magnitudes) is 0.
  // Level ids: cluster c contributes +(c+1) and −(c+1); the zero cluster is id 0, so ids order like values.
  std::vector<double> rms(clusters);
  for (size_t c = 0; c < clusters; ++c) {
    const size_t b = pos_of(c), e = pos_of(c + 1);
    rms[c] = std::sqrt((prefix[e] - prefix[b]) / static_cast<double>(e - b));
  }
  const bool first_is_zero = lossless ? has_zero : zero_cluster;
  std::vector<int64_t> level(n);
  for (size_t c = 0; c < clusters; ++c) {
    const bool zero = c == 0 && first_is_zero;
    for (size_t j = pos_of(c); j < pos_of(c + 1); ++j) {
      const size_t i = order[j];
      const int64_t id = static_cast<int64_t>(c) + 1;
      level[i] = zero ? 0 : (w[i] < 0.0f ? -id : id);  // w == 0 outside the zero cluster takes + (documented)
    }
  }
  const std::vector<int64_t> used = detail::compact_levels(level, r.indices);
  r.codebook.resize(used.size());
  for (size_t j = 0; j < used.size(); ++j) {
    const int64_t id = used[j];
    const double v = id == 0 ? 0.0 : rms[static_cast<size_t>(std::llabs(id)) - 1];
    r.codebook[j] = static_cast<float>(id < 0 ? -v : v);
  }
  return r;
}

}  // namespace nq::quant
