// Log-domain weighted-entropy activation quantizer (Park, Ahn & Yoo, CVPR 2017) and the linear-grid baseline, both
// fitted by brute force on a log-binned activation histogram.
#include "netquant/activation_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "netquant/error.h"

namespace nq {
namespace {

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

}  // namespace

int64_t log_bin(float x) {
  NQ_ASSERT(x > 0);
  return static_cast<int64_t>(std::floor(LogHistogram::kBinsPerOctave * std::log2(static_cast<double>(x))));
}

double LogHistogram::total() const {
  double t = zero_count;
  for (double c : counts) t += c;
  return t;
}

void LogHistogram::add(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    NQ_CHECK(std::isfinite(x[i]), ErrorCode::kInvalidArgument,
             "activation histogram: value " << i << " is not finite (" << x[i] << ")");
    if (!(x[i] > 0)) {
      zero_count += 1;
      continue;
    }
    const int64_t b = log_bin(x[i]);
    if (counts.empty()) {
      first_bin = b;
      counts.assign(1, 0.0);
      sums.assign(1, 0.0);
    } else if (b < first_bin) {
      counts.insert(counts.begin(), size_t(first_bin - b), 0.0);
      sums.insert(sums.begin(), size_t(first_bin - b), 0.0);
      first_bin = b;
    } else if (b >= first_bin + int64_t(counts.size())) {
      counts.resize(size_t(b - first_bin + 1), 0.0);
      sums.resize(size_t(b - first_bin + 1), 0.0);
    }
    counts[size_t(b - first_bin)] += 1;
    sums[size_t(b - first_bin)] += x[i];
  }
}

double LogQuantizer::level(int n) const { return std::exp2((double(fsr) + double(n) * double(step)) / 16.0); }

int LogQuantizer::index_of_bin(int64_t bin) const {
  // Level n owns 32·log2 x in [2fsr + (2n−1)step, 2fsr + (2n+1)step): boundaries are geometric midpoints, and
  // all of them are integers in 1/32-octave units, so the bin decides (see LogHistogram).
  const int64_t n = floor_div(bin - 2 * int64_t(fsr) + step, 2 * int64_t(step));
  if (n < 0) return -1;
  return static_cast<int>(std::min<int64_t>(n, num_levels() - 1));
}

int LogQuantizer::index(float x) const { return x > 0 ? index_of_bin(log_bin(x)) : -1; }

float LogQuantizer::quantize(float x) const {
  const int n = index(x);
  return n < 0 ? 0.0f : static_cast<float>(level(n));
}

double log_quantizer_weighted_entropy(const LogQuantizer& q, const LogHistogram& h) {
  NQ_CHECK(q.bits >= 1 && q.bits <= 16 && q.step >= 1, ErrorCode::kInvalidArgument,
           "log quantizer: bits in 1..16 and step >= 1 required, got bits " << q.bits << " step " << q.step);
  const double total = h.total();
  if (total <= 0) return 0;
  // The clusters in order (the zero level, then level n for n = 0, 1, ...): index_of_bin grows with the bin, so
  // each cluster is a run of bins and one pass over the bins sees them one after another. O(bins), whatever the
  // number of levels (2^16 at 16 bits): the sums are those of a per-level table, in the same order.
  double s = 0;
  auto add_cluster = [&](double count, double sum) {
    if (count == 0) return;
    const double p = count / total, importance = sum / count;
    s -= importance * p * std::log(p);
  };
  int64_t cluster = 0;  // cluster 0 is the zero level, cluster n + 1 is level n
  double count = h.zero_count, sum = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    if (h.counts[i] == 0) continue;
    const int64_t c = int64_t(q.index_of_bin(h.first_bin + int64_t(i))) + 1;
    if (c != cluster) {
      add_cluster(count, sum);
      cluster = c, count = 0, sum = 0;
    }
    count += h.counts[i];
    sum += h.sums[i];
  }
  add_cluster(count, sum);
  return s;
}

LogQuantizer fit_log_quantizer(const LogHistogram& h, int bits, const LogQuantizerSearch& search) {
  NQ_CHECK(bits >= 1 && bits <= 16, ErrorCode::kInvalidArgument, "log quantizer: bits must be in 1..16, got " << bits);
  NQ_CHECK(search.max_step >= 1, ErrorCode::kInvalidArgument, "log quantizer search: max_step must be >= 1");
  LogQuantizer best{bits, 0, 1};
  int64_t lo = -1, hi = -1;  // first and last non-empty bins
  for (size_t i = 0; i < h.counts.size(); ++i)
    if (h.counts[i] > 0) {
      if (lo < 0) lo = int64_t(i);
      hi = int64_t(i);
    }
  if (lo < 0) return best;
  // Exhaustive over distinct partitions: with bins in 1/32 octave, fsr in 1/16 and L levels, the top cluster owns
  // 32·log2 x >= 2fsr + (2L−3)step, so once that is <= the lowest bin every positive value is in it (a smaller fsr
  // changes nothing); the zero level owns 32·log2 x < 2fsr − step, so once that is > the highest bin everything
  // is zero (a larger fsr changes nothing).
  const int64_t b_lo = h.first_bin + lo, b_hi = h.first_bin + hi, levels = (int64_t(1) << bits) - 1;
  double best_s = -std::numeric_limits<double>::infinity();
  for (int step = 1; step <= search.max_step; ++step) {
    const int64_t fsr_min = floor_div(b_lo - (2 * levels - 3) * step, 2) - 1;
    const int64_t fsr_max = floor_div(b_hi + step, 2) + 1;
    // Where neither the top level's clamp nor the zero level reaches a bin (2fsr + (2L−3)step > b_hi and
    // 2fsr − step <= b_lo), moving fsr by `step` moves every boundary by one level: the same partition, so the
    // same value. After one period of that stretch nothing new can win (the comparison is strict), so the rest of
    // it is skipped: the search costs O(bins + step) grid points a step instead of O(L·step).
    const int64_t free_lo = floor_div(b_hi - (2 * levels - 3) * step, 2) + 1, free_hi = floor_div(b_lo + step, 2);
    for (int64_t fsr = fsr_min; fsr <= fsr_max; ++fsr) {
      if (fsr == free_lo + step && free_hi > fsr) fsr = free_hi + 1;
      const LogQuantizer q{bits, int(fsr), step};
      const double s = log_quantizer_weighted_entropy(q, h);
      if (s > best_s) best_s = s, best = q;  // strict: ties keep the smaller step, then the smaller fsr
    }
  }
  return best;
}

float LinearQuantizer::quantize(float x) const {
  if (!(x > 0)) return 0.0f;
  const double top = double((1 << bits) - 1);
  return static_cast<float>(std::min(std::floor(double(x) / delta + 0.5), top) * delta);
}

LinearQuantizer fit_linear_quantizer(const LogHistogram& h, int bits) {
  NQ_CHECK(bits >= 1 && bits <= 16, ErrorCode::kInvalidArgument, "linear quantizer: bits must be in 1..16, got " << bits);
  LinearQuantizer best{bits, 1.0};
  double best_err = std::numeric_limits<double>::infinity();
  const double top = double((1 << bits) - 1);
  for (size_t c = 0; c < h.counts.size(); ++c) {
    if (h.counts[c] == 0) continue;
    const double clip = std::exp2(double(h.first_bin + int64_t(c) + 1) / LogHistogram::kBinsPerOctave);
    const LinearQuantizer q{bits, clip / top};
    double err = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      if (h.counts[i] == 0) continue;
      const double m = h.sums[i] / h.counts[i];
      const double d = double(q.quantize(float(m))) - m;
      err += h.counts[i] * d * d;
    }
    if (err < best_err) best_err = err, best = q;
  }
  return best;
}

}  // namespace nq
