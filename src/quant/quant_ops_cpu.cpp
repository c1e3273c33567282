// CPU (OpenMP) implementation of the quantizer ops declared in quant_ops.h, and the backend dispatch point.
#include "quant/quant_ops.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "netquant/error.h"
#include "quant/quant_formulas.h"

namespace nq::cpu {

namespace {

// Local search around the nearest centre (found by binary search on the λ = 0 rule), stopping as soon as the
// rounding-monotone lower bound proves no farther cluster can win: the brute-force argmin, in O(log k) + the
// few clusters the rate term can reach. Dead clusters (l = inf) are skipped by the cost itself.
// lmin_left[j] = min_{i <= j} l_i and lmin_right[j] = min_{i >= j} l_i bound every cluster beyond j at once.
inline int32_t argmin_cluster(float w, double h, const double* c, const double* l, int k, double lambda,
                              const double* lmin_left, const double* lmin_right, double* best_cost_out) {
  if (h == 0.0) {  // the distortion term vanishes: no locality to exploit, scan (rare: zero importance)
    int32_t best = -1;
    double best_cost = quant::infinity();
    for (int j = 0; j < k; ++j) {
      const double cost = quant::assign_cost(w, h, c[j], l[j], lambda);
      if (best < 0 || quant::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
    }
    *best_cost_out = best_cost;
    return best;
  }
  int lo = 0, hi = k - 1;  // first j with !closer_to_upper(w, c_j, c_{j+1})
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (quant::closer_to_upper(w, c[mid], c[mid + 1])) lo = mid + 1; else hi = mid;
  }
  int32_t best = lo;
  double best_cost = quant::assign_cost(w, h, c[lo], l[lo], lambda);
  for (int j = lo - 1; j >= 0; --j) {  // lower indices win ties: continue while the bound can still tie
    if (quant::assign_cost_bound(w, h, c[j], lmin_left[j], lambda) > best_cost) break;
    const double cost = quant::assign_cost(w, h, c[j], l[j], lambda);
    if (quant::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
  }
  for (int j = lo + 1; j < k; ++j) {
    if (quant::assign_cost_bound(w, h, c[j], lmin_right[j], lambda) >= best_cost) break;
    const double cost = quant::assign_cost(w, h, c[j], l[j], lambda);
    if (quant::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
  }
  *best_cost_out = best_cost;
  return best;
}

struct BlockSums {
  std::vector<double> sh, shw, sw;
  std::vector<int64_t> cnt;
  double dist = 0, sq = 0, cost = 0;
  void reset(int k) {
    sh.assign(k, 0.0); shw.assign(k, 0.0); sw.assign(k, 0.0); cnt.assign(k, 0);
    dist = sq = cost = 0;
  }
};

}  // namespace

void assign_accumulate(const float* w, const float* h, size_t n, const double* centers, const double* code_len,
                       int k, double lambda, int32_t* labels, quant::AssignAccum& out) {
  NQ_ASSERT(k >= 1);
  out.reset(k);
  std::vector<double> lmin_left(k), lmin_right(k);
  for (int j = 0; j < k; ++j) lmin_left[j] = std::min(code_len[j], j ? lmin_left[j - 1] : quant::infinity());
  for (int j = k - 1; j >= 0; --j)
    lmin_right[j] = std::min(code_len[j], j + 1 < k ? lmin_right[j + 1] : quant::infinity());
  NQ_ASSERT_MSG(lmin_left[k - 1] < quant::infinity(), "assign_accumulate: every cluster is dead");
  for (int j = 0; j + 1 < k; ++j) NQ_ASSERT(centers[j] < centers[j + 1]);
  if (n == 0) return;

  const size_t block = quant::accum_block_size(n);
  const size_t nblocks = (n + block - 1) / block;
  // Blocks are processed in waves; each wave's partials are merged in block order, so the sums are the same
  // for any thread count while the scratch stays at `wave` × k.
  const size_t wave = static_cast<size_t>(std::max(1, omp_get_max_threads())) * 4;
  std::vector<BlockSums> part(std::min(wave, nblocks));
  for (auto& p : part) p.reset(k);
  for (size_t b0 = 0; b0 < nblocks; b0 += wave) {
    const size_t b1 = std::min(nblocks, b0 + wave);
#pragma omp parallel for schedule(dynamic, 1) if (b1 - b0 > 1)
    for (int64_t bb = static_cast<int64_t>(b0); bb < static_cast<int64_t>(b1); ++bb) {
      BlockSums& s = part[static_cast<size_t>(bb) - b0];
      s.reset(k);
      const size_t i0 = static_cast<size_t>(bb) * block, i1 = std::min(n, i0 + block);
      for (size_t i = i0; i < i1; ++i) {
        const float wi = w[i];
        const double hi = h ? static_cast<double>(h[i]) : 1.0;
        double cost;
        const int32_t j = argmin_cluster(wi, hi, centers, code_len, k, lambda, lmin_left.data(), lmin_right.data(), &cost);
        if (labels) labels[i] = j;
        const double d = static_cast<double>(wi) - centers[j];
        s.sh[j] += hi;
        s.shw[j] += hi * wi;
        s.sw[j] += wi;
        s.cnt[j] += 1;
        s.dist += hi * (d * d);
        s.sq += d * d;
        s.cost += cost;
      }
    }
    for (size_t bb = b0; bb < b1; ++bb) {
      const BlockSums& s = part[bb - b0];
      for (int j = 0; j < k; ++j) {
        out.sum_h[j] += s.sh[j];
        out.sum_hw[j] += s.shw[j];
        out.sum_w[j] += s.sw[j];
        out.count[j] += s.cnt[j];
      }
      out.distortion += s.dist;
      out.sq_error += s.sq;
      out.cost += s.cost;
    }
  }
}

void sort_pairs(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  if (n == 0) return;
  // LSD radix sort of 64-bit items (order-preserving float key << 32 | h bits) on the key's 32 bits in
  // passes of 11/11/10 bits; stable, so the result is unique whatever the thread count.
  std::vector<uint64_t> a(n), b(n);
  const float one = 1.0f;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
    uint32_t u, hb;
    std::memcpy(&u, &w[i], 4);
    const float hv = h ? h[i] : one;
    std::memcpy(&hb, &hv, 4);
    const uint32_t key = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    a[static_cast<size_t>(i)] = (static_cast<uint64_t>(key) << 32) | hb;
  }
  if (n < 4096) {  // small problems (rows, groups): a comparison sort beats three histogram passes
    std::stable_sort(a.begin(), a.end(), [](uint64_t x, uint64_t y) { return (x >> 32) < (y >> 32); });
  } else {
    const int want = static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(1, omp_get_max_threads())),
                                                       std::max<size_t>(1, n / 65536)));
    const int shifts[3] = {32, 43, 54};
    const int widths[3] = {11, 11, 10};
    std::vector<size_t> hist;
    for (int pass = 0; pass < 3; ++pass) {
      const int shift = shifts[pass];
      const size_t buckets = size_t{1} << widths[pass];
      const uint64_t mask = buckets - 1;
      bool trivial = false;
#pragma omp parallel num_threads(want)
      {
        // The team may be smaller than asked (nested regions run on one thread): size everything by it.
        const int threads = omp_get_num_threads();
        const int t = omp_get_thread_num();
        const size_t chunk = (n + threads - 1) / threads;
        const size_t i0 = std::min(n, t * chunk), i1 = std::min(n, i0 + chunk);
#pragma omp single
        hist.assign(buckets * static_cast<size_t>(threads), 0);
        size_t* hh = &hist[static_cast<size_t>(t) * buckets];
        for (size_t i = i0; i < i1; ++i) ++hh[(a[i] >> shift) & mask];
#pragma omp barrier
#pragma omp single
        {
          // Skip a pass whose digit is the same for every item (common for the exponent's top bits).
          for (size_t d = 0; d < buckets; ++d) {
            size_t tot = 0;
            for (int u = 0; u < threads; ++u) tot += hist[u * buckets + d];
            if (tot == n) trivial = true;
            if (tot) break;
          }
          size_t run = 0;  // offsets bucket-major, then thread: stable
          for (size_t d = 0; d < buckets; ++d)
            for (int u = 0; u < threads; ++u) {
              const size_t c = hist[u * buckets + d];
              hist[u * buckets + d] = run;
              run += c;
            }
        }
        if (!trivial) {
          size_t* off = &hist[static_cast<size_t>(t) * buckets];
          for (size_t i = i0; i < i1; ++i) b[off[(a[i] >> shift) & mask]++] = a[i];
        }
      }
      if (!trivial) a.swap(b);
    }
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
    const uint64_t v = a[static_cast<size_t>(i)];
    const uint32_t key = static_cast<uint32_t>(v >> 32), hb = static_cast<uint32_t>(v);
    const uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    std::memcpy(&w_sorted[i], &u, 4);
    std::memcpy(&h_sorted[i], &hb, 4);
  }
}

void prefix_sums(const float* ws, const float* hs, size_t n, double shift, size_t block, double* ph, double* phx,
                 double* phx2) {
  NQ_ASSERT(block >= 1);
  const size_t nb = (n + block - 1) / block;
  ph[0] = phx[0] = phx2[0] = 0.0;
  if (block == 1) {  // plain sequential prefix sums (the exact DP needs every position)
    double a = 0, b = 0, c = 0;
    for (size_t i = 0; i < n; ++i) {
      const double hv = hs ? static_cast<double>(hs[i]) : 1.0;
      const double x = static_cast<double>(ws[i]) - shift;
      a += hv; b += hv * x; c += hv * x * x;
      ph[i + 1] = a; phx[i + 1] = b; phx2[i + 1] = c;
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t bb = 0; bb < static_cast<int64_t>(nb); ++bb) {
    const size_t i0 = static_cast<size_t>(bb) * block, i1 = std::min(n, i0 + block);
    double a = 0, b = 0, c = 0;
    for (size_t i = i0; i < i1; ++i) {
      const double hv = hs ? static_cast<double>(hs[i]) : 1.0;
      const double x = static_cast<double>(ws[i]) - shift;
      a += hv; b += hv * x; c += hv * x * x;
    }
    ph[bb + 1] = a; phx[bb + 1] = b; phx2[bb + 1] = c;
  }
  for (size_t bb = 1; bb <= nb; ++bb) {
    ph[bb] += ph[bb - 1]; phx[bb] += phx[bb - 1]; phx2[bb] += phx2[bb - 1];
  }
}

void label_histogram(const int32_t* labels, size_t n, int k, int64_t* counts) {
  std::fill(counts, counts + k, int64_t{0});
  const int threads = std::max(1, omp_get_max_threads());
  std::vector<int64_t> part(static_cast<size_t>(threads) * k, 0);
  bool bad = false;
#pragma omp parallel num_threads(threads) reduction(|| : bad) if (n > 65536)
  {
    int64_t* c = &part[static_cast<size_t>(omp_get_thread_num()) * k];
#pragma omp for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      const int32_t l = labels[i];
      if (l >= k) bad = true;
      else if (l >= 0) ++c[l];
    }
  }
  NQ_ASSERT_MSG(!bad, "label_histogram: a label is >= k = " << k);
  for (int t = 0; t < threads; ++t)
    for (int j = 0; j < k; ++j) counts[j] += part[static_cast<size_t>(t) * k + j];
}

}  // namespace nq::cpu

namespace nq::quant {

#define NQ_QUANT_DISPATCH(backend, call)                          \
  do {                                                            \
    if ((backend) == Backend::kCuda) return ::nq::cuda::call;     \
    NQ_ASSERT((backend) == Backend::kCpu);                        \
    return ::nq::cpu::call;                                       \
  } while (0)

void ops_assign_accumulate(Backend backend, const float* w, const float* h, size_t n, const double* centers,
                           const double* code_len, int k, double lambda, int32_t* labels, AssignAccum& out) {
  NQ_QUANT_DISPATCH(backend, assign_accumulate(w, h, n, centers, code_len, k, lambda, labels, out));
}
void ops_sort_pairs(Backend backend, const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  NQ_QUANT_DISPATCH(backend, sort_pairs(w, h, n, w_sorted, h_sorted));
}
void ops_prefix_sums(Backend backend, const float* ws, const float* hs, size_t n, double shift, size_t block,
                     double* ph, double* phx, double* phx2) {
  NQ_QUANT_DISPATCH(backend, prefix_sums(ws, hs, n, shift, block, ph, phx, phx2));
}
void ops_label_histogram(Backend backend, const int32_t* labels, size_t n, int k, int64_t* counts) {
  NQ_QUANT_DISPATCH(backend, label_histogram(labels, n, k, counts));
}

double histogram_entropy(const int64_t* counts, int k) {
  int64_t total = 0;
  for (int j = 0; j < k; ++j) total += counts[j];
  if (total == 0) return 0.0;
  double hsum = 0;
  for (int j = 0; j < k; ++j)
    if (counts[j] > 0) {
      const double p = static_cast<double>(counts[j]) / static_cast<double>(total);
      hsum -= p * std::log2(p);
    }
  return hsum > 0 ? hsum : 0.0;
}

}  // namespace nq::quant
