// The CPU's vector instruction sets (cpu_features.h).
#include "core/cpu_features.h"

namespace nq {

CpuVectorFeatures cpu_vector_features() {
  CpuVectorFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();  // may run before the static constructors that would otherwise do it
  // The compiler's checks include the OS's support for the wider registers (XCR0), not only the CPUID bits.
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512 = f.avx2_fma && f.avx512f && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
  return f;
}

}  // namespace nq
