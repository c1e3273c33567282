// Importance bins for a sublinear ECSQ pass: the corner certificate and the envelope cut (see binned_pass.h).
#include "quant/binned_pass.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "netquant/error.h"
#include "quant/quant_formulas.h"

namespace nq::quant {

namespace {

constexpr size_t kDefaultBinValues = 16384;
constexpr size_t kMaxBins = 256;
// Runs this short are labelled one by one rather than halved again.
constexpr size_t kLeaf = 8;
// The certificate's rounding margin, relative to the largest cost at the corners. Each assign_cost is within a
// few units in the last place (2^-53) of the exact cost, inside the rectangle as at its corners (the costs are
// largest at the corners: convex in w, linear in h), so 1e-12 leaves a factor of several hundred.
constexpr double kMargin = 1e-12;

// The fp64 argmin op (a) computes for one value: lowest index on ties.
int label_of(float w, double h, const double* c, const double* l, int k, double lambda, double& cost) {
  int best = -1;
  double best_cost = infinity();
  for (int j = 0; j < k; ++j) {
    const double v = assign_cost(w, h, c[j], l[j], lambda);
    if (best < 0 || better(v, j, best_cost, best)) {
      best_cost = v;
      best = j;
    }
  }
  cost = best_cost;
  return best;
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

BinnedValues::BinnedValues(const float* w, const float* h, size_t n, size_t bins) {
  std::vector<float> pw, ph;
  pw.reserve(n);
  ph.reserve(n);
  double mean = 0;
  for (size_t i = 0; i < n; ++i) {
    const float hi = h ? h[i] : 1.0f;
    if (hi > 0) {
      pw.push_back(w[i]);
      ph.push_back(hi);
      mean += w[i];
    } else {
      zero_w_.push_back(w[i]);
      zero_sum_w_ += w[i];
      zero_sum_w2_ += static_cast<double>(w[i]) * w[i];
    }
  }
  const size_t p = pw.size();
  if (p == 0) return;
  shift_ = mean / static_cast<double>(p);
  size_t nb = bins ? bins : std::clamp<size_t>(p / kDefaultBinValues, 1, kMaxBins);
  nb = std::min(nb, p);
  // Equal-count edges by importance; a value equal to an edge goes to the bin that starts there.
  // (From an evenly strided sample of at most kEdgeSample importances: the bins need only be about equal.)
  std::vector<float> edges;
  {
    constexpr size_t kEdgeSample = size_t{1} << 16;
    const size_t stride = std::max<size_t>(1, p / kEdgeSample);
    std::vector<float> hs;
    for (size_t i = 0; i < p; i += stride) hs.push_back(ph[i]);
    std::sort(hs.begin(), hs.end());
    for (size_t b = 1; b < nb; ++b) edges.push_back(hs[b * hs.size() / nb]);
  }
  // Each value's bin: the number of edges ≤ h, by a branchless search over the edges padded with +inf to 255.
  std::vector<float> padded(kMaxBins - 1, std::numeric_limits<float>::infinity());
  std::copy(edges.begin(), edges.end(), padded.begin());
  std::vector<uint16_t> bin_of(p);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < static_cast<int64_t>(p); ++i) {
    const float x = ph[static_cast<size_t>(i)];
    size_t at = 0;
    for (size_t s = kMaxBins / 2; s >= 1; s >>= 1) at += padded[at + s - 1] <= x ? s : 0;
    bin_of[static_cast<size_t>(i)] = static_cast<uint16_t>(at);
  }
  std::vector<size_t> start(nb + 1, 0);
  for (size_t i = 0; i < p; ++i) ++start[bin_of[i] + 1];
  for (size_t b = 0; b < nb; ++b) start[b + 1] += start[b];
  std::vector<float> gw(p), gh(p);
  {
    std::vector<size_t> at(start.begin(), start.end() - 1);
    for (size_t i = 0; i < p; ++i) {
      const size_t o = at[bin_of[i]]++;
      gw[o] = pw[i];
      gh[o] = ph[i];
    }
  }
  w_.resize(p);
  h_.resize(p);
  std::vector<Bin> all(nb);
#pragma omp parallel for schedule(dynamic, 1) if (nb > 1)
  for (int64_t b = 0; b < static_cast<int64_t>(nb); ++b) {
    const size_t a = start[static_cast<size_t>(b)], e = start[static_cast<size_t>(b) + 1];
    if (a == e) continue;
    cpu::sort_pairs(gw.data() + a, gh.data() + a, e - a, w_.data() + a, h_.data() + a);
    const auto mm = std::minmax_element(h_.begin() + static_cast<ptrdiff_t>(a), h_.begin() + static_cast<ptrdiff_t>(e));
    all[static_cast<size_t>(b)] = {a, e, *mm.first, *mm.second};
  }
  for (const Bin& bin : all)
    if (bin.end > bin.begin) bins_.push_back(bin);
  const size_t blocks = (p + kBlock - 1) / kBlock;
  for (auto* v : {&ph_, &phx_, &phx2_, &px_, &px2_}) v->assign(blocks + 1, 0.0);
  // Each block's sums (in parallel), then the running sums over the blocks in order.
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < static_cast<int64_t>(blocks); ++b) {
    RangeSums s;
    const size_t i0 = static_cast<size_t>(b) * kBlock;
    for (size_t i = i0; i < std::min(p, i0 + kBlock); ++i) add_element(i, s);
    ph_[b + 1] = s.h;
    phx_[b + 1] = s.hx;
    phx2_[b + 1] = s.hx2;
    px_[b + 1] = s.x;
    px2_[b + 1] = s.x2;
  }
  for (size_t b = 0; b < blocks; ++b) {
    ph_[b + 1] += ph_[b];
    phx_[b + 1] += phx_[b];
    phx2_[b + 1] += phx2_[b];
    px_[b + 1] += px_[b];
    px2_[b + 1] += px2_[b];
  }
}

void BinnedValues::add_element(size_t i, RangeSums& s) const {
  const double x = static_cast<double>(w_[i]) - shift_, hh = h_[i];
  s.h += hh;
  s.hx += hh * x;
  s.hx2 += hh * x * x;
  s.x += x;
  s.x2 += x * x;
}

BinnedValues::RangeSums BinnedValues::range(size_t a, size_t b) const {
  RangeSums s;
  const size_t ba = (a + kBlock - 1) / kBlock, bb = b / kBlock;  // whole blocks [ba, bb)
  if (ba >= bb) {
    for (size_t i = a; i < b; ++i) add_element(i, s);
    return s;
  }
  for (size_t i = a; i < ba * kBlock; ++i) add_element(i, s);
  for (size_t i = bb * kBlock; i < b; ++i) add_element(i, s);
  s.h += ph_[bb] - ph_[ba];
  s.hx += phx_[bb] - phx_[ba];
  s.hx2 += phx2_[bb] - phx2_[ba];
  s.x += px_[bb] - px_[ba];
  s.x2 += px2_[bb] - px2_[ba];
  return s;
}

void BinnedValues::assign_accumulate(const double* c, const double* l, int k, double lambda, AssignAccum& out,
                                     size_t* values_one_by_one) const {
  NQ_CHECK(k >= 1, ErrorCode::kInvalidArgument, "binned pass: k must be >= 1, got " << k);
  out.reset(k);
  // The certificate needs finite costs and the envelope ascending centres; anything else goes one by one.
  bool regular = std::isfinite(lambda) && lambda >= 0;
  for (int j = 0; j < k && regular; ++j)
    regular = std::isfinite(c[j]) && std::isfinite(l[j]) && l[j] >= 0 && (j == 0 || c[j] > c[j - 1]);

  std::vector<AssignAccum> part(bins_.size());
  std::vector<size_t> single(bins_.size(), 0);
#pragma omp parallel for schedule(dynamic, 1) if (bins_.size() > 1)
  for (int64_t bi = 0; bi < static_cast<int64_t>(bins_.size()); ++bi) {
    const Bin& bin = bins_[static_cast<size_t>(bi)];
    AssignAccum& acc = part[static_cast<size_t>(bi)];
    acc.reset(k);
    size_t& ones = single[static_cast<size_t>(bi)];
    auto one_by_one = [&](size_t a, size_t b) {
      for (size_t i = a; i < b; ++i) {
        double cost;
        const int j = label_of(w_[i], h_[i], c, l, k, lambda, cost);
        const double d = static_cast<double>(w_[i]) - c[j], hh = h_[i];
        acc.sum_h[j] += hh;
        acc.sum_hw[j] += hh * w_[i];
        acc.sum_w[j] += w_[i];
        ++acc.count[j];
        acc.distortion += hh * d * d;
        acc.sq_error += d * d;
        acc.cost += cost;
      }
      ones += b - a;
    };
    // Every value of [a, b) takes label j when g_ij > margin at the four corners of its rectangle, for all i.
    auto certified = [&](size_t a, size_t b, int j) {
      const float x[2] = {w_[a], w_[b - 1]};
      const double hh[2] = {bin.h_lo, bin.h_hi};
      double cj[4];
      for (int q = 0; q < 4; ++q) cj[q] = assign_cost(x[q & 1], hh[q >> 1], c[j], l[j], lambda);
      auto beaten_by = [&](int i) {
        double least_gap = infinity(), largest = 0;
        for (int q = 0; q < 4; ++q) {
          const double ci = assign_cost(x[q & 1], hh[q >> 1], c[i], l[i], lambda);
          least_gap = std::min(least_gap, ci - cj[q]);
          largest = std::max(largest, ci + cj[q]);
        }
        return !(least_gap > kMargin * largest);
      };
      for (int d = 1; d < k; ++d)  // the neighbours first: a run that fails mostly fails on one of them
        if ((j - d >= 0 && beaten_by(j - d)) || (j + d < k && beaten_by(j + d))) return false;
      return true;
    };
    auto add_run = [&](size_t a, size_t b, int j) {
      const RangeSums s = range(a, b);
      const double n = static_cast<double>(b - a), d = c[j] - shift_;
      const double dist = std::max(0.0, s.hx2 - 2.0 * d * s.hx + d * d * s.h);
      acc.sum_h[j] += s.h;
      acc.sum_hw[j] += s.hx + shift_ * s.h;
      acc.sum_w[j] += s.x + shift_ * n;
      acc.count[j] += static_cast<int64_t>(b - a);
      acc.distortion += dist;
      acc.sq_error += std::max(0.0, s.x2 - 2.0 * d * s.x + d * d * n);
      acc.cost += dist + lambda * l[j] * n;
    };
    if (!regular) {
      one_by_one(bin.begin, bin.end);
      continue;
    }
    // The envelopes at the bin's two ends (t = λ/h_hi and λ/h_lo). Where they have the same centres, the values
    // between the two breakpoints of a boundary are the ones whose label depends on h: labelled one by one; each
    // cell between such zones is one run to certify. Otherwise cut at the middle importance's envelope.
    std::vector<int> hull, hull_other;
    std::vector<double> cut, cut_other;
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
    std::vector<std::pair<size_t, size_t>> todo;  // runs [a, b) to certify under the label in `label`
    std::vector<int> label;
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
      if (b > a) {
        todo.push_back({a, b});
        label.push_back(hull[m]);
      }
      if (e > b) one_by_one(b, e);
      a = e;
    }
    while (!todo.empty()) {
      const auto [ra, rb] = todo.back();
      const int j = label.back();
      todo.pop_back();
      label.pop_back();
      if (certified(ra, rb, j)) {
        add_run(ra, rb, j);
      } else if (rb - ra <= kLeaf) {
        one_by_one(ra, rb);
      } else {
        const size_t mid = ra + (rb - ra) / 2;
        todo.push_back({mid, rb});
        label.push_back(j);
        todo.push_back({ra, mid});
        label.push_back(j);
      }
    }
  }
  size_t ones = 0;
  for (size_t b = 0; b < part.size(); ++b) {
    out.add(part[b]);
    ones += single[b];
  }
  if (!zero_w_.empty()) {  // h = 0: assign_cost is λ·l_j for every value, so one label for all
    double cost;
    const int j = label_of(zero_w_[0], 0.0, c, l, k, lambda, cost);
    const double n = static_cast<double>(zero_w_.size());
    out.sum_w[j] += zero_sum_w_;
    out.count[j] += static_cast<int64_t>(zero_w_.size());
    out.sq_error += std::max(0.0, zero_sum_w2_ - 2.0 * c[j] * zero_sum_w_ + c[j] * c[j] * n);
    out.cost += cost * n;
  }
  if (values_one_by_one) *values_one_by_one = ones;
}

}  // namespace nq::quant
