// What every CUDA parity test shares: skipping without a device, and the reduced sizes of the compute-sanitizer
// runs (NQ_CUDA_PARITY_QUICK=1, set by bench/gpu/run_gpu_bench.sh).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "netquant/backend.h"

#define NQ_REQUIRE_CUDA() \
  if (!::nq::cuda_available()) GTEST_SKIP() << "no CUDA device"

namespace nq::test {
inline bool cuda_quick() {
  const char* q = std::getenv("NQ_CUDA_PARITY_QUICK");
  return q && *q && std::strcmp(q, "0") != 0;
}
}  // namespace nq::test
