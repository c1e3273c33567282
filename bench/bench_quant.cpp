// CPU quantizer benchmarks (the performance targets "CPU"): HW k-means end to end incl. sort, one ECSQ assign+update pass
// per weight, per-row HW k-means of a 2048 × 4096 matrix, exact DP time and peak extra memory. Heavy-tailed
// synthetic weights (Student-t, 3 dof) and gamma-distributed importance, seeded. Plain main: prints one line per workload, `key=value` pairs.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "netquant/backend.h"
#include "netquant/quantize.h"
#include "netquant/tensor.h"
#include "quant/quant_ops.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void make_data(size_t n, std::vector<float>& w, std::vector<float>& h) {
  std::mt19937_64 rng(42);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 2.0);
  w.resize(n);
  h.resize(n);
  for (size_t i = 0; i < n; ++i) {
    w[i] = static_cast<float>(0.02 * t(rng));
    h[i] = static_cast<float>(g(rng) + 1e-3);
  }
}

// Resets the process's peak RSS (VmHWM) to its current RSS (Linux clear_refs "5"), so that a later
// peak_rss_kb() measures one workload, not the largest one run before it in this process.
void reset_peak_rss() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

// Peak resident set size in kB (VmHWM of /proc/self/status; getrusage's maximum as a fallback).
long peak_rss_kb() {
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kb = -1;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    std::fclose(f);
    if (kb >= 0) return kb;
  }
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "all";
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  std::printf("threads=%d\n", nq::num_threads());
  std::vector<float> w, h;
  auto kmeans = [&](size_t n, int k) {
    make_data(n, w, h);
    nq::QuantizeParams p;
    p.method = nq::Method::kHwKmeans;
    p.k = k;
    p.max_iter = 50;
    p.tol = 0;  // run all 50 iterations unless the assignment stops changing
    p.backend = nq::Backend::kCpu;
    std::vector<double> t;
    int iters = 0;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      const auto res = nq::quantize(w.data(), h.data(), n, p);
      t.push_back(seconds_since(t0));
      iters = res.iterations;
    }
    std::printf("hwkmeans n=%zu k=%d iterations=%d end_to_end_s=%.4f\n", n, k, iters, median(t));
    std::fflush(stdout);
  };
  if (only == "all" || only == "kmeans") {
    kmeans(10000000, 16);
    kmeans(1000000, 256);
  }
  if (only == "all" || only == "ecsq") {
    const size_t n = 10000000;
    make_data(n, w, h);
    const int k = 32;
    std::vector<double> c(k), l(k);
    for (int j = 0; j < k; ++j) {
      c[j] = -0.1 + 0.2 * j / (k - 1);
      l[j] = 1.0 + 0.25 * std::abs(j - k / 2);  // a peaked distribution, as after a few ECSQ iterations
    }
    // Op (a), the per-weight pass, and the pass the ECSQ driver runs over the CPU's resident values (the binned
    // pass at this size; its one-off set-up, the bins' sort, timed apart).
    const auto tb = Clock::now();
    const std::unique_ptr<nq::quant::ResidentValues> resident =
        nq::quant::ops_make_resident_values(nq::Backend::kCpu, w.data(), h.data(), n);
    const double setup_s = seconds_since(tb);
    {  // the set-up as the ECSQ driver makes it: from the sorted copy its start needs anyway (the sort timed apart)
      std::vector<float> ws(n), hs(n);
      const auto ts = Clock::now();
      nq::cpu::sort_pairs(w.data(), h.data(), n, ws.data(), hs.data());
      const double sort_s = seconds_since(ts);
      const auto tv = Clock::now();
      const auto from_sorted = nq::quant::ops_make_resident_values(nq::Backend::kCpu, w.data(), h.data(), n,
                                                                   {ws.data(), hs.data()});
      std::printf("ecsq_setup n=%zu own_sort_s=%.3f from_sorted_copy_s=%.3f (the copy's sort %.3f s)\n", n, setup_s,
                  seconds_since(tv), sort_s);
    }
    for (double lambda : {0.0, 1e-6, 1e-5}) {
      for (const bool driver : {false, true}) {
        nq::quant::AssignAccum acc;
        std::vector<double> t;
        for (int r = 0; r < reps; ++r) {
          const auto t0 = Clock::now();
          if (driver)
            resident->assign_accumulate(c.data(), l.data(), k, lambda, acc);
          else
            nq::cpu::assign_accumulate(w.data(), h.data(), n, c.data(), l.data(), k, lambda, nullptr, acc);
          std::vector<double> means(k);  // the update: O(k)
          for (int j = 0; j < k; ++j) means[j] = acc.sum_h[j] > 0 ? acc.sum_hw[j] / acc.sum_h[j] : c[j];
          t.push_back(seconds_since(t0));
        }
        std::printf("ecsq_pass pass=%s n=%zu k=%d lambda=%g ns_per_weight=%.3f", driver ? "driver" : "op_a", n, k,
                    lambda, 1e9 * median(t) / n);
        if (driver) std::printf(" setup_s=%.3f", setup_s);
        std::printf("\n");
      }
    }
  }
  if (only == "all" || only == "rows") {
    // Per-row HW k-means as SqueezeLLM runs it on a weight matrix: 2048 rows of 4096, k = 16, 50 iterations.
    const int64_t rows = 2048, cols = 4096;
    make_data(static_cast<size_t>(rows * cols), w, h);
    nq::TensorSet model, importance;
    model.add(nq::Tensor::from_f32("layer.weight", {rows, cols}, w));
    importance.add(nq::Tensor::from_f32("layer.weight", {rows, cols}, h));
    nq::ModelQuantizeParams p;
    p.quant.method = nq::Method::kHwKmeans;
    p.quant.k = 16;
    p.quant.max_iter = 50;
    p.quant.tol = 0;
    p.quant.backend = nq::Backend::kCpu;
    p.scope.kind = nq::ScopeKind::kRow;
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      const nq::QuantizedModel q = nq::quantize_model(model, &importance, p);
      t.push_back(seconds_since(t0));
    }
    std::printf("rows_hwkmeans rows=%lld cols=%lld k=16 iterations=50 ns_per_weight=%.2f\n",
                static_cast<long long>(rows), static_cast<long long>(cols), 1e9 * median(t) / (rows * cols));
    std::fflush(stdout);
  }
  if (only == "all" || only == "exact") {
    // argv[3]: the largest N to run (default 1e6); smaller sizes first so a slow machine still reports something.
    const size_t nmax = argc > 3 ? static_cast<size_t>(std::atof(argv[3])) : size_t{1000000};
    for (size_t n : {size_t{100000}, size_t{1000000}}) {
      if (n > nmax) break;
      make_data(n, w, h);
      reset_peak_rss();
      const long rss0 = peak_rss_kb();
      nq::QuantizeParams p;
      p.method = nq::Method::kExact;
      p.k = 256;
      p.backend = nq::Backend::kCpu;
      const auto t0 = Clock::now();
      const auto res = nq::quantize(w.data(), h.data(), n, p);
      const double s = seconds_since(t0);
      std::printf("exact n=%zu k=256 seconds=%.3f peak_extra_mb=%.1f distortion=%.6g\n", n, s,
                  (peak_rss_kb() - rss0) / 1024.0, res.hw_distortion);
      std::fflush(stdout);
    }
  }
  return 0;
}
