// Device query and a trivial checked kernel that proves the CUDA build and launch path.
#include <cuda_runtime.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"

namespace nq::cuda {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later queries start clean
    return 0;
  }
  return n;
}

std::string device_description(int device) {
  cudaDeviceProp prop{};
  NQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::ostringstream os;
  os << prop.name << " (sm_" << prop.major << prop.minor << ", "
     << static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0) << " GiB)";
  return os.str();
}

void set_device(int device) { NQ_CUDA_CHECK(cudaSetDevice(device)); }

namespace {
__global__ void saxpy_kernel(int n, float a, const float* __restrict__ x, float* __restrict__ y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
}  // namespace

double self_test(int n) {
  NQ_CHECK(n > 0, ErrorCode::kInvalidArgument, "self_test: n must be positive");
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i % 97) * 0.25f;
    y[i] = static_cast<float>(i % 13) - 6.0f;
  }
  float *dx = nullptr, *dy = nullptr;
  NQ_CUDA_CHECK(cudaMalloc(&dx, n * sizeof(float)));
  NQ_CUDA_CHECK(cudaMalloc(&dy, n * sizeof(float)));
  NQ_CUDA_CHECK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  NQ_CUDA_CHECK(cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  saxpy_kernel<<<(n + 255) / 256, 256>>>(n, 2.0f, dx, dy);
  NQ_CUDA_CHECK_LAUNCH("saxpy_kernel");
  std::vector<float> out(n);
  NQ_CUDA_CHECK(cudaMemcpy(out.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost));
  NQ_CUDA_CHECK(cudaFree(dx));
  NQ_CUDA_CHECK(cudaFree(dy));
  double max_err = 0;
  for (int i = 0; i < n; ++i) max_err = std::fmax(max_err, std::fabs(out[i] - (2.0f * x[i] + y[i])));
  return max_err;
}

}  // namespace nq::cuda
