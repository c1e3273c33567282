// CUDA fused assign + accumulate (ECSQ / Hessian-weighted k-means, Choi et al. 2017 eq. 8 and §5.4): one pass over (w, h)
// that labels every weight and produces the per-cluster Σh, Σh·w, Σw, counts and the objective.
//
// Assignment: nearest centre by binary search on the sorted centres (quant_formulas.h closer_to_upper), then an
// exact bounded local search for the rate term. Bound: a centre j at least as far from w as the nearest n can
// win only if h·((w−c_j)² − (w−c_n)²) ≤ λ·(l_n − l_j) ≤ λ·(l_n − l_min), so every candidate satisfies
// h(w−c_j)² + λ·l_min ≤ cost_n; the scan outwards stops at the first centre whose rounding-monotone lower bound
// (assign_cost_bound) exceeds the best cost so far (ties continue downwards, since the lowest index wins); the
// bound uses the smallest code length beyond j on that side (prefix/suffix minima), tighter than the global l_min.
// A zero importance removes all locality: full scan, as the CPU op does.
// When h·(c_{k−1} − c_0)² ≤ λ·(l_n − l_min) that window is the whole codebook and a uniform full scan is used.
// Both are the brute-force fp64 argmin, so labels equal the CPU op's (same formulas, no FMA contraction).
//
// Accumulation (determinism, no float atomics): one CTA per accumulation block of accum_block_size(n) elements
// (a function of n alone). Each warp owns a shared-memory copy of the k accumulators; inside a warp, lanes that
// picked the same cluster are grouped with __match_any_sync and the group's leader adds the members' values in
// lane order. At the end the warps' copies are added in warp order into the CTA's partial row (fp64), and a
// second kernel adds the partial rows in block order. The reduction tree depends on (n, k) only, so results are
// bitwise identical run to run and across launch-independent device properties.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "assign_accumulate.cuh"
#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

namespace qf = ::nq::quant;

constexpr int kMaxWarps = 8;                  // 256 threads per CTA
constexpr size_t kSmemBudget = 96 * 1024;     // ≤ the opt-in limit of every sm_80+ part; a function of k only

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
};

// Exactly the CPU op's argmin (src/quant/quant_ops_cpu.cpp), with the full-scan shortcut described above.
__device__ __forceinline__ int32_t argmin_cluster(float w, double h, const double* c, const double* l,
                                                  const double* lmin_left, const double* lmin_right, int k,
                                                  double lambda, double lmin, double span2,
                                                  double* best_cost_out) {
  if (h == 0.0) {  // the distortion term vanishes: no locality, scan (lexicographic (cost, index) minimum)
    int32_t best = -1;
    double best_cost = qf::infinity();
    for (int j = 0; j < k; ++j) {
      const double cost = qf::assign_cost(w, h, c[j], l[j], lambda);
      if (best < 0 || qf::better(cost, j, best_cost, best)) { best_cost = cost; best = j; }
    }
    *best_cost_out = best_cost;
    return best;
  }
  // Start from the nearer of c_{p−1}, c_p (ties low), p = count_below: the bounded scans below are then exact.
  int lo = qf::count_below(w, c, k);
  if (lo == k || (lo > 0 && !qf::closer_to_upper(w, c[lo - 1], c[lo]))) --lo;
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
// touch the same accumulator at once (other warps have their own copies).
__device__ __forceinline__ void warp_accumulate(int lab, double hv, double hw, double wv, double* stage, int lane,
                                                double* acc_h, double* acc_hw, double* acc_w, long long* acc_n) {
  stage[3 * lane + 0] = hv;
  stage[3 * lane + 1] = hw;
  stage[3 * lane + 2] = wv;
  __syncwarp();
  const unsigned peers = __match_any_sync(0xffffffffu, lab);
  if (lab >= 0 && lane == __ffs(peers) - 1) {
    double a = 0.0, b = 0.0, s = 0.0;
    for (unsigned m = peers; m; m &= m - 1) {
      const int src = __ffs(m) - 1;
      a += stage[3 * src + 0];
      b += stage[3 * src + 1];
      s += stage[3 * src + 2];
    }
    acc_h[lab] += a;
    acc_hw[lab] += b;
    acc_w[lab] += s;
    acc_n[lab] += __popc(peers);
  }
  __syncwarp();
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// One CTA's work: accumulation block b of the data under codebook p.
__device__ __forceinline__ void assign_block(const AssignParams& p, size_t b) {
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
  if (p.table_in_smem) {
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
  if (p.acc_in_smem) {
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
    const bool full = q < nquads && e0 + 4 <= i1;
    if (full && p.vec) {
      const float4 a = __ldcs(reinterpret_cast<const float4*>(p.w + e0));
      wv[0] = a.x, wv[1] = a.y, wv[2] = a.z, wv[3] = a.w;
      if (p.h) {
        const float4 g = __ldcs(reinterpret_cast<const float4*>(p.h + e0));
        hv[0] = g.x, hv[1] = g.y, hv[2] = g.z, hv[3] = g.w;
      }
    } else if (q < nquads) {
      for (int e = 0; e < 4; ++e)
        if (e0 + e < i1) {
          wv[e] = p.w[e0 + e];
          if (p.h) hv[e] = p.h[e0 + e];
        }
    }
    int32_t lab[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const bool valid = q < nquads && e0 + e < i1;
      double hd = 0.0, hw = 0.0, wd = 0.0;
      lab[e] = -1;
      if (valid) {
        const double h = static_cast<double>(hv[e]);
        double cost;
        const int32_t j = argmin_cluster(wv[e], h, c, l, ll, lr, k, p.lambda, p.lmin, p.span2, &cost);
        const double d = static_cast<double>(wv[e]) - c[j];
        dist += h * (d * d);
        sq += d * d;
        tot += cost;
        lab[e] = j;
        hd = h;
        hw = h * wv[e];
        wd = wv[e];
      }
      warp_accumulate(lab[e], hd, hw, wd, stage, lane, acc_h, acc_hw, acc_w, acc_n);
    }
    if (p.labels) {
      if (full && p.vec) {
        __stcs(reinterpret_cast<int4*>(p.labels + e0), make_int4(lab[0], lab[1], lab[2], lab[3]));
      } else if (q < nquads) {
        for (int e = 0; e < 4; ++e)
          if (e0 + e < i1) p.labels[e0 + e] = lab[e];
      }
    }
  }

  // Scalars: fixed shuffle tree per warp, then warps in order.
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
  if (p.acc_in_smem) {  // warps' copies in warp order → the CTA's partial row
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

__global__ void __launch_bounds__(kMaxWarps * 32) assign_accumulate_kernel(AssignParams p) {
  assign_block(p, blockIdx.x);
}

// Several codebooks over the same data (ResidentValues::assign_accumulate_multi): CTA x takes data block x / m
// under codebook x % m, so the m CTAs of a block are scheduled back to back and all but the first read it from
// L2. Each CTA does exactly the single-codebook kernel's work, so every codebook's sums keep their bits.
constexpr int kMaxBatch = 16;
struct BatchParams {
  AssignParams p[kMaxBatch];
  int m;
};
__global__ void __launch_bounds__(kMaxWarps * 32) assign_accumulate_batch_kernel(BatchParams bp) {
  const unsigned m = static_cast<unsigned>(bp.m);
  assign_block(bp.p[blockIdx.x % m], blockIdx.x / m);
}

// One thread per output value, adding the CTAs' partials in block order.
__global__ void merge_partials_kernel(const double* __restrict__ psum, const long long* __restrict__ pcount,
                                      const double* __restrict__ pscal, size_t nblocks, int k,
                                      double* __restrict__ out_sum, long long* __restrict__ out_count,
                                      double* __restrict__ out_scal) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
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

// Launch shape as a function of k only (so the summation tree never depends on the device).
struct Shape {
  int warps;
  bool table_in_smem;
  bool acc_in_smem;
  size_t smem_bytes;
};

Shape choose_shape(int k) {
  const size_t kd = static_cast<size_t>(k);
  for (int table = 1; table >= 0; --table)
    for (int warps = kMaxWarps; warps >= 1; warps >>= 1) {
      const size_t bytes = sizeof(double) * (table * 4 * kd + warps * (96 + 3 + 4 * kd));
      if (bytes <= kSmemBudget) return {warps, table == 1, true, bytes};
    }
  return {1, false, false, sizeof(double) * (96 + 3)};
}

// Device workspace reused across calls on this thread (grow-only), so a Lloyd loop does not pay cudaMalloc.
struct Workspace {
  int device = -1;
  DeviceBuffer<unsigned char> bytes;
  unsigned char* get(size_t need) {
    int dev = 0;
    NQ_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != device || bytes.size() < need) {
      bytes.allocate(std::max(need, bytes.size() + bytes.size() / 2));
      device = dev;
    }
    return bytes.get();
  }
};
thread_local Workspace t_workspace;

size_t align_up(size_t x) { return (x + 255) & ~size_t{255}; }

void launch_merge(const AssignParams& base, size_t nblocks, cudaStream_t stream, double* out_sum,
                  long long* out_count, double* out_scal) {
  const int outputs = 4 * base.k + 3;
  merge_partials_kernel<<<(outputs + 127) / 128, 128, 0, stream>>>(base.psum, base.pcount, base.pscal, nblocks,
                                                                  base.k, out_sum, out_count, out_scal);
  NQ_CUDA_CHECK_LAUNCH("merge_partials_kernel");
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// One codebook's pass prepared on the host: its table and the layout of its slice of the device workspace —
// table (4k) | partial sums (3k per CTA) | partial counts (k per CTA) | scalars | merged outputs.
struct Call {
  int k = 0;
  double lambda = 0, lmin = 0, span2 = 0;
  Shape shape{};
  std::vector<double> table;  // centres | code lengths | prefix minima | suffix minima of the code lengths
  size_t off_psum = 0, off_pcount = 0, off_pscal = 0, off_out = 0, off_outn = 0, bytes = 0;
};

Call prepare_call(const double* centers, const double* code_len, int k, double lambda, size_t nblocks) {
  NQ_CHECK(k >= 1, ErrorCode::kInvalidArgument, "assign_accumulate: k = " << k << " must be at least 1");
  NQ_CHECK(centers && code_len, ErrorCode::kInvalidArgument, "assign_accumulate: null codebook");
  Call c;
  c.k = k;
  c.lambda = lambda;
  const size_t kd = static_cast<size_t>(k);
  c.table.resize(4 * kd);
  std::copy(centers, centers + k, c.table.begin());
  std::copy(code_len, code_len + k, c.table.begin() + k);
  for (size_t j = 0; j < kd; ++j)
    c.table[2 * kd + j] = std::min(code_len[j], j ? c.table[2 * kd + j - 1] : quant::infinity());
  for (size_t j = kd; j-- > 0;)
    c.table[3 * kd + j] = std::min(code_len[j], j + 1 < kd ? c.table[3 * kd + j + 1] : quant::infinity());
  c.lmin = c.table[3 * kd];
  NQ_ASSERT_MSG(c.lmin < quant::infinity(), "assign_accumulate: every cluster is dead");
  for (int j = 0; j + 1 < k; ++j) NQ_ASSERT(centers[j] < centers[j + 1]);
  const double span = centers[k - 1] - centers[0];
  c.span2 = span * span;
  c.shape = choose_shape(k);
  c.off_psum = align_up(4 * kd * sizeof(double));
  c.off_pcount = align_up(c.off_psum + nblocks * 3 * kd * sizeof(double));
  c.off_pscal = align_up(c.off_pcount + nblocks * kd * sizeof(long long));
  c.off_out = align_up(c.off_pscal + nblocks * 3 * sizeof(double));
  c.off_outn = align_up(c.off_out + (3 * kd + 3) * sizeof(double));
  c.bytes = align_up(c.off_outn + kd * sizeof(long long));
  return c;
}

// Uploads the call's table into its workspace slice `ws` and returns the kernel's parameters.
AssignParams start_call(const Call& c, unsigned char* ws, const float* d_w, const float* d_h, int32_t* d_labels,
                        size_t n, size_t block, cudaStream_t stream) {
  NQ_CUDA_CHECK(cudaMemcpyAsync(ws, c.table.data(), c.table.size() * sizeof(double), cudaMemcpyHostToDevice, stream));
  AssignParams p{};
  p.w = d_w;
  p.h = d_h;
  p.labels = d_labels;
  p.n = n;
  p.block = block;
  p.centers = reinterpret_cast<const double*>(ws);
  p.code_len = p.centers + c.k;
  p.lmin_left = p.centers + 2 * c.k;
  p.lmin_right = p.centers + 3 * c.k;
  p.k = c.k;
  p.lambda = c.lambda;
  p.lmin = c.lmin;
  p.span2 = c.span2;
  p.psum = reinterpret_cast<double*>(ws + c.off_psum);
  p.pcount = reinterpret_cast<long long*>(ws + c.off_pcount);
  p.pscal = reinterpret_cast<double*>(ws + c.off_pscal);
  p.vec = aligned16(d_w) && (!d_h || aligned16(d_h)) && (!d_labels || aligned16(d_labels));
  p.table_in_smem = c.shape.table_in_smem;
  p.acc_in_smem = c.shape.acc_in_smem;
  return p;
}

// Merges the CTAs' partials of a launched call and copies the result into `out` (after the stream syncs).
struct Fetch {
  std::vector<double> sums;
  std::vector<long long> counts;
};
void finish_call(const Call& c, const AssignParams& p, unsigned char* ws, size_t nblocks, cudaStream_t stream,
                 Fetch& f) {
  const size_t kd = static_cast<size_t>(c.k);
  double* d_out = reinterpret_cast<double*>(ws + c.off_out);
  long long* d_outn = reinterpret_cast<long long*>(ws + c.off_outn);
  launch_merge(p, nblocks, stream, d_out, d_outn, d_out + 3 * kd);
  f.sums.resize(3 * kd + 3);
  f.counts.resize(kd);
  NQ_CUDA_CHECK(cudaMemcpyAsync(f.sums.data(), d_out, f.sums.size() * sizeof(double), cudaMemcpyDeviceToHost, stream));
  NQ_CUDA_CHECK(cudaMemcpyAsync(f.counts.data(), d_outn, kd * sizeof(long long), cudaMemcpyDeviceToHost, stream));
}
void unpack(const Call& c, const Fetch& f, quant::AssignAccum& out) {
  const size_t kd = static_cast<size_t>(c.k);
  out.reset(c.k);
  for (size_t j = 0; j < kd; ++j) {
    out.sum_h[j] = f.sums[j];
    out.sum_hw[j] = f.sums[kd + j];
    out.sum_w[j] = f.sums[2 * kd + j];
    out.count[j] = f.counts[j];
  }
  out.distortion = f.sums[3 * kd + 0];
  out.sq_error = f.sums[3 * kd + 1];
  out.cost = f.sums[3 * kd + 2];
}

void set_smem(const void* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    NQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace

void assign_accumulate_device(const float* d_w, const float* d_h, size_t n, const double* centers,
                              const double* code_len, int k, double lambda, int32_t* d_labels,
                              quant::AssignAccum& out, CUstream_st* stream) {
  bind_thread_device();
  const size_t block = quant::accum_block_size(n);
  const size_t nblocks = n ? (n + block - 1) / block : 0;
  const Call c = prepare_call(centers, code_len, k, lambda, nblocks);
  out.reset(k);
  if (n == 0) return;
  NQ_CHECK(d_w != nullptr, ErrorCode::kInvalidArgument, "assign_accumulate: null weights");
  unsigned char* ws = t_workspace.get(c.bytes);
  const AssignParams p = start_call(c, ws, d_w, d_h, d_labels, n, block, stream);
  set_smem(reinterpret_cast<const void*>(assign_accumulate_kernel), c.shape.smem_bytes);
  assign_accumulate_kernel<<<static_cast<unsigned>(nblocks), c.shape.warps * 32, c.shape.smem_bytes, stream>>>(p);
  NQ_CUDA_CHECK_LAUNCH("assign_accumulate_kernel");
  Fetch f;
  finish_call(c, p, ws, nblocks, stream, f);
  NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  unpack(c, f, out);
}

void assign_accumulate_multi_device(const float* d_w, const float* d_h, size_t n, const quant::CodebookBatch& books,
                                    std::vector<quant::AssignAccum>& out, CUstream_st* stream) {
  bind_thread_device();
  const int m_all = books.size();
  out.resize(static_cast<size_t>(m_all));
  const size_t block = quant::accum_block_size(n);
  const size_t nblocks = n ? (n + block - 1) / block : 0;
  std::vector<Call> calls;
  for (int m = 0; m < m_all; ++m) {
    const size_t o = static_cast<size_t>(books.offsets[static_cast<size_t>(m)]);
    calls.push_back(prepare_call(books.centers.data() + o, books.code_len.data() + o, books.k(m),
                                 books.lambda[static_cast<size_t>(m)], nblocks));
    out[static_cast<size_t>(m)].reset(books.k(m));
  }
  if (n == 0 || m_all == 0) return;
  NQ_CHECK(d_w != nullptr, ErrorCode::kInvalidArgument, "assign_accumulate: null weights");
  // Codebooks go together when their launch shapes agree (the shape fixes each one's summation tree, so it must
  // be the one the single-codebook kernel would use); the others, and groups beyond kMaxBatch, launch apart.
  std::vector<size_t> offset(calls.size());
  size_t total = 0;
  for (size_t m = 0; m < calls.size(); ++m) {
    offset[m] = total;
    total += calls[m].bytes;
  }
  unsigned char* ws = t_workspace.get(total);
  std::vector<AssignParams> params(calls.size());
  for (size_t m = 0; m < calls.size(); ++m)
    params[m] = start_call(calls[m], ws + offset[m], d_w, d_h, nullptr, n, block, stream);
  std::vector<char> launched(calls.size(), 0);
  for (size_t m = 0; m < calls.size(); ++m) {
    if (launched[m]) continue;
    BatchParams bp{};
    bp.m = 0;
    size_t smem = 0;
    for (size_t j = m; j < calls.size() && bp.m < kMaxBatch; ++j) {
      const Shape& a = calls[m].shape;
      const Shape& b = calls[j].shape;
      if (launched[j] || a.warps != b.warps || a.table_in_smem != b.table_in_smem || a.acc_in_smem != b.acc_in_smem)
        continue;
      bp.p[bp.m++] = params[j];
      smem = std::max(smem, b.smem_bytes);
      launched[j] = 1;
    }
    set_smem(reinterpret_cast<const void*>(assign_accumulate_batch_kernel), smem);
    const size_t grid = nblocks * static_cast<size_t>(bp.m);  // ≤ 4096 blocks × 16 codebooks
    assign_accumulate_batch_kernel<<<static_cast<unsigned>(grid), calls[m].shape.warps * 32, smem, stream>>>(bp);
    NQ_CUDA_CHECK_LAUNCH("assign_accumulate_batch_kernel");
  }
  std::vector<Fetch> f(calls.size());
  for (size_t m = 0; m < calls.size(); ++m) finish_call(calls[m], params[m], ws + offset[m], nblocks, stream, f[m]);
  NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (size_t m = 0; m < calls.size(); ++m) unpack(calls[m], f[m], out[m]);
}

void assign_accumulate(const float* w, const float* h, size_t n, const double* centers, const double* code_len,
                       int k, double lambda, int32_t* labels, quant::AssignAccum& out) {
  bind_thread_device();
  if (n == 0) {  // validation only; no device memory needed
    assign_accumulate_device(nullptr, nullptr, 0, centers, code_len, k, lambda, nullptr, out);
    return;
  }
  NQ_CHECK(w != nullptr, ErrorCode::kInvalidArgument, "assign_accumulate: null weights");
  DeviceBuffer<float> dw, dh;
  DeviceBuffer<int32_t> dl(labels ? n : 0);
  dw.upload(w, n);
  if (h) dh.upload(h, n);
  assign_accumulate_device(dw.get(), h ? dh.get() : nullptr, n, centers, code_len, k, lambda,
                           labels ? dl.get() : nullptr, out);
  if (labels) dl.download(labels, n);
}

namespace {

// quant_ops.h (d): w and h uploaded once; every pass writes its labels into a device array that is downloaded
// only when the driver asks for them.
class CudaResidentValues final : public quant::ResidentValues {
 public:
  CudaResidentValues(const float* w, const float* h, size_t n) : n_(n) {
    NQ_CHECK(n == 0 || w != nullptr, ErrorCode::kInvalidArgument, "resident values: null weights");
    dw_.upload(w, n);
    if (h) dh_.upload(h, n);
    dl_.allocate(n);
  }
  void assign_accumulate(const double* centers, const double* code_len, int k, double lambda,
                         quant::AssignAccum& out) override {
    assign_accumulate_device(dw_.get(), dh_.size() ? dh_.get() : nullptr, n_, centers, code_len, k, lambda,
                             dl_.get(), out);
    has_labels_ = true;
  }
  void assign_accumulate_multi(const quant::CodebookBatch& books, std::vector<quant::AssignAccum>& out) override {
    assign_accumulate_multi_device(dw_.get(), dh_.size() ? dh_.get() : nullptr, n_, books, out);
  }
  std::vector<int32_t> take_labels() override {
    std::vector<int32_t> labels(has_labels_ ? n_ : 0);
    if (has_labels_) dl_.download(labels.data(), n_);
    has_labels_ = false;
    return labels;
  }

 private:
  size_t n_;
  DeviceBuffer<float> dw_, dh_;
  DeviceBuffer<int32_t> dl_;
  bool has_labels_ = false;
};

}  // namespace

std::unique_ptr<quant::ResidentValues> make_resident_values(const float* w, const float* h, size_t n) {
  bind_thread_device();
  return std::make_unique<CudaResidentValues>(w, h, n);
}

}  // namespace nq::cuda
