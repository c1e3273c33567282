// The cuBLAS loader (kernels/cublas_library.cu): cuBLAS is opened with dlopen on first use, not linked. Against
// the cuBLAS the build was configured with (on a CUDA build, the toolkit's, which needs no device to load; in the
// emulation, tests/cuda_emu/cublas_emu.cpp), and against files that are not cuBLAS.
#if NQ_HAVE_CUDA
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/cuda_device.h"
#include "cublas_library.cuh"
#include "cuda/cuda_test_support.h"
#include "netquant/error.h"

namespace nq::cuda {
namespace {

// Each function the loader found, with the symbol cuBLAS 13 exports for the cublas_v2.h name. The same library
// also exports the legacy API's functions under the unexpanded names (cublasSgemm, ...), with other signatures.
std::vector<std::pair<const void*, std::string>> functions_and_symbols(const CublasLibrary& lib) {
  return {{reinterpret_cast<const void*>(lib.create), "cublasCreate_v2"},
          {reinterpret_cast<const void*>(lib.destroy), "cublasDestroy_v2"},
          {reinterpret_cast<const void*>(lib.set_stream), "cublasSetStream_v2"},
          {reinterpret_cast<const void*>(lib.set_math_mode), "cublasSetMathMode"},
          {reinterpret_cast<const void*>(lib.sgemm), "cublasSgemm_v2"},
          {reinterpret_cast<const void*>(lib.dgemm), "cublasDgemm_v2"},
          {reinterpret_cast<const void*>(lib.sgemm_strided_batched), "cublasSgemmStridedBatched"},
          {reinterpret_cast<const void*>(lib.dgemm_strided_batched), "cublasDgemmStridedBatched"},
          {reinterpret_cast<const void*>(lib.status_name), "cublasGetStatusName"},
          {reinterpret_cast<const void*>(lib.status_string), "cublasGetStatusString"}};
}

std::string basename_of(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// dladdr names the symbol and the file of each address: every function is the _v2 one, all from one file, and
// that file is the soname the build looks for.
void expect_the_v2_functions_of_one_cublas(const CublasLibrary& lib) {
  std::string library;
  for (const auto& [address, symbol] : functions_and_symbols(lib)) {
    ASSERT_NE(address, nullptr) << symbol;
    Dl_info info{};
    ASSERT_NE(dladdr(address, &info), 0) << symbol;
    ASSERT_NE(info.dli_sname, nullptr) << symbol;
    EXPECT_EQ(std::string(info.dli_sname), symbol);
    if (library.empty()) library = info.dli_fname;
    EXPECT_EQ(info.dli_fname, library) << symbol;
  }
  EXPECT_EQ(basename_of(library), basename_of(cublas_candidates().front()));
}

TEST(CublasLibrary, CandidatesAreTheSonameThenTheConfiguredFile) {
  const std::vector<std::string> names = cublas_candidates();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front().find('/'), std::string::npos) << names.front() << ": the dynamic linker searches for it";
  ASSERT_LE(names.size(), 2u);
  if (names.size() == 2) {
    EXPECT_EQ(names[1].front(), '/') << names[1];
    EXPECT_EQ(basename_of(names[1]), names[0]);
  }
}

TEST(CublasLibrary, OpensTheV2FunctionsOfTheBuildsCublas) {
  expect_the_v2_functions_of_one_cublas(cublas());
  EXPECT_EQ(&cublas(), &cublas()) << "opened once";
}

TEST(CublasLibrary, TakesTheFirstCandidateThatOpens) {
  // The file the process's cuBLAS was opened from (the configured one may not exist where the tests run).
  const std::string opened = cublas_file();
  ASSERT_EQ(opened.front(), '/') << opened;
  expect_the_v2_functions_of_one_cublas(
      open_cublas({"/nonexistent-netquant-dir/" + cublas_candidates().front(), opened}));
}

TEST(CublasLibrary, NamesEachCandidateAndWhyItFailed) {
  // libz: a library that opens (the test links it) but is not cuBLAS.
  const std::vector<std::string> names{"/nonexistent-netquant-dir/libcublas.so.13", "libnetquant-no-such-lib.so.7",
                                       "libz.so.1"};
  try {
    open_cublas(names);
    FAIL() << "opened cuBLAS from files that are not cuBLAS";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot load cuBLAS 13"), std::string::npos) << what;
    EXPECT_NE(what.find("/nonexistent-netquant-dir/libcublas.so.13: cannot open shared object file"),
              std::string::npos) << what;
    EXPECT_NE(what.find("libnetquant-no-such-lib.so.7: cannot open shared object file"), std::string::npos) << what;
    EXPECT_NE(what.find("libz.so.1: has no cublasCreate_v2"), std::string::npos) << what;
    EXPECT_NE(what.find("to LD_LIBRARY_PATH"), std::string::npos) << what;
  }
  try {
    open_cublas({});
    FAIL() << "opened cuBLAS from no file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("no file to try"), std::string::npos) << e.what();
  }
}

// One GEMM on the device through cuBLAS, against fp64 on the host (core/cuda_device.h; `info --cuda-self-test`).
TEST(CublasLibrary, SelfTestMultipliesOnTheDevice) {
  NQ_REQUIRE_CUDA();
  std::string opened_from;
  const double error = cublas_self_test(&opened_from);
  EXPECT_LE(error, kCublasSelfTestTolerance);
  EXPECT_EQ(opened_from, cublas_file());
  EXPECT_EQ(basename_of(opened_from), basename_of(cublas_candidates().front()));
}

}  // namespace
}  // namespace nq::cuda
#endif  // NQ_HAVE_CUDA
