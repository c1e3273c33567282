// Iterative entropy-constrained scalar quantization [Choi et al. §5.4, App. A.2; Chou, Lookabaugh & Gray 1989]:
// minimise J = D + λH by alternating the fused assign+accumulate op with centre/probability updates; λ given
// or bisected on a log scale to land on a target rate.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {

AssignPass local_pass(const Problem& p, SortedView sorted) {
  std::shared_ptr<ResidentValues> values = ops_make_resident_values(p.backend, p.w, p.h, p.n, sorted);
  AssignPass pass;
  pass.run = [values](const double* centers, const double* code_len, int k, double lambda, AssignAccum& out) {
    values->assign_accumulate(centers, code_len, k, lambda, out);
  };
  pass.run_multi = [values](const CodebookBatch& books, std::vector<AssignAccum>& out) {
    values->assign_accumulate_multi(books, out);
  };
  pass.take_labels = [values] { return values->take_labels(); };
  pass.labels_for = [values](const double* centers, const double* code_len, int k, double lambda) {
    return values->labels_for(centers, code_len, k, lambda);
  };
  return pass;
}

EcsqRun::EcsqRun(const std::vector<double>& init, double lambda, size_t n_total, const QuantizeParams& q)
    : tol_(q.tol), max_iter_(q.max_iter), n_(static_cast<double>(n_total)), c_(init),
      l_(init.size(), std::log2(static_cast<double>(init.size()))) {
  out_.lambda = lambda;  // p_j = 1/k to start
  out_.converged = false;
  done_ = c_.empty();
}

void EcsqRun::step(const AssignAccum& acc) {
  NQ_ASSERT(!done_);
  const int k = static_cast<int>(c_.size());
  const double lambda = out_.lambda;
  const int it = out_.iterations + 1;
  const double hbits = histogram_entropy(acc.count.data(), k);
  const double dist = acc.distortion / n_;
  const double obj = dist + lambda * hbits;
  // Centres for this assignment: weighted means (plain mean for weightless clusters); dead ones get none.
  // (The scratch vectors are members: a short row takes thousands of steps, and these would be its allocations.)
  std::vector<double>& means = means_;
  means.assign(static_cast<size_t>(k), 0.0);
  int live = 0;
  for (int j = 0; j < k; ++j) {
    if (acc.count[j] == 0) continue;
    ++live;
    means[j] = acc.sum_h[j] > 0 ? acc.sum_hw[j] / acc.sum_h[j] : acc.sum_w[j] / static_cast<double>(acc.count[j]);
  }
  out_.history.push_back({it, obj, dist, hbits, live});
  out_.iterations = it;
  last_c_ = c_;
  last_l_ = l_;
  const bool stop = prev_ < infinity() && (prev_ - obj) <= tol_ * std::fabs(prev_);
  prev_ = obj;
  sort_live_clusters(acc);
  // A cluster whose members all have importance 0 ("weightless": the nearest centre of some dead inputs' weights
  // at λ = 0, or in a first pass of equal code lengths) costs only rate. It leaves the next codebook, so that its
  // members go where the argmin sends them: the nearest centre of weight at λ = 0, the shortest code at λ > 0. And
  // the run takes one more pass, so that its result's counts, and the rate a target search reads, are those.
  bool weighted = false, weightless = false;
  for (int j = 0; j < k; ++j) {
    if (acc.count[j] == 0) continue;
    (acc.sum_h[j] > 0 ? weighted : weightless) = true;
  }
  const bool drop_weightless = weighted && weightless && it < std::max(1, max_iter_);
  if (stop && !drop_weightless) {
    if (!(lambda > 0) || it >= std::max(1, max_iter_) || !merge_equal_clusters(acc)) {
      out_.converged = true;
      done_ = true;
    }
    return;
  }
  done_ = it >= std::max(1, max_iter_);
  // Next codebook: the live clusters in order of centre, equal centres merged; l_j = −log2 p_j.
  const std::vector<int>& order = order_;
  std::vector<double>& nc = nc_;
  std::vector<double>& cnt = cnt_;
  nc.clear();
  cnt.clear();
  for (int j : order) {
    if (drop_weightless && !(acc.sum_h[j] > 0)) continue;
    if (!nc.empty() && nc.back() == means[j]) { cnt.back() += static_cast<double>(acc.count[j]); continue; }
    nc.push_back(means[j]);
    cnt.push_back(static_cast<double>(acc.count[j]));
  }
  take_next_codebook();
}

void EcsqRun::take_next_codebook() {
  c_.swap(nc_);
  l_.resize(c_.size());
  for (size_t j = 0; j < c_.size(); ++j) l_[j] = -std::log2(cnt_[j] / n_);
}

void EcsqRun::sort_live_clusters(const AssignAccum& acc) {
  // Cells are not intervals, so the order of centres can change. A stable sort: an insertion sort for the usual few
  // dozen centres (no temporary buffer), std::stable_sort beyond; both give the one stable order.
  const std::vector<double>& means = means_;
  std::vector<int>& order = order_;
  order.clear();
  for (int j = 0; j < static_cast<int>(acc.count.size()); ++j)
    if (acc.count[j] > 0) order.push_back(j);
  const auto before = [&](int a, int b) { return means[a] < means[b]; };
  if (order.size() <= 64) {
    for (size_t i = 1; i < order.size(); ++i) {
      const int v = order[i];
      size_t j = i;
      for (; j > 0 && before(v, order[j - 1]); --j) order[j] = order[j - 1];
      order[j] = v;
    }
  } else {
    std::stable_sort(order.begin(), order.end(), before);
  }
}

bool EcsqRun::merge_equal_clusters(const AssignAccum& acc) {
  // Clusters all of one size have codes all of one length, so the λ term is the same for every choice and each
  // weight keeps its nearest centre: the iteration stands still whatever λ is (every start with one value per
  // cluster, e.g. a row with no more distinct values than k_max, stops at its exact representation, H = log2 n).
  // Merging two neighbours is then the one move that lowers J: ΔD = H_a H_b (m_a − m_b)² / ((H_a + H_b) N) with
  // H = Σh and m the weighted means, ΔH = Σ −p log2 p after minus before. Disjoint pairs with ΔJ < 0 merge, most
  // negative first (their changes add), and the iterations go on from there; J falls, so this ends.
  const std::vector<int>& order = order_;
  if (order.size() < 2) return false;
  for (const int j : order)
    if (acc.count[j] != acc.count[order[0]]) return false;
  const double lambda = out_.lambda;
  auto plogp = [&](double c) { return c > 0 ? -(c / n_) * std::log2(c / n_) : 0.0; };
  const size_t pairs = order.size() - 1;
  std::vector<std::pair<double, size_t>> gains;  // (ΔJ, left cluster's place in order)
  for (size_t i = 0; i < pairs; ++i) {
    const int a = order[i], b = order[i + 1];
    const double ha = acc.sum_h[a], hb = acc.sum_h[b], gap = means_[a] - means_[b];
    const double dd = ha > 0 && hb > 0 ? ha * hb / (ha + hb) * gap * gap / n_ : 0.0;
    const double ca = static_cast<double>(acc.count[a]), cb = static_cast<double>(acc.count[b]);
    const double dh = plogp(ca + cb) - plogp(ca) - plogp(cb);
    const double dj = dd + lambda * dh;
    if (dj < 0) gains.push_back({dj, i});
  }
  if (gains.empty()) return false;
  std::sort(gains.begin(), gains.end());  // by ΔJ, then by place: one order on every machine
  std::vector<char> merged_right(order.size(), 0), taken(order.size(), 0);
  for (const auto& [dj, i] : gains) {
    if (taken[i] || taken[i + 1]) continue;
    taken[i] = taken[i + 1] = 1;
    merged_right[i] = 1;
  }
  std::vector<double>& nc = nc_;
  std::vector<double>& cnt = cnt_;
  nc.clear();
  cnt.clear();
  for (size_t i = 0; i < order.size(); ++i) {
    const int a = order[i];
    if (!merged_right[i]) {
      nc.push_back(means_[a]);
      cnt.push_back(static_cast<double>(acc.count[a]));
      continue;
    }
    const int b = order[++i];
    const double h = acc.sum_h[a] + acc.sum_h[b];
    const int64_t c = acc.count[a] + acc.count[b];
    nc.push_back(h > 0 ? (acc.sum_hw[a] + acc.sum_hw[b]) / h : (acc.sum_w[a] + acc.sum_w[b]) / static_cast<double>(c));
    cnt.push_back(static_cast<double>(c));
  }
  take_next_codebook();
  return true;
}

std::vector<RawResult> ecsq_iterate_lambdas(const AssignPass& pass, size_t n_total, size_t n_local,
                                            const std::vector<double>& init, const std::vector<double>& lambdas,
                                            const QuantizeParams& q) {
  NQ_ASSERT_MSG(pass.run_multi, "ecsq_iterate_lambdas: the pass has no several-codebook form");
  std::vector<EcsqRun> runs;
  for (const double lambda : lambdas) runs.emplace_back(init, lambda, n_total, q);
  // Lockstep: each pass serves every run still going, with the codebook that run would pass alone.
  std::vector<AssignAccum> accs;
  for (;;) {
    CodebookBatch books;
    std::vector<size_t> who;
    for (size_t m = 0; m < runs.size(); ++m) {
      if (runs[m].done()) continue;
      books.add(runs[m].centers().data(), runs[m].code_len().data(), static_cast<int>(runs[m].centers().size()),
                runs[m].lambda());
      who.push_back(m);
    }
    if (who.empty()) break;
    pass.run_multi(books, accs);
    for (size_t i = 0; i < who.size(); ++i) runs[who[i]].step(accs[i]);
  }
  // Labels: one labelled pass per run with the codebook of its last pass (the assignment is deterministic, so
  // these are the labels that run's own last pass wrote when alone). Its sums are not needed: labels_for skips
  // the binned pass that run would make before the labelling one.
  std::vector<RawResult> out;
  AssignAccum acc;
  for (EcsqRun& run : runs) {
    const std::vector<double>& c = run.last_centers();
    const int k = static_cast<int>(c.size());
    out.push_back(run.take_result());
    if (pass.labels_for) {
      out.back().labels = pass.labels_for(c.data(), run.last_code_len().data(), k, run.lambda());
    } else {
      pass.run(c.data(), run.last_code_len().data(), k, run.lambda(), acc);
      out.back().labels = pass.take_labels();
    }
    NQ_ASSERT(out.back().labels.size() == n_local);
  }
  return out;
}

std::vector<double> ecsq_init(const SortedData& s, const QuantizeParams& q) {
  const int k = std::max(1, q.k);
  if (!q.initial_centers.empty()) return warm_start(q);
  if (s.distinct_at_most(static_cast<size_t>(k))) return distinct_values(s);
  // The λ = 0 solution of the same start: HW k-means on the sorted values. From --init's centres directly, ECSQ
  // spends its passes walking centres in from near-empty tails: on heavy-tailed weights hundreds of passes to
  // the J this start reaches in a few dozen (bench/RESULTS.md "CPU quantizers").
  return lloyd_sorted(s, ecsq_start_params(q, s.size())).centers;
}

QuantizeParams ecsq_start_params(const QuantizeParams& q, size_t n) {
  QuantizeParams km = q;
  km.method = Method::kHwKmeans;
  km.lambda = 0;
  // To the fixed point (the assignment stops changing), not to a tolerance: where the objective creeps down (heavy
  // tails) a tolerance stop depends on the last bits of the sums, so backends would start ECSQ apart.
  km.tol = 0;
  // A sorted iteration costs k binary searches, about k·log2 n steps, where an ECSQ pass reads all n values: the
  // start may take n / (k·log2 n) iterations for each pass --max-iter allows (13,400 at n = 10^7, k = 32; 21 for
  // a row of 4096 at k = 16), which is what heavy-tailed weights need (hundreds, bench/RESULTS.md "CPU quantizers").
  const double steps = std::max(2, q.k) * std::log2(std::max(2.0, static_cast<double>(n)));
  const double per_pass = std::max(1.0, static_cast<double>(n) / steps);
  km.max_iter = static_cast<int>(std::min<double>(std::numeric_limits<int>::max(), std::max(1, q.max_iter) * per_pass));
  return km;
}

EcsqStart ecsq_start(const Problem& p, const SortedData& s, const QuantizeParams& q) {
  const SortedData::Sums all = s.range(0, s.size());
  return {ecsq_init(s, q), interval_scatter(all.s0, all.s1, all.s2) / static_cast<double>(p.n)};
}

EcsqSearch::EcsqSearch(std::vector<double> init, double d0, size_t n_total, const QuantizeParams& q)
    : q_(q), init_(std::move(init)), n_total_(n_total), rate_(target_rate_bits(q)), d0_(d0),
      phase_(rate_ > 0 ? Phase::kZero : Phase::kFixed), run_(init_, 0.0, n_total, q) {
  NQ_ASSERT_MSG(!init_.empty(), "ECSQ search without a starting codebook");
  start(phase_ == Phase::kFixed ? q.lambda : 0.0);
}

void EcsqSearch::start(double lambda) { run_ = EcsqRun(init_, lambda, n_total_, q_); }

bool EcsqSearch::step(const AssignAccum& acc) {
  NQ_ASSERT(!done_);
  run_.step(acc);
  became_best_ = false;
  if (run_.done()) finish_run();
  return became_best_;
}

void EcsqSearch::finish_run() {
  const std::vector<double> last_c = run_.last_centers(), last_l = run_.last_code_len();
  RawResult r = run_.take_result();
  const double hbits = r.history.back().entropy;
  auto keep = [&] {
    best_ = std::move(r);
    best_c_ = last_c;
    best_l_ = last_l;
    became_best_ = true;
  };
  switch (phase_) {
    case Phase::kFixed:
      keep();
      done_ = true;
      return;
    case Phase::kZero: {
      // The λ = 0 rate is the most ECSQ reaches from k_max centres; beyond it that point is the answer.
      best_err_ = std::fabs(hbits - rate_);
      keep();
      if (rate_ >= hbits) { done_ = true; return; }
      // λ in distortion units per bit: the weighted variance D0 is the distortion of one cluster (H = 0), so
      // λ ≈ D0 collapses everything; bisect log λ between D0·1e-9 and a λ that reaches the target.
      const double d0 = d0_ > 0 ? d0_ : 1e-30;
      lo_ = std::log(d0 * 1e-9);
      hi_ = std::log(d0);
      phase_ = Phase::kGrow;
      grow_ = 0;
      start(std::exp(hi_));
      return;
    }
    case Phase::kGrow:
      if (hbits > rate_ && ++grow_ < 40) {  // at most 40 tries, ×4 each
        hi_ += std::log(4.0);
        start(std::exp(hi_));
        return;
      }
      if (hbits > rate_) hi_ += std::log(4.0);
      phase_ = Phase::kBisect;
      bisect_ = 0;
      next_bisection();
      return;
    case Phase::kBisect: {
      const double err = std::fabs(hbits - rate_);
      if (err < best_err_) {
        best_err_ = err;
        keep();
      }
      if (hbits > rate_) lo_ = mid_; else hi_ = mid_;
      if (hi_ - lo_ < 1e-9) { done_ = true; return; }
      ++bisect_;
      next_bisection();
      return;
    }
  }
}

void EcsqSearch::next_bisection() {
  if (bisect_ >= 50 || !(best_err_ > 0.005 * rate_)) {
    done_ = true;
    return;
  }
  mid_ = 0.5 * (lo_ + hi_);
  start(std::exp(mid_));
}

RawResult ecsq_search(const AssignPass& pass, size_t n_total, size_t n_local, const std::vector<double>& init,
                      double d0, const QuantizeParams& q) {
  EcsqSearch search(init, d0, n_total, q);
  std::vector<int32_t> labels;
  AssignAccum acc;
  while (!search.done()) {
    const EcsqRun& run = search.run();
    pass.run(run.centers().data(), run.code_len().data(), static_cast<int>(run.centers().size()), run.lambda(), acc);
    if (search.step(acc)) labels = pass.take_labels();  // the labels of the best run's last pass
  }
  RawResult out = search.take_result();
  out.labels = std::move(labels);
  NQ_ASSERT(out.labels.size() == n_local);
  return out;
}

}  // namespace nq::quant
