// One cuBLAS handle per (host thread, device), created on first use and destroyed when the thread exits.
#include <map>
#include <sstream>

#include "cublas_handle.cuh"

namespace nq::cuda {

void throw_cublas_error(cublasStatus_t status, const char* what, const char* file, int line) {
  std::ostringstream os;
  // A status comes from a cuBLAS call, so cuBLAS is open here.
  os << "cuBLAS error in " << what << " at " << file << ":" << line << ": " << cublas().status_name(status) << " ("
     << cublas().status_string(status) << ")";
  throw Error(status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kOutOfMemory : ErrorCode::kInternal, os.str());
}

namespace {
struct ThreadHandles {
  std::map<int, cublasHandle_t> by_device;
  ~ThreadHandles() {
    // Thread-local destructors run before the runtime's own teardown; errors are ignored (nothing to report to).
    for (auto& [device, handle] : by_device) {
      if (cudaSetDevice(device) == cudaSuccess) cublas().destroy(handle);
    }
  }
};
thread_local ThreadHandles t_handles;
}  // namespace

cublasHandle_t cublas_handle() {
  int device = 0;
  NQ_CUDA_CHECK(cudaGetDevice(&device));
  auto it = t_handles.by_device.find(device);
  if (it != t_handles.by_device.end()) return it->second;
  const CublasLibrary& lib = cublas();
  cublasHandle_t handle = nullptr;
  NQ_CUBLAS_CHECK(lib.create(&handle));
  // cuBLAS is compiled without per-thread default streams: its NULL stream would be the legacy one, which
  // waits for every thread's work. Its calls go on this thread's stream, with the ops around them.
  const char* step = "cublasSetStream";
  cublasStatus_t st = lib.set_stream(handle, cudaStreamPerThread);
  if (st == CUBLAS_STATUS_SUCCESS) {
    step = "cublasSetMathMode";
    st = lib.set_math_mode(handle, CUBLAS_PEDANTIC_MATH);
  }
  if (st != CUBLAS_STATUS_SUCCESS) {  // the handle is not kept: destroy it before reporting the failed step
    lib.destroy(handle);
    throw_cublas_error(st, step, __FILE__, __LINE__);
  }
  t_handles.by_device.emplace(device, handle);
  return handle;
}

}  // namespace nq::cuda
