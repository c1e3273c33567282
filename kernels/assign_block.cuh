// Internal to the assign + accumulate kernels (assign_accumulate.cu: ops (a), (d), (d'); assign_rows.cu: op (f)):
// the one copy of the code both run — a CTA's work on one accumulation block (assign_block), the launch shape as a
// function of k, the codebook table with its checks, and the in-order fold of the CTAs' partials. Op (f) promises
// each row the bits op (a) gives it alone, which holds by construction only while both run exactly this code.
// See assign_accumulate.cu for the algorithm and the reduction order.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda_check.cuh"
#include "netquant/error.h"
#include "quant/nearest_thresholds.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cuda::assign_impl {

namespace qf = ::nq::quant;

constexpr int kMaxWarps = 8;                  // 256 threads per CTA
// CTAs of kMaxWarps per SM that the kernels' registers must allow (__launch_bounds__): ≤ 64 registers a thread.
// With CUDA 13.0 on sm_90 the single-codebook and many-codebook kernels meet it without spilling; the rows kernel
// (op (f), assign_rows_kernel<false>) spills 18 B (ptxas -v, 2026-12-06). Left to itself ptxas gives the
// placement-specialised loop up to 96, which would hold an SM to two CTAs. (Not yet timed against three CTAs of up
// to 85 registers, nor op (f) at three.)
constexpr int kMinBlocksPerSm = 4;
// The per-thread form is held to two or three CTAs an SM by its shared memory anyway (k ≥ 9), so its kernels may use
// up to 128 registers without costing occupancy (sm_90, CUDA 13.0: 60–100 in practice, no spills).
constexpr int kMinBlocksPerSmPrivate = 2;
constexpr int min_blocks_per_sm(bool private_acc) { return private_acc ? kMinBlocksPerSmPrivate : kMinBlocksPerSm; }
constexpr size_t kSmemBudget = 96 * 1024;     // ≤ the opt-in limit of every sm_80+ part; a function of k only
// Up to this k each thread keeps its own accumulators (assign_block_private); above it the warps share theirs
// (assign_block_placed). A thread's copy is 28·k bytes of shared memory, so at k = 32 a CTA holds only three warps.
constexpr int kPrivateMaxK = 32;
// The threshold table of a pass (fill_thresholds): 32 floats of thresholds, then 32 of floors.
constexpr int kThreshFloats = 64;
constexpr int kThreshMaxK = 32;

struct AssignParams {
  const float* w;
  const float* h;          // nullable: h ≡ 1
  int32_t* labels;         // nullable
  size_t n;
  size_t block;            // elements per CTA (accum_block_size(n))
  const double* centers;   // device, k entries
  const double* code_len;  // device, k entries
  int k;
  double lambda;
  double lmin;
  const double* lmin_left;   // device: min_{i ≤ j} l_i
  const double* lmin_right;  // device: min_{i ≥ j} l_i
  double span2;            // (c_{k−1} − c_0)²: full-scan test
  double* psum;            // [nblocks][3][k]: Σh, Σhw, Σw per CTA
  long long* pcount;       // [nblocks][k]
  double* pscal;           // [nblocks][3]: distortion, squared error, cost
  bool vec;                // w, h, labels 16-byte aligned: float4 / int4 accesses
  bool table_in_smem;      // centres and code lengths staged in shared memory
  bool acc_in_smem;        // per-warp accumulators in shared memory (else: one warp, accumulating in its row)
  bool private_acc;        // per-thread accumulators (assign_block_private); the two flags above are then true
  // k ≤ 32: the float thresholds of the nearest-centre rule (fill_thresholds), else null. Only the private path
  // reads them: at λ = 0 with every cluster live they give the labels (thresh_labels), at any λ the fp64 argmin's
  // start. The labels, hence the sums, are the same bits either way.
  const float* thresh;     // device, kThreshFloats: table (32: thresh[0] unused, +inf padded) | floors (k entries)
  float safe_max;          // values above it take the fp64 argmin from its own start
  bool thresh_labels;      // λ = 0, every cluster live, floors made: the count is the label where it settles it
};

// Points p at a codebook table as prepare_table lays it out: centres | code lengths | prefix minima | suffix
// minima, k entries each.
__host__ __device__ inline void point_at_table(AssignParams& p, const double* table, int k) {
  p.k = k;
  p.centers = table;
  p.code_len = table + k;
  p.lmin_left = table + 2 * k;
  p.lmin_right = table + 3 * k;
}

// Whether the pass may use float4 / int4 accesses (w, h and labels 16-byte aligned); results do not depend on it.
__host__ __device__ inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
__host__ __device__ inline bool vector_access(const AssignParams& p) {
  return aligned16(p.w) && (!p.h || aligned16(p.h)) && (!p.labels || aligned16(p.labels));
}

// One pass's merged outputs as the merge writes them (sums: 3k per-cluster sums then the 3 scalars; counts: k)
// into `out` on the host.
inline void unpack_accum(const double* sums, const long long* counts, int k, quant::AssignAccum& out) {
  const size_t kd = static_cast<size_t>(k);
  out.reset(k);
  for (size_t j = 0; j < kd; ++j) {
    out.sum_h[j] = sums[j];
    out.sum_hw[j] = sums[kd + j];
    out.sum_w[j] = sums[2 * kd + j];
    out.count[j] = counts[j];
  }
  out.distortion = sums[3 * kd + 0];
  out.sq_error = sums[3 * kd + 1];
  out.cost = sums[3 * kd + 2];
}

// Exactly the CPU op's argmin (src/quant/quant_ops_cpu.cpp), with the full-scan shortcut described at the top
// of assign_accumulate.cu. `start` is the nearer of c_{p−1}, c_p (ties low), p = count_below, when the caller
// has it (the threshold table's count below safe_max is exactly that: threshold_search), or −1.
__device__ __forceinline__ int32_t argmin_cluster(float w, double h, const double* c, const double* l,
                                                  const double* lmin_left, const double* lmin_right, int k,
                                                  double lambda, double lmin, double span2,
                                                  double* best_cost_out, int32_t start = -1) {
  if (h == 0.0)  // the distortion term vanishes: no locality, scan (ties to the nearest centre, as on the CPU)
    return qf::zero_importance_argmin(w, h, c, l, k, lambda, best_cost_out);
  // Start from the nearer of c_{p−1}, c_p (ties low), p = count_below: the bounded scans below are then exact.
  int lo = start;
  if (lo < 0) {
    lo = qf::count_below(w, c, k);
    if (lo == k || (lo > 0 && !qf::closer_to_upper(w, c[lo - 1], c[lo]))) --lo;
  }
  int32_t best = lo;
  double best_cost = qf::assign_cost(w, h, c[lo], l[lo], lambda);
  if (lambda > 0.0 && !(qf::fmul(h, span2) > qf::fmul(lambda, qf::fadd(l[lo], -lmin)))) {
    for (int j = 0; j < k; ++j) {  // l[lo] = inf (dead nearest) lands here too
      const double cost = qf::assign_cost(w, h, c[j], l[j], lambda);
      if (qf::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
    }
    *best_cost_out = best_cost;
    return best;
  }
  for (int j = lo - 1; j >= 0; --j) {
    if (qf::assign_cost_bound(w, h, c[j], lmin_left[j], lambda) > best_cost) break;
    const double cost = qf::assign_cost(w, h, c[j], l[j], lambda);
    if (qf::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
  }
  for (int j = lo + 1; j < k; ++j) {
    if (qf::assign_cost_bound(w, h, c[j], lmin_right[j], lambda) >= best_cost) break;
    const double cost = qf::assign_cost(w, h, c[j], l[j], lambda);
    if (qf::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
  }
  *best_cost_out = best_cost;
  return best;
}

// All 32 lanes call this together; lab < 0 means "no element". Lanes with the same label are summed by their
// leader in lane order and added once to the warp's accumulators: deterministic, and no two lanes of a warp
// touch the same accumulator at once (other warps have their own copies). The accumulators' four fields are read
// before any is written: they never overlap, but the compiler cannot know it, and would otherwise wait for each
// store before the next load.
__device__ __forceinline__ void warp_accumulate(int lab, double hv, double hw, double wv, double* stage, int lane,
                                                double* acc_h, double* acc_hw, double* acc_w, long long* acc_n) {
  stage[3 * lane + 0] = hv;
  stage[3 * lane + 1] = hw;
  stage[3 * lane + 2] = wv;
  __syncwarp();
  const unsigned peers = __match_any_sync(0xffffffffu, lab);
  if (lab >= 0 && lane == __ffs(peers) - 1) {
    // The members four at a time: their twelve loads issue together, then the adds follow in lane order. A missing
    // member adds +0.0, which leaves every sum's bits as they are (a sum that starts at +0.0 is never −0.0).
    double a = 0.0, b = 0.0, s = 0.0;
    for (unsigned m = peers; m;) {
      double v[4][3];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int src = __ffs(m) - 1;  // −1 once m is empty
        v[u][0] = src >= 0 ? stage[3 * src + 0] : 0.0;
        v[u][1] = src >= 0 ? stage[3 * src + 1] : 0.0;
        v[u][2] = src >= 0 ? stage[3 * src + 2] : 0.0;
        m &= m - 1;
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        a += v[u][0];
        b += v[u][1];
        s += v[u][2];
      }
    }
    const double old_h = acc_h[lab], old_hw = acc_hw[lab], old_w = acc_w[lab];
    const long long old_n = acc_n[lab];
    acc_h[lab] = old_h + a;
    acc_hw[lab] = old_hw + b;
    acc_w[lab] = old_w + s;
    acc_n[lab] = old_n + __popc(peers);
  }
  __syncwarp();
}

// A fixed shuffle tree over the warp (lane 0 holds the sum), so the order of the additions is always the same.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// The CTA's three scalars (distortion, squared error, cost) from each thread's: a fixed shuffle tree per warp,
// then the warps in order, into p.pscal's row b. Every thread of the CTA calls it; it ends past a barrier.
__device__ __forceinline__ void fold_scalars(const AssignParams& p, size_t b, double dist, double sq, double tot,
                                             double* wscal, int warps, int warp, int lane) {
  dist = warp_sum(dist);
  sq = warp_sum(sq);
  tot = warp_sum(tot);
  if (lane == 0) {
    wscal[3 * warp + 0] = dist;
    wscal[3 * warp + 1] = sq;
    wscal[3 * warp + 2] = tot;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0;
    for (int v = 0; v < warps; ++v) {
      s0 += wscal[3 * v + 0];
      s1 += wscal[3 * v + 1];
      s2 += wscal[3 * v + 2];
    }
    p.pscal[3 * b + 0] = s0;
    p.pscal[3 * b + 1] = s1;
    p.pscal[3 * b + 2] = s2;
  }
}

// w and h as float4: streamed past L2 (evict-first) when each value is read once, or kept there (kReuse) when
// other CTAs read the same block next (several codebooks over one data block).
template <bool kReuse>
__device__ __forceinline__ float4 load_quad(const float* x) {
  return kReuse ? __ldg(reinterpret_cast<const float4*>(x)) : __ldcs(reinterpret_cast<const float4*>(x));
}

// The quad of elements [e0, e0 + 4) ∩ [e0, i1) into wv, hv: float4 loads when the whole quad is there and aligned,
// else one by one. Missing elements read as w = 0, h = 1 (never used); h ≡ 1 without importances.
template <bool kReuse>
__device__ __forceinline__ void fetch_quad(const AssignParams& p, size_t e0, size_t i1, float (&wv)[4],
                                           float (&hv)[4]) {
#pragma unroll
  for (int e = 0; e < 4; ++e) wv[e] = 0.f, hv[e] = 1.f;
  if (p.vec && e0 + 4 <= i1) {
    const float4 a = load_quad<kReuse>(p.w + e0);
    wv[0] = a.x, wv[1] = a.y, wv[2] = a.z, wv[3] = a.w;
    if (p.h) {
      const float4 g = load_quad<kReuse>(p.h + e0);
      hv[0] = g.x, hv[1] = g.y, hv[2] = g.z, hv[3] = g.w;
    }
  } else {
    for (int e = 0; e < 4; ++e)
      if (e0 + e < i1) {
        wv[e] = p.w[e0 + e];
        if (p.h) hv[e] = p.h[e0 + e];
      }
  }
}

// The labels of a quad into p.labels (int4 when whole and aligned); entries past i1 are not written.
__device__ __forceinline__ void store_labels(const AssignParams& p, size_t e0, size_t i1, const int32_t (&lab)[4]) {
  if (p.vec && e0 + 4 <= i1) {
    __stcs(reinterpret_cast<int4*>(p.labels + e0), make_int4(lab[0], lab[1], lab[2], lab[3]));
  } else {
    for (int e = 0; e < 4; ++e)
      if (e0 + e < i1) p.labels[e0 + e] = lab[e];
  }
}

// #{j : w ≥ t_j} over the pass's float thresholds (quant/nearest_thresholds.h), for w ≤ safe_max: the nearest
// centre under the rounded distance, ties low — the λ = 0 label with unit importance, and at any λ exactly the
// start argmin_cluster computes (there U_j is monotone, so the count is p − 1 plus whether w is closer to c_p
// than to c_{p−1}). The table always has 32 entries (+inf past t_{k−1}), so the search is five unrolled steps
// whatever k is; a finite w ≤ safe_max never passes an +inf entry (+inf itself lies above safe_max, which is
// finite for k ≥ 2). Above safe_max (or NaN) the count means nothing.
__device__ __forceinline__ int32_t threshold_search(float w, const float* thr) {
  int32_t base = 0;
#pragma unroll
  for (int step = kThreshMaxK / 2; step > 0; step >>= 1) base += (w >= thr[base + step]) ? step : 0;
  return base;
}

// Whether the λ = 0 label of (w, h) is the count itself (w ≤ safe_max given): always without importances; with
// them, from the label's floor up (below it, the float or two at a midpoint, an importance can round a tie) and
// for h in [FLT_MIN, FLT_MAX] (h = 0 included in what is not).
__device__ __forceinline__ bool threshold_settles(float w, float h, bool weighted, const float* thr, int32_t label) {
  return !weighted || (w >= thr[kThreshMaxK + label] && h >= FLT_MIN && h <= FLT_MAX);
}

// One CTA's work on accumulation block b, for one placement of the codebook table and the accumulators.
// The placements are template arguments, not run-time branches, so that every table read and accumulator update
// in the loop is a shared-memory instruction (LDS/STS) when the data are there: a pointer that may point either
// way compiles to generic loads and stores, slower on every access. It does not change what is added in which
// order: the bits are those of the run-time form this replaced.
template <bool kReuse, bool kTableSmem, bool kAccSmem>
__device__ __forceinline__ void assign_block_placed(const AssignParams& p, size_t b) {
  extern __shared__ double smem[];
  const int warps = static_cast<int>(blockDim.x) >> 5;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int k = p.k;

  double* cursor = smem;
  const double* c = p.centers;  // table: centres | code lengths | lmin_left | lmin_right (contiguous)
  const double* l = p.code_len;
  const double* ll = p.lmin_left;
  const double* lr = p.lmin_right;
  if constexpr (kTableSmem) {
    for (int j = threadIdx.x; j < 4 * k; j += blockDim.x) cursor[j] = p.centers[j];
    c = cursor;
    l = cursor + k;
    ll = cursor + 2 * k;
    lr = cursor + 3 * k;
    cursor += 4 * k;
  }
  double* stage = cursor + warp * 96;  // 32 lanes × (h, hw, w)
  cursor += warps * 96;
  double* wscal = cursor;              // per-warp scalar partials
  cursor += warps * 3;
  double *acc_h, *acc_hw, *acc_w;
  long long* acc_n;
  if constexpr (kAccSmem) {
    acc_h = cursor + static_cast<size_t>(warp) * 3 * k;
    acc_hw = acc_h + k;
    acc_w = acc_hw + k;
    acc_n = reinterpret_cast<long long*>(cursor + static_cast<size_t>(warps) * 3 * k) + static_cast<size_t>(warp) * k;
    for (int j = threadIdx.x; j < warps * 4 * k; j += blockDim.x) cursor[j] = 0.0;  // 0.0 and 0LL share bits
  } else {  // one warp: accumulate straight into this CTA's partial row
    acc_h = p.psum + b * 3 * k;
    acc_hw = acc_h + k;
    acc_w = acc_hw + k;
    acc_n = p.pcount + b * k;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      acc_h[j] = acc_hw[j] = acc_w[j] = 0.0;
      acc_n[j] = 0;
    }
  }
  __syncthreads();

  const size_t i0 = b * p.block;
  const size_t i1 = i0 + p.block < p.n ? i0 + p.block : p.n;
  const size_t nquads = (i1 - i0 + 3) / 4;
  double dist = 0.0, sq = 0.0, tot = 0.0;
  // Warp-uniform trip count: every lane runs the same iterations, so the warp collectives see all 32 lanes.
  for (size_t q0 = static_cast<size_t>(warp) * 32; q0 < nquads; q0 += static_cast<size_t>(warps) * 32) {
    const size_t q = q0 + lane;
    const size_t e0 = i0 + 4 * q;
    float wv[4] = {0.f, 0.f, 0.f, 0.f}, hv[4] = {1.f, 1.f, 1.f, 1.f};
    if (q < nquads) fetch_quad<kReuse>(p, e0, i1, wv, hv);
    int32_t lab[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      double hd = 0.0, hw = 0.0, wd = 0.0;
      lab[e] = -1;
      if (q < nquads && e0 + e < i1) {
        const double h = static_cast<double>(hv[e]);
        double cost;
        const int32_t j = argmin_cluster(wv[e], h, c, l, ll, lr, k, p.lambda, p.lmin, p.span2, &cost);
        const double d = qf::fadd(static_cast<double>(wv[e]), -c[j]);
        const double dd = qf::fmul(d, d);  // rounded products, then the adds: nvcc would fuse `+= h * (d * d)`
        dist = qf::fadd(dist, qf::fmul(h, dd));
        sq = qf::fadd(sq, dd);
        tot += cost;
        lab[e] = j;
        hd = h;
        hw = h * wv[e];
        wd = wv[e];
      }
      warp_accumulate(lab[e], hd, hw, wd, stage, lane, acc_h, acc_hw, acc_w, acc_n);
    }
    if (p.labels && q < nquads) store_labels(p, e0, i1, lab);
  }

  fold_scalars(p, b, dist, sq, tot, wscal, warps, warp, lane);
  if constexpr (kAccSmem) {  // warps' copies in warp order → the CTA's partial row
    const double* base = cursor;
    const long long* nbase = reinterpret_cast<const long long*>(cursor + static_cast<size_t>(warps) * 3 * k);
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
      double sh = 0.0, shw = 0.0, sw = 0.0;
      long long cnt = 0;
      for (int v = 0; v < warps; ++v) {
        const double* a = base + static_cast<size_t>(v) * 3 * k;
        sh += a[j];
        shw += a[k + j];
        sw += a[2 * k + j];
        cnt += nbase[static_cast<size_t>(v) * k + j];
      }
      p.psum[(b * 3 + 0) * k + j] = sh;
      p.psum[(b * 3 + 1) * k + j] = shw;
      p.psum[(b * 3 + 2) * k + j] = sw;
      p.pcount[b * k + j] = cnt;
    }
  }
}

// One CTA's work on accumulation block b for k ≤ kPrivateMaxK: every thread owns a copy of the k accumulators in
// shared memory and adds its own elements to it, one after another, with no exchange between lanes. The warp-
// shared form above pays a __match_any_sync, two __syncwarp and a leader's serial loop for every 32 elements,
// about as many instructions as the argmin itself; here an element costs three shared-memory read-add-writes and
// a counter. The price is space (28·k bytes a thread: fewer warps per CTA as k grows) and a fold at the end.
//
// Order of the sums (bits): thread t adds the elements of its quads t, t + T, t + 2T, … (T threads), each quad
// in element order; accumulator row r (field f = r / k of cluster r % k) is then folded by warp r mod W: lane l
// adds the copies of threads l, l + 32, … in that order and warp_sum's fixed tree adds the lanes. The scalars go
// as in the warp-shared form. All of it is a function of (n, k) alone.
//
// Layout (doubles first): table (4k) | thresholds (kThreshFloats floats) | scalars (3 per warp) | Σh, Σhw, Σw
// rows (3k rows of T) | counts (k rows of T int32). Thread t's entry of row r is at r·T + t, so a warp's accesses
// hit 32 different banks whatever clusters its lanes picked. A thread adds at most block / T + 4 elements: a 32-bit
// count holds them for any n below 2^47 (accum_block_size(n) ≤ n / 2048, T ≥ 32).
template <bool kReuse>
__device__ __forceinline__ void assign_block_private(const AssignParams& p, size_t b) {
  extern __shared__ double smem[];
  const int T = static_cast<int>(blockDim.x);
  const int tid = static_cast<int>(threadIdx.x);
  const int warps = T >> 5, warp = tid >> 5, lane = tid & 31;
  const int k = p.k;

  double* table = smem;
  for (int j = tid; j < 4 * k; j += T) table[j] = p.centers[j];
  float* thr = reinterpret_cast<float*>(smem + 4 * k);
  const bool by_thresholds = p.thresh != nullptr;
  if (by_thresholds)
    for (int j = tid; j < kThreshFloats; j += T) thr[j] = p.thresh[j];
  double* wscal = smem + 4 * k + kThreshFloats / 2;
  double* acc = wscal + 3 * warps;
  int* cnt = reinterpret_cast<int*>(acc + static_cast<size_t>(3 * k) * T);
  for (int j = tid; j < 3 * k * T; j += T) acc[j] = 0.0;
  for (int j = tid; j < k * T; j += T) cnt[j] = 0;
  __syncthreads();
  const double* c = table;
  const double* l = table + k;
  const double* ll = table + 2 * k;
  const double* lr = table + 3 * k;
  double* mine = acc + tid;  // row r of this thread: mine[r * T]
  int* mine_n = cnt + tid;
  const bool weighted = p.h != nullptr;

  const size_t i0 = b * p.block;
  const size_t i1 = i0 + p.block < p.n ? i0 + p.block : p.n;
  const size_t nquads = (i1 - i0 + 3) / 4;
  double dist = 0.0, sq = 0.0, tot = 0.0;
  float wv[4], hv[4];
  if (static_cast<size_t>(tid) < nquads) fetch_quad<kReuse>(p, i0 + 4 * static_cast<size_t>(tid), i1, wv, hv);
  for (size_t q = tid; q < nquads; q += static_cast<size_t>(T)) {
    const size_t e0 = i0 + 4 * q;
    // The next quad's loads go out before this one's work, so that each thread keeps two in flight.
    float wn[4] = {0.f, 0.f, 0.f, 0.f}, hn[4] = {1.f, 1.f, 1.f, 1.f};  // read only when there is a next quad
    const size_t qn = q + static_cast<size_t>(T);
    if (qn < nquads) fetch_quad<kReuse>(p, i0 + 4 * qn, i1, wn, hn);
    const int valid = i1 - e0 < 4 ? static_cast<int>(i1 - e0) : 4;  // the quad's elements in the block
    int32_t lab[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      lab[e] = -1;
      if (e >= valid) continue;
      const float x = wv[e];
      const double h = static_cast<double>(hv[e]);
      // The table's count, where it holds (w ≤ safe_max): the label itself at λ = 0 when it settles it, else the
      // fp64 argmin's start.
      const int32_t start = by_thresholds && x <= p.safe_max ? threshold_search(x, thr) : -1;
      const bool settled = start >= 0 && p.thresh_labels && threshold_settles(x, hv[e], weighted, thr, start);
      double cost;
      const int32_t j = settled ? start : argmin_cluster(x, h, c, l, ll, lr, k, p.lambda, p.lmin, p.span2, &cost, start);
      const double d = qf::fadd(static_cast<double>(x), -c[j]);
      const double dd = qf::fmul(d, d);  // rounded: `sq += dd` never contracts into an FMA
      // assign_cost at λ = 0 with c_j live is fl(h·dd) + 0·l_j, and h ≥ FLT_MIN there (or h ≡ 1), so the product is
      // ≥ +0 and adding the zero leaves its bits: the argmin's cost, without the rate term's loads.
      if (settled) cost = qf::fmul(h, dd);
      dist = qf::fadd(dist, qf::fmul(h, dd));  // as the CPU rounds it: no FMA
      sq += dd;
      tot += cost;
      lab[e] = j;
      const size_t r = static_cast<size_t>(j) * T;
      const size_t f = static_cast<size_t>(k) * T;
      if (weighted) {  // without importances Σh is the count and Σhw is Σw, bit for bit: the fold makes them
        mine[r] += h;
        mine[f + r] += qf::fmul(h, static_cast<double>(x));  // rounded, then added: no contraction into an FMA
      }
      mine[2 * f + r] += static_cast<double>(x);
      mine_n[r] += 1;
    }
    if (p.labels) store_labels(p, e0, i1, lab);
#pragma unroll
    for (int e = 0; e < 4; ++e) wv[e] = wn[e], hv[e] = hn[e];
  }

  fold_scalars(p, b, dist, sq, tot, wscal, warps, warp, lane);  // its barrier: every thread's accumulators are in
  // Without importances each h is 1.0: Σh adds whole numbers below 2^53, exactly the count in any order, and
  // fl(1·w) = w, so Σhw is Σw's very sum. Those rows are folded from the count and Σw rows instead.
  for (int r = warp; r < 4 * k; r += warps) {  // warp-uniform: every lane takes the same rows
    if (!weighted && r < k) {
      const int* row = cnt + static_cast<size_t>(r) * T;
      long long s = 0;
      for (int t = lane; t < T; t += 32) s += row[t];
      s = warp_sum(s);
      if (lane == 0) p.psum[b * 3 * k + r] = static_cast<double>(s);
    } else if (r < 3 * k) {
      const int from = !weighted && r < 2 * k ? r + k : r;  // Σhw ≡ Σw without importances
      const double* row = acc + static_cast<size_t>(from) * T;
      double s = 0.0;
      for (int t = lane; t < T; t += 32) s += row[t];
      s = warp_sum(s);
      if (lane == 0) p.psum[b * 3 * k + r] = s;  // row r = field r / k, cluster r % k: the partial row's layout
    } else {
      const int j = r - 3 * k;
      const int* row = cnt + static_cast<size_t>(j) * T;
      long long s = 0;
      for (int t = lane; t < T; t += 32) s += row[t];
      s = warp_sum(s);
      if (lane == 0) p.pcount[b * k + j] = s;
    }
  }
}

// One CTA's work: accumulation block b of the data under codebook p, in the form and placement its launch shape
// chose (choose_shape: per-thread accumulators up to kPrivateMaxK; above it the table is in shared memory only when
// the warps' accumulators are too). The form is the kernel's template argument (each form has its own register
// budget), so the host launches the instance that p.private_acc names.
template <bool kReuse, bool kPrivate>
__device__ __forceinline__ void assign_block(const AssignParams& p, size_t b) {
  if constexpr (kPrivate)
    assign_block_private<kReuse>(p, b);
  else if (p.table_in_smem)
    assign_block_placed<kReuse, true, true>(p, b);
  else if (p.acc_in_smem)
    assign_block_placed<kReuse, false, true>(p, b);
  else
    assign_block_placed<kReuse, false, false>(p, b);
}

// Output idx (< 4k + 3) of one pass from its CTAs' partials (nblocks rows of the layout above), added in block
// order from zero: idx < 3k the sums (field idx / k of cluster idx % k), then the k counts, then the 3 scalars.
__device__ __forceinline__ void fold_partials(const double* __restrict__ psum, const long long* __restrict__ pcount,
                                              const double* __restrict__ pscal, size_t nblocks, int k, int idx,
                                              double* __restrict__ out_sum, long long* __restrict__ out_count,
                                              double* __restrict__ out_scal) {
  const int nsum = 3 * k;
  if (idx < nsum) {
    const int f = idx / k, j = idx % k;
    double s = 0.0;
    for (size_t b = 0; b < nblocks; ++b) s += psum[(b * 3 + f) * k + j];
    out_sum[idx] = s;
  } else if (idx < nsum + k) {
    const int j = idx - nsum;
    long long s = 0;
    for (size_t b = 0; b < nblocks; ++b) s += pcount[b * k + j];
    out_count[j] = s;
  } else if (idx < nsum + k + 3) {
    const int f = idx - nsum - k;
    double s = 0.0;
    for (size_t b = 0; b < nblocks; ++b) s += pscal[3 * b + f];
    out_scal[f] = s;
  }
}

// Launch shape as a function of k only (so the summation tree never depends on the device) — and of the process's
// FusedStrategy, a benchmark's knob.
struct Shape {
  int warps;
  bool table_in_smem;
  bool acc_in_smem;
  size_t smem_bytes;
  bool private_acc = false;
};

inline bool same_shape(const Shape& a, const Shape& b) {
  return a.warps == b.warps && a.table_in_smem == b.table_in_smem && a.acc_in_smem == b.acc_in_smem &&
         a.private_acc == b.private_acc;
}

// How the process's fused passes run (assign_accumulate.cuh set_fused_strategy): per-thread accumulators up to
// kPrivateMaxK (else every k shares per warp), and the threshold table (λ = 0 labels, the argmin's start at any
// λ; else the fp64 search). Both on by default; the benchmark turns them off to time the forms in one run.
inline std::atomic<bool> g_private_accumulators{true};
inline std::atomic<bool> g_threshold_table{true};
inline std::atomic<int> g_private_warps{0};  // > 0: the per-thread form's warps a CTA, where they fit (benchmark)

// Shared memory of assign_block_private's layout for k clusters and `warps` warps.
inline size_t private_smem_bytes(int k, int warps) {
  const size_t kd = static_cast<size_t>(k), threads = 32 * static_cast<size_t>(warps);
  return sizeof(double) * (4 * kd + kThreshFloats / 2 + 3 * static_cast<size_t>(warps) + 3 * kd * threads) +
         sizeof(int) * kd * threads;
}

inline Shape choose_shape(int k) {
  const size_t kd = static_cast<size_t>(k);
  if (k <= kPrivateMaxK && g_private_accumulators.load(std::memory_order_relaxed)) {
    const int forced = g_private_warps.load(std::memory_order_relaxed);
    if (forced > 0 && forced <= kMaxWarps && private_smem_bytes(k, forced) <= kSmemBudget)
      return {forced, true, true, private_smem_bytes(k, forced), true};
    for (int warps = kMaxWarps; warps >= 1; --warps) {
      const size_t bytes = private_smem_bytes(k, warps);
      if (bytes <= kSmemBudget) return {warps, true, true, bytes, true};
    }
  }
  for (int table = 1; table >= 0; --table)
    for (int warps = kMaxWarps; warps >= 1; warps >>= 1) {
      const size_t bytes = sizeof(double) * (table * 4 * kd + warps * (96 + 3 + 4 * kd));
      if (bytes <= kSmemBudget) return {warps, table == 1, true, bytes};
    }
  return {1, false, false, sizeof(double) * (96 + 3)};
}

inline size_t align_up(size_t x) { return (x + 255) & ~size_t{255}; }

// One codebook prepared on the host (op (a)'s argument checks): its scalars and launch shape; the table itself —
// centres | code lengths | prefix minima | suffix minima of the code lengths, 4k doubles — goes where the caller
// says, so a batch of codebooks can be laid out in one upload.
struct CodebookTable {
  int k = 0;
  double lambda = 0, lmin = 0, span2 = 0;
  Shape shape{};
};

// Checks the codebook and writes its 4k-entry table to `table` (nothing is written when the checks fail first).
inline CodebookTable prepare_table(const double* centers, const double* code_len, int k, double lambda,
                                   double* table) {
  NQ_CHECK(k >= 1, ErrorCode::kInvalidArgument, "assign_accumulate: k = " << k << " must be at least 1");
  NQ_CHECK(centers && code_len, ErrorCode::kInvalidArgument, "assign_accumulate: null codebook");
  CodebookTable c;
  c.k = k;
  c.lambda = lambda;
  const size_t kd = static_cast<size_t>(k);
  std::copy(centers, centers + k, table);
  std::copy(code_len, code_len + k, table + k);
  for (size_t j = 0; j < kd; ++j) table[2 * kd + j] = std::min(code_len[j], j ? table[2 * kd + j - 1] : qf::infinity());
  for (size_t j = kd; j-- > 0;)
    table[3 * kd + j] = std::min(code_len[j], j + 1 < kd ? table[3 * kd + j + 1] : qf::infinity());
  c.lmin = table[3 * kd];
  NQ_ASSERT_MSG(c.lmin < qf::infinity(), "assign_accumulate: every cluster is dead");
  for (int j = 0; j + 1 < k; ++j) NQ_ASSERT(centers[j] < centers[j + 1]);
  const double span = centers[k - 1] - centers[0];
  c.span2 = span * span;
  c.shape = choose_shape(k);
  return c;
}

// The threshold table of a pass over n values (AssignParams::thresh), into out[kThreshFloats]: when the pass
// takes the private path, 2 ≤ k ≤ kThreshMaxK, n repays the host's bisections (n ≥ 256·k, as on the CPU) and some
// value can use it (safe_max finite: quant/nearest_thresholds.h). Returns false, writing nothing that matters,
// otherwise. Sets safe_max, and labels: whether the count is the label (λ = 0, every cluster live, the floors
// made; they follow the table).
inline bool fill_thresholds(const double* centers, const double* code_len, int k, double lambda, size_t n,
                            const Shape& shape, float* out, float& safe_max, bool& labels) {
  if (!shape.private_acc || !g_threshold_table.load(std::memory_order_relaxed)) return false;
  if (k < 2 || k > kThreshMaxK || n < size_t{256} * static_cast<size_t>(k)) return false;
  const quant::NearestThresholds rule(std::vector<double>(centers, centers + k));
  if (!(rule.safe_max() >= -FLT_MAX)) return false;
  const std::vector<float> t = rule.thresholds();  // t_1 … t_{k−1}
  std::fill(out, out + kThreshFloats, INFINITY);
  out[0] = -INFINITY;  // never read
  std::copy(t.begin(), t.end(), out + 1);
  safe_max = rule.safe_max();
  labels = lambda == 0.0;
  for (int j = 0; j < k && labels; ++j) labels = code_len[j] < qf::infinity();
  if (labels) {
    const std::vector<float> floors = rule.weighted_floors();
    labels = !floors.empty();
    if (labels) std::copy(floors.begin(), floors.end(), out + kThreshMaxK);
  }
  return true;
}

// Dynamic shared memory beyond the default 48 KB must be opted into, per kernel. The setting is the kernel's,
// shared by every host thread (quantize_model launches from several): it is always set to the one ceiling that
// covers every shape, never to this call's size, or another thread's larger launch could fail between its own
// setting and its launch.
inline void set_smem(const void* kernel, size_t bytes) {
  NQ_ASSERT(bytes <= kSmemBudget);
  if (bytes > 48 * 1024)
    NQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(kSmemBudget)));
}

}  // namespace nq::cuda::assign_impl
