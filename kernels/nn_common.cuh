// Shared pieces of the nn kernels: launch geometry for grid-stride loops, elementwise squaring (the OBD
// recursion's squared operands) and deterministic column/row sums (one thread or CTA per output, fixed order).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "device_buffer.cuh"

namespace nq::cuda {
namespace {

constexpr int kNnThreads = 256;

inline unsigned nn_grid(int64_t count) {
  const int64_t blocks = (count + kNnThreads - 1) / kNnThreads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

// Per-thread, per-TU scratch slots that only grow: the ops reuse them call after call instead of paying
// cudaMalloc/cudaFree each time (uses are ordered on the thread's default stream; a regrow's cudaFree
// synchronizes).
constexpr int kScratchSlots = 4;
template <class T>
T* scratch(int slot, int64_t count) {
  thread_local DeviceBuffer<unsigned char> pool[kScratchSlots];
  thread_local int pool_device[kScratchSlots] = {-1, -1, -1, -1};
  int dev = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&dev));
  const size_t bytes = sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1));
  if (pool_device[slot] != dev || pool[slot].size() < bytes) {
    pool[slot].allocate(bytes);
    pool_device[slot] = dev;
  }
  return reinterpret_cast<T*>(pool[slot].get());
}

#define NQ_GRID_STRIDE(i, count)                                                                           \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (count);             \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <class T>
__global__ void square_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t count) {
  NQ_GRID_STRIDE(i, count) out[i] = in[i] * in[i];
}

template <class T>
void square_into(const T* in, T* out, int64_t count) {
  if (count <= 0) return;
  square_kernel<T><<<nn_grid(count), kNnThreads>>>(in, out, count);
  NQ_CUDA_CHECK_LAUNCH("square_kernel");
}

// sb[o] (+)= Σ_r f(gy[r, o]) over rows in order, in fp64 (as the CPU op): one thread per column, coalesced.
template <class T, bool kSquare, bool kAccumulate>
__global__ void column_sums_kernel(const T* __restrict__ gy, T* __restrict__ sb, int64_t rows, int64_t cols) {
  NQ_GRID_STRIDE(o, cols) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const double v = gy[r * cols + o];
      s += kSquare ? v * v : v;
    }
    sb[o] = kAccumulate ? static_cast<T>(sb[o] + s) : static_cast<T>(s);
  }
}

template <class T, bool kSquare, bool kAccumulate>
void column_sums(const T* gy, T* sb, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  column_sums_kernel<T, kSquare, kAccumulate><<<nn_grid(cols), kNnThreads>>>(gy, sb, rows, cols);
  NQ_CUDA_CHECK_LAUNCH("column_sums_kernel");
}

// out[r] = Σ_j a[r, j] in fp64 for long rows: one CTA per row, fixed tree (shuffles, then warps in order).
template <class T>
__global__ void __launch_bounds__(kNnThreads) row_sums_kernel(const T* __restrict__ a, T* __restrict__ out,
                                                              int64_t cols) {
  __shared__ double warp_part[kNnThreads / 32];
  const T* row = a + blockIdx.x * cols;
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < cols; j += kNnThreads) s += static_cast<double>(row[j]);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
  if ((threadIdx.x & 31) == 0) warp_part[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int v = 0; v < kNnThreads / 32; ++v) t += warp_part[v];
    out[blockIdx.x] = static_cast<T>(t);
  }
}

template <class T>
void row_sums(const T* a, T* out, int64_t rows, int64_t cols) {
  if (rows <= 0) return;
  row_sums_kernel<T><<<static_cast<unsigned>(rows), kNnThreads>>>(a, out, cols);
  NQ_CUDA_CHECK_LAUNCH("row_sums_kernel");
}

}  // namespace
}  // namespace nq::cuda
