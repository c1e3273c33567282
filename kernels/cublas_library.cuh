// cuBLAS, opened when the CUDA backend first multiplies matrices. Linked like the CUDA runtime, it would load
// libcublas and libcublasLt (over 500 MB of code; about 220 MB resident and 60 ms of static initialisers) into
// every process of a CUDA build: CPU-only runs, `--help`, each MPI rank and each `import netquant`. Only the CUDA
// backend's Linear and Conv2d ops use it.
#pragma once

#include <cublas_v2.h>

#include <string>
#include <vector>

namespace nq::cuda {

// The cuBLAS functions netquant calls. Each member has the type that cublas_v2.h gives the name (cublasCreate is
// a macro for cublasCreate_v2 there), and it is looked up under that same expanded name.
struct CublasLibrary {
  decltype(&cublasCreate) create;
  decltype(&cublasDestroy) destroy;
  decltype(&cublasSetStream) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm) sgemm;
  decltype(&cublasDgemm) dgemm;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasDgemmStridedBatched) dgemm_strided_batched;
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasGetStatusString) status_string;
};

// Opens the first of `candidates` (each a name for dlopen: a soname, searched for as the dynamic linker does, or a
// path) that loads and has every function above. That library stays loaded for the life of the process. If none
// does: ErrorCode::kUnavailable, naming each candidate and why it failed.
CublasLibrary open_cublas(const std::vector<std::string>& candidates);

// Where this build looks: cuBLAS's soname first (LD_LIBRARY_PATH, the system's library cache), then the file in
// the folder of the cuBLAS the build was configured with.
std::vector<std::string> cublas_candidates();

// The process's cuBLAS, opened from cublas_candidates() by the first call (thread-safe). A failure is not kept:
// a later call tries again.
const CublasLibrary& cublas();

// The file the process's cuBLAS was opened from (opening it if it is not yet).
std::string cublas_file();

}  // namespace nq::cuda
