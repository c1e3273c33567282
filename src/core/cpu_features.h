// Internal: the vector instruction sets this CPU runs, for the code that picks a path by them at run time
// (OpenBLAS's kernels, nn/blas_kernels.h; the ECSQ window search, quant/window_argmin_wide.h).
#pragma once

namespace nq {

// x86-64 with GCC or Clang; all false elsewhere. Each set counts only with the OS's support for its registers.
struct CpuVectorFeatures {
  bool avx2_fma = false;  // AVX2 and FMA: OpenBLAS's Haswell kernels
  bool avx512 = false;    // AVX-512 F, CD, BW, DQ and VL: its SkylakeX kernels
  bool avx512f = false;   // AVX-512 F alone: the ECSQ window search
};
CpuVectorFeatures cpu_vector_features();

}  // namespace nq
