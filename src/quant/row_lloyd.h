// Internal: the per-row k-means driver written once for the host and the device — op (e) of quant_ops.h.
// It is the λ = 0 sorted path of nq::quantize (its k ≥ distinct shortcut, init_centers' linear and quantile
// rules, lloyd_sorted's iterations, empty clusters dropped, the relative-tolerance stop) restated over one
// problem held in a small workspace, so that a CUDA thread block can run a whole row on chip and the CPU can run
// the very same code as its oracle. Every floating-point step repeats the host driver's arithmetic in its order
// (sequential fp64 prefix sums, libstdc++'s partition_point bisection, no FMA contraction), so both backends
// return exactly what quantize() returns for that row — bit for bit, which tests/quant/test_rows_kmeans.cpp
// checks against quantize() on the CPU and tests/cuda checks across backends.
//
// Parallel structure: a Team of `size` cooperating workers (one CUDA block, or one host thread) runs every phase;
// loops over clusters are split across workers, the O(k) bookkeeping runs on worker 0, and the phases are
// separated by team.sync(). All control decisions are read from the workspace after a sync, so every worker takes
// the same branches (a requirement of __syncthreads).
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/quant_formulas.h"

namespace nq::quant::row_lloyd {

// Prefix sums are tabled every kStride sorted positions; a look-up between entries finishes the sequential sum
// with the few values left, which reproduces the host's every-position table (SortedData, block 1) exactly.
constexpr int kStride = 4;

// Which rule picks the initial centres of a row given no start (nq::Init without kmeans++, whose sampling stays
// on the host).
enum class InitRule : int32_t { kLinear = 0, kQuantile = 1 };  // quant_ops.h kRowsInitRules counts them

struct Params {
  int k;             // the codebook size asked for (also the k ≥ distinct test)
  InitRule init;
  int max_iter;      // ≥ 1
  double tol;
};

// Scalars shared by the team (lives in the workspace).
struct State {
  double shift;      // the median sorted value: x = w − shift keeps h·x² from cancelling
  double prev_obj;
  int k;             // live centres
  int prev_count;    // entries of `prev` (0: none to compare with)
  int iterations;
  int converged;
  int stop;
};

// One problem's workspace: the row sorted by value (ws, hs), the prefix tables and the per-cluster arrays.
struct Workspace {
  float* ws;          // n sorted values
  float* hs;          // their importances (1 where unweighted)
  double* t0;         // Σ h,  Σ h·x,  Σ h·x² over sorted positions [0, i·kStride), i = 0 … n / kStride
  double* t1;
  double* t2;
  double* c;          // k centres, ascending
  double* cand;       // k updated centres before compaction
  double* scat;       // k interval scatters
  int* raw;           // k + 1 pairwise boundaries
  int* bounds;        // k + 1 cluster starts (prefix max of raw)
  int* prev;          // k + 1 starts of the previous iteration's kept clusters
  State* st;
};

NQ_HD inline int table_entries(int n) { return n / kStride + 1; }

NQ_HD inline size_t align8(size_t b) { return (b + 7) & ~size_t{7}; }

// Bytes of the three prefix tables for rows of up to n_max values.
NQ_HD inline size_t table_bytes(int n_max) { return 3 * sizeof(double) * static_cast<size_t>(table_entries(n_max)); }

// Bytes of a workspace for rows of up to n_max values and k centres (8-byte aligned pieces). The tables come
// first, in a region of at least `table_region` bytes: a caller may use that region for its own scratch (the
// device's sort storage) until solve() builds the tables.
NQ_HD inline size_t workspace_bytes(int n_max, int k, size_t table_region = 0) {
  const size_t kk = static_cast<size_t>(k), tb = table_bytes(n_max);
  return align8(tb > table_region ? tb : table_region) + 3 * sizeof(double) * kk + align8(sizeof(State)) +
         3 * align8(sizeof(int) * (kk + 1)) + 2 * align8(sizeof(float) * static_cast<size_t>(n_max));
}

// Carves a workspace from `base` (8-byte aligned, workspace_bytes(n_max, k, table_region) long).
NQ_HD inline Workspace carve_workspace(unsigned char* base, int n_max, int k, size_t table_region = 0) {
  Workspace w;
  const size_t te = static_cast<size_t>(table_entries(n_max)), kk = static_cast<size_t>(k), tb = table_bytes(n_max);
  w.t0 = reinterpret_cast<double*>(base);
  w.t1 = w.t0 + te;
  w.t2 = w.t1 + te;
  w.c = reinterpret_cast<double*>(base + align8(tb > table_region ? tb : table_region));
  w.cand = w.c + kk;
  w.scat = w.cand + kk;
  unsigned char* p = reinterpret_cast<unsigned char*>(w.scat + kk);
  w.st = reinterpret_cast<State*>(p);
  p += align8(sizeof(State));
  w.raw = reinterpret_cast<int*>(p);
  p += align8(sizeof(int) * (kk + 1));
  w.bounds = reinterpret_cast<int*>(p);
  p += align8(sizeof(int) * (kk + 1));
  w.prev = reinterpret_cast<int*>(p);
  p += align8(sizeof(int) * (kk + 1));
  w.ws = reinterpret_cast<float*>(p);
  p += align8(sizeof(float) * static_cast<size_t>(n_max));
  w.hs = reinterpret_cast<float*>(p);
  return w;
}

using Sums = Moments;  // the host's sequential prefix sums (quant_ops_cpu.cpp prefix_sums, block 1), step by step

// Worker 0: the tables of sums over [0, i·kStride).
NQ_HD inline void build_tables(const Workspace& w, int n, double shift) {
  Sums s{0.0, 0.0, 0.0};
  w.t0[0] = w.t1[0] = w.t2[0] = 0.0;
  for (int i = 0; i < n; ++i) {
    add_moments(s, w.ws[i], w.hs[i], shift);
    if ((i + 1) % kStride == 0) {
      const int e = (i + 1) / kStride;
      w.t0[e] = s.s0;
      w.t1[e] = s.s1;
      w.t2[e] = s.s2;
    }
  }
}

// Sums over sorted positions [0, p): the tabled entry, then the remaining values in order.
NQ_HD inline Sums prefix(const Workspace& w, int p, double shift) {
  const int e = p / kStride;
  Sums s{w.t0[e], w.t1[e], w.t2[e]};
  for (int i = e * kStride; i < p; ++i) add_moments(s, w.ws[i], w.hs[i], shift);
  return s;
}

NQ_HD inline Sums range(const Workspace& w, int a, int b, double shift) {
  const Sums x = prefix(w, a, shift), y = prefix(w, b, shift);
  return {y.s0 - x.s0, y.s1 - x.s1, y.s2 - x.s2};
}

// Worker 0: the initial centres, ascending and distinct (init_centers without the sort, which is the identity
// for both rules; duplicates removed as std::unique does). Returns their number.
NQ_HD inline int initial_centres(const Workspace& w, int n, const Params& p, double shift) {
  int m = 0;
  auto push = [&](double v) {
    if (m == 0 || !(w.c[m - 1] == v)) w.c[m++] = v;
  };
  if (p.init == InitRule::kLinear) {
    double lo = 0, hi = 0;
    linear_span(w.ws, w.hs, static_cast<size_t>(n), lo, hi);
    if (p.k == 1) push(0.5 * (lo + hi));
    for (int j = 0; p.k > 1 && j < p.k; ++j) push(lo + (hi - lo) * j / (p.k - 1));
  } else {  // kQuantile: weighted quantiles at (j + ½)/k of the importance mass
    const double total = prefix(w, n, shift).s0;
    int pos = 0;
    for (int j = 0; j < p.k; ++j) {
      const double target = total * (j + 0.5) / p.k;
      int lo = pos, hi = n - 1;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (prefix(w, mid + 1, shift).s0 > target) hi = mid; else lo = mid + 1;
      }
      pos = lo;
      push(w.ws[pos]);
    }
  }
  return m;
}

// The whole problem: ws/hs hold the n ≥ 1 sorted values; given_k > 0: c[0 … given_k) holds the starting
// centres (ascending, distinct), else p.init picks them. On return c[0 … st->k) is the final codebook (ascending) and
// st->iterations / st->converged say how the iterations ended — what lloyd_sorted (or the shortcut) returns.
template <class Team>
NQ_HD void solve(const Team& team, const Workspace& w, int n, const Params& p, int given_k) {
  State& st = *w.st;
  if (team.rank() == 0) {
    st.shift = w.ws[n / 2];
    build_tables(w, n, st.shift);
    st.iterations = 0;
    st.converged = 1;
    st.stop = 0;
    st.prev_count = 0;
    st.prev_obj = infinity();
    // The shortcut writes c only when taken, so a given start there survives otherwise.
    if (const int m = exact_representation(w.ws, n, p.k, w.c)) {
      st.k = m;
      st.stop = 1;
    } else {
      st.k = given_k > 0 ? given_k : initial_centres(w, n, p, st.shift);
      st.converged = 0;
    }
  }
  team.sync();
  const int max_iter = p.max_iter > 1 ? p.max_iter : 1;
  for (int it = 1; it <= max_iter && !st.stop; ++it) {
    const int k = st.k;
    const double shift = st.shift;
    // Assignment: cluster j = sorted positions [bounds[j], bounds[j + 1]).
    for (int j = 1 + team.rank(); j < k; j += team.size()) w.raw[j] = sorted_boundary(w.ws, n, w.c[j - 1], w.c[j]);
    team.sync();
    if (team.rank() == 0) {
      w.bounds[0] = 0;
      w.bounds[k] = n;
      for (int j = 1; j < k; ++j) w.bounds[j] = w.bounds[j - 1] > w.raw[j] ? w.bounds[j - 1] : w.raw[j];
      bool same = st.prev_count == k + 1;
      for (int j = 0; same && j <= k; ++j) same = w.bounds[j] == w.prev[j];
      if (same) {  // the assignment no longer changes: a fixed point
        st.converged = 1;
        st.stop = 1;
      }
    }
    team.sync();
    if (st.stop) break;
    // Update: the weighted mean of each non-empty interval.
    for (int j = team.rank(); j < k; j += team.size()) {
      const int a = w.bounds[j], b = w.bounds[j + 1];
      if (a == b) continue;
      const Sums r = range(w, a, b, shift);
      if (r.s0 > 0) {
        w.cand[j] = run_mean(r.s0, r.s1, shift, w.ws[a], w.ws[b - 1]);
        w.scat[j] = interval_scatter(r.s0, r.s1, r.s2);
      } else {  // only weightless members: their plain mean (costs nothing either way)
        double sum = 0;
        for (int i = a; i < b; ++i) sum += w.ws[i];
        w.cand[j] = sum / static_cast<double>(b - a);
        w.scat[j] = 0.0;
      }
    }
    team.sync();
    if (team.rank() == 0) {  // drop empty intervals (centres stay strictly ascending), sum in cluster order
      int kept = 0;
      double dist = 0;
      w.prev[0] = 0;
      for (int j = 0; j < k; ++j) {
        if (w.bounds[j] == w.bounds[j + 1]) continue;
        w.c[kept] = w.cand[j];
        dist += w.scat[j];
        w.prev[++kept] = w.bounds[j + 1];
      }
      st.k = kept;
      st.prev_count = kept == k ? kept + 1 : 0;  // a dropped cluster changes k: nothing to compare with
      st.iterations = it;
      const double obj = dist / static_cast<double>(n);
      if (st.prev_obj < infinity() && (st.prev_obj - obj) <= p.tol * st.prev_obj) {
        st.converged = 1;
        st.stop = 1;
      }
      st.prev_obj = obj;
    }
    team.sync();
  }
}

}  // namespace nq::quant::row_lloyd
