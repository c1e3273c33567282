// Internal: which OpenBLAS kernels this process runs, and the fix for a CPU that OpenBLAS does not know.
//
// A DYNAMIC_ARCH OpenBLAS (Debian's, and most distributions') picks its kernels once, when it loads, from a table
// of CPU models. A CPU newer than the library is not in the table, and the library then falls back to its
// generic SSE3 kernels ("Prescott") even on a CPU with AVX-512: Debian 12's OpenBLAS 0.3.21 does this on the
// Emerald Rapids VMs this project is developed on (family 6, model 207), where LeNet-5 trains at about half the
// speed of the AVX-512 kernels (bench/RESULTS.md "Built-in networks"). OPENBLAS_CORETYPE overrides the choice, but
// only if it is set before the library loads, so an executable has to start itself again to apply it.
#pragma once

#include <string>

#include "core/cpu_features.h"

namespace nq::nn::cpu {

// The core OpenBLAS should have picked, when `loaded` (openblas_get_corename()) is one of its pre-AVX cores on
// a CPU with `cpu`'s features: "SkylakeX" with AVX-512, else "Haswell" with AVX2 and FMA. nullptr when the
// loaded kernels are already vectorised for AVX or later (its own choice is kept, e.g. Zen or Sandybridge) or
// the CPU has no AVX2.
const char* better_blas_core(const std::string& loaded, const CpuVectorFeatures& cpu);

// The kernels this process runs (e.g. "SkylakeX") and OpenBLAS's build line.
std::string blas_core();
std::string blas_config();

// Call first thing in main(). When OPENBLAS_CORETYPE is unset, OpenBLAS was built with DYNAMIC_ARCH and
// better_blas_core() names a core for the loaded one: sets OPENBLAS_CORETYPE to it (and kBlasRestartedFrom to
// the loaded core, for `netquant info`) and starts this executable again with the same arguments, before MPI or
// any thread of the program's own starts. Returns only when nothing is to be done or the restart failed (then
// the process carries on with the loaded kernels: slower, and results that differ only by rounding). Setting
// OPENBLAS_CORETYPE yourself (to any core) keeps OpenBLAS's choice as given.
void restart_with_better_blas_kernels(char** argv);
constexpr const char* kBlasRestartedFrom = "NETQUANT_BLAS_RESTARTED_FROM";

}  // namespace nq::nn::cpu
