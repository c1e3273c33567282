// Iterative entropy-constrained scalar quantization [Choi et al. §5.4, App. A.2; Chou, Lookabaugh & Gray 1989]:
// minimise J = D + λH by alternating the fused assign+accumulate op with centre/probability updates; λ given
// or bisected on a log scale to land on a target rate.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {

AssignPass local_pass(const Problem& p) {
  std::shared_ptr<ResidentValues> values = ops_make_resident_values(p.backend, p.w, p.h, p.n);
  AssignPass pass;
  pass.run = [values](const double* centers, const double* code_len, int k, double lambda, AssignAccum& out) {
    values->assign_accumulate(centers, code_len, k, lambda, out);
  };
  pass.take_labels = [values] { return values->take_labels(); };
  return pass;
}

RawResult ecsq_iterate(const AssignPass& pass, size_t n_total, size_t n_local, const std::vector<double>& init,
                       double lambda, const QuantizeParams& q) {
  RawResult out;
  out.lambda = lambda;
  out.converged = false;
  const double n = static_cast<double>(n_total);
  std::vector<double> c = init;
  std::vector<double> l(c.size(), std::log2(static_cast<double>(c.size())));  // p_j = 1/k to start
  AssignAccum acc;
  double prev = infinity();
  for (int it = 1; it <= std::max(1, q.max_iter); ++it) {
    const int k = static_cast<int>(c.size());
    pass.run(c.data(), l.data(), k, lambda, acc);
    const double hbits = histogram_entropy(acc.count.data(), k);
    const double dist = acc.distortion / n;
    const double obj = dist + lambda * hbits;
    // Centres for this assignment: weighted means (plain mean for weightless clusters); dead ones get none.
    std::vector<double> means(static_cast<size_t>(k), 0.0);
    int live = 0;
    for (int j = 0; j < k; ++j) {
      if (acc.count[j] == 0) continue;
      ++live;
      means[j] = acc.sum_h[j] > 0 ? acc.sum_hw[j] / acc.sum_h[j] : acc.sum_w[j] / static_cast<double>(acc.count[j]);
    }
    out.history.push_back({it, obj, dist, hbits, live});
    out.iterations = it;
    out.centers = means;
    const bool stop = prev < infinity() && (prev - obj) <= q.tol * std::fabs(prev);
    prev = obj;
    if (stop) { out.converged = true; break; }
    // Next codebook: live clusters sorted by centre (cells are not intervals, so order can change), equal
    // centres merged; l_j = −log2 p_j.
    std::vector<int> order;
    for (int j = 0; j < k; ++j)
      if (acc.count[j] > 0) order.push_back(j);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return means[a] < means[b]; });
    std::vector<double> nc, cnt;
    for (int j : order) {
      if (!nc.empty() && nc.back() == means[j]) { cnt.back() += static_cast<double>(acc.count[j]); continue; }
      nc.push_back(means[j]);
      cnt.push_back(static_cast<double>(acc.count[j]));
    }
    c.swap(nc);
    l.resize(c.size());
    for (size_t j = 0; j < c.size(); ++j) l[j] = -std::log2(cnt[j] / n);
  }
  out.labels = pass.take_labels();
  NQ_ASSERT(out.labels.size() == n_local);
  return out;
}

RawResult ecsq_run(const Problem& p, const std::vector<double>& init, double lambda, const QuantizeParams& q) {
  return ecsq_iterate(local_pass(p), p.n, p.n, init, lambda, q);
}

RawResult ecsq_driver(const Problem& p, const SortedData& s, const QuantizeParams& q) {
  const int kmax = static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(1, q.k)), s.distinct()));
  const std::vector<double> init = !q.initial_centers.empty()              ? warm_start(q)
                                   : kmax == static_cast<int>(s.distinct()) ? distinct_values(s)
                                                                           : init_centers(s, kmax, q.init, q.seed);
  const SortedData::Sums all = s.range(0, s.size());
  const double d0 = interval_scatter(all.s0, all.s1, all.s2) / static_cast<double>(p.n);
  return ecsq_search(local_pass(p), p.n, p.n, init, d0, q);
}

RawResult ecsq_search(const AssignPass& pass, size_t n_total, size_t n_local, const std::vector<double>& init,
                      double d0, const QuantizeParams& q) {
  auto run_at = [&](const std::vector<double>& c, double lambda) {
    return ecsq_iterate(pass, n_total, n_local, c, lambda, q);
  };
  const double rate = target_rate_bits(q);
  if (rate <= 0) return run_at(init, q.lambda);

  // Target rate: the λ = 0 rate is the most ECSQ reaches from k_max centres; beyond it return that point.
  RawResult r0 = run_at(init, 0.0);
  const double h0 = r0.history.back().entropy;
  if (rate >= h0) return r0;
  // λ in distortion units per bit: the weighted variance D0 is the distortion of one cluster (H = 0), so
  // λ ≈ D0 collapses everything; bisect log λ between D0·1e-9 and a λ that reaches the target.
  if (!(d0 > 0)) d0 = 1e-30;
  double lo = std::log(d0 * 1e-9), hi = std::log(d0);
  for (int i = 0; i < 40; ++i) {
    RawResult r = run_at(init, std::exp(hi));
    if (r.history.back().entropy <= rate) break;
    hi += std::log(4.0);
  }
  RawResult best = std::move(r0);
  double best_err = std::fabs(h0 - rate);
  for (int it = 0; it < 50 && best_err > 0.005 * rate; ++it) {
    const double mid = 0.5 * (lo + hi);
    RawResult r = run_at(init, std::exp(mid));
    const double hbits = r.history.back().entropy;
    const double err = std::fabs(hbits - rate);
    if (err < best_err) { best_err = err; best = std::move(r); }
    if (hbits > rate) lo = mid; else hi = mid;
    if (hi - lo < 1e-9) break;
  }
  return best;
}

}  // namespace nq::quant
