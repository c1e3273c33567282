// `netquant info`: version, build options and the devices this process can use.
#include <cstdlib>
#include <iostream>
#include <string>

#include "cli_common.h"
#include "command_registry.h"
#include "core/cuda_device.h"
#include "core/huge_pages.h"
#include "netquant/backend.h"
#include "netquant/distributed.h"
#include "netquant/error.h"
#include "nn/blas_kernels.h"
#include "quant/window_argmin_wide.h"

namespace nq::cli {
namespace {

// Why OpenBLAS runs the kernels it runs, when that was not its own detection.
std::string blas_kernels_note() {
  if (const char* chosen = std::getenv(nn::cpu::kBlasRestartedFrom))
    return std::string(" (OpenBLAS chose ") + chosen + " for this CPU; netquant restarted with OPENBLAS_CORETYPE)";
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE"))
    return std::string(" (OPENBLAS_CORETYPE=") + forced + ")";
  if (const char* better = nn::cpu::better_blas_core(nn::cpu::blas_core(), cpu_vector_features()))
    return std::string(" (generic kernels on a CPU that has more: set OPENBLAS_CORETYPE=") + better + ")";
  return "";
}

void setup_info(CLI::App& sub) {
  auto opts = std::make_shared<CommonOptions>();
  auto self_test = std::make_shared<bool>(false);
  add_common_options(sub, *opts, false);
  sub.add_flag("--cuda-self-test", *self_test, "launch one trivial kernel on the GPU and check its result");
  sub.callback([opts, self_test] {
    apply_common_options(*opts);
    std::cout << "netquant " << NQ_VERSION << "\n";
    std::cout << "cuda build:   " << (NQ_HAVE_CUDA ? "yes" : "no") << "\n";
    const std::string dev = cuda_device_description();
    std::cout << "cuda device:  " << (dev.empty() ? "none" : dev) << "\n";
    // Not opened here: a CUDA build opens cuBLAS only when its Linear or Conv2d op first runs (or for the self-test).
    if (NQ_HAVE_CUDA) std::cout << "cublas:       opened on first use: " << cuda::cublas_search_path() << "\n";
    std::cout << "cpu threads:  " << num_threads() << "\n";
    std::cout << "blas:         " << nn::cpu::blas_config() << "\n";
    std::cout << "blas kernels: " << nn::cpu::blas_core() << blas_kernels_note() << "\n";
    std::cout << "ecsq labels:  "
              << (cpu::wide_window_available() ? "AVX-512, 8 values at a time (k <= 64)" : "scalar window search")
              << "\n";
    std::cout << "huge pages:   " << huge_pages_status() << "\n";
    const ProcessGroup& group = process_group();
    std::cout << "mpi build:    " << (mpi_compiled() ? "yes" : "no") << "\n";
    std::cout << "mpi ranks:    " << group.size << " (this is rank " << group.rank << ", node-local " << group.local_rank
              << ")\n";
    std::cout << "auto backend: " << backend_name(resolve_backend(Backend::kAuto)) << "\n";
    if (*self_test) {
      NQ_CHECK(cuda_available(), ErrorCode::kUnavailable,
               "--cuda-self-test: no CUDA device is available" << (NQ_HAVE_CUDA ? "" : " (built without CUDA)"));
      const double err = cuda::self_test(1 << 20);
      std::cout << "cuda self-test: max error " << err << (err == 0 ? " (ok)" : " (FAILED)") << "\n";
      NQ_CHECK(err == 0, ErrorCode::kInternal, "CUDA self-test produced wrong results");
      std::string opened_from;
      const double gemm_err = cuda::cublas_self_test(&opened_from);
      const bool gemm_ok = gemm_err <= cuda::kCublasSelfTestTolerance;
      std::cout << "cublas self-test: relative error " << gemm_err << (gemm_ok ? " (ok)" : " (FAILED)") << ", "
                << opened_from << "\n";
      NQ_CHECK(gemm_ok, ErrorCode::kInternal, "cuBLAS self-test produced wrong results (relative error " << gemm_err << ")");
    }
  });
}

}  // namespace
NQ_REGISTER_COMMAND(info, "info", "show version, build options and available devices", 100, setup_info);
}  // namespace nq::cli
