// Emulated cuBLAS: the GEMMs netquant calls, as reference column-major loops with cuBLAS's argument checks.
#pragma once
#include "cuda_runtime.h"
typedef struct cublasContext* cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_ALLOC_FAILED = 3, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 } cublasMath_t;
inline cublasStatus_t cublasCreate(cublasHandle_t* h) { *h = reinterpret_cast<cublasHandle_t>(uintptr_t{16}); return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline const char* cublasGetStatusName(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }
inline const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }
namespace nq_emu {
template <class T>
cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const T* alpha, const T* A,
                    int lda, const T* B, int ldb, const T* beta, T* C, int ldc) {
  auto at_least_1 = [](int a) { return a > 1 ? a : 1; };
  if (m < 0 || n < 0 || k < 0 || lda < at_least_1(ta == CUBLAS_OP_N ? m : k) ||
      ldb < at_least_1(tb == CUBLAS_OP_N ? k : n) || ldc < at_least_1(m))
    return CUBLAS_STATUS_INVALID_VALUE;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int l = 0; l < k; ++l) {
        const T a = ta == CUBLAS_OP_N ? A[i + static_cast<long long>(l) * lda] : A[l + static_cast<long long>(i) * lda];
        const T b = tb == CUBLAS_OP_N ? B[l + static_cast<long long>(j) * ldb] : B[j + static_cast<long long>(l) * ldb];
        s += static_cast<double>(a) * static_cast<double>(b);
      }
      T& c = C[i + static_cast<long long>(j) * ldc];
      c = static_cast<T>(static_cast<double>(*alpha) * s + (*beta == T(0) ? 0.0 : static_cast<double>(*beta) * static_cast<double>(c)));
    }
  return CUBLAS_STATUS_SUCCESS;
}
template <class T>
cublasStatus_t gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const T* al, const T* A,
                            int lda, long long sa, const T* B, int ldb, long long sb, const T* be, T* C, int ldc,
                            long long sc, int batch) {
  for (int i = 0; i < batch; ++i)
    if (cublasStatus_t st = gemm(ta, tb, m, n, k, al, A + i * sa, lda, B + i * sb, ldb, be, C + i * sc, ldc)) return st;
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace nq_emu
inline cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* al, const float* A, int lda, const float* B, int ldb, const float* be,
                                  float* C, int ldc) {
  return nq_emu::gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
}
inline cublasStatus_t cublasDgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const double* al, const double* A, int lda, const double* B, int ldb,
                                  const double* be, double* C, int ldc) {
  return nq_emu::gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
}
inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                int n, int k, const float* al, const float* A, int lda, long long sa,
                                                const float* B, int ldb, long long sb, const float* be, float* C,
                                                int ldc, long long sc, int batch) {
  return nq_emu::gemm_batched(ta, tb, m, n, k, al, A, lda, sa, B, ldb, sb, be, C, ldc, sc, batch);
}
inline cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                int n, int k, const double* al, const double* A, int lda,
                                                long long sa, const double* B, int ldb, long long sb,
                                                const double* be, double* C, int ldc, long long sc, int batch) {
  return nq_emu::gemm_batched(ta, tb, m, n, k, al, A, lda, sa, B, ldb, sb, be, C, ldc, sc, batch);
}
