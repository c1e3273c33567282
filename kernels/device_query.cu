// Device query and a trivial checked kernel that proves the CUDA build and launch path.
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "core/cuda_device.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"

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

namespace {
std::atomic<int> g_process_device{-1};  // the device set_device chose for this process; −1: none chosen
}  // namespace

void set_device(int device) {
  NQ_CUDA_CHECK(cudaSetDevice(device));
  g_process_device.store(device);
}

int process_device() noexcept {
  const int device = g_process_device.load();
  return device < 0 ? 0 : device;
}

void bind_thread_device() {
  const int device = g_process_device.load();
  if (device < 0) return;
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current == device) return;
  NQ_CUDA_CHECK(cudaSetDevice(device));
}

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
  DeviceBuffer<float> dx, dy;  // freed on every path, a throwing check included
  dx.upload(x.data(), static_cast<size_t>(n));
  dy.upload(y.data(), static_cast<size_t>(n));
  saxpy_kernel<<<static_cast<unsigned>((static_cast<int64_t>(n) + 255) / 256), 256>>>(n, 2.0f, dx.get(), dy.get());
  NQ_CUDA_CHECK_LAUNCH("saxpy_kernel");
  std::vector<float> out(n);
  dy.download(out.data(), static_cast<size_t>(n));
  double max_err = 0;
  for (int i = 0; i < n; ++i) max_err = std::fmax(max_err, std::fabs(out[i] - (2.0f * x[i] + y[i])));
  return max_err;
}

}  // namespace nq::cuda
