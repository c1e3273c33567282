// One ECSQ / k-means assign+accumulate pass (nq::cpu::assign_accumulate) in ns per weight, with a checksum of
// the labels and the bits of every sum so that two builds can be compared for identical results.
// Data as bench_quant: Student-t(3) ×0.02 weights, gamma(0.7, 2) importances, seeded; k = 32 centres on
// [−0.1, 0.1] with a peaked code-length profile. Every λ > 0 runs twice, alternating, with the AVX-512 window
// search (window_argmin_wide.h) and with the scalar one, where the CPU has AVX-512: the two must give the same
// checksum. Each λ then runs the binned pass (binned_pass.h) on the same codebook: its counts must equal op (a)'s,
// its time is quoted as a ratio to op (a)'s, and its host part alone (plan_only: what the CUDA backend's pass runs on
// the host) in ms. Usage: bench_ecsq_pass [N=1e7] [reps=5] [k=32]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "quant/binned_pass.h"
#include "quant/quant_ops.h"
#include "quant/window_argmin_wide.h"

namespace {
using Clock = std::chrono::steady_clock;

uint64_t mix(uint64_t hsh, uint64_t v) { return (hsh ^ v) * 0x100000001b3ull + (hsh >> 29); }
uint64_t bits(double d) { uint64_t u; std::memcpy(&u, &d, 8); return u; }
}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? static_cast<size_t>(std::atof(argv[1])) : size_t{10000000};
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  std::vector<float> w(n), h(n);
  std::mt19937_64 rng(42);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 2.0);
  for (size_t i = 0; i < n; ++i) {
    w[i] = static_cast<float>(0.02 * t(rng));
    h[i] = static_cast<float>(g(rng) + 1e-3);
  }
  const int k = argc > 3 ? std::atoi(argv[3]) : 32;
  std::vector<double> c(k), l(k);
  for (int j = 0; j < k; ++j) {
    c[j] = -0.1 + 0.2 * j / (k - 1);
    l[j] = 1.0 + 0.25 * std::abs(j - k / 2);
  }
  std::vector<int32_t> labels(n);
  const auto tb0 = Clock::now();
  const nq::quant::BinnedValues binned(w.data(), h.data(), n);
  const double build_s = std::chrono::duration<double>(Clock::now() - tb0).count();
  std::printf("threads=%d n=%zu k=%d binned_build=%.3f s (%zu bins)\n", omp_get_max_threads(), n, k, build_s,
              binned.bins());
  const bool wide = nq::cpu::wide_window_available();
  for (double lambda : {0.0, 1e-5, 1e-4, 3e-4}) {
    const int paths = lambda > 0 && wide ? 2 : 1;  // λ = 0 with every cluster live takes neither window search
    nq::quant::AssignAccum acc;
    std::vector<double> ts[2];
    for (int r = 0; r < reps; ++r)
      for (int path = 0; path < paths; ++path) {  // alternated, so both see the same machine
        nq::cpu::set_wide_window_enabled(path == 0 && wide);
        const auto t0 = Clock::now();
        nq::cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, labels.data(), acc);
        ts[path].push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
    nq::cpu::set_wide_window_enabled(true);
    // (the checksum is of the last run, the scalar path's where both ran; the wide path's is checked below)
    auto checksum = [&] {
      uint64_t hsh = 1469598103934665603ull;
      for (size_t i = 0; i < n; ++i) hsh = mix(hsh, static_cast<uint64_t>(labels[i]));
      for (int j = 0; j < k; ++j) {
        hsh = mix(hsh, bits(acc.sum_h[j])); hsh = mix(hsh, bits(acc.sum_hw[j]));
        hsh = mix(hsh, bits(acc.sum_w[j])); hsh = mix(hsh, static_cast<uint64_t>(acc.count[j]));
      }
      return mix(mix(mix(hsh, bits(acc.distortion)), bits(acc.sq_error)), bits(acc.cost));
    };
    const uint64_t hsh = checksum();
    if (paths == 2) {
      nq::cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, labels.data(), acc);
      if (checksum() != hsh) {
        std::fprintf(stderr, "error: the AVX-512 and scalar window searches differ at lambda=%g\n", lambda);
        return 1;
      }
    }
    double ent = 0;
    for (int j = 0; j < k; ++j)
      if (acc.count[j] > 0) { const double p = double(acc.count[j]) / n; ent -= p * std::log2(p); }
    for (auto& t : ts) std::sort(t.begin(), t.end());
    std::printf("ecsq_pass lambda=%g entropy_bits=%.3f ns_per_weight min=%.3f median=%.3f checksum=%016llx",
                lambda, ent, 1e9 * ts[0].front() / n, 1e9 * ts[0][ts[0].size() / 2] / n, (unsigned long long)hsh);
    if (paths == 2)
      std::printf(" scalar_window_min=%.3f scalar_window_median=%.3f", 1e9 * ts[1].front() / n,
                  1e9 * ts[1][ts[1].size() / 2] / n);
    std::printf("\n");
    // The binned pass (binned_pass.h) on the same codebook, alternated with op (a) above: its counts must be op
    // (a)'s, and its speed is quoted as a ratio to op (a)'s in this run.
    nq::quant::AssignAccum bacc;
    size_t ones = 0;
    std::vector<double> tb;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      binned.assign_accumulate(c.data(), l.data(), k, lambda, bacc, &ones);
      tb.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::sort(tb.begin(), tb.end());
    // Its host part alone (BinnedPlan: what the CUDA backend runs on the host before op (a) over the values left).
    std::vector<double> tp;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      const nq::quant::BinnedPlan plan = binned.plan(c.data(), l.data(), k, lambda);
      tp.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      if (plan.whole) tp.back() = 0;
    }
    std::sort(tp.begin(), tp.end());
    if (bacc.count != acc.count) {
      std::fprintf(stderr, "error: the binned pass's counts differ from op (a)'s at lambda=%g\n", lambda);
      return 1;
    }
    std::printf("binned_pass lambda=%g ns_per_weight min=%.3f median=%.3f one_by_one=%.2f%% speedup_vs_op_a=%.1fx "
                "distortion_rel_diff=%.1e plan_only_ms min=%.3f median=%.3f\n",
                lambda, 1e9 * tb.front() / n, 1e9 * tb[tb.size() / 2] / n, 100.0 * ones / n, ts[0].front() / tb.front(),
                std::fabs(bacc.distortion - acc.distortion) / acc.distortion, 1e3 * tp.front(),
                1e3 * tp[tp.size() / 2]);
    std::fflush(stdout);
  }
  return 0;
}
