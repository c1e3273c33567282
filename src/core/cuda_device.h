// Internal: CUDA device query entry points (kernels/device_query.cu; src/core/cuda_stubs.cpp without CUDA).
#pragma once

#include <string>

namespace nq::cuda {

int device_count() noexcept;                   // 0 when no driver/device; never throws
std::string device_description(int device);   // name, compute capability, memory
// Makes `device` current for this host thread and remembers it as the process's device (MPI ranks sharing a
// node pick one GPU each).
void set_device(int device);
// Makes the process's device (set_device) current on the calling thread: the CUDA device is per host thread,
// and OpenMP workers (quantize_model runs problems on them) would otherwise start on device 0. No-op before
// set_device. Every quantizer op entry calls it.
void bind_thread_device();
// The device set_device chose for this process, 0 before any choice (CUDA's default).
int process_device() noexcept;
// Runs one trivial checked kernel (y = a*x + y on n floats) and returns max |error| against the host.
double self_test(int n);
// Where cuBLAS is looked for when the CUDA backend first needs it (kernels/cublas_library.cu), without opening it.
std::string cublas_search_path();
// Opens cuBLAS, multiplies two seeded odd-sized matrices on the device (fp32, row-major, through the nn ops' GEMM
// wrapper) and returns the largest |error| against an fp64 host product, relative to the largest |entry|.
// `opened_from` gets the file cuBLAS was opened from.
double cublas_self_test(std::string* opened_from);
// What cublas_self_test may return: fp32 sums of 41 products against fp64 are off by a few ulps of the largest
// entry; 1e-5 of it is far beyond that.
constexpr double kCublasSelfTestTolerance = 1e-5;

}  // namespace nq::cuda
