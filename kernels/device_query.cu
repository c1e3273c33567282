// Device query, a trivial checked kernel that proves the CUDA build and launch path, and one checked cuBLAS GEMM
// that proves cuBLAS opens and runs.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "core/cuda_device.h"
#include "cublas_handle.cuh"
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

double cublas_self_test(std::string* opened_from) {
  // Odd sizes, so that no dimension is a multiple of a tile; entries in [-1, 1) from a fixed LCG.
  const int64_t m = 37, n = 29, k = 41;
  std::vector<float> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(k * n));
  uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / static_cast<float>(1u << 23) - 1.0f;
  };
  for (float& x : a) x = next();
  for (float& x : b) x = next();
  DeviceBuffer<float> da, db, dc;
  da.upload(a.data(), a.size());
  db.upload(b.data(), b.size());
  dc.allocate(static_cast<size_t>(m * n));
  gemm(false, false, m, n, k, 1.0f, da.get(), k, db.get(), n, 0.0f, dc.get(), n);
  std::vector<float> c(static_cast<size_t>(m * n));
  dc.download(c.data(), c.size());
  double max_err = 0, max_abs = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t l = 0; l < k; ++l) want += static_cast<double>(a[i * k + l]) * static_cast<double>(b[l * n + j]);
      max_err = std::max(max_err, std::fabs(static_cast<double>(c[i * n + j]) - want));
      max_abs = std::max(max_abs, std::fabs(want));
    }
  if (opened_from != nullptr) *opened_from = cublas_file();
  return max_abs > 0 ? max_err / max_abs : max_err;
}

}  // namespace nq::cuda
