// Internal: row-major GEMM for float and double on OpenBLAS (cblas), and scratch arrays that skip zero-filling.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <memory>

namespace nq::nn::cpu {

// C[M,N] = alpha op(A) op(B) + beta C, all row-major with leading dimensions lda/ldb/ldc.
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}
inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                 int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// Uninitialized scratch (the GEMMs overwrite it; zero-filling megabytes per call would cost a memory pass).
template <class T>
std::unique_ptr<T[]> scratch(int64_t count) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(count > 0 ? count : 1)]);
}

// out[i] = in[i]^2: the squared operands of the OBD recursion.
template <class T>
void square_into(const T* in, T* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = in[i] * in[i];
}

}  // namespace nq::nn::cpu
