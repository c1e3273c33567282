// Uniform quantization with weighted-mean levels [Choi et al. §5.3]: cells of width Δ with 0 a cell centre,
// each cell reconstructed by the importance-weighted mean of its members; Δ given, derived from k, or bisected
// (log scale) so the entropy lands on a target rate.
#include <algorithm>
#include <cmath>

#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {

RawResult uniform_quantize(const Problem& p, double step, int max_cells) {
  NQ_CHECK(step > 0 && std::isfinite(step), ErrorCode::kInvalidArgument,
           "uniform: the step must be positive and finite, got " << step);
  RawResult out;
  out.step = step;
  const size_t n = p.n;
  // max_cells > 0: cells m in [−M, M], M = ⌊(max_cells − 1)/2⌋ (0 stays a centre, so even counts use one less).
  const int64_t M = max_cells > 0 ? (max_cells - 1) / 2 : -1;
  auto cell = [&](float v) {
    const int64_t m = uniform_cell(v, step);
    return M >= 0 ? std::clamp(m, -M, M) : m;
  };
  float lo = p.w[0], hi = p.w[0];
  for (size_t i = 1; i < n; ++i) { lo = std::min(lo, p.w[i]); hi = std::max(hi, p.w[i]); }
  // Cells past ±2^61 saturate (uniform_cell) and would merge values: with no cap on the cells (a given step, a
  // target's probes) a step that puts a value there is refused. (With max_cells the outer cells take them.)
  const double reach = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi))) / step;
  NQ_CHECK(M >= 0 || reach < 1152921504606846976.0, ErrorCode::kInvalidArgument,  // 2^60
           "uniform: step " << step << " is too small for values up to " << reach * step
                            << " (more than 2^60 cells from 0)");
  const int64_t mlo = cell(lo), mhi = cell(hi);
  NQ_CHECK(mhi - mlo < (int64_t{1} << 26), ErrorCode::kInvalidArgument,
           "uniform: step " << step << " gives " << (mhi - mlo + 1) << " cells over [" << lo << ", " << hi
                            << "] (at most 2^26)");
  // Cells mlo … mhi, or, when far more of them than values (outliers of importance 0 stretch the span), only the
  // occupied ones in ascending order: the same labels once finalize drops the empty levels, without arrays of
  // up to 2^26 cells for a handful of values (a target search probes dozens of steps).
  std::vector<int64_t> occupied;
  const bool sparse = static_cast<uint64_t>(mhi - mlo) >= 4 * static_cast<uint64_t>(n) + 64;
  if (sparse) {
    occupied.resize(n);
    for (size_t i = 0; i < n; ++i) occupied[i] = cell(p.w[i]);
    std::sort(occupied.begin(), occupied.end());
    occupied.erase(std::unique(occupied.begin(), occupied.end()), occupied.end());
  }
  auto cell_index = [&](float v) -> int32_t {
    const int64_t m = cell(v);
    return static_cast<int32_t>(sparse ? std::lower_bound(occupied.begin(), occupied.end(), m) - occupied.begin()
                                       : m - mlo);
  };
  auto cell_number = [&](size_t j) { return sparse ? occupied[j] : mlo + static_cast<int64_t>(j); };
  const size_t cells = sparse ? occupied.size() : static_cast<size_t>(mhi - mlo + 1);
  std::vector<double> sh(cells, 0.0), shw(cells, 0.0), sw(cells, 0.0);
  std::vector<int64_t> cnt(cells, 0);
  out.labels.resize(n);
  for (size_t i = 0; i < n; ++i) {  // one sequential pass: deterministic and memory-bound anyway
    const int32_t j = cell_index(p.w[i]);
    out.labels[i] = j;
    const double hv = p.h ? p.h[i] : 1.0;
    sh[j] += hv; shw[j] += hv * p.w[i]; sw[j] += p.w[i]; cnt[j] += 1;
  }
  out.centers.resize(cells);
  int used = 0;
  for (size_t j = 0; j < cells; ++j) {
    if (cnt[j] == 0) { out.centers[j] = static_cast<double>(cell_number(j)) * step; continue; }
    ++used;
    out.centers[j] = sh[j] > 0 ? shw[j] / sh[j] : sw[j] / static_cast<double>(cnt[j]);
  }
  double d = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = p.w[i] - out.centers[out.labels[i]];
    d += (p.h ? p.h[i] : 1.0) * e * e;
  }
  d /= static_cast<double>(n);
  out.history.push_back({1, d, d, histogram_entropy(cnt.data(), static_cast<int>(cells)), used});
  out.iterations = 1;
  return out;
}

RawResult uniform_driver(const Problem& p, const QuantizeParams& q) {
  // The cells cover max|w| over the values that carry importance, as --init linear spans them (quant_formulas.h
  // linear_span): an outlier of importance 0 adds nothing to the objective, so it lands in an outer cell instead
  // of stretching every cell to reach it. All values when none has any importance.
  double wlo = 0, whi = 0;
  const ValueRange range = value_range(p.w, p.h, p.n);
  range.span(wlo, whi);
  double amax = std::max(std::fabs(wlo), std::fabs(whi));
  if (amax == 0) amax = 1;  // all zeros: any step gives the single cell 0
  const double rate = target_rate_bits(q);
  if (rate <= 0) {
    if (q.step > 0) return uniform_quantize(p, q.step, 0);
    // Cover max|w| with the k cells [−M, M]: the outermost cell's edge at max|w|.
    const int64_t M = (std::max(1, q.k) - 1) / 2;
    return uniform_quantize(p, amax / (static_cast<double>(M) + 0.5), q.k);
  }
  // Entropy falls (stepwise) as Δ grows: bisect log Δ between a fine grid and one cell. The fine end also keeps
  // the cells over all the values (outliers of importance 0 included) within uniform_quantize's 2^26.
  const double finest = std::max(amax / 1048576.0, (range.hi - range.lo) / 33554432.0);  // 2^20, 2^25
  double lo = std::log(finest), hi = std::log(std::max(4.0 * amax, 2.0 * finest));
  RawResult best;
  double best_err = infinity();
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    RawResult r = uniform_quantize(p, std::exp(mid), 0);
    const double hbits = r.history.back().entropy;
    const double err = std::fabs(hbits - rate);
    if (it == 0 || err < best_err) { best_err = err; best = std::move(r); }  // never an empty result
    if (best_err <= 0.005 * rate) break;
    if (hbits > rate) lo = mid; else hi = mid;
  }
  return best;
}

}  // namespace nq::quant
