// OpenBLAS's kernel choice, and starting again with a better one (blas_kernels.h).
#include "nn/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iterator>

namespace nq::nn::cpu {

namespace {
bool same_name(const std::string& a, const std::string& b) {  // OpenBLAS's own match ignores case too
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}
}  // namespace

const char* better_blas_core(const std::string& loaded, const CpuVectorFeatures& cpu) {
  // OpenBLAS's x86-64 cores without AVX (its dynamic.c names them so); "Unknown" is what a failed detection
  // reports on some versions.
  static const char* const kPreAvxCores[] = {"Unknown",  "Katmai",  "Coppermine", "Northwood",    "Prescott",
                                             "Banias",   "Atom",    "Core2",      "Penryn",       "Dunnington",
                                             "Nehalem",  "Athlon",  "Opteron",    "Opteron_SSE3", "Barcelona",
                                             "Nano"};
  const bool pre_avx = std::any_of(std::begin(kPreAvxCores), std::end(kPreAvxCores),
                                   [&](const char* name) { return same_name(loaded, name); });
  if (!pre_avx || !cpu.avx2_fma) return nullptr;
  return cpu.avx512 ? "SkylakeX" : "Haswell";
}

std::string blas_core() {
  const char* name = openblas_get_corename();
  return name ? name : "";
}

std::string blas_config() {
  const char* config = openblas_get_config();
  return config ? config : "";
}

void restart_with_better_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice, or this process already restarted
  // Only a DYNAMIC_ARCH build reads OPENBLAS_CORETYPE; one built for a single core would restart for nothing.
  if (blas_config().find("DYNAMIC_ARCH") == std::string::npos) return;
  const std::string loaded = blas_core();
  const char* core = better_blas_core(loaded, cpu_vector_features());
  if (!core) return;
  if (setenv(kBlasRestartedFrom, loaded.c_str(), 1) != 0 || setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
  // The same executable and arguments; the environment (MPI's included) carries over with the new variable.
  execv("/proc/self/exe", argv);
  // Only when the exec failed (no /proc, say): carry on with the kernels already loaded, and say so in `info`.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kBlasRestartedFrom);
}

}  // namespace nq::nn::cpu
