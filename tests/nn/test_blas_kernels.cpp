// OpenBLAS's kernel choice (nn/blas_kernels.h): the rule that names a better core, the CPU features it reads
// (against the kernel's own /proc/cpuinfo flags), and OpenBLAS's report of what it loaded.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "nn/blas_kernels.h"

namespace nq::nn::cpu {
namespace {

const CpuVectorFeatures kNone{false, false};
const CpuVectorFeatures kAvx2{true, false};
const CpuVectorFeatures kAvx512{true, true};

std::string or_null(const char* s) { return s ? s : "(null)"; }

TEST(BlasKernels, PreAvxCoresOnVectorCpusGetTheWidestKernels) {
  for (const char* core : {"Prescott", "prescott", "PRESCOTT", "Core2", "Nehalem", "Penryn", "Atom", "Unknown",
                           "Opteron_SSE3", "Barcelona", "Katmai", "Nano"}) {
    EXPECT_EQ(or_null(better_blas_core(core, kAvx512)), "SkylakeX") << core;
    EXPECT_EQ(or_null(better_blas_core(core, kAvx2)), "Haswell") << core;
    EXPECT_EQ(better_blas_core(core, kNone), nullptr) << core << ": the CPU has nothing better to run";
  }
}

TEST(BlasKernels, OpenBlassOwnVectorChoicesAreKept) {
  // Its AVX-or-later cores (Zen on an AVX-512 Zen 4, Sandybridge, ...) are its decision, not a failed detection.
  for (const char* core : {"Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen", "Sandybridge", "Bulldozer",
                           "Piledriver", "Steamroller", "Excavator", "", "Prescott2", "Presco"}) {
    EXPECT_EQ(better_blas_core(core, kAvx512), nullptr) << core;
    EXPECT_EQ(better_blas_core(core, kAvx2), nullptr) << core;
  }
}

#if defined(__x86_64__) && defined(__linux__)
// The kernel's flags for the first CPU: it lists AVX features only where the OS saves their registers too.
std::set<std::string> proc_cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

TEST(BlasKernels, CpuFeaturesAgreeWithTheKernelsFlags) {
  const std::set<std::string> flags = proc_cpu_flags();
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  auto has = [&](const char* f) { return flags.count(f) > 0; };
  const CpuVectorFeatures f = cpu_vector_features();
  EXPECT_EQ(f.avx2_fma, has("avx2") && has("fma"));
  EXPECT_EQ(f.avx512, f.avx2_fma && has("avx512f") && has("avx512cd") && has("avx512bw") && has("avx512dq") &&
                          has("avx512vl"));
  EXPECT_EQ(f.avx512f, has("avx512f"));
}
#endif

TEST(BlasKernels, OpenBlasReportsTheCoreItLoaded) {
  const std::string core = blas_core(), config = blas_config();
  ASSERT_FALSE(core.empty());
  EXPECT_NE(config.find("OpenBLAS"), std::string::npos) << config;
  // The build line names the loaded core too (DYNAMIC_ARCH builds), or the one core it was built for.
  EXPECT_NE(config.find(core), std::string::npos) << config << " vs " << core;
}

}  // namespace
}  // namespace nq::nn::cpu
