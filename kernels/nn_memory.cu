// CUDA memory ops behind nn::Buffer (nn_ops.h): device allocations, zero-filled, and host transfers.
#include <cstdint>

#include "cuda_check.cuh"
#include "netquant/error.h"
#include "nn/nn_ops.h"
#include "nn_common.cuh"

namespace nq::nn::cuda {
namespace {

using ::nq::cuda::kNnThreads;
using ::nq::cuda::nn_grid;

template <class T>
__global__ void fill_kernel(T* __restrict__ p, int64_t count, T value) {
  NQ_GRID_STRIDE(i, count) p[i] = value;
}

template <class T>
T* alloc_impl(int64_t count) {
  NQ_CHECK(count >= 0, ErrorCode::kInvalidArgument, "negative buffer size " << count);
  if (count == 0) return nullptr;
  T* p = nullptr;
  NQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), sizeof(T) * static_cast<size_t>(count)));
  const cudaError_t err = cudaMemset(p, 0, sizeof(T) * static_cast<size_t>(count));
  if (err != cudaSuccess) {
    ::nq::cuda::free_quietly(p);
    ::nq::cuda::throw_cuda_error(err, "cudaMemset", __FILE__, __LINE__);
  }
  return p;
}

template <class T>
void fill_impl(T* p, int64_t count, T value) {
  if (count <= 0) return;
  if (value == T(0)) {
    NQ_CUDA_CHECK(cudaMemset(p, 0, sizeof(T) * static_cast<size_t>(count)));  // also +0.0 for floats
    return;
  }
  fill_kernel<T><<<nn_grid(count), kNnThreads>>>(p, count, value);
  NQ_CUDA_CHECK_LAUNCH("fill_kernel");
}

}  // namespace

#define NQ_NN_CUDA_MEMORY_OPS(T)                                                                            \
  T* buffer_alloc(int64_t count, T) { return alloc_impl<T>(count); }                                       \
  void buffer_free(T* p) {                                                                                 \
    ::nq::cuda::free_quietly(p); /* called from destructors: never throws */                                \
  }                                                                                                        \
  void buffer_upload(T* dst, const T* src, int64_t count) {                                                \
    if (count > 0) NQ_CUDA_CHECK(cudaMemcpy(dst, src, sizeof(T) * size_t(count), cudaMemcpyHostToDevice));  \
  }                                                                                                        \
  void buffer_download(T* dst, const T* src, int64_t count) {                                              \
    if (count > 0) NQ_CUDA_CHECK(cudaMemcpy(dst, src, sizeof(T) * size_t(count), cudaMemcpyDeviceToHost));  \
  }                                                                                                        \
  void buffer_fill(T* p, int64_t count, T value) { fill_impl<T>(p, count, value); }

NQ_NN_CUDA_MEMORY_OPS(float)
NQ_NN_CUDA_MEMORY_OPS(double)
NQ_NN_CUDA_MEMORY_OPS(int32_t)

}  // namespace nq::nn::cuda
