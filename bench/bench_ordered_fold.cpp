// The cost of one ordered fold (the sharded quantizer's per-pass reduction) under mpirun: the running total
// passes rank 0 → 1 → ... → P−1 and is broadcast back. Prints microseconds per fold for the widths of k = 16
// and k = 256 (3k + 3 doubles), on rank 0. Usage: mpirun -np P bench_ordered_fold [REPEATS]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "netquant/distributed.h"
#include "pipeline/collectives.h"

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 2000;
  const nq::ProcessGroup& g = nq::process_group();
  for (const int k : {16, 256}) {
    const size_t width = 3 * static_cast<size_t>(k) + 3;
    const std::vector<std::vector<double>> partials(4, std::vector<double>(width, 1.0));  // a rank's few blocks
    double sink = 0;
    for (int i = 0; i < 100; ++i) sink += nq::dist::ordered_fold(partials, width)[0];  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) sink += nq::dist::ordered_fold(partials, width)[0];
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    const double us = std::chrono::duration<double, std::micro>(elapsed).count() / repeats;
    if (g.is_root())
      std::printf("ranks=%d k=%d width_bytes=%zu us_per_fold=%.2f (check %g)\n", g.size, k, width * 8, us, sink);
  }
  return 0;
}
