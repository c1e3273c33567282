// Importance bins for a sublinear ECSQ pass: the corner certificate and the envelope cut (see binned_pass.h).
#include "quant/binned_pass.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/memory_info.h"
#include "core/parallel_for.h"
#include "core/scratch_vector.h"
#include "netquant/error.h"
#include "quant/quant_formulas.h"

namespace nq::quant {

namespace {

constexpr size_t kDefaultBinValues = 16384;
constexpr size_t kMaxBins = 256;
// Runs this short go to op (a) rather than being halved again.
constexpr size_t kLeaf = 8;
// The certificate's rounding margin. Cluster j beats cluster i at every value of a run's rectangle when, at each of
// its four corners q, cost_i(q)·(1 − m) > cost_j(q) + m·C, with C the largest of cost_j at the corners. Why that
// suffices: each computed assign_cost is within δ (a few units in the last place, ~1e-15) of the exact cost,
// relatively; so the exact gap cost_i − cost_j is at least (m − 2δ)·C at every corner, hence (bilinear in (w, h))
// everywhere in the rectangle; inside, cost_j is at most C (convex in w, linear in h: largest at a corner), so the
// computed gap there is at least (m − 2δ)·C − 2δ·C > 0. m = 1e-12 leaves a factor of several hundred. The test is
// monotone in cost_i, so a rounding-monotone lower bound of cost_i (assign_cost_bound) that passes it vouches for
// every cluster beyond: the scan outwards from j stops there.
constexpr double kMargin = 1e-12;

// The bin of a positive importance: the number of edges ≤ x. A binary search over 255 edges is 8 dependent
// comparisons, each a coin toss with equal-count bins, which the compiler makes branches of: ~30 ns a value on the
// 2-core VM, the largest single cost of building a 10^8-value problem. Positive floats order as their bit patterns,
// so a table over the top 16 bits gives the count at the cell's least and greatest value; a short scan between the
// two settles x (most cells hold no edge: no scan at all).
class EdgeIndex {
 public:
  explicit EdgeIndex(const std::vector<float>& edges) : edges_(edges), lo_(kCells), hi_(kCells) {
    size_t below = 0;  // edges ≤ the cell's least value (NaN cells, never used, compare false throughout)
    for (uint32_t c = 0; c < kCells; ++c) {
      const float least = bits_to_float(c << 16), greatest = bits_to_float((c << 16) | 0xffffu);
      while (below < edges_.size() && edges_[below] <= least) ++below;
      size_t upto = below;
      while (upto < edges_.size() && edges_[upto] <= greatest) ++upto;
      lo_[c] = static_cast<uint16_t>(below);
      hi_[c] = static_cast<uint16_t>(upto);
    }
  }
  size_t bin(float x) const {  // x > 0
    const uint32_t cell = float_to_bits(x) >> 16;
    size_t b = lo_[cell];
    for (const size_t top = hi_[cell]; b < top && edges_[b] <= x;) ++b;
    return b;
  }

 private:
  static constexpr uint32_t kCells = uint32_t{1} << 15;  // the sign bit is 0
  static float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  static uint32_t float_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
  }
  std::vector<float> edges_;  // ascending, at most 255
  std::vector<uint16_t> lo_, hi_;
};

// at[c·groups + g] holds how many values of group g chunk c has; turns it into where chunk c's first value of
// group g lands (groups back to back, chunks in order within each) and sets start[g] to group g's first position
// (start has groups + 1 entries, the last the total).
void offsets_by_chunk(std::vector<size_t>& at, size_t chunks, size_t groups, std::vector<size_t>& start) {
  std::fill(start.begin(), start.end(), 0);
  for (size_t c = 0; c < chunks; ++c)
    for (size_t g = 0; g < groups; ++g) start[g + 1] += at[c * groups + g];
  for (size_t g = 0; g < groups; ++g) start[g + 1] += start[g];
  for (size_t g = 0; g < groups; ++g) {
    size_t o = start[g];
    for (size_t c = 0; c < chunks; ++c) {
      const size_t k = at[c * groups + g];
      at[c * groups + g] = o;
      o += k;
    }
  }
}

// The centres whose cost h·(w − c_j)² + λ·l_j is least for some w at t = λ / h, in ascending order, and the
// breakpoints between consecutive ones: cost/h − w² is the line c_j² + t·l_j − 2·c_j·w, so this is the lower
// envelope of k lines with descending slopes. Only a guess of where to cut: the certificate decides.
void envelope(const double* c, const double* l, int k, double t, std::vector<int>& hull, std::vector<double>& cut) {
  hull.clear();
  cut.clear();
  auto meet = [&](int i, int j) {  // the w beyond which j (c_j > c_i) costs less than i
    return (c[j] * c[j] - c[i] * c[i] + t * (l[j] - l[i])) / (2.0 * (c[j] - c[i]));
  };
  for (int j = 0; j < k; ++j) {
    while (!hull.empty()) {
      const double x = meet(hull.back(), j);
      if (!cut.empty() && x <= cut.back()) {  // the top line is never the least: drop it
        hull.pop_back();
        cut.pop_back();
        continue;
      }
      cut.push_back(x);
      break;
    }
    hull.push_back(j);
  }
}

std::atomic<bool> g_binned_enabled{true};

}  // namespace

void set_binned_pass_enabled(bool enabled) { g_binned_enabled.store(enabled, std::memory_order_relaxed); }
bool binned_pass_enabled() { return g_binned_enabled.load(std::memory_order_relaxed); }

// While it is built the binned copy holds up to ~23 bytes per value besides the values (each bin's index, the values
// scattered by bin, their sorted copy, prefix sums and the scratch of the sort; from a caller's sorted copy only the
// last two, ~11), which must not push a big problem that op (a) would run in place out of memory: with less than
// twice the bound available, op (a) it is.
bool use_binned_pass(size_t n) {
  if (n < kBinnedMinValues || !binned_pass_enabled()) return false;
  const uint64_t available = available_memory_bytes();
  return available == 0 || available / 2 >= static_cast<uint64_t>(n) * kBinnedBuildBytesPerValue;
}

BinnedValues::BinnedValues(const float* w, const float* h, size_t n, size_t bins, SortedView sorted)
    : src_w_(w), src_h_(h), n_(n) {
  // Built in fixed chunks of the input (not one per thread), in parallel: every sum below is added chunk by chunk
  // in chunk order and every value lands where the serial loop would put it, for any thread count.
  constexpr int64_t kChunk = int64_t{1} << 16;
  const size_t chunks = (n + kChunk - 1) / kChunk;
  auto importance = [h](size_t i) { return h ? h[i] : 1.0f; };
  struct ChunkSums {
    size_t positive = 0;
    double sum_w = 0, zero_w = 0, zero_w2 = 0;
  };
  std::vector<ChunkSums> sums(chunks);
  parallel_for_chunks(static_cast<int64_t>(n), kChunk, [&](int64_t i0, int64_t i1) {
    ChunkSums& c = sums[static_cast<size_t>(i0 / kChunk)];
    for (size_t i = static_cast<size_t>(i0); i < static_cast<size_t>(i1); ++i) {
      if (importance(i) > 0) {
        ++c.positive;
        c.sum_w += w[i];
      } else {
        c.zero_w += w[i];
        c.zero_w2 += static_cast<double>(w[i]) * w[i];
      }
    }
  });
  size_t p = 0;
  double mean = 0;
  for (const ChunkSums& c : sums) {
    p += c.positive;
    mean += c.sum_w;
    zero_sum_w_ += c.zero_w;
    zero_sum_w2_ += c.zero_w2;
  }
  positive_ = p;
  zero_count_ = n - p;
  const size_t nb = p == 0 ? 0
                           : std::min(p, bins ? std::min(bins, kMaxBins)
                                              : std::clamp<size_t>(p / kDefaultBinValues, 1, kMaxBins));
  if (p > 0) shift_ = mean / static_cast<double>(p);
  // Equal-count edges by importance; a value equal to an edge goes to the bin that starts there.
  // (From an evenly strided sample of about kEdgeSample positive importances: the bins need only be about equal.)
  std::vector<float> edges;
  if (nb > 1) {
    constexpr size_t kEdgeSample = size_t{1} << 16;
    std::vector<float> hs;
    for (size_t stride = std::max<size_t>(1, n / kEdgeSample);; stride = std::max<size_t>(1, stride / 16)) {
      hs.clear();
      for (size_t i = 0; i < n; i += stride)
        if (importance(i) > 0) hs.push_back(importance(i));
      if (stride == 1 || hs.size() >= std::min(p, kEdgeSample / 4)) break;  // mostly zeros: a denser sample
    }
    std::sort(hs.begin(), hs.end());
    for (size_t b = 1; b < nb; ++b) edges.push_back(hs[b * hs.size() / nb]);
  }
  // The values of positive importance grouped by bin (the number of edges ≤ h, EdgeIndex), in their source's order
  // within each bin: a count per chunk and bin, then a stable scatter. From the caller's sorted copy each bin comes
  // out sorted by value (its members in sorted order are what a stable sort of them by w's order key gives: sort_pairs'
  // order); from the values themselves each bin is sorted afterwards.
  NQ_ASSERT(!sorted.w || sorted.h != nullptr);
  const float* from_w = sorted.w ? sorted.w : w;
  const float* from_h = sorted.w ? sorted.h : h;  // null: every importance 1
  auto from_importance = [from_h](size_t i) { return from_h ? from_h[i] : 1.0f; };
  const EdgeIndex edge_index(edges);
  std::vector<size_t> at(chunks * nb, 0), start(nb + 1, 0);  // bin b's values at [start[b], start[b + 1])
  parallel_for_chunks(static_cast<int64_t>(n), kChunk, [&](int64_t i0, int64_t i1) {
    size_t* count = at.data() + static_cast<size_t>(i0 / kChunk) * nb;
    for (size_t i = static_cast<size_t>(i0); i < static_cast<size_t>(i1); ++i) {
      const float x = from_importance(i);
      if (x > 0) ++count[edge_index.bin(x)];
    }
  });
  offsets_by_chunk(at, chunks, nb, start);
  w_.resize(n);  // [0, p) the bins, [p, n) the values of importance 0 in the source's order
  h_.resize(n);
  if (zero_count_ > 0) {
    std::vector<size_t> zero_at(chunks + 1, p);  // chunk c's values of importance 0 go from zero_at[c]
    for (size_t c = 0; c < chunks; ++c) {
      const size_t len = std::min(n, (c + 1) * static_cast<size_t>(kChunk)) - c * static_cast<size_t>(kChunk);
      zero_at[c + 1] = zero_at[c] + (len - sums[c].positive);
    }
    parallel_for_chunks(static_cast<int64_t>(n), kChunk, [&](int64_t i0, int64_t i1) {
      size_t o = zero_at[static_cast<size_t>(i0 / kChunk)];
      for (size_t i = static_cast<size_t>(i0); i < static_cast<size_t>(i1); ++i)
        if (!(importance(i) > 0)) {
          w_[o] = w[i];
          h_[o++] = 0.0f;
        }
    });
  }
  ScratchVector<float> gw(sorted.w ? 0 : p), gh(sorted.w ? 0 : p);  // the bins before their sort (written in full)
  float* to_w = sorted.w ? w_.data() : gw.data();
  float* to_h = sorted.w ? h_.data() : gh.data();
  parallel_for_chunks(static_cast<int64_t>(n), kChunk, [&](int64_t i0, int64_t i1) {
    size_t* next = at.data() + static_cast<size_t>(i0 / kChunk) * nb;
    for (size_t i = static_cast<size_t>(i0); i < static_cast<size_t>(i1); ++i) {
      const float x = from_importance(i);
      if (!(x > 0)) continue;  // importance 0: counted above, not kept
      const size_t o = next[edge_index.bin(x)]++;
      to_w[o] = from_w[i];
      to_h[o] = x;
    }
  });
  if (!sorted.w) {
#pragma omp parallel for schedule(dynamic, 1) if (nb > 1)
    for (int64_t b = 0; b < static_cast<int64_t>(nb); ++b) {
      const size_t a = start[static_cast<size_t>(b)], e = start[static_cast<size_t>(b) + 1];
      if (a < e) cpu::sort_pairs(gw.data() + a, gh.data() + a, e - a, w_.data() + a, h_.data() + a);
    }
  }
  if (p == 0) return;
  std::vector<Bin> all(nb);
#pragma omp parallel for schedule(dynamic, 1) if (nb > 1)
  for (int64_t b = 0; b < static_cast<int64_t>(nb); ++b) {
    const size_t a = start[static_cast<size_t>(b)], e = start[static_cast<size_t>(b) + 1];
    if (a == e) continue;
    const auto mm = std::minmax_element(h_.begin() + static_cast<ptrdiff_t>(a), h_.begin() + static_cast<ptrdiff_t>(e));
    all[static_cast<size_t>(b)] = {a, e, *mm.first, *mm.second};
  }
  for (const Bin& bin : all)
    if (bin.end > bin.begin) bins_.push_back(bin);
  const size_t blocks = (p + kBlock - 1) / kBlock;
  for (auto* v : {&ph_, &phx_, &phx2_, &pn_, &px_, &px2_}) v->resize(blocks + 1);
  cpu::prefix_sums(w_.data(), h_.data(), p, shift_, kBlock, ph_.data(), phx_.data(), phx2_.data());
  cpu::prefix_sums(w_.data(), nullptr, p, shift_, kBlock, pn_.data(), px_.data(), px2_.data());
}

BinnedValues::RangeSums BinnedValues::prefix(size_t p) const {
  const size_t b = p / kBlock;
  RangeSums s{{ph_[b], phx_[b], phx2_[b]}, {pn_[b], px_[b], px2_[b]}};
  for (size_t i = b * kBlock; i < p; ++i) {
    add_moments(s.weighted, w_[i], h_[i], shift_);
    add_moments(s.plain, w_[i], 1.0, shift_);
  }
  return s;
}

BinnedValues::RangeSums BinnedValues::range(size_t a, size_t b) const {
  const RangeSums x = prefix(a), y = prefix(b);
  auto minus = [](const Moments& u, const Moments& v) { return Moments{u.s0 - v.s0, u.s1 - v.s1, u.s2 - v.s2}; };
  return {minus(y.weighted, x.weighted), minus(y.plain, x.plain)};
}

BinnedPlan BinnedValues::plan(const double* c, const double* l, int k, double lambda) const {
  NQ_CHECK(k >= 1, ErrorCode::kInvalidArgument, "binned pass: k must be >= 1, got " << k);
  BinnedPlan result;
  // The certificate needs finite costs and the envelope ascending centres; otherwise op (a) takes every value.
  bool regular = std::isfinite(lambda) && lambda >= 0;
  for (int j = 0; j < k && regular; ++j)
    regular = std::isfinite(c[j]) && std::isfinite(l[j]) && l[j] >= 0 && (j == 0 || c[j] > c[j - 1]);
  if (!regular) {
    result.whole = true;
    return result;
  }

  // The least code length from each cluster outwards, up and down: the certificate's bounds.
  std::vector<double> l_min_from(static_cast<size_t>(k)), l_min_to(static_cast<size_t>(k));
  for (int j = k - 1; j >= 0; --j) l_min_from[j] = j + 1 < k ? std::min(l[j], l_min_from[j + 1]) : l[j];
  for (int j = 0; j < k; ++j) l_min_to[j] = j > 0 ? std::min(l[j], l_min_to[j - 1]) : l[j];

  // Per bin: the certified runs' sums, and the positions of the values left to op (a), in the bin's scratch.
  const std::lock_guard<std::mutex> hold(scratch_mutex_);
  scratch_.resize(bins_.size());
#pragma omp parallel for schedule(dynamic, 1) if (bins_.size() > 1)
  for (int64_t bi = 0; bi < static_cast<int64_t>(bins_.size()); ++bi) {
    const Bin& bin = bins_[static_cast<size_t>(bi)];
    BinScratch& scratch = scratch_[static_cast<size_t>(bi)];
    AssignAccum& acc = scratch.acc;
    acc.reset(k);
    std::vector<std::pair<size_t, size_t>>& to_op_a = scratch.left;
    to_op_a.clear();
    // Every value of [a, b) takes label j when j beats every other cluster at the four corners of the run's
    // rectangle, by the margin above. Clusters are scanned outwards from j on both sides, the neighbours first (a
    // run that fails mostly fails on one of them); a side is done at the first centre beyond the run whose lower
    // bound, with the least code length from there outwards, already loses to j at every corner.
    auto certified = [&](size_t a, size_t b, int j) {
      const float x[2] = {w_[a], w_[b - 1]};
      const double hh[2] = {bin.h_lo, bin.h_hi};
      double need[4], cj_max = 0;
      for (int q = 0; q < 4; ++q) {
        need[q] = assign_cost(x[q & 1], hh[q >> 1], c[j], l[j], lambda);
        cj_max = std::max(cj_max, need[q]);
      }
      for (int q = 0; q < 4; ++q) need[q] += kMargin * cj_max;
      auto loses = [&](double cost_i, int q) { return cost_i * (1.0 - kMargin) > need[q]; };
      auto beats_j = [&](int i) {
        for (int q = 0; q < 4; ++q)
          if (!loses(assign_cost(x[q & 1], hh[q >> 1], c[i], l[i], lambda), q)) return true;
        return false;
      };
      auto all_beyond_lose = [&](int i, double lmin) {
        for (int q = 0; q < 4; ++q)
          if (!loses(assign_cost_bound(x[q & 1], hh[q >> 1], c[i], lmin, lambda), q)) return false;
        return true;
      };
      bool up = j + 1 < k, down = j > 0;
      for (int d = 1; up || down; ++d) {
        if (up) {
          const int i = j + d;
          if (c[i] >= x[1] && all_beyond_lose(i, l_min_from[i])) {
            up = false;
          } else {
            if (beats_j(i)) return false;
            up = i + 1 < k;
          }
        }
        if (down) {
          const int i = j - d;
          if (c[i] <= x[0] && all_beyond_lose(i, l_min_to[i])) {
            down = false;
          } else {
            if (beats_j(i)) return false;
            down = i > 0;
          }
        }
      }
      return true;
    };
    auto add_run = [&](size_t a, size_t b, int j) {
      const RangeSums s = range(a, b);
      const double n = static_cast<double>(b - a), d = c[j] - shift_;
      const double dist = std::max(0.0, s.weighted.s2 - 2.0 * d * s.weighted.s1 + d * d * s.weighted.s0);
      acc.sum_h[j] += s.weighted.s0;
      acc.sum_hw[j] += s.weighted.s1 + shift_ * s.weighted.s0;
      acc.sum_w[j] += s.plain.s1 + shift_ * n;
      acc.count[j] += static_cast<int64_t>(b - a);
      acc.distortion += dist;
      acc.sq_error += std::max(0.0, s.plain.s2 - 2.0 * d * s.plain.s1 + d * d * n);
      acc.cost += dist + lambda * l[j] * n;
    };
    // The envelopes at the bin's two ends (t = λ/h_hi and λ/h_lo). Where they have the same centres, the values
    // between the two breakpoints of a boundary are the ones whose label depends on h: op (a)'s; each cell
    // between such zones is one run to certify. Otherwise cut at the middle importance's envelope.
    std::vector<int>& hull = scratch.hull;
    std::vector<int>& hull_other = scratch.hull_other;
    std::vector<double>& cut = scratch.cut;
    std::vector<double>& cut_other = scratch.cut_other;
    envelope(c, l, k, lambda / bin.h_hi, hull, cut);
    envelope(c, l, k, lambda / bin.h_lo, hull_other, cut_other);
    const bool zones = hull == hull_other;
    if (!zones) envelope(c, l, k, lambda / std::sqrt(bin.h_lo * bin.h_hi), hull, cut);
    auto first_at_or_above = [&](size_t from, double x) {
      return static_cast<size_t>(std::partition_point(w_.begin() + static_cast<ptrdiff_t>(from),
                                                      w_.begin() + static_cast<ptrdiff_t>(bin.end),
                                                      [x](float v) { return static_cast<double>(v) < x; }) -
                                 w_.begin());
    };
    std::vector<Run>& runs = scratch.runs;  // a stack: certified, or halved down to kLeaf values and then left to op (a)
    runs.clear();
    size_t a = bin.begin;
    for (size_t m = 0; m < hull.size(); ++m) {
      size_t b = bin.end, e = bin.end;  // the run [a, b) of cell m, then the zone [b, e) after it
      if (m < cut.size()) {
        double z0 = cut[m], z1 = cut[m];
        if (zones) {
          z0 = std::min(cut[m], cut_other[m]);
          z1 = std::max(cut[m], cut_other[m]);
        }
        // A little room, so that the run ends clear the breakpoints (the certificate decides either way).
        const double pad = 1e-9 * (std::fabs(z0) + std::fabs(z1)) + 1e-3 * (z1 - z0);
        b = first_at_or_above(a, z0 - pad);
        e = zones ? std::max(b, first_at_or_above(b, z1 + pad)) : b;
      }
      if (b > a) runs.push_back({a, b, hull[m]});
      if (e > b) to_op_a.push_back({b, e});
      a = e;
    }
    while (!runs.empty()) {
      const Run r = runs.back();
      runs.pop_back();
      if (certified(r.a, r.b, r.j)) {
        add_run(r.a, r.b, r.j);
      } else if (r.b - r.a <= kLeaf) {
        to_op_a.push_back({r.a, r.b});
      } else {
        const size_t mid = r.a + (r.b - r.a) / 2;
        runs.push_back({mid, r.b, r.j});
        runs.push_back({r.a, mid, r.j});
      }
    }
  }
  // The certified sums in bin order, then the values of importance 0 (below).
  result.certified.reset(k);
  for (const BinScratch& bin : scratch_) result.certified.add(bin.acc);
  for (const BinScratch& bin : scratch_)
    for (const auto& r : bin.left) {
      result.left.push_back(r);
      result.left_values += r.second - r.first;
    }
  // The values of importance 0 cost λ·l_j wherever they lie. When one cluster has the least rate they all take it,
  // and their sums are added here; when several tie (at λ = 0 every live one; at λ > 0 equal code lengths, as in
  // ECSQ's first pass) each goes to the nearest of those (quant::zero_importance_argmin): op (a) labels them.
  // (Their cost is fadd(h·(w − c_j)², λ·l_j) = λ·l_j exactly, as op (a) evaluates it: h = +0 and w, c_j finite.)
  double least_rate = quant::infinity();
  int tied = 0, least = 0;
  for (int j = 0; j < k; ++j) {
    const double rate = quant::fmul(lambda, l[j]);
    if (rate < least_rate) least = j;
    tied = rate < least_rate ? 1 : tied + (rate == least_rate);
    least_rate = std::min(least_rate, rate);
  }
  const bool zeros_to_op_a = zero_count_ > 0 && tied > 1;
  if (zeros_to_op_a) {
    result.left.push_back({positive_, positive_ + zero_count_});
    result.left_values += zero_count_;
  }
  // Gathering most of the values costs more than a whole pass over them in place.
  if (result.left_values > size() / 2) {
    result = BinnedPlan{};
    result.whole = true;
    return result;
  }
  if (zero_count_ > 0 && !zeros_to_op_a) {
    const int j = least;
    const double n = static_cast<double>(zero_count_);
    AssignAccum& out = result.certified;
    out.sum_w[j] += zero_sum_w_;
    out.count[j] += static_cast<int64_t>(zero_count_);
    out.sq_error += std::max(0.0, zero_sum_w2_ - 2.0 * c[j] * zero_sum_w_ + c[j] * c[j] * n);
    out.cost += least_rate * n;
  }
  return result;
}

void BinnedValues::finish(const BinnedPlan& plan, const AssignAccum& rest, AssignAccum& out) {
  out = plan.certified;
  if (plan.left_values) out.add(rest);
}

void BinnedValues::assign_accumulate(const double* c, const double* l, int k, double lambda, AssignAccum& out,
                                     size_t* values_one_by_one) const {
  const BinnedPlan p = plan(c, l, k, lambda);
  if (p.whole) {
    cpu::assign_accumulate(src_w_, src_h_, n_, c, l, k, lambda, nullptr, out);
    if (values_one_by_one) *values_one_by_one = n_;
    return;
  }
  std::vector<float> lw, lh;
  lw.reserve(p.left_values);
  lh.reserve(p.left_values);
  for (const auto& [a, b] : p.left) {
    lw.insert(lw.end(), w_.begin() + static_cast<ptrdiff_t>(a), w_.begin() + static_cast<ptrdiff_t>(b));
    lh.insert(lh.end(), h_.begin() + static_cast<ptrdiff_t>(a), h_.begin() + static_cast<ptrdiff_t>(b));
  }
  AssignAccum rest;
  if (!lw.empty()) cpu::assign_accumulate(lw.data(), lh.data(), lw.size(), c, l, k, lambda, nullptr, rest);
  finish(p, rest, out);
  if (values_one_by_one) *values_one_by_one = p.left_values;
}

}  // namespace nq::quant
