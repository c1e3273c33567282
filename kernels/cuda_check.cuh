// Every CUDA runtime call and kernel launch is checked: failures become nq::Error naming the call and place.
#pragma once

#include <cuda_runtime.h>

#include <sstream>

#include "netquant/error.h"

namespace nq::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  // A failed call is also recorded as the thread's last error: clear it (non-sticky errors only; a sticky one
  // stays), or a caller that catches this and retries would see the old error at its next launch check.
  (void)cudaGetLastError();
  std::ostringstream os;
  os << "CUDA error in " << what << " at " << file << ":" << line << ": " << cudaGetErrorName(err) << " ("
     << cudaGetErrorString(err) << ")";
  throw Error(err == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kInternal, os.str());
}

// Frees from destructors and cleanup paths, which must not throw. A failed free would stay recorded as the
// thread's last error and be reported by the next launch check as that kernel's failure: it is cleared here.
inline void free_quietly(void* p) noexcept {
  if (p && cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}
inline void free_host_quietly(void* p) noexcept {
  if (p && cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}

}  // namespace nq::cuda

#define NQ_CUDA_CHECK(call)                                                               \
  do {                                                                                    \
    cudaError_t nq_cuda_err_ = (call);                                                    \
    if (nq_cuda_err_ != cudaSuccess) ::nq::cuda::throw_cuda_error(nq_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: catches bad configurations at once (asynchronous faults surface at the next sync).
#define NQ_CUDA_CHECK_LAUNCH(name)                                                              \
  do {                                                                                          \
    cudaError_t nq_cuda_err_ = cudaGetLastError();                                              \
    if (nq_cuda_err_ != cudaSuccess) ::nq::cuda::throw_cuda_error(nq_cuda_err_, "launch of " name, __FILE__, __LINE__); \
  } while (0)
