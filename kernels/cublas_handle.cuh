// cuBLAS for the nn ops: one handle per (host thread, device), created lazily; every cuBLAS status checked and
// turned into nq::Error; row-major GEMM wrappers (the nn ops' layouts are row-major, cuBLAS is column-major).
// cuBLAS itself is opened on first use (cublas_library.cuh): each call goes through cublas().
#pragma once

#include <cublas_v2.h>

#include <climits>
#include <cstdint>

#include "cublas_library.cuh"
#include "cuda_check.cuh"
#include "netquant/error.h"

namespace nq::cuda {

[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* what, const char* file, int line);

// The calling thread's handle for the current device (on the thread's default stream, like the ops around it;
// pedantic fp32 math: no TF32, so results stay within fp32 tolerance of the CPU backend).
cublasHandle_t cublas_handle();

}  // namespace nq::cuda

#define NQ_CUBLAS_CHECK(call)                                                                      \
  do {                                                                                             \
    cublasStatus_t nq_cublas_status_ = (call);                                                     \
    if (nq_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                \
      ::nq::cuda::throw_cublas_error(nq_cublas_status_, #call, __FILE__, __LINE__);                \
  } while (0)

namespace nq::cuda {

inline int blas_dim(int64_t v) {
  NQ_CHECK(v >= 0 && v <= INT_MAX, ErrorCode::kInvalidArgument, "GEMM dimension " << v << " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

// Row-major C[m,n] = alpha op(A) op(B) + beta C: column-major C^T = op(B)^T op(A)^T, i.e. the operands swapped.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  NQ_CUBLAS_CHECK(cublas().sgemm(cublas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                              blas_dim(n), blas_dim(m), blas_dim(k), &alpha, b, blas_dim(ldb), a, blas_dim(lda),
                              &beta, c, blas_dim(ldc)));
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  NQ_CUBLAS_CHECK(cublas().dgemm(cublas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                              blas_dim(n), blas_dim(m), blas_dim(k), &alpha, b, blas_dim(ldb), a, blas_dim(lda),
                              &beta, c, blas_dim(ldc)));
}
// Strided batch of the above: A_i = a + i·sa, B_i = b + i·sb, C_i = c + i·sc.
inline void gemm_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                         int64_t lda, int64_t sa, const float* b, int64_t ldb, int64_t sb, float beta, float* c,
                         int64_t ldc, int64_t sc, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  NQ_CUBLAS_CHECK(cublas().sgemm_strided_batched(cublas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            ta ? CUBLAS_OP_T : CUBLAS_OP_N, blas_dim(n), blas_dim(m), blas_dim(k),
                                            &alpha, b, blas_dim(ldb), sb, a, blas_dim(lda), sa, &beta, c,
                                            blas_dim(ldc), sc, blas_dim(batch)));
}
inline void gemm_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                         int64_t lda, int64_t sa, const double* b, int64_t ldb, int64_t sb, double beta, double* c,
                         int64_t ldc, int64_t sc, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  NQ_CUBLAS_CHECK(cublas().dgemm_strided_batched(cublas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            ta ? CUBLAS_OP_T : CUBLAS_OP_N, blas_dim(n), blas_dim(m), blas_dim(k),
                                            &alpha, b, blas_dim(ldb), sb, a, blas_dim(lda), sa, &beta, c,
                                            blas_dim(ldc), sc, blas_dim(batch)));
}

}  // namespace nq::cuda
