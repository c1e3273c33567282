// CPU-only build: the CUDA entry points report "no device" or throw kUnavailable.
#include "core/cuda_device.h"
#include "netquant/error.h"

#if !NQ_HAVE_CUDA
namespace nq::cuda {
int device_count() noexcept { return 0; }
std::string device_description(int) { return std::string(); }
void set_device(int) {}
void bind_thread_device() {}
int process_device() noexcept { return 0; }
double self_test(int) { NQ_FAIL(ErrorCode::kUnavailable, "this netquant was built without CUDA"); }
std::string cublas_search_path() { return std::string(); }
double cublas_self_test(std::string*) { NQ_FAIL(ErrorCode::kUnavailable, "this netquant was built without CUDA"); }
}  // namespace nq::cuda
#endif
