// Internal: CUDA device query entry points (kernels/device_query.cu; src/core/cuda_stubs.cpp without CUDA).
#pragma once

#include <string>

namespace nq::cuda {

int device_count() noexcept;                   // 0 when no driver/device; never throws
std::string device_description(int device);   // name, compute capability, memory
// Makes `device` current for this host thread (MPI ranks sharing a node pick one GPU each).
void set_device(int device);
// Runs one trivial checked kernel (y = a*x + y on n floats) and returns max |error| against the host.
double self_test(int n);

}  // namespace nq::cuda
