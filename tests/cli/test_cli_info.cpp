// `netquant info`: the OpenBLAS kernels the CLI runs. On a CPU that OpenBLAS does not know (this project's
// development VMs), the CLI starts itself again with OPENBLAS_CORETYPE; a core the user sets is kept.
#include <fstream>
#include <regex>
#include <string>

#include "cli/cli_fixture.h"
#include "core/cuda_device.h"
#include "netquant/backend.h"
#include "nn/blas_kernels.h"
#include "quant/window_argmin_wide.h"

namespace nq {
namespace {

class InfoCli : public CliFixture {
 protected:
  static std::string kernels_of(const CliRun& r) {
    std::smatch m;
    return std::regex_search(r.out, m, std::regex("blas kernels: (\\S+)")) ? m[1].str() : "";
  }
};

TEST_F(InfoCli, RunsKernelsTheCpuCanRun) {
  const CliRun r = run("info");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string core = kernels_of(r);
  ASSERT_FALSE(core.empty()) << r.out;
  // Never the generic pre-AVX kernels on a CPU with AVX2: the restart replaced them (and says so), or OpenBLAS
  // knew the CPU (this test process's own choice, made without the restart, is then the same).
  EXPECT_EQ(nn::cpu::better_blas_core(core, cpu_vector_features()), nullptr) << r.out;
  const std::string loaded_here = nn::cpu::blas_core();
  if (nn::cpu::better_blas_core(loaded_here, cpu_vector_features()) != nullptr) {
    EXPECT_NE(r.out.find("OpenBLAS chose " + loaded_here + " for this CPU; netquant restarted"), std::string::npos)
        << r.out;
  } else if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    EXPECT_EQ(core, loaded_here) << r.out;
  }
}

// cuBLAS is opened only when the CUDA backend multiplies matrices (kernels/cublas_library.cu), so a CPU run of a
// CUDA build does not load its 500 MB. The dynamic linker's own log (LD_DEBUG=files) is the oracle: it lists
// OpenBLAS, which the CLI links, and must list no cuBLAS.
TEST_F(InfoCli, ACpuRunLoadsNoCublas) {
  write_model({{"fc.weight", {33, 7}}, {"fc.bias", {33}}}, 5);
  const std::string quantize = "quantize '" + file("model.safetensors") + "' --importance '" +
                               file("imp.safetensors") + "' -o '" + file("q.nq") + "' --k 4 --backend cpu";
  for (const std::string& args : {std::string("info"), quantize}) {
    const CliRun r = shell(std::string("LD_DEBUG=files '") + NQ_CLI_PATH + "' " + args);
    ASSERT_EQ(r.status, 0) << args << "\n" << r.err.substr(0, 4000);
    EXPECT_NE(r.err.find("libopenblas"), std::string::npos) << "the linker's log is not there: " << args;
    EXPECT_EQ(r.err.find("libcublas"), std::string::npos) << args;
  }
}

// The ECSQ label search the CPU backend runs: AVX-512 exactly where this process finds AVX-512F.
TEST_F(InfoCli, NamesTheEcsqLabelSearch) {
  const CliRun r = run("info");
  ASSERT_EQ(r.status, 0) << r.err;
  const bool wide = cpu::wide_window_available();
  EXPECT_NE(r.out.find(wide ? "ecsq labels:  AVX-512" : "ecsq labels:  scalar"), std::string::npos) << r.out;
#if defined(__x86_64__)
  EXPECT_EQ(wide, __builtin_cpu_supports("avx512f") != 0) << "the wide path is on exactly where the CPU has it";
#else
  EXPECT_FALSE(wide) << "the wide path is x86-64 only";
#endif
}

// The huge-page line: what the kernel's transparent_hugepage mode is (read here as the oracle), and off under the
// documented switch.
TEST_F(InfoCli, SaysWhetherWorkArraysAskForHugePages) {
  const CliRun r = run("info");
  ASSERT_EQ(r.status, 0) << r.err;
#ifdef __linux__
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  if (!std::getline(f, modes)) {
    EXPECT_NE(r.out.find("huge pages:   asked for, but this kernel has no transparent huge pages"), std::string::npos)
        << r.out;
  } else {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(modes, m, std::regex("\\[(\\w+)\\]"))) << modes;
    const std::string mode = m[1].str();
    const std::string expected = mode == "never" ? "but the kernel has them off (transparent_hugepage: never)"
                                                 : "transparent_hugepage: " + mode + ")";
    EXPECT_NE(r.out.find("huge pages:   asked for ("), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  }
#else
  EXPECT_NE(r.out.find("huge pages:   not on this platform"), std::string::npos) << r.out;
#endif
  const CliRun off = shell(std::string("NQ_HUGE_PAGES=0 '") + NQ_CLI_PATH + "' info");
  ASSERT_EQ(off.status, 0) << off.err;
#ifdef __linux__
  EXPECT_NE(off.out.find("huge pages:   off (NQ_HUGE_PAGES=0)"), std::string::npos) << off.out;
#endif
}

// --cuda-self-test runs one kernel where a device answers (exit 0, "(ok)"), and is refused without one (exit 3,
// naming the flag rather than a --backend the user never gave).
TEST_F(InfoCli, CudaSelfTestNeedsADevice) {
  const CliRun r = run("info --cuda-self-test");
  if (cuda_available()) {
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("cuda self-test: max error 0 (ok)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("cublas self-test: relative error "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(" (ok), /"), std::string::npos) << r.out;
  } else {
    EXPECT_EQ(r.status, 3) << r.err;
    EXPECT_NE(r.err.find("error: --cuda-self-test: no CUDA device is available"), std::string::npos) << r.err;
  }
}

// Where a CUDA build will look for cuBLAS, said without opening it (ACpuRunLoadsNoCublas checks that `info` does
// not); a CPU-only build has no such line.
TEST_F(InfoCli, SaysWhereCublasIsLookedFor) {
  const CliRun r = run("info");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string path = cuda::cublas_search_path();
  if (NQ_HAVE_CUDA) {
    EXPECT_EQ(path.rfind("libcublas.so.", 0), 0u) << path;
    EXPECT_NE(r.out.find("cublas:       opened on first use: " + path + "\n"), std::string::npos) << r.out;
  } else {
    EXPECT_EQ(path, "");
    EXPECT_EQ(r.out.find("cublas:"), std::string::npos) << r.out;
  }
}

// Not `info` itself: the first word of a command line that names no command is named back (exit 2).
TEST_F(InfoCli, AnUnknownCommandIsNamed) {
  const CliRun r = run("quantise model.safetensors -o x.nq");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("error: unknown command 'quantise'"), std::string::npos) << r.err;
  EXPECT_EQ(run("--version").status, 0);
}

TEST_F(InfoCli, ACoreTheUserSetsIsKept) {
  if (nn::cpu::blas_config().find("DYNAMIC_ARCH") == std::string::npos)
    GTEST_SKIP() << "OpenBLAS built for one core: OPENBLAS_CORETYPE has no effect";
  // Prescott runs on every x86-64 CPU; the restart must not override it, nor loop.
  const CliRun r = shell("OPENBLAS_CORETYPE=Prescott '" + std::string(NQ_CLI_PATH) + "' info");
  ASSERT_EQ(r.status, 0) << r.err;
#if defined(__x86_64__)
  EXPECT_EQ(kernels_of(r), "Prescott") << r.out;
#endif
  EXPECT_NE(r.out.find("(OPENBLAS_CORETYPE=Prescott)"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace nq
