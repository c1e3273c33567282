// Internal: the exact (globally optimal) 1-D weighted k-means of one sorted row, written once for the host and the
// device — op (e) with `exact` set. It is exact_dp.cpp's layer-by-layer algorithm for a problem of distinct values
// (items = the distinct values; rows never reach the histogram-bin regime): DP layers by divide and conquer with
// Ckmeans' cross-layer bound, two rows kept, split points recovered Hirschberg-style. Here the recursion is an
// explicit stack and every array lives in a caller-provided scratch, so one GPU thread can solve one row; the
// arithmetic and the order of every step are exact_dp.cpp's, so the result is bit for bit the host driver's
// (tests/quant/test_rows_kmeans.cpp). exact_dp.cpp takes this path up to 2^16 items (op (e)'s longest row);
// beyond, it takes the Lagrangian search, which finds the same optimum (the same bits unless two clusterings tie).
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/quant_formulas.h"

namespace nq::quant::exact_row {

// Scratch for rows of up to n_max values and k clusters (every piece 8-byte aligned).
struct Scratch {
  double* p0;           // item prefix sums of h, h·x, h·x² (x = w − shift), n_max + 1 each
  double* p1;
  double* p2;
  double* value;        // the first value of each item, n_max
  int32_t* item_start;  // sorted position of each item, n_max + 1
  double* fwd;          // DP rows, n_max + 1 each
  double* bwd;
  double* work;
  int32_t* opt_a;       // D&C split points of two layers, n_max + 1 each
  int32_t* opt_b;
  int32_t* starts;      // cluster starts (items), k + 1
};

struct Frame {  // a pending sub-problem of the Hirschberg recursion: m clusters over items [a, b)
  int32_t a, b, m;
};
constexpr int kMaxFrames = 64;  // depth ≤ log2(k) + 1 ≤ 17, two children per level

NQ_HD inline size_t align8(size_t b) { return (b + 7) & ~size_t{7}; }

NQ_HD inline size_t scratch_bytes(int n_max, int k) {
  const size_t e = static_cast<size_t>(n_max) + 1;
  return 7 * sizeof(double) * e + 3 * align8(sizeof(int32_t) * e) +
         align8(sizeof(int32_t) * (static_cast<size_t>(k) + 1));
}

NQ_HD inline Scratch carve_scratch(unsigned char* base, int n_max, int k) {
  const size_t e = static_cast<size_t>(n_max) + 1;
  Scratch s;
  double* d = reinterpret_cast<double*>(base);
  s.p0 = d;
  s.p1 = d + e;
  s.p2 = d + 2 * e;
  s.value = d + 3 * e;
  s.fwd = d + 4 * e;
  s.bwd = d + 5 * e;
  s.work = d + 6 * e;
  unsigned char* p = base + 7 * sizeof(double) * e;
  s.item_start = reinterpret_cast<int32_t*>(p);
  p += align8(sizeof(int32_t) * e);
  s.opt_a = reinterpret_cast<int32_t*>(p);
  p += align8(sizeof(int32_t) * e);
  s.opt_b = reinterpret_cast<int32_t*>(p);
  p += align8(sizeof(int32_t) * e);
  s.starts = reinterpret_cast<int32_t*>(p);
  (void)k;
  return s;
}

// Items as fp64 prefix sums of h, h·x, h·x² (entries 0 … items).
struct ItemSums {
  const double* p0;
  const double* p1;
  const double* p2;
};

NQ_HD inline double item_cost(const ItemSums& it, int a, int b) {  // scatter of items [a, b)
  return interval_scatter(it.p0[b] - it.p0[a], it.p1[b] - it.p1[a], it.p2[b] - it.p2[a]);
}

// One side of the Hirschberg split: row[i] = least cost of covering [a, a+i) with m clusters (mirror: the last i
// items [b−i, b)). Each layer by divide and conquer over the monotone split points, with Ckmeans' cross-layer
// bound opt_t(i) ≥ opt_{t−1}(i). The result lands in `row` (len + 1 entries); `work` (len + 1) and the two opt
// arrays (len + 1 each) are scratch. exact_dp.cpp (host, any size) and solve() below (one row) both run this.
NQ_HD inline void forward_rows(const ItemSums& it, int a, int b, int m, bool mirror, double* row, double* work,
                               int32_t* opt_a, int32_t* opt_b) {
  const int len = b - a;
  auto cost = [&](int j, int i) { return mirror ? item_cost(it, b - i, b - j) : item_cost(it, a + j, a + i); };
  const double inf = infinity();
  double* prev = row;
  double* cur = work;
  int32_t* prev_opt = opt_a;
  int32_t* cur_opt = opt_b;
  for (int i = 0; i <= len; ++i) {
    prev[i] = inf;
    cur[i] = inf;
    prev_opt[i] = cur_opt[i] = 0;
  }
  for (int i = 1; i <= len; ++i) prev[i] = cost(0, i);
  prev[0] = inf;
  // Depth-first over the halves: at most two pending frames per level, so 2·64 slots hold any length. A plain
  // array: the ranges searched per midpoint are often a handful of items, and vector growth checks on every push
  // took 29% of the host run (perf, N = 1e5).
  // 32-bit fields (len is an int): the frame array is most of the CUDA rows kernel's per-thread stack, for which
  // the driver reserves local memory for every thread the device can hold.
  struct DcFrame {
    int32_t lo, hi, olo, ohi;
  };
  DcFrame stack[128];
  int top = 0;
  for (int t = 2; t <= m; ++t) {
    for (int i = 0; i <= len; ++i) cur[i] = inf;
    top = 0;
    stack[top++] = {t, len, t - 1, len - 1};
    while (top > 0) {
      const DcFrame f = stack[--top];
      if (f.lo > f.hi) continue;
      const int mid = f.lo + (f.hi - f.lo) / 2;  // lo + hi would overflow int past 2^30 items
      int jlo = f.olo > (t > 2 ? prev_opt[mid] : (t - 1)) ? f.olo : (t > 2 ? prev_opt[mid] : (t - 1));
      const int jhi = f.ohi < mid - 1 ? f.ohi : mid - 1;
      if (jlo > jhi) jlo = f.olo > (t - 1) ? f.olo : (t - 1);
      double best = inf;
      int arg = jlo;
      for (int j = jlo; j <= jhi; ++j) {
        const double v = prev[j] + cost(j, mid);
        if (v < best) {
          best = v;
          arg = j;
        }
      }
      cur[mid] = best;
      cur_opt[mid] = arg;
      stack[top++] = {f.lo, mid - 1, f.olo, arg};
      stack[top++] = {mid + 1, f.hi, arg, f.ohi};
    }
    double* tmp = prev;
    prev = cur;
    cur = tmp;
    int32_t* topt = prev_opt;
    prev_opt = cur_opt;
    cur_opt = topt;
  }
  if (prev != row)
    for (int i = 0; i <= len; ++i) row[i] = prev[i];
}

// exact_dp.cpp solve over items [0, items) with m clusters: writes the m cluster starts to s.starts in order.
NQ_HD inline void solve(const Scratch& s, int items, int m) {
  Frame stack[kMaxFrames];
  int top = 0, count = 0;
  stack[top++] = {0, items, m};
  while (top > 0) {
    const Frame f = stack[--top];
    const int len = f.b - f.a;
    if (f.m <= 1) {
      s.starts[count++] = f.a;
      continue;
    }
    if (f.m >= len) {
      for (int i = f.a; i < f.b; ++i) s.starts[count++] = i;
      continue;
    }
    const int ml = f.m / 2, mr = f.m - ml;
    const ItemSums it{s.p0, s.p1, s.p2};
    forward_rows(it, f.a, f.b, ml, false, s.fwd, s.work, s.opt_a, s.opt_b);
    forward_rows(it, f.a, f.b, mr, true, s.bwd, s.work, s.opt_a, s.opt_b);
    int best_x = ml;
    double best = infinity();
    for (int x = ml; x + mr <= len; ++x) {
      const double v = s.fwd[x] + s.bwd[len - x];
      if (v < best) {
        best = v;
        best_x = x;
      }
    }
    stack[top++] = {f.a + best_x, f.b, mr};  // right after left: the stack pops the left half first
    stack[top++] = {f.a, f.a + best_x, ml};
  }
}

// The whole row: ws/hs its n ≥ 1 sorted values and importances (1 where unweighted), k < distinct values.
// Writes the m = min(k, items) centres to `centers` and each cluster's first value to `first_value`; returns m.
NQ_HD inline int solve_row(const Scratch& s, const float* ws, const float* hs, int n, int k, double* centers,
                           double* first_value) {
  const double shift = ws[n / 2];
  int items = 0;
  Moments a;
  s.p0[0] = s.p1[0] = s.p2[0] = 0.0;
  for (int i = 0; i < n; ++i) {
    if (i == 0 || ws[i] != ws[i - 1]) {
      if (i) {
        s.p0[items] = a.s0;
        s.p1[items] = a.s1;
        s.p2[items] = a.s2;
      }
      s.item_start[items] = i;
      s.value[items] = ws[i];
      ++items;
    }
    add_moments(a, ws[i], hs[i], shift);
  }
  s.p0[items] = a.s0;
  s.p1[items] = a.s1;
  s.p2[items] = a.s2;
  s.item_start[items] = n;
  const int m = k < items ? k : items;
  solve(s, items, m);
  s.starts[m] = items;
  for (int j = 0; j < m; ++j) {
    const int ia = s.starts[j], ib = s.starts[j + 1];
    const double s0 = s.p0[ib] - s.p0[ia], s1 = s.p1[ib] - s.p1[ia];  // the centre: weighted mean
    if (s0 > 0) {
      centers[j] = run_mean(s0, s1, shift, ws[s.item_start[ia]], ws[s.item_start[ib] - 1]);
    } else {
      double sum = 0;
      for (int i = s.item_start[ia]; i < s.item_start[ib]; ++i) sum += ws[i];
      centers[j] = sum / static_cast<double>(s.item_start[ib] - s.item_start[ia]);
    }
    first_value[j] = s.value[ia];
  }
  return m;
}

// exact_dp.cpp's label: the cluster whose first value is the last one ≤ v (std::upper_bound − 1, at least 0).
NQ_HD inline int32_t label(float w, const double* first_value, int m) {
  const double v = w;
  int lo = 0, len = m;
  while (len > 0) {  // upper_bound
    const int half = len >> 1;
    if (!(v < first_value[lo + half])) {
      lo += half + 1;
      len -= half + 1;
    } else {
      len = half;
    }
  }
  return lo > 0 ? lo - 1 : 0;
}

}  // namespace nq::quant::exact_row
