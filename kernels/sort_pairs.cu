// CUDA stable sort of (w, h) pairs by w (quant_ops.h (b1)): CUB DeviceRadixSort on the float keys, whose bit
// twiddling orders −0 before +0 and which is stable, exactly like the CPU op's LSD radix sort.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

__global__ void fill_ones_kernel(float* __restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = 1.0f;
}

// keys/values: device buffers of n entries; h_in nullable (values = 1).
void launch_sort_pairs(const float* d_w, const float* d_h, size_t n, float* d_ws, float* d_hs, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(n);
  size_t temp_bytes = 0;
  if (d_h) {
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, d_w, d_ws, d_h, d_hs, items, 0, 32, stream));
    DeviceBuffer<unsigned char> temp(temp_bytes);
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, d_w, d_ws, d_h, d_hs, items, 0, 32, stream));
    NQ_CUDA_CHECK(cudaStreamSynchronize(stream));  // temp is freed on return
  } else {
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, temp_bytes, d_w, d_ws, items, 0, 32, stream));
    DeviceBuffer<unsigned char> temp(temp_bytes);
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(temp.get(), temp_bytes, d_w, d_ws, items, 0, 32, stream));
    const unsigned grid = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 65535));
    fill_ones_kernel<<<grid, 256, 0, stream>>>(d_hs, n);
    NQ_CUDA_CHECK_LAUNCH("fill_ones_kernel");
    NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

}  // namespace

void sort_pairs(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  if (n == 0) return;
  NQ_CHECK(w && w_sorted && h_sorted, ErrorCode::kInvalidArgument, "sort_pairs: null array");
  DeviceBuffer<float> dw, dh, dws(n), dhs(n);
  dw.upload(w, n);
  if (h) dh.upload(h, n);
  launch_sort_pairs(dw.get(), h ? dh.get() : nullptr, n, dws.get(), dhs.get(), 0);
  dws.download(w_sorted, n);
  dhs.download(h_sorted, n);
}

}  // namespace nq::cuda
