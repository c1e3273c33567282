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
// For k ≤ 32 (passes of ≥ 256·k values) a five-step search over float thresholds of the nearest-centre rule
// (quant/nearest_thresholds.h) replaces the fp64 binary search and comparison that find the argmin's start. At
// λ = 0 with every cluster live that count is the label itself, except for the values the thresholds cannot
// settle (a midpoint's float or two under an importance, importances outside [FLT_MIN, FLT_MAX], values beyond
// safe_max), which take the fp64 argmin. The labels are the same either way, so the sums are the same bits.
//
// Accumulation (determinism, no float atomics): one CTA per accumulation block of accum_block_size(n) elements
// (a function of n alone). For k ≤ 32 each thread owns a shared-memory copy of the k accumulators and adds its
// own elements in turn; the copies are folded in a fixed order at the end (assign_block.cuh,
// assign_block_private). Above 32 each warp owns one copy; inside a warp, lanes that picked the same cluster are
// grouped with __match_any_sync and the group's leader adds the members' values in lane order, and the warps'
// copies are added in warp order. Either way the CTA writes a partial row (fp64), and a second kernel adds the
// partial rows in block order. The reduction tree depends on (n, k) only, so results are bitwise identical run
// to run and across launch-independent device properties.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "assign_accumulate.cuh"
#include "assign_block.cuh"
#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

using namespace assign_impl;  // the shared device code (assign_block.cuh)

template <bool kPrivate>
__global__ void __launch_bounds__(kMaxWarps * 32, min_blocks_per_sm(kPrivate)) assign_accumulate_kernel(AssignParams p) {
  assign_block<false, kPrivate>(p, blockIdx.x);
}

// Several codebooks over the same data (ResidentValues::assign_accumulate_multi): CTA x takes data block x / m
// under codebook x % m, so the m CTAs of a block are scheduled back to back and all but the first read it from
// L2. Each CTA does exactly the single-codebook kernel's work, so every codebook's sums keep their bits.
constexpr int kMaxBatch = 16;
struct BatchParams {
  AssignParams p[kMaxBatch];
  int m;
};
template <bool kPrivate>
__global__ void __launch_bounds__(kMaxWarps * 32, min_blocks_per_sm(kPrivate))
    assign_accumulate_batch_kernel(BatchParams bp) {
  const unsigned m = static_cast<unsigned>(bp.m);
  assign_block</*kReuse=*/true, kPrivate>(bp.p[blockIdx.x % m], blockIdx.x / m);
}

// One thread per output value, adding the CTAs' partials in block order.
__global__ void merge_partials_kernel(const double* __restrict__ psum, const long long* __restrict__ pcount,
                                      const double* __restrict__ pscal, size_t nblocks, int k,
                                      double* __restrict__ out_sum, long long* __restrict__ out_count,
                                      double* __restrict__ out_scal) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  fold_partials(psum, pcount, pscal, nblocks, k, idx, out_sum, out_count, out_scal);
}

// Device workspace reused across calls on this thread (grow-only), so a Lloyd loop does not pay cudaMalloc.
struct Workspace {
  int device = -1;
  DeviceBuffer<unsigned char> bytes;
  unsigned char* get(size_t need) {
    int dev = 0;
    NQ_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != device && bytes.size() > 0) {  // the old buffer is freed on the device that holds it
      NQ_CUDA_CHECK(cudaSetDevice(device));
      bytes.allocate(0);
      NQ_CUDA_CHECK(cudaSetDevice(dev));
    }
    if (dev != device || bytes.size() < need) {
      bytes.allocate(std::max(need, bytes.size() + bytes.size() / 2));
      device = dev;
    }
    return bytes.get();
  }
};
thread_local Workspace t_workspace;

void launch_merge(const AssignParams& base, size_t nblocks, cudaStream_t stream, double* out_sum,
                  long long* out_count, double* out_scal) {
  const int outputs = 4 * base.k + 3;
  merge_partials_kernel<<<(outputs + 127) / 128, 128, 0, stream>>>(base.psum, base.pcount, base.pscal, nblocks,
                                                                  base.k, out_sum, out_count, out_scal);
  NQ_CUDA_CHECK_LAUNCH("merge_partials_kernel");
}

// One codebook's pass prepared on the host: its table (assign_block.cuh prepare_table) and the layout of its slice
// of the device workspace — table (4k) | partial sums (3k per CTA) | partial counts (k per CTA) | scalars | merged
// outputs.
struct Call : CodebookTable {
  // centres | code lengths | prefix minima | suffix minima of the code lengths, then (when `thresholds`) the λ = 0
  // threshold table as kThreshFloats floats
  std::vector<double> table;
  bool thresholds = false;
  float safe_max = 0;
  bool thresh_labels = false;
  size_t off_psum = 0, off_pcount = 0, off_pscal = 0, off_out = 0, off_outn = 0, bytes = 0;
};

Call prepare_call(const double* centers, const double* code_len, int k, double lambda, size_t n, size_t nblocks) {
  Call c;
  const size_t kd = static_cast<size_t>(std::max(k, 0));
  c.table.resize(4 * kd + kThreshFloats / 2);
  static_cast<CodebookTable&>(c) = prepare_table(centers, code_len, k, lambda, c.table.data());
  c.thresholds = fill_thresholds(centers, code_len, k, lambda, n, c.shape,
                                 reinterpret_cast<float*>(c.table.data() + 4 * kd), c.safe_max, c.thresh_labels);
  if (!c.thresholds) c.table.resize(4 * kd);
  c.off_psum = align_up(c.table.size() * sizeof(double));
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
  point_at_table(p, reinterpret_cast<const double*>(ws), c.k);
  p.lambda = c.lambda;
  p.lmin = c.lmin;
  p.span2 = c.span2;
  p.psum = reinterpret_cast<double*>(ws + c.off_psum);
  p.pcount = reinterpret_cast<long long*>(ws + c.off_pcount);
  p.pscal = reinterpret_cast<double*>(ws + c.off_pscal);
  p.vec = vector_access(p);
  p.table_in_smem = c.shape.table_in_smem;
  p.acc_in_smem = c.shape.acc_in_smem;
  p.private_acc = c.shape.private_acc;
  p.thresh = c.thresholds ? reinterpret_cast<const float*>(reinterpret_cast<const double*>(ws) + 4 * c.k) : nullptr;
  p.safe_max = c.safe_max;
  p.thresh_labels = c.thresh_labels;
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
  unpack_accum(f.sums.data(), f.counts.data(), c.k, out);
}

}  // namespace

void assign_accumulate_device(const float* d_w, const float* d_h, size_t n, const double* centers,
                              const double* code_len, int k, double lambda, int32_t* d_labels,
                              quant::AssignAccum& out, CUstream_st* stream) {
  bind_thread_device();
  const size_t block = quant::accum_block_size(n);
  const size_t nblocks = n ? (n + block - 1) / block : 0;
  const Call c = prepare_call(centers, code_len, k, lambda, n, nblocks);
  out.reset(k);
  if (n == 0) return;
  NQ_CHECK(d_w != nullptr, ErrorCode::kInvalidArgument, "assign_accumulate: null weights");
  unsigned char* ws = t_workspace.get(c.bytes);
  const AssignParams p = start_call(c, ws, d_w, d_h, d_labels, n, block, stream);
  const dim3 grid(static_cast<unsigned>(nblocks)), threads(static_cast<unsigned>(c.shape.warps * 32));
  if (c.shape.private_acc) {
    set_smem(reinterpret_cast<const void*>(assign_accumulate_kernel<true>), c.shape.smem_bytes);
    assign_accumulate_kernel<true><<<grid, threads, c.shape.smem_bytes, stream>>>(p);
  } else {
    set_smem(reinterpret_cast<const void*>(assign_accumulate_kernel<false>), c.shape.smem_bytes);
    assign_accumulate_kernel<false><<<grid, threads, c.shape.smem_bytes, stream>>>(p);
  }
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
                                 books.lambda[static_cast<size_t>(m)], n, nblocks));
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
      if (launched[j] || !same_shape(calls[m].shape, calls[j].shape)) continue;
      bp.p[bp.m++] = params[j];
      smem = std::max(smem, calls[j].shape.smem_bytes);
      launched[j] = 1;
    }
    const size_t grid = nblocks * static_cast<size_t>(bp.m);  // ≤ 4096 blocks × 16 codebooks
    const dim3 g(static_cast<unsigned>(grid)), threads(static_cast<unsigned>(calls[m].shape.warps * 32));
    if (calls[m].shape.private_acc) {
      set_smem(reinterpret_cast<const void*>(assign_accumulate_batch_kernel<true>), smem);
      assign_accumulate_batch_kernel<true><<<g, threads, smem, stream>>>(bp);
    } else {
      set_smem(reinterpret_cast<const void*>(assign_accumulate_batch_kernel<false>), smem);
      assign_accumulate_batch_kernel<false><<<g, threads, smem, stream>>>(bp);
    }
    NQ_CUDA_CHECK_LAUNCH("assign_accumulate_batch_kernel");
  }
  std::vector<Fetch> f(calls.size());
  for (size_t m = 0; m < calls.size(); ++m) finish_call(calls[m], params[m], ws + offset[m], nblocks, stream, f[m]);
  NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (size_t m = 0; m < calls.size(); ++m) unpack(calls[m], f[m], out[m]);
}

void set_fused_strategy(const FusedStrategy& s) {
  g_private_accumulators.store(s.private_accumulators);
  g_threshold_table.store(s.threshold_table);
  g_private_warps.store(s.private_warps);
}

FusedStrategy fused_strategy() {
  return {g_private_accumulators.load(), g_threshold_table.load(), g_private_warps.load()};
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

}  // namespace nq::cuda
