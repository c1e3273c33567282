// The emulated cuBLAS (include/cublas_v2.h): the GEMMs netquant calls, as reference column-major loops with
// cuBLAS's argument checks. Built as a shared library that the emulated build opens with dlopen.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cublas_v2.h"

namespace {

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
      c = static_cast<T>(static_cast<double>(*alpha) * s +
                         (*beta == T(0) ? 0.0 : static_cast<double>(*beta) * static_cast<double>(c)));
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

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  *h = reinterpret_cast<cublasHandle_t>(uintptr_t{16});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasGetStatusName(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }
const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }

cublasStatus_t cublasSgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float* al, const float* A, int lda, const float* B, int ldb, const float* be,
                              float* C, int ldc) {
  return gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
}
cublasStatus_t cublasDgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const double* al, const double* A, int lda, const double* B, int ldb, const double* be,
                              double* C, int ldc) {
  return gemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* al, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* be, float* C, int ldc,
                                         long long sc, int batch) {
  return gemm_batched(ta, tb, m, n, k, al, A, lda, sa, B, ldb, sb, be, C, ldc, sc, batch);
}
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* al, const double* A, int lda, long long sa,
                                         const double* B, int ldb, long long sb, const double* be, double* C,
                                         int ldc, long long sc, int batch) {
  return gemm_batched(ta, tb, m, n, k, al, A, lda, sa, B, ldb, sb, be, C, ldc, sc, batch);
}

// Like the real library, this one also exports the legacy API's functions under the names that cublas_v2.h turns
// into macros. A loader that looked up a name as written, unexpanded, would get one of these and stop here.
#undef cublasCreate
#undef cublasDestroy
#undef cublasSetStream
#undef cublasSgemm
#undef cublasDgemm
#define NQ_EMU_LEGACY(name)                                                                       \
  void name() {                                                                                   \
    std::fprintf(stderr, "emulated cuBLAS: the legacy " #name " was called, not its _v2 function\n"); \
    std::abort();                                                                                 \
  }
NQ_EMU_LEGACY(cublasCreate)
NQ_EMU_LEGACY(cublasDestroy)
NQ_EMU_LEGACY(cublasSetStream)
NQ_EMU_LEGACY(cublasSgemm)
NQ_EMU_LEGACY(cublasDgemm)
}
