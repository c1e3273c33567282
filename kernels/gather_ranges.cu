// Range gather for the binned ECSQ pass (gather_ranges.cuh): one warp per range, its lanes striding over the range,
// so ranges of 8 values and of thousands both keep the loads coalesced.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_check.cuh"
#include "gather_ranges.cuh"

namespace nq::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr size_t kMaxBlocks = 1024;  // a grid-stride loop over ranges beyond this

__global__ void gather_ranges_kernel(const float* __restrict__ w, const float* __restrict__ h,
                                     const unsigned long long* __restrict__ spec, unsigned long long ranges,
                                     float* __restrict__ out_w, float* __restrict__ out_h) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned long long warps = static_cast<unsigned long long>(gridDim.x) * kWarpsPerBlock;
  for (unsigned long long r = static_cast<unsigned long long>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
       r < ranges; r += warps) {
    const unsigned long long src = spec[r], dst = spec[ranges + r], len = spec[ranges + r + 1] - dst;
    for (unsigned long long i = lane; i < len; i += 32) {
      out_w[dst + i] = w[src + i];
      out_h[dst + i] = h[src + i];
    }
  }
}

}  // namespace

void gather_ranges_device(const float* d_w, const float* d_h, const uint64_t* d_spec, size_t ranges, float* d_out_w,
                          float* d_out_h) {
  if (ranges == 0) return;
  const size_t blocks = std::min(kMaxBlocks, (ranges + kWarpsPerBlock - 1) / kWarpsPerBlock);
  gather_ranges_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32>>>(
      d_w, d_h, reinterpret_cast<const unsigned long long*>(d_spec), ranges, d_out_w, d_out_h);
  NQ_CUDA_CHECK_LAUNCH("gather_ranges_kernel");
}

}  // namespace nq::cuda
