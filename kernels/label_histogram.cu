// CUDA label histogram (quant_ops.h (c)): counts per cluster. Integer atomics are exact and order-free, so the
// result is deterministic: per-CTA shared-memory bins (32-bit) flushed once per CTA to 64-bit global bins.
// A label ≥ k raises a device flag that the entry point turns into an internal error.
#include <algorithm>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSmemBins = 12 * 1024;  // 48 KB of 32-bit bins

__global__ void __launch_bounds__(kThreads) label_histogram_kernel(const int32_t* __restrict__ labels, size_t n,
                                                                    int k, bool smem_bins,
                                                                    unsigned long long* __restrict__ counts,
                                                                    int* __restrict__ bad) {
  extern __shared__ unsigned int bins[];
  if (smem_bins)
    for (int j = threadIdx.x; j < k; j += kThreads) bins[j] = 0;
  __syncthreads();
  bool saw_bad = false;
  for (size_t i = blockIdx.x * static_cast<size_t>(kThreads) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * kThreads) {
    const int32_t l = __ldcs(labels + i);
    if (l >= k) saw_bad = true;
    else if (l >= 0) {
      if (smem_bins) atomicAdd(&bins[l], 1u);
      else atomicAdd(&counts[l], 1ull);
    }
  }
  if (saw_bad) atomicExch(bad, 1);
  __syncthreads();
  if (smem_bins)
    for (int j = threadIdx.x; j < k; j += kThreads)
      if (bins[j]) atomicAdd(&counts[j], static_cast<unsigned long long>(bins[j]));
}

void launch_label_histogram(const int32_t* d_labels, size_t n, int k, unsigned long long* d_counts, int* d_bad,
                            cudaStream_t stream) {
  int dev = 0, sms = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&dev));
  NQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  // Per-CTA 32-bit bins cannot overflow: a CTA sees at most n / grid + ... ≤ 2^32 − 1 labels for grid ≥ n / 2^31.
  const size_t min_grid = n / (size_t{1} << 31) + 1;
  const size_t grid = std::max(min_grid, std::min<size_t>((n + kThreads - 1) / kThreads, static_cast<size_t>(sms) * 8));
  const bool smem_bins = k <= kMaxSmemBins;
  const size_t smem = smem_bins ? static_cast<size_t>(k) * sizeof(unsigned int) : 0;
  label_histogram_kernel<<<static_cast<unsigned>(grid), kThreads, smem, stream>>>(d_labels, n, k, smem_bins, d_counts,
                                                                                 d_bad);
  NQ_CUDA_CHECK_LAUNCH("label_histogram_kernel");
}

}  // namespace

void label_histogram(const int32_t* labels, size_t n, int k, int64_t* counts) {
  bind_thread_device();
  NQ_CHECK(k >= 1, ErrorCode::kInvalidArgument, "label_histogram: k = " << k << " must be at least 1");
  std::fill(counts, counts + k, int64_t{0});
  if (n == 0) return;
  DeviceBuffer<int32_t> dl;
  dl.upload(labels, n);
  DeviceBuffer<unsigned long long> dc(static_cast<size_t>(k));
  DeviceBuffer<int> bad(1);
  dc.zero();
  bad.zero();
  launch_label_histogram(dl.get(), n, k, dc.get(), bad.get(), 0);
  std::vector<unsigned long long> host(static_cast<size_t>(k));
  dc.download(host.data(), host.size());
  int flag = 0;
  bad.download(&flag, 1);
  NQ_ASSERT_MSG(flag == 0, "label_histogram: a label is >= k = " << k);
  for (int j = 0; j < k; ++j) counts[j] = static_cast<int64_t>(host[static_cast<size_t>(j)]);
}

}  // namespace nq::cuda
