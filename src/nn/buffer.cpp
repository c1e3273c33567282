// CPU memory ops behind nn::Buffer (host allocations), and the OpenBLAS thread count.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "netquant/backend.h"
#include "nn/nn_ops.h"

namespace nq::nn::cpu {
namespace {

template <class T>
T* alloc_impl(int64_t count) {
  NQ_CHECK(count >= 0, ErrorCode::kInvalidArgument, "negative buffer size " << count);
  try {
    return new T[static_cast<size_t>(count)]();
  } catch (const std::bad_alloc&) {
    NQ_FAIL(ErrorCode::kOutOfMemory, "out of memory for a network buffer of " << count * int64_t(sizeof(T)) << " bytes");
  }
}

}  // namespace

#define NQ_NN_DEFINE_MEMORY_OPS(T)                                                                              \
  T* buffer_alloc(int64_t count, T) { return alloc_impl<T>(count); }                                          \
  void buffer_free(T* p) { delete[] p; }                                                                      \
  void buffer_upload(T* dst, const T* src, int64_t count) { std::memcpy(dst, src, sizeof(T) * size_t(count)); } \
  void buffer_download(T* dst, const T* src, int64_t count) {                                                 \
    std::memcpy(dst, src, sizeof(T) * size_t(count));                                                         \
  }                                                                                                           \
  void buffer_fill(T* p, int64_t count, T value) { std::fill(p, p + count, value); }

NQ_NN_DEFINE_MEMORY_OPS(float)
NQ_NN_DEFINE_MEMORY_OPS(double)
NQ_NN_DEFINE_MEMORY_OPS(int32_t)

void sync_blas_threads() {
  const int want = std::max(1, num_threads());
  if (openblas_get_num_threads() != want) openblas_set_num_threads(want);
}

SingleThreadedBlas::SingleThreadedBlas(bool serial_caller) {
  if (openblas_get_parallel() == OPENBLAS_OPENMP) {
    if (serial_caller && omp_get_max_threads() != 1) {
      previous_openmp_ = omp_get_max_threads();
      omp_set_num_threads(1);
    }
    return;
  }
  previous_blas_ = openblas_get_num_threads();
  if (previous_blas_ != 1) openblas_set_num_threads(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (previous_openmp_ > 0) omp_set_num_threads(previous_openmp_);
  if (previous_blas_ != 1) openblas_set_num_threads(previous_blas_);
}

}  // namespace nq::nn::cpu
