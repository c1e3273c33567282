// CUDA block-granular prefix sums over sorted data (quant_ops.h (b2)): ph, phx, phx2 in fp64.
// Deterministic without atomics or look-back: (A) block sums — one thread per block in element order when the
// block is short (bitwise the CPU's block sums), else one CTA per block with a fixed shuffle tree; (B) each chunk
// of 2048 items is scanned by a CUB BlockScan (a fixed tree for a fixed CTA size) and its last inclusive value
// kept; (C) one thread adds the chunk totals in order; (D) every chunk is re-scanned identically and offset.
// (B) and (D) run the same code on the same input, so chunk boundaries are bitwise consistent. The order of
// additions differs from the CPU's sequential sums (last-bit differences allowed by the contract).
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

namespace qf = ::nq::quant;

constexpr int kThreads = 256;
constexpr int kItems = 8;
constexpr size_t kChunk = static_cast<size_t>(kThreads) * kItems;
constexpr size_t kSequentialBlock = 1024;  // blocks shorter than this are summed by one thread, in order

struct Triple {
  double a, b, c;
};
struct TripleSum {
  __device__ __forceinline__ Triple operator()(const Triple& x, const Triple& y) const {
    return {qf::fadd(x.a, y.a), qf::fadd(x.b, y.b), qf::fadd(x.c, y.c)};
  }
};

// The scanned items: element terms (h, h·x, h·x²) when block == 1, else the precomputed block sums.
struct ItemSource {
  const float* ws;
  const float* hs;  // nullable: h ≡ 1
  double shift;
  const Triple* sums;  // block sums, or nullptr for block == 1
  size_t count;
  __device__ __forceinline__ Triple operator()(size_t i) const {
    if (i >= count) return {0.0, 0.0, 0.0};
    if (sums) return sums[i];
    const double hv = hs ? static_cast<double>(hs[i]) : 1.0;
    const double x = qf::fadd(static_cast<double>(ws[i]), -shift);
    const double hx = qf::fmul(hv, x);
    return {hv, hx, qf::fmul(hx, x)};
  }
};

__global__ void block_sums_sequential_kernel(const float* __restrict__ ws, const float* __restrict__ hs, size_t n,
                                             double shift, size_t block, size_t nb, Triple* __restrict__ out) {
  const size_t b = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (b >= nb) return;
  const size_t i0 = b * block, i1 = min(n, i0 + block);
  qf::Moments m;
  for (size_t i = i0; i < i1; ++i) qf::add_moments(m, ws[i], hs ? static_cast<double>(hs[i]) : 1.0, shift);
  out[b] = {m.s0, m.s1, m.s2};
}

__global__ void __launch_bounds__(kThreads) block_sums_cta_kernel(const float* __restrict__ ws,
                                                                   const float* __restrict__ hs, size_t n,
                                                                   double shift, size_t block,
                                                                   Triple* __restrict__ out) {
  __shared__ Triple warp_part[kThreads / 32];
  const size_t b = blockIdx.x;
  const size_t i0 = b * block, i1 = min(n, i0 + block);
  qf::Moments m;  // the same products as every other path, never contracted into FMAs
  for (size_t i = i0 + threadIdx.x; i < i1; i += kThreads)
    qf::add_moments(m, ws[i], hs ? static_cast<double>(hs[i]) : 1.0, shift);
  double a = m.s0, s1 = m.s1, s2 = m.s2;
  for (int off = 16; off > 0; off >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, off);
    s1 += __shfl_down_sync(0xffffffffu, s1, off);
    s2 += __shfl_down_sync(0xffffffffu, s2, off);
  }
  if ((threadIdx.x & 31) == 0) warp_part[threadIdx.x >> 5] = {a, s1, s2};
  __syncthreads();
  if (threadIdx.x == 0) {
    Triple t{0.0, 0.0, 0.0};
    for (int v = 0; v < kThreads / 32; ++v) t = TripleSum()(t, warp_part[v]);
    out[b] = t;
  }
}

using BlockScanT = cub::BlockScan<Triple, kThreads>;

// Inclusive scan of one chunk in a blocked arrangement (thread t holds items t·kItems ..).
__device__ __forceinline__ void scan_chunk(const ItemSource& src, size_t chunk, Triple (&v)[kItems],
                                           typename BlockScanT::TempStorage& temp) {
  const size_t base = chunk * kChunk + static_cast<size_t>(threadIdx.x) * kItems;
#pragma unroll
  for (int i = 0; i < kItems; ++i) v[i] = src(base + i);
  BlockScanT(temp).InclusiveScan(v, v, TripleSum());
}

__global__ void __launch_bounds__(kThreads) chunk_totals_kernel(ItemSource src, Triple* __restrict__ totals) {
  __shared__ typename BlockScanT::TempStorage temp;
  Triple v[kItems];
  scan_chunk(src, blockIdx.x, v, temp);
  if (threadIdx.x == kThreads - 1) totals[blockIdx.x] = v[kItems - 1];  // padding items are zeros
}

// offsets[c] = Σ_{c' < c} totals[c'], added in chunk order by one thread.
__global__ void chunk_offsets_kernel(const Triple* __restrict__ totals, size_t chunks, Triple* __restrict__ offsets) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  Triple run{0.0, 0.0, 0.0};
  for (size_t c = 0; c < chunks; ++c) {
    offsets[c] = run;
    run = TripleSum()(run, totals[c]);
  }
}

__global__ void __launch_bounds__(kThreads) chunk_scan_kernel(ItemSource src, const Triple* __restrict__ offsets,
                                                              double* __restrict__ ph, double* __restrict__ phx,
                                                              double* __restrict__ phx2) {
  __shared__ typename BlockScanT::TempStorage temp;
  Triple v[kItems];
  scan_chunk(src, blockIdx.x, v, temp);
  const Triple off = offsets[blockIdx.x];
  const size_t base = blockIdx.x * kChunk + static_cast<size_t>(threadIdx.x) * kItems;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const size_t idx = base + i;
    if (idx < src.count) {
      const Triple t = TripleSum()(off, v[i]);
      ph[idx + 1] = t.a;
      phx[idx + 1] = t.b;
      phx2[idx + 1] = t.c;
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) ph[0] = phx[0] = phx2[0] = 0.0;
}

// d_ph/d_phx/d_phx2: device arrays of nb + 1 entries.
void launch_prefix_sums(const float* d_ws, const float* d_hs, size_t n, double shift, size_t block, double* d_ph,
                        double* d_phx, double* d_phx2, cudaStream_t stream) {
  const size_t nb = (n + block - 1) / block;
  DeviceBuffer<Triple> sums;
  ItemSource src{d_ws, d_hs, shift, nullptr, nb};
  if (block > 1) {
    sums.allocate(nb);
    if (block < kSequentialBlock) {
      block_sums_sequential_kernel<<<static_cast<unsigned>((nb + 127) / 128), 128, 0, stream>>>(
          d_ws, d_hs, n, shift, block, nb, sums.get());
      NQ_CUDA_CHECK_LAUNCH("block_sums_sequential_kernel");
    } else {
      NQ_CHECK(nb <= 0x7fffffffu, ErrorCode::kInvalidArgument, "prefix_sums: too many blocks");
      block_sums_cta_kernel<<<static_cast<unsigned>(nb), kThreads, 0, stream>>>(d_ws, d_hs, n, shift, block,
                                                                                 sums.get());
      NQ_CUDA_CHECK_LAUNCH("block_sums_cta_kernel");
    }
    src.sums = sums.get();
  }
  const size_t chunks = (nb + kChunk - 1) / kChunk;
  NQ_CHECK(chunks <= 0x7fffffffu, ErrorCode::kInvalidArgument, "prefix_sums: input too large");
  DeviceBuffer<Triple> totals(chunks), offsets(chunks);
  chunk_totals_kernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(src, totals.get());
  NQ_CUDA_CHECK_LAUNCH("chunk_totals_kernel");
  chunk_offsets_kernel<<<1, 1, 0, stream>>>(totals.get(), chunks, offsets.get());
  NQ_CUDA_CHECK_LAUNCH("chunk_offsets_kernel");
  chunk_scan_kernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(src, offsets.get(), d_ph, d_phx, d_phx2);
  NQ_CUDA_CHECK_LAUNCH("chunk_scan_kernel");
  NQ_CUDA_CHECK(cudaStreamSynchronize(stream));  // the scratch buffers are freed on return
}

}  // namespace

void prefix_sums(const float* ws, const float* hs, size_t n, double shift, size_t block, double* ph, double* phx,
                 double* phx2) {
  bind_thread_device();
  NQ_CHECK(block >= 1, ErrorCode::kInvalidArgument, "prefix_sums: block must be at least 1");
  NQ_CHECK(ph && phx && phx2, ErrorCode::kInvalidArgument, "prefix_sums: null output");
  if (n == 0) {
    ph[0] = phx[0] = phx2[0] = 0.0;
    return;
  }
  const size_t nb = (n + block - 1) / block;
  DeviceBuffer<float> dws, dhs;
  dws.upload(ws, n);
  if (hs) dhs.upload(hs, n);
  DeviceBuffer<double> out(3 * (nb + 1));
  launch_prefix_sums(dws.get(), hs ? dhs.get() : nullptr, n, shift, block, out.get(), out.get() + (nb + 1),
                     out.get() + 2 * (nb + 1), 0);
  NQ_CUDA_CHECK(cudaMemcpy(ph, out.get(), (nb + 1) * sizeof(double), cudaMemcpyDeviceToHost));
  NQ_CUDA_CHECK(cudaMemcpy(phx, out.get() + (nb + 1), (nb + 1) * sizeof(double), cudaMemcpyDeviceToHost));
  NQ_CUDA_CHECK(cudaMemcpy(phx2, out.get() + 2 * (nb + 1), (nb + 1) * sizeof(double), cudaMemcpyDeviceToHost));
}

}  // namespace nq::cuda
