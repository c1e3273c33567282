// A run that the system refuses memory: the documented out-of-memory exit (3), one `error:` line, and no output or
// temporary left, whether its threads cannot start, its input cannot be mapped or an array is refused part-way.
// The refusal is real: `ulimit -v` a little over what the same job on a tiny model needs, found by bisection, so
// that what does not fit is the larger model's own data.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <string>
#include <vector>

#include "address_space_limit.h"
#include "cli/cli_fixture.h"
#include "scratch_dir.h"

namespace nq {
namespace {

class OutOfMemory : public CliFixture {
 protected:
  // `netquant ARGS` under an address-space limit of `kib` KiB, with OpenBLAS without its thread pool (its
  // threads' buffers would be address space too) and a timeout.
  CliRun run_under_limit(long kib, const std::string& args) const {
    return shell("ulimit -v " + std::to_string(kib) + " && OPENBLAS_NUM_THREADS=1 exec timeout 60 '" + NQ_CLI_PATH +
                 "' " + args);
  }
  // `netquant quantize MODEL -o OUT` so limited: by default one thread (each thread's stack and malloc arena would
  // be address space too), and the CPU backend.
  CliRun quantize_under_limit(long kib, const std::string& model, const std::string& out, int threads = 1) const {
    return run_under_limit(kib, "quantize '" + file(model) + "' -o '" + file(out) +
                                    "' --method hw-kmeans --k 16 --backend cpu --quiet --threads " +
                                    std::to_string(threads));
  }
  // What the scratch directory holds besides the runner's captured stdout and stderr.
  std::vector<std::string> entries() const {
    std::vector<std::string> names = test::entries_of(dir_);
    names.erase(std::remove_if(names.begin(), names.end(),
                               [](const std::string& n) { return n == "stdout" || n == "stderr"; }),
                names.end());
    return names;
  }
};

TEST_F(OutOfMemory, ARefusedAllocationExitsThreeAndLeavesNoOutput) {
  if (test::kUnderAddressSanitizer) GTEST_SKIP() << "AddressSanitizer: no address-space limit leaves room";
  write_model({{"w", {8, 8}}}, 1);
  ASSERT_EQ(std::rename(file("model.safetensors").c_str(), file("tiny.safetensors").c_str()), 0);
  write_model({{"w", {2000, 2000}}}, 2);  // 16 MB of weights: the job needs that and twice as much to sort them
  ASSERT_EQ(std::rename(file("model.safetensors").c_str(), file("big.safetensors").c_str()), 0);
  std::remove(file("imp.safetensors").c_str());

  // The least limit, to 1 MiB, under which the tiny job runs (the program, its libraries and their set-up).
  // KiB: 16 MiB is too little for anything, 64 GiB enough for all of it (or the limit this test runs under).
  long lo = 16 << 10, hi = 64L << 20;
  rlimit inherited{};
  if (getrlimit(RLIMIT_AS, &inherited) == 0 && inherited.rlim_max != RLIM_INFINITY)
    hi = std::min<long>(hi, static_cast<long>(inherited.rlim_max / 1024));
  const CliRun roomy = quantize_under_limit(hi, "tiny.safetensors", "tiny.nq");
  ASSERT_EQ(roomy.status, 0) << "the tiny job failed under a limit of " << hi << " KiB: " << roomy.err;
  while (hi - lo > 1024) {
    const long mid = lo + (hi - lo) / 2;
    (quantize_under_limit(mid, "tiny.safetensors", "tiny.nq").status == 0 ? hi : lo) = mid;
  }
  std::remove(file("tiny.nq").c_str());
  const std::vector<std::string> inputs = {"big.safetensors", "tiny.safetensors"};
  ASSERT_EQ(entries(), inputs);

  // At it, a second thread has no room for its stack: refused up front, where the OpenMP runtime would have ended
  // the process with its own message and status 1.
  const CliRun two_threads = quantize_under_limit(hi, "tiny.safetensors", "tiny.nq", 2);
  EXPECT_EQ(two_threads.status, 3) << two_threads.err;
  EXPECT_EQ(two_threads.err.rfind("error: cannot start 2 threads (", 0), 0u) << two_threads.err;
  EXPECT_EQ(entries(), inputs) << "a refused run left output or a temporary";

  // 4 MiB over it, the larger model's 16 MB cannot even be mapped: an error that names the file.
  const CliRun unmapped = quantize_under_limit(hi + (4 << 10), "big.safetensors", "big.nq");
  EXPECT_EQ(unmapped.status, 3) << unmapped.err;
  EXPECT_EQ(unmapped.err, "error: " + file("big.safetensors") + ": out of memory to map its 16000080 bytes\n");
  EXPECT_EQ(unmapped.out, "");
  EXPECT_EQ(entries(), inputs) << "a refused run left output or a temporary";

  // 32 MiB over it, the model is mapped but its sorted copy (2 × 16 MB) is refused mid-run: std::bad_alloc,
  // caught by main.
  const CliRun refused = quantize_under_limit(hi + (32 << 10), "big.safetensors", "big.nq");
  EXPECT_EQ(refused.status, 3) << refused.err;
  EXPECT_EQ(refused.err.rfind("error: out of memory (an allocation was refused", 0), 0u) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(entries(), inputs) << "a refused run left output or a temporary";

  // prune under limits from the mapping's refusal to room enough: each run either writes its output or ends with
  // status 3 and leaves nothing (its selection used to throw std::bad_alloc inside an OpenMP region: abort, with
  // the output's temporary left behind).
  for (const long over_mib : {8L, 24L, 40L, 56L, 72L}) {
    const CliRun pruned = run_under_limit(hi + (over_mib << 10), "prune '" + file("big.safetensors") + "' -o '" +
                                                                     file("pruned.safetensors") +
                                                                     "' --prune 0.5 --quiet --threads 1");
    EXPECT_TRUE(pruned.status == 0 || pruned.status == 3) << "+" << over_mib << " MiB: " << pruned.err;
    if (pruned.status == 0) {
      EXPECT_EQ(std::remove(file("pruned.safetensors").c_str()), 0) << "+" << over_mib << " MiB";
    } else {
      EXPECT_EQ(pruned.err.rfind("error: ", 0), 0u) << pruned.err;
      EXPECT_NE(pruned.err.find("memory"), std::string::npos) << pruned.err;
    }
    EXPECT_EQ(entries(), inputs) << "+" << over_mib << " MiB: a run left output or a temporary";
  }

  // With room for it, the same job runs: the limit, not the model, refused the first.
  const CliRun fits = quantize_under_limit(hi + (512 << 10), "big.safetensors", "big.nq");
  EXPECT_EQ(fits.status, 0) << fits.err;
  EXPECT_EQ(entries(), (std::vector<std::string>{"big.nq", "big.safetensors", "tiny.safetensors"}));
}

}  // namespace
}  // namespace nq
