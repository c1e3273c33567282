// cuBLAS opened with dlopen on first use (cublas_library.cuh says why).
#include <dlfcn.h>

#include <sstream>
#include <type_traits>

#include "core/cuda_device.h"
#include "cublas_library.cuh"
#include "netquant/error.h"

#ifndef NQ_CUBLAS_SONAME
#error "NQ_CUBLAS_SONAME (cuBLAS's soname, e.g. libcublas.so.13) is set by kernels/CMakeLists.txt"
#endif
#ifndef NQ_CUBLAS_PATH
#error "NQ_CUBLAS_PATH (the cuBLAS the build was configured with) is set by kernels/CMakeLists.txt"
#endif

// The symbol of a cublas_v2.h name: the argument is macro-expanded before it is quoted (cublasCreate gives
// "cublasCreate_v2"). cuBLAS also exports the legacy API's functions under the unexpanded names, with other
// signatures, so quoting the name as written would find the wrong function.
#define NQ_CUBLAS_SYMBOL_(name) #name
#define NQ_CUBLAS_SYMBOL(name) NQ_CUBLAS_SYMBOL_(name)

namespace nq::cuda {

namespace {

// Fills `lib` from `handle`; returns the first symbol it lacks, or nullptr.
const char* resolve_all(void* handle, CublasLibrary& lib) {
  const char* missing = nullptr;
  auto resolve = [&](auto& member, const char* symbol) {
    void* address = dlsym(handle, symbol);
    if (address == nullptr && missing == nullptr) missing = symbol;
    member = reinterpret_cast<std::remove_reference_t<decltype(member)>>(address);
  };
  resolve(lib.create, NQ_CUBLAS_SYMBOL(cublasCreate));
  resolve(lib.destroy, NQ_CUBLAS_SYMBOL(cublasDestroy));
  resolve(lib.set_stream, NQ_CUBLAS_SYMBOL(cublasSetStream));
  resolve(lib.set_math_mode, NQ_CUBLAS_SYMBOL(cublasSetMathMode));
  resolve(lib.sgemm, NQ_CUBLAS_SYMBOL(cublasSgemm));
  resolve(lib.dgemm, NQ_CUBLAS_SYMBOL(cublasDgemm));
  resolve(lib.sgemm_strided_batched, NQ_CUBLAS_SYMBOL(cublasSgemmStridedBatched));
  resolve(lib.dgemm_strided_batched, NQ_CUBLAS_SYMBOL(cublasDgemmStridedBatched));
  resolve(lib.status_name, NQ_CUBLAS_SYMBOL(cublasGetStatusName));
  resolve(lib.status_string, NQ_CUBLAS_SYMBOL(cublasGetStatusString));
  return missing;
}

}  // namespace

CublasLibrary open_cublas(const std::vector<std::string>& candidates) {
  std::ostringstream why;
  const char* separator = "";
  for (const std::string& name : candidates) {
    why << separator;
    separator = "; ";
    // RTLD_LOCAL: its symbols stay out of the global scope, where they could stand in for a later library's.
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* error = dlerror();  // it names the file
      why << (error != nullptr ? error : name + ": cannot be opened");
      continue;
    }
    CublasLibrary lib{};
    if (const char* missing = resolve_all(handle, lib)) {
      dlclose(handle);
      why << name << ": has no " << missing << " (not the cuBLAS " << CUBLAS_VER_MAJOR << " that netquant was built for)";
      continue;
    }
    // Never closed: the cuBLAS handles are destroyed by thread-local destructors as threads and the process end.
    return lib;
  }
  if (candidates.empty()) why << "no file to try";
  NQ_FAIL(ErrorCode::kUnavailable, "cannot load cuBLAS " << CUBLAS_VER_MAJOR
                                       << ", which the CUDA backend's Linear and Conv2d ops use (" << why.str()
                                       << "); install it, or add the folder that has " << NQ_CUBLAS_SONAME
                                       << " to LD_LIBRARY_PATH");
}

std::vector<std::string> cublas_candidates() {
  std::vector<std::string> names{NQ_CUBLAS_SONAME};
  if (std::string(NQ_CUBLAS_PATH) != NQ_CUBLAS_SONAME) names.emplace_back(NQ_CUBLAS_PATH);
  return names;
}

std::string cublas_search_path() {
  std::string path;
  for (const std::string& name : cublas_candidates()) path += (path.empty() ? "" : ", else ") + name;
  return path;
}

std::string cublas_file() {
  Dl_info info{};
  NQ_CHECK(dladdr(reinterpret_cast<const void*>(cublas().create), &info) != 0 && info.dli_fname != nullptr,
           ErrorCode::kInternal, "cuBLAS is open, but the dynamic linker names no file for it");
  return info.dli_fname;
}

const CublasLibrary& cublas() {
  // A static whose initialiser throws is initialised again by the next call.
  static const CublasLibrary library = open_cublas(cublas_candidates());
  return library;
}

}  // namespace nq::cuda
