// The sorted view of a 1-D problem (in 1-D every k-means cluster is an interval of the sorted values), initial
// centres, and the final compaction of a result.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

#include "core/huge_pages.h"
#include "core/parallel_for.h"
#include "netquant/error.h"
#include "quant/nearest_thresholds.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {

SortedData::SortedData(const Problem& p, size_t prefix_block) : ws_(p.n), hs_(p.n) {
  ops_sort_pairs(p.backend, p.w, p.h, p.n, ws_.data(), hs_.data());
  // Shift by the median so the h·x² sums do not cancel catastrophically for off-centre data.
  shift_ = p.n ? static_cast<double>(ws_[p.n / 2]) : 0.0;
  block_ = prefix_block ? prefix_block : p.n <= kFullPrefixMax ? 1 : kBlock;
  const size_t nb = (p.n + block_ - 1) / block_;
  p0_.resize(nb + 1); p1_.resize(nb + 1); p2_.resize(nb + 1);
  ops_prefix_sums(p.backend, ws_.data(), hs_.data(), p.n, shift_, block_, p0_.data(), p1_.data(), p2_.data());
}

size_t SortedData::distinct() const {
  return static_cast<size_t>(parallel_sum(static_cast<int64_t>(ws_.size()), kInlineLoopMax, [&](int64_t i) {
    return static_cast<int64_t>(i == 0 || ws_[i] != ws_[i - 1]);
  }));
}

bool SortedData::distinct_at_most(size_t k) const {
  size_t count = 0;
  for (size_t i = 0; i < ws_.size() && count <= k; ++i) count += i == 0 || ws_[i] != ws_[i - 1] ? 1 : 0;
  return count <= k;
}

SortedData::Sums SortedData::prefix(size_t p) const {
  const size_t b = p / block_;
  Sums s{p0_[b], p1_[b], p2_[b]};
  for (size_t i = b * block_; i < p; ++i) add_moments(s, ws_[i], hs_[i], shift_);
  return s;
}

SortedData::Sums SortedData::range(size_t a, size_t b) const {
  const Sums x = prefix(a), y = prefix(b);
  return {y.s0 - x.s0, y.s1 - x.s1, y.s2 - x.s2};
}

size_t SortedData::boundary(double c_lo, double c_hi) const {
  return sorted_boundary(ws_.data(), ws_.size(), c_lo, c_hi);
}

std::vector<double> distinct_values(const SortedData& s) {
  std::vector<double> v;  // (called when k reaches the distinct count: a few values, no reserve needed)
  for (size_t i = 0; i < s.size(); ++i)
    if (i == 0 || s.w()[i] != s.w()[i - 1]) v.push_back(s.w()[i]);
  return v;
}

namespace {

// Uniform double in [0, 1) from the top 53 bits: the same on every standard library.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

std::vector<double> kmeanspp(const SortedData& s, int k, uint64_t seed) {
  // Weighted D² sampling (Arthur & Vassilvitskii 2007) with weights h: P(i) ∝ h_i · min_j (w_i − c_j)².
  const size_t n = s.size();
  const auto& w = s.w();
  const auto& h = s.h();
  std::mt19937_64 rng(seed);
  std::vector<double> d2(n), centers;
  auto sample = [&](const std::vector<double>& weight) -> size_t {
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += weight[i];
    if (!(total > 0)) return n;
    const double r = uniform01(rng) * total;
    double run = 0;
    for (size_t i = 0; i < n; ++i) {
      run += weight[i];
      if (run > r && weight[i] > 0) return i;
    }
    for (size_t i = n; i-- > 0;)
      if (weight[i] > 0) return i;
    return n;
  };
  std::vector<double> hw(h.begin(), h.end());
  size_t first = sample(hw);
  if (first == n) first = n / 2;
  centers.push_back(w[first]);
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(w[i]) - centers[0];
    d2[i] = d * d;
  }
  std::vector<double> weight(n);
  while (static_cast<int>(centers.size()) < k) {
    for (size_t i = 0; i < n; ++i) weight[i] = h[i] * d2[i];
    const size_t pick = sample(weight);
    if (pick == n) break;  // every value already is a centre
    const double c = w[pick];
    centers.push_back(c);
    for (size_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(w[i]) - c;
      d2[i] = std::min(d2[i], d * d);
    }
  }
  return centers;
}

}  // namespace

std::vector<double> linear_centers(double lo, double hi, int k) {
  std::vector<double> c;
  if (k == 1) c.push_back(0.5 * (lo + hi));
  for (int j = 0; k > 1 && j < k; ++j) c.push_back(lo + (hi - lo) * j / (k - 1));
  return c;
}

std::vector<double> init_centers(const SortedData& s, int k, Init init, uint64_t seed) {
  NQ_ASSERT(k >= 1 && s.size() > 0);
  const auto& w = s.w();
  const size_t n = s.size();
  std::vector<double> c;
  switch (init) {
    case Init::kLinear: {
      double lo = 0, hi = 0;
      linear_span(w.data(), s.h().data(), n, lo, hi);
      c = linear_centers(lo, hi, k);
      break;
    }
    case Init::kQuantile: {  // weighted quantiles at (j + ½)/k of the importance mass
      const double total = s.prefix(n).s0;
      size_t pos = 0;
      for (int j = 0; j < k; ++j) {
        const double target = total * (j + 0.5) / k;
        // smallest pos with prefix(pos + 1) > target (galloping over blocks would be faster; k is small)
        size_t lo = pos, hi = n - 1;
        while (lo < hi) {
          const size_t mid = (lo + hi) / 2;
          if (s.prefix(mid + 1).s0 > target) hi = mid; else lo = mid + 1;
        }
        pos = lo;
        c.push_back(w[pos]);
      }
      break;
    }
    case Init::kKmeansPP: c = kmeanspp(s, k, seed); break;
  }
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}

std::vector<double> warm_start(const QuantizeParams& q) {
  std::vector<double> c = q.initial_centers;
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}

std::vector<int32_t> nearest_labels(const Problem& p, const std::vector<double>& centers) {
  std::vector<int32_t> labels(p.n);
  if (p.backend == Backend::kCpu) {  // labels only: a threshold search per value, no fp64 costs, no sums
    const NearestThresholds rule(centers);
    constexpr size_t kChunk = static_cast<size_t>(kInlineLoopMax);  // one chunk (inline) for a row or group
    parallel_for(static_cast<int64_t>((p.n + kChunk - 1) / kChunk), 1, [&](int64_t c) {
      const size_t i0 = static_cast<size_t>(c) * kChunk;
      rule.label_all(p.w + i0, std::min(kChunk, p.n - i0), labels.data() + i0);
    });
    return labels;
  }
  const std::vector<double> zero(centers.size(), 0.0);
  AssignAccum acc;
  ops_assign_accumulate(p.backend, p.w, nullptr, p.n, centers.data(), zero.data(), static_cast<int>(centers.size()),
                        0.0, labels.data(), acc);
  return labels;
}

void count_weighted_members(const float* h, const int32_t* labels, size_t n, int k, int64_t* weighted_members) {
  const int threads = n <= static_cast<size_t>(kInlineLoopMax) ? 1 : std::max(1, omp_get_max_threads());
  std::vector<int64_t> per_thread(static_cast<size_t>(threads) * k, 0);  // integers: exact in any order
  bool bad_label = false;
  auto count = [h, labels, k](int64_t i0, int64_t i1, int64_t* counts, bool& bad) {
    for (int64_t i = i0; i < i1; ++i) {
      if (!(h[i] > 0)) continue;
      if (labels[i] < 0 || labels[i] >= k) { bad = true; continue; }
      ++counts[labels[i]];
    }
  };
  if (threads == 1) {  // a row or group: no parallel region to enter
    count(0, static_cast<int64_t>(n), per_thread.data(), bad_label);
  } else {
#pragma omp parallel num_threads(threads) reduction(|| : bad_label)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t len = static_cast<int64_t>(n), i0 = len * t / nt, i1 = len * (t + 1) / nt;
      count(i0, i1, &per_thread[static_cast<size_t>(t) * k], bad_label);  // bad_label: this thread's copy
    }
  }
  NQ_ASSERT_MSG(!bad_label, "count_weighted_members: a label outside [0, " << k << ")");
  for (int t = 0; t < threads; ++t)
    for (int j = 0; j < k; ++j) weighted_members[j] += per_thread[static_cast<size_t>(t) * k + j];
}

void relabel_zero_importance(const float* w, const float* h, size_t n, const std::vector<double>& centers,
                             const std::vector<int64_t>& eligible, int32_t* labels) {
  std::vector<int32_t> order;  // the eligible centres, ascending
  for (int32_t j = 0; j < static_cast<int32_t>(centers.size()); ++j)
    if (eligible[static_cast<size_t>(j)] > 0) order.push_back(j);
  if (order.empty()) return;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return centers[a] < centers[b]; });
  std::vector<double> sorted;  // their distinct values (NearestThresholds wants them strictly ascending) ...
  std::vector<int32_t> held;   // ... and the lowest index of each
  for (int32_t j : order)
    if (sorted.empty() || centers[j] != sorted.back()) {
      sorted.push_back(centers[j]);
      held.push_back(j);
    }
  const NearestThresholds rule(sorted);
  constexpr size_t kChunk = static_cast<size_t>(kInlineLoopMax);
  parallel_for(static_cast<int64_t>((n + kChunk - 1) / kChunk), 1, [&](int64_t c) {
    const size_t i0 = static_cast<size_t>(c) * kChunk, i1 = std::min(n, i0 + kChunk);
    for (size_t i = i0; i < i1; ++i)
      if (h[i] == 0) labels[i] = held[static_cast<size_t>(rule.label(w[i]))];
  });
}

LevelMap round_levels(const std::vector<double>& centers, const std::vector<int64_t>& counts) {
  const int k = static_cast<int>(centers.size());
  LevelMap m;
  // Used levels, rounded to float, sorted; equal floats merge into one level.
  std::vector<int32_t> order;
  for (int j = 0; j < k; ++j)
    if (counts[j] > 0) order.push_back(j);
  std::vector<float> level(static_cast<size_t>(k));
  for (int j : order) level[j] = static_cast<float>(centers[j]);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return level[a] < level[b]; });
  m.remap.assign(static_cast<size_t>(k), -1);
  for (int j : order) {
    if (m.codebook.empty() || m.codebook.back() != level[j]) m.codebook.push_back(level[j]);
    m.remap[j] = static_cast<int32_t>(m.codebook.size() - 1);
  }
  return m;
}

QuantizeResult finalize(const Problem& p, RawResult raw) {
  QuantizeResult r;
  r.iterations = raw.iterations;
  r.converged = raw.converged;
  r.lambda = raw.lambda;
  r.step = raw.step;
  r.history = std::move(raw.history);
  r.backend = p.backend;
  const size_t n = p.n;
  const int k = static_cast<int>(raw.centers.size());
  if (n == 0) return r;
  // Labels by the nearest rule are made here on the CPU, in the same pass as the errors below (one read of w and
  // h instead of three); another backend labels on its device first.
  const bool label_here = raw.labels_nearest && p.backend == Backend::kCpu;
  if (raw.labels_nearest && !label_here) raw.labels = nearest_labels(p, raw.centers);
  if (label_here) assign_advised(raw.labels, n, int32_t{0});  // (huge pages: core/huge_pages.h)
  NQ_ASSERT(raw.labels.size() == n);
  // (Most importances hold no exact zero, e.g. Adam's v or a Fisher diagonal: then one scan, stopped at the first.)
  // Labels made here by the nearest rule (label_here) come later, in the measuring pass: no driver asks for both.
  NQ_ASSERT(!raw.labels_nearest || raw.zero_importance == RawResult::ZeroImportance::kAsLabelled);
  if (raw.zero_importance != RawResult::ZeroImportance::kAsLabelled && p.h &&
      std::find(p.h, p.h + n, 0.0f) != p.h + n) {
    std::vector<int64_t> eligible(static_cast<size_t>(k), 0);
    if (raw.zero_importance == RawResult::ZeroImportance::kNearestWeighted)
      count_weighted_members(p.h, raw.labels.data(), n, k, eligible.data());
    else
      ops_label_histogram(Backend::kCpu, raw.labels.data(), n, k, eligible.data());
    relabel_zero_importance(p.w, p.h, n, raw.centers, eligible, raw.labels.data());
  }
  r.indices = std::move(raw.labels);  // relabelled in place: no second n-entry array
  // The error of a value is measured against its centre rounded to float, which is the codebook level the label
  // maps to below (equal floats merge into one level): so D and the MSE need the labels, not the level map.
  std::vector<float> level(static_cast<size_t>(k));
  for (int j = 0; j < k; ++j) level[j] = static_cast<float>(raw.centers[j]);
  const std::optional<NearestThresholds> rule =
      label_here ? std::optional<NearestThresholds>(raw.centers) : std::nullopt;
  // Fixed blocks, each summed in element order, then added in block order: the same bits for any thread count.
  const size_t block = accum_block_size(n), nb = (n + block - 1) / block;
  std::vector<double> pd(nb), pm(nb);
  const int threads = n <= static_cast<size_t>(kInlineLoopMax) ? 1 : std::max(1, omp_get_max_threads());
  std::vector<int64_t> thread_counts(static_cast<size_t>(threads) * k, 0);  // integers: exact in any order
  bool bad_label = false;
  auto measure_block = [&](size_t b, int64_t* counts) {
    double d = 0, m = 0;
    const size_t i0 = b * block, i1 = std::min(n, i0 + block);
    int32_t* lab = r.indices.data();
    if (rule) rule->label_all(p.w + i0, i1 - i0, lab + i0);
    for (size_t i = i0; i < i1; ++i) {
      const int32_t j = lab[i];
      if (j < 0 || j >= k) { bad_label = true; continue; }
      ++counts[j];
      const double e = static_cast<double>(level[j]) - static_cast<double>(p.w[i]);
      m += e * e;
      d += (p.h ? static_cast<double>(p.h[i]) : 1.0) * e * e;
    }
    pd[b] = d;
    pm[b] = m;
  };
  if (threads == 1) {
    for (size_t b = 0; b < nb; ++b) measure_block(b, thread_counts.data());
  } else {
#pragma omp parallel num_threads(threads) reduction(|| : bad_label)
    {
      int64_t* counts = &thread_counts[static_cast<size_t>(omp_get_thread_num()) * k];
#pragma omp for schedule(static)
      for (int64_t b = 0; b < static_cast<int64_t>(nb); ++b) measure_block(static_cast<size_t>(b), counts);
    }
  }
  NQ_ASSERT_MSG(!bad_label, "finalize: a label outside [0, " << k << ")");
  std::vector<int64_t> counts(static_cast<size_t>(k), 0);
  for (int t = 0; t < threads; ++t)
    for (int j = 0; j < k; ++j) counts[j] += thread_counts[static_cast<size_t>(t) * k + j];
  const LevelMap levels = round_levels(raw.centers, counts);
  r.codebook = levels.codebook;
  const std::vector<int32_t>& remap = levels.remap;
  bool identity = true;  // the usual case: every centre used, in order, no two equal as floats
  for (int j = 0; j < k; ++j) identity = identity && (counts[j] == 0 || remap[j] == j);
  if (!identity)
    parallel_for(static_cast<int64_t>(nb), 1, [&](int64_t b) {
      const size_t i0 = static_cast<size_t>(b) * block, i1 = std::min(n, i0 + block);
      for (size_t i = i0; i < i1; ++i) r.indices[i] = remap[r.indices[i]];
    });
  double d = 0, m = 0;
  for (size_t b = 0; b < nb; ++b) { d += pd[b]; m += pm[b]; }
  r.hw_distortion = d / static_cast<double>(n);
  r.mse = m / static_cast<double>(n);
  std::vector<int64_t> used(r.codebook.size(), 0);  // the level counts: the label counts merged by remap
  for (int j = 0; j < k; ++j)
    if (remap[j] >= 0) used[static_cast<size_t>(remap[j])] += counts[j];
  r.entropy_bits = histogram_entropy(used.data(), static_cast<int>(used.size()));
  return r;
}

double target_rate_bits(const QuantizeParams& q) {
  if (q.target_bits > 0) return q.target_bits;
  if (q.target_ratio > 0) return 32.0 / q.target_ratio;
  return 0.0;
}

}  // namespace nq::quant
