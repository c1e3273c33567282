// CUDA stable sort of (w, h) pairs by w (quant_ops.h (b1)): CUB DeviceRadixSort, stable, on the same
// order-preserving unsigned keys as the CPU op's LSD radix sort. Not on the float keys directly: CUB's float
// twiddling maps −0 to +0 (they would keep their input order), while the contract puts every −0 before every +0.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

namespace qf = ::nq::quant;

__global__ void fill_ones_kernel(float* __restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = 1.0f;
}

// The CPU sort's order keys (quant_formulas.h), and back.
__global__ void to_ordered_kernel(const float* __restrict__ in, uint32_t* __restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = qf::float_order_key(in[i]);
  }
}
__global__ void from_ordered_kernel(uint32_t* io, size_t n) {  // in place: the sorted keys become the floats
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    io[i] = __float_as_uint(qf::float_from_order_key(io[i]));
  }
}

// keys/values: device buffers of n entries; h_in nullable (values = 1). d_ws receives the sorted keys first
// (same size as floats), converted back in place.
void launch_sort_pairs(const float* d_w, const float* d_h, size_t n, float* d_ws, float* d_hs, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(n);
  const unsigned grid = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 65535));
  DeviceBuffer<uint32_t> keys(n);
  uint32_t* sorted_keys = reinterpret_cast<uint32_t*>(d_ws);
  to_ordered_kernel<<<grid, 256, 0, stream>>>(d_w, keys.get(), n);
  NQ_CUDA_CHECK_LAUNCH("to_ordered_kernel");
  size_t temp_bytes = 0;
  if (d_h) {
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys.get(), sorted_keys, d_h, d_hs, items, 0,
                                                  32, stream));
    DeviceBuffer<unsigned char> temp(temp_bytes);
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys.get(), sorted_keys, d_h, d_hs, items,
                                                  0, 32, stream));
    from_ordered_kernel<<<grid, 256, 0, stream>>>(sorted_keys, n);
    NQ_CUDA_CHECK_LAUNCH("from_ordered_kernel");
    NQ_CUDA_CHECK(cudaStreamSynchronize(stream));  // temp and keys are freed on return
  } else {
    NQ_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, temp_bytes, keys.get(), sorted_keys, items, 0, 32, stream));
    DeviceBuffer<unsigned char> temp(temp_bytes);
    NQ_CUDA_CHECK(
        cub::DeviceRadixSort::SortKeys(temp.get(), temp_bytes, keys.get(), sorted_keys, items, 0, 32, stream));
    from_ordered_kernel<<<grid, 256, 0, stream>>>(sorted_keys, n);
    NQ_CUDA_CHECK_LAUNCH("from_ordered_kernel");
    fill_ones_kernel<<<grid, 256, 0, stream>>>(d_hs, n);
    NQ_CUDA_CHECK_LAUNCH("fill_ones_kernel");
    NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

}  // namespace

void sort_pairs(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  bind_thread_device();
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
