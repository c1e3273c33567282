// Op (g) on the GPU: which weights to prune (quant_ops.h PruneArrays). The threshold is the count-th smallest
// score, found by radix selection on the scores' IEEE bits (non-negative doubles order as unsigned integers):
// eight passes over (w, h), each a 256-bin histogram of one byte of the keys that still match the chosen prefix —
// integer counts only, so the answer is exact and no score array is ever stored. Ties at the threshold go to the
// earliest positions: per-tile tie counts, a device scan, and a block scan inside each tile give every tie its
// flat rank.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/radix_select.h"

namespace nq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 16;
constexpr int kTile = kThreads * kItems;

__device__ __forceinline__ unsigned long long score_key(const float* w, const float* h, size_t i) {
  return static_cast<unsigned long long>(__double_as_longlong(quant::prune_score(w[i], h ? h[i] : 1.0)));
}

__global__ void __launch_bounds__(kThreads) digit_histogram_kernel(const float* w, const float* h, size_t n,
                                                                   unsigned long long prefix, unsigned long long mask,
                                                                   int shift, unsigned long long* hist) {
  __shared__ unsigned int local[256];
  for (int d = threadIdx.x; d < 256; d += kThreads) local[d] = 0u;
  __syncthreads();
  for (size_t i = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * kThreads) {
    const unsigned long long key = score_key(w, h, i);
    if ((key & mask) == prefix) atomicAdd(&local[(key >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (int d = threadIdx.x; d < 256; d += kThreads)
    if (local[d]) atomicAdd(&hist[d], static_cast<unsigned long long>(local[d]));
}

__global__ void __launch_bounds__(kThreads) tile_ties_kernel(const float* w, const float* h, size_t n,
                                                             unsigned long long thr, unsigned long long* ties) {
  __shared__ unsigned int count;
  if (threadIdx.x == 0) count = 0u;
  __syncthreads();
  const size_t i0 = static_cast<size_t>(blockIdx.x) * kTile;
  unsigned int mine = 0;
  for (int t = threadIdx.x; t < kTile; t += kThreads) {
    const size_t i = i0 + t;
    if (i < n) mine += score_key(w, h, i) == thr;
  }
  if (mine) atomicAdd(&count, mine);
  __syncthreads();
  if (threadIdx.x == 0) ties[blockIdx.x] = count;
}

__global__ void __launch_bounds__(kThreads) mark_kernel(const float* w, const float* h, size_t n,
                                                        unsigned long long thr, unsigned long long ties_left,
                                                        const unsigned long long* tie_off, uint8_t* out) {
  using Scan = cub::BlockScan<unsigned int, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  const size_t i0 = static_cast<size_t>(blockIdx.x) * kTile + static_cast<size_t>(threadIdx.x) * kItems;
  unsigned long long key[kItems];
  unsigned int mine = 0;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {  // blocked: thread t holds positions t·kItems …, in flat order
    key[k] = i0 + k < n ? score_key(w, h, i0 + k) : ~0ull;
    mine += key[k] == thr;
  }
  unsigned int before;
  Scan(temp).ExclusiveSum(mine, before);
  unsigned long long rank = tie_off[blockIdx.x] + before;
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    if (i0 + k >= n) break;
    bool pruned = key[k] < thr;
    if (key[k] == thr) pruned = rank++ < ties_left;
    out[i0 + k] = pruned ? 1 : 0;
  }
}

}  // namespace

void select_pruned(const quant::PruneArrays& a, int64_t count) {
  bind_thread_device();
  const size_t arrays = a.w.size();
  NQ_ASSERT(a.n.size() == arrays && a.mask.size() == arrays && (a.h.empty() || a.h.size() == arrays));
  size_t total = 0;
  for (const size_t n : a.n) total += n;
  NQ_CHECK(count >= 0 && static_cast<size_t>(count) <= total, ErrorCode::kInvalidArgument,
           "select_pruned: cannot prune " << count << " of " << total << " values");
  for (size_t t = 0; t < arrays; ++t) std::fill(a.mask[t], a.mask[t] + a.n[t], uint8_t{0});
  if (count == 0) return;
  // The arrays back to back in flat order.
  DeviceBuffer<float> dw(total), dh(a.h.empty() ? 0 : total);
  size_t off = 0;
  for (size_t t = 0; t < arrays; ++t) {
    if (a.n[t]) {
      NQ_CUDA_CHECK(cudaMemcpy(dw.get() + off, a.w[t], a.n[t] * sizeof(float), cudaMemcpyHostToDevice));
      if (!a.h.empty())
        NQ_CUDA_CHECK(cudaMemcpy(dh.get() + off, a.h[t], a.n[t] * sizeof(float), cudaMemcpyHostToDevice));
    }
    off += a.n[t];
  }
  const float* h = a.h.empty() ? nullptr : dh.get();
  // Radix selection, most significant byte first: k is the rank still sought among keys matching the prefix.
  int dev = 0, sms = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&dev));
  NQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const size_t grid =
      std::max<size_t>(1, std::min<size_t>((total + kThreads - 1) / kThreads, static_cast<size_t>(sms) * 8));
  DeviceBuffer<unsigned long long> dhist(256);
  const quant::RadixSelection sel = quant::radix_select(
      static_cast<uint64_t>(count), [&](uint64_t prefix, uint64_t mask, int shift, uint64_t* hist) {
        NQ_CUDA_CHECK(cudaMemset(dhist.get(), 0, 256 * sizeof(unsigned long long)));
        digit_histogram_kernel<<<static_cast<unsigned>(grid), kThreads>>>(dw.get(), h, total, prefix, mask, shift,
                                                                          dhist.get());
        NQ_CUDA_CHECK_LAUNCH("digit_histogram_kernel");
        NQ_CUDA_CHECK(cudaMemcpy(hist, dhist.get(), 256 * sizeof(uint64_t), cudaMemcpyDeviceToHost));
      });
  const unsigned long long thr = sel.key, ties_left = sel.rank;  // ties at thr still to prune (≥ 1)
  const size_t tiles = (total + kTile - 1) / kTile;
  DeviceBuffer<unsigned long long> dties(tiles + 1), doff(tiles + 1);
  NQ_CUDA_CHECK(cudaMemset(dties.get() + tiles, 0, sizeof(unsigned long long)));
  tile_ties_kernel<<<static_cast<unsigned>(tiles), kThreads>>>(dw.get(), h, total, thr, dties.get());
  NQ_CUDA_CHECK_LAUNCH("tile_ties_kernel");
  size_t temp_bytes = 0;
  NQ_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, dties.get(), doff.get(), tiles + 1));
  DeviceBuffer<unsigned char> temp(temp_bytes);
  NQ_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.get(), temp_bytes, dties.get(), doff.get(), tiles + 1));
  DeviceBuffer<uint8_t> dmask(total);
  mark_kernel<<<static_cast<unsigned>(tiles), kThreads>>>(dw.get(), h, total, thr, ties_left, doff.get(), dmask.get());
  NQ_CUDA_CHECK_LAUNCH("mark_kernel");
  off = 0;
  for (size_t t = 0; t < arrays; ++t) {
    if (a.n[t]) NQ_CUDA_CHECK(cudaMemcpy(a.mask[t], dmask.get() + off, a.n[t], cudaMemcpyDeviceToHost));
    off += a.n[t];
  }
}

}  // namespace nq::cuda
