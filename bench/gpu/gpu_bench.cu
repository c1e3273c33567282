// GPU benchmark (CUDA events): measures the device's copy bandwidth in the same run and reports every quantizer
// kernel's effective bandwidth as a fraction of it (the performance targets "GPU"). One dense line per measurement:
//   name  size  median_ms  GB/s  %copy  (extra)
// Workloads: fused assign+accumulate at N = 1e8 and 1e9 (when memory allows), k = 16, 32, 256, λ = 0 and > 0,
// for k ≤ 32 in each of its forms (kFusedForms);
// per-row k-means (rows of 4096, k = 16, 50 iterations, 1e9 weights or what fits); a 64-point λ sweep at N = 1e8
// run to convergence with warm starts (a host loop of single passes: fused passes, then the library's binned
// passes), and one binned pass at 32 to 256 importance bins against the fused pass; LeNet-5 batch 1024 Hessian
// pass vs gradient pass; one ECSQ pass of op (f) over 2^18 rows of 4096 (k = 16, λ > 0, a codebook per row) and row-scope ECSQ
// through quantize_model on 8192 such rows, end to end; and, last, the same 64 λ
// through nq::quantize_lambdas (all λ in lockstep, end to end).
// Usage: nq_gpu_bench [--quick | --tiny | --fused K LAMBDA N [FORM]]   (--quick: N = 1e7, fewer repetitions — a smoke
// test on the device; --tiny: every workload at a few rows or 10^5 weights, one repetition — the program's own
// check, which ctest runs on the host emulation of the device, tests/cuda_emu; --fused: one fused pass, after one
// warm-up pass, in FORM (default, no-thresholds or per-warp), for a profiler: run_gpu_bench.sh's `profile` phase
// runs it under Nsight Compute)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "assign_accumulate.cuh"
#include "coding/bit_io.h"
#include "coding/huffman.h"
#include "coding/huffman_pack.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/backend.h"
#include "netquant/nn.h"
#include "netquant/quantize.h"
#include "nn/network.h"
#include "nn/nn_ops.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/binned_pass.h"
#include "resident_values.cuh"
#include "rows_kmeans.cuh"

namespace {

using nq::cuda::DeviceBuffer;

// Median of `reps` timings (ms) of fn after `warm` warm-up runs, each timed with CUDA events on stream 0.
double time_ms(const std::function<void()>& fn, int reps, int warm = 2) {
  for (int i = 0; i < warm; ++i) fn();
  cudaEvent_t a, b;
  NQ_CUDA_CHECK(cudaEventCreate(&a));
  NQ_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    NQ_CUDA_CHECK(cudaEventRecord(a));
    fn();
    NQ_CUDA_CHECK(cudaEventRecord(b));
    NQ_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    NQ_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  NQ_CUDA_CHECK(cudaEventDestroy(a));
  NQ_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double g_copy_gbs = 0;  // device-to-device copy bandwidth, GB/s (bytes read + written)

void report(const std::string& name, double n, double ms, double bytes, const std::string& extra = "") {
  const double gbs = bytes > 0 ? bytes / (ms * 1e-3) / 1e9 : 0;
  std::printf("%-40s %12.4g %10.3f ms %9.1f GB/s %6.1f%% copy  %s\n", name.c_str(), n, ms, gbs,
              g_copy_gbs > 0 ? 100.0 * gbs / g_copy_gbs : 0.0, extra.c_str());
  std::fflush(stdout);
}

// Heavy-tailed weights and gamma importances, generated on the host in slices and uploaded (never zeros).
void fill_data(float* d_w, float* d_h, size_t n, uint64_t seed) {
  const size_t slice = size_t{1} << 24;
  std::vector<float> w(std::min(n, slice)), h(std::min(n, slice));
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> t(3.0f);
  std::gamma_distribution<float> g(0.7f, 1.0f);
  for (size_t i = 0; i < std::min(n, slice); ++i) {
    w[i] = 0.05f * t(rng);
    h[i] = g(rng) + 1e-6f;
  }
  for (size_t off = 0; off < n; off += slice) {  // repeat the slice (rotated) to fill large N quickly
    const size_t c = std::min(slice, n - off);
    const size_t rot = (off / slice * 7919) % w.size();
    std::rotate(w.begin(), w.begin() + rot, w.end());
    NQ_CUDA_CHECK(cudaMemcpy(d_w + off, w.data(), c * sizeof(float), cudaMemcpyHostToDevice));
    NQ_CUDA_CHECK(cudaMemcpy(d_h + off, h.data(), c * sizeof(float), cudaMemcpyHostToDevice));
  }
}

// The same data on the host, for the workloads that take host pointers (the library's entry points).
void host_data(size_t n, uint64_t seed, std::vector<float>& w, std::vector<float>& h) {
  DeviceBuffer<float> dw(n), dh(n);
  fill_data(dw.get(), dh.get(), n, seed);
  w.resize(n);
  h.resize(n);
  dw.download(w.data(), n);
  dh.download(h.data(), n);
}

struct Codebook {
  std::vector<double> c, l;
};
Codebook uniform_codebook(int k, double lo, double hi) {
  Codebook cb;
  for (int j = 0; j < k; ++j) {
    cb.c.push_back(lo + (hi - lo) * (j + 0.5) / k);
    cb.l.push_back(std::log2(static_cast<double>(k)) + 0.5 * std::fabs(j - k / 2.0) / k);  // non-uniform rates
  }
  return cb;
}

void bench_copy(size_t bytes) {
  DeviceBuffer<unsigned char> a(bytes), b(bytes);
  NQ_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
  const double ms = time_ms([&] { NQ_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice)); }, 20);
  g_copy_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
  report("d2d copy (read+write)", static_cast<double>(bytes), ms, 2.0 * bytes);
}

// bench_fused's workload: the median time of one fused pass over (w, h) under the k-level uniform codebook at λ,
// labels written when given; the last pass's sums into *last when given.
double fused_pass_ms(const float* w, const float* h, size_t n, int k, double lambda, int32_t* labels, int reps,
                     int warm = 2, nq::quant::AssignAccum* last = nullptr) {
  const Codebook cb = uniform_codebook(k, -0.15, 0.15);
  nq::quant::AssignAccum acc;
  const double ms = time_ms([&] {
    nq::cuda::assign_accumulate_device(w, h, n, cb.c.data(), cb.l.data(), k, lambda, labels, acc);
  }, reps, warm);
  if (last) *last = acc;
  return ms;
}

// The fused pass's forms (kernels/assign_accumulate.cuh FusedStrategy): the default (per-thread accumulators up to
// k = 32, λ = 0 labels by float thresholds), the same without the thresholds, and the per-warp accumulators that
// every k used before (grouped by label with __match_any_sync, labels by the fp64 argmin).
struct FusedForm {
  const char* name;  // "" for the default
  nq::cuda::FusedStrategy strategy;
  int only_k;         // 0: every k ≤ 32 (the default form: every k); else that k alone
  bool only_lambda0;  // timed at λ = 0 alone
  bool applies(int k, double lambda) const {
    if (!*name) return true;
    return k <= 32 && (only_k == 0 || only_k == k) && (lambda == 0 || !only_lambda0);
  }
};
// Then the per-thread form at other CTA sizes (FusedStrategy::private_warps), where k's accumulators fit: smaller
// CTAs, more of them an SM (the H100's 228 KB of shared memory an SM bound the warps it runs). The defaults are 6
// warps at k = 16 and 3 at k = 32.
const FusedForm kFusedForms[] = {{"", {true, true, 0}, 0, false},
                                 {" [no thresholds]", {true, false, 0}, 0, false},
                                 {" [per-warp]", {false, false, 0}, 0, false},
                                 {" [5 warps]", {true, true, 5}, 16, true},
                                 {" [3 warps]", {true, true, 3}, 16, true},
                                 {" [2 warps]", {true, true, 2}, 32, true},
                                 {" [1 warp]", {true, true, 1}, 32, true}};

void bench_fused(size_t n, int reps) {
  DeviceBuffer<float> w(n), h(n);
  DeviceBuffer<int32_t> labels(n);
  fill_data(w.get(), h.get(), n, 42);
  for (int k : {16, 32, 256})
    for (double lambda : {0.0, 1e-5}) {
      char name[128];
      std::vector<int64_t> counts;
      for (const FusedForm& form : kFusedForms) {
        if (!form.applies(k, lambda)) continue;
        nq::cuda::set_fused_strategy(form.strategy);
        nq::quant::AssignAccum acc;
        const double ms = fused_pass_ms(w.get(), h.get(), n, k, lambda, nullptr, reps, 2, &acc);
        if (counts.empty()) counts = acc.count;
        std::snprintf(name, sizeof name, "fused k=%d lambda=%g%s", k, lambda, form.name);
        report(name, static_cast<double>(n), ms, 8.0 * n, acc.count == counts ? "" : "counts DIFFER from the default form");
      }
      nq::cuda::set_fused_strategy(kFusedForms[0].strategy);
      if (k == 32) {
        std::snprintf(name, sizeof name, "fused+labels k=%d lambda=%g", k, lambda);
        report(name, static_cast<double>(n), fused_pass_ms(w.get(), h.get(), n, k, lambda, labels.get(), reps),
               12.0 * n);
      }
    }
}

// Per-row k-means (op (e)): rows of 4096, k = 16, linear init, up to 50 iterations (tol = 0: only the fixed point
// stops a row early), the whole driver per row on chip. The CPU op runs the first rows of the same data in the same
// program for the speed-up, and their results must equal the device's bit for bit.
void bench_rows(size_t total, int reps) {
  const int64_t len = 4096;
  const int k = 16;
  const int64_t rows = static_cast<int64_t>(total / len);
  const size_t n = static_cast<size_t>(rows * len);
  DeviceBuffer<float> w(n), h(n);
  DeviceBuffer<int32_t> labels(n), count(static_cast<size_t>(rows)), iters(static_cast<size_t>(rows));
  DeviceBuffer<uint8_t> conv(static_cast<size_t>(rows));
  DeviceBuffer<double> centers(static_cast<size_t>(rows) * k);
  DeviceBuffer<int64_t> begin;
  fill_data(w.get(), h.get(), n, 7);
  std::vector<int64_t> hb(static_cast<size_t>(rows) + 1);
  for (int64_t r = 0; r <= rows; ++r) hb[static_cast<size_t>(r)] = r * len;
  begin.upload(hb.data(), hb.size());
  nq::quant::RowsKmeansJob job;
  job.w = w.get();
  job.h = h.get();
  job.row_begin = begin.get();
  job.rows = rows;
  job.k = k;
  job.max_iter = 50;
  job.tol = 0.0;
  const nq::quant::RowsKmeansOut out{centers.get(), count.get(), labels.get(), iters.get(), conv.get()};
  const double ms = time_ms([&] { nq::cuda::rows_kmeans_device(job, out, len); }, reps, 1);
  std::vector<int32_t> it(static_cast<size_t>(rows));
  iters.download(it.data(), it.size());
  double mean_it = 0;
  for (const int32_t v : it) mean_it += v;
  mean_it /= std::max<int64_t>(rows, 1);

  // The CPU op on the first rows of the same data.
  const int64_t cpu_rows = std::min<int64_t>(rows, 512);
  const size_t cn = static_cast<size_t>(cpu_rows * len);
  std::vector<float> cw(cn), ch(cn);
  w.download(cw.data(), cn);
  h.download(ch.data(), cn);
  nq::quant::RowsKmeansJob cj = job;
  cj.w = cw.data();
  cj.h = ch.data();
  cj.row_begin = hb.data();
  cj.rows = cpu_rows;
  std::vector<double> cc(static_cast<size_t>(cpu_rows) * k), gc(static_cast<size_t>(rows) * k);
  std::vector<int32_t> ccount(static_cast<size_t>(cpu_rows)), clabels(cn), citers(static_cast<size_t>(cpu_rows));
  std::vector<uint8_t> cconv(static_cast<size_t>(cpu_rows));
  const auto t0 = std::chrono::steady_clock::now();
  nq::cpu::rows_kmeans(cj, {cc.data(), ccount.data(), clabels.data(), citers.data(), cconv.data()});
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  centers.download(gc.data(), gc.size());
  std::vector<int32_t> gcount(static_cast<size_t>(rows));
  count.download(gcount.data(), gcount.size());
  bool same = true;
  for (int64_t r = 0; r < cpu_rows; ++r)
    for (int j = 0; j < ccount[static_cast<size_t>(r)]; ++j)
      same = same && gcount[static_cast<size_t>(r)] == ccount[static_cast<size_t>(r)] &&
             std::memcmp(&gc[static_cast<size_t>(r) * k + j], &cc[static_cast<size_t>(r) * k + j], sizeof(double)) == 0;
  const double speedup = (cpu_ms / static_cast<double>(cn)) / (ms / static_cast<double>(n));
  // Rows in flight per SM (the occupancy calculator, registers included): the Lloyd phase is latency-bound.
  const int ctas = nq::cuda::rows_kmeans_resident_ctas(len, k);
  char extra[240];
  std::snprintf(extra, sizeof extra,
                "rows=%lld x 4096, k=16, mean %.1f it, %d rows/SM (target <=150 ms per 1e9); CPU op %.0fx "
                "slower/weight; %s",
                static_cast<long long>(rows), mean_it, ctas, speedup, same ? "bits equal CPU" : "MISMATCH vs CPU");
  report("per-row kmeans", static_cast<double>(n), ms, 12.0 * n, extra);
}

// Exact per-row k-means (op (e) with exact): rows of 4096, k = 16, one thread per row on the device, against the
// CPU op on the first 64 rows in the same run (speed-up per row; the centres must be equal bit for bit).
void bench_rows_exact(int64_t rows) {
  const int64_t len = 4096;
  const int k = 16;
  const size_t n = static_cast<size_t>(rows * len);
  std::vector<float> w, h;
  host_data(n, 11, w, h);
  std::vector<int64_t> begin(static_cast<size_t>(rows) + 1);
  for (int64_t r = 0; r <= rows; ++r) begin[static_cast<size_t>(r)] = r * len;
  nq::quant::RowsKmeansJob job;
  job.w = w.data();
  job.h = h.data();
  job.row_begin = begin.data();
  job.rows = rows;
  job.k = k;
  job.exact = true;
  std::vector<double> gc(static_cast<size_t>(rows) * k), cc(gc.size());
  std::vector<int32_t> gcount(static_cast<size_t>(rows)), ccount(gcount.size()), labels(n), iters(gcount.size());
  std::vector<uint8_t> conv(gcount.size());
  const auto t0 = std::chrono::steady_clock::now();
  nq::cuda::rows_kmeans(job, {gc.data(), gcount.data(), labels.data(), iters.data(), conv.data()});
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  job.rows = std::min<int64_t>(rows, 64);
  const auto t1 = std::chrono::steady_clock::now();
  nq::cpu::rows_kmeans(job, {cc.data(), ccount.data(), labels.data(), iters.data(), conv.data()});
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  const bool same = std::memcmp(gc.data(), cc.data(), static_cast<size_t>(job.rows) * k * sizeof(double)) == 0;
  char extra[200];
  std::snprintf(extra, sizeof extra, "rows=%lld x 4096, k=16, end to end; CPU op %.1f ms/row (%.0fx slower/row); %s",
                static_cast<long long>(rows), cpu_ms / job.rows, (cpu_ms / job.rows) / (ms / rows),
                same ? "bits equal CPU" : "MISMATCH vs CPU");
  report("per-row exact", static_cast<double>(n), ms, 0, extra);
}

// 64-point λ sweep, ECSQ to convergence (Choi et al. 2017 §5.4), each λ warm-started from the previous one. Each
// pass is the fused op (a) over the resident values, or (binned) the resident values' pass of the library
// (make_resident_values: the binned pass's plan on the host, op (a) over the values it leaves on the device); its
// one-off set-up (the host's bins, sorts and prefix sums, and the upload) is reported apart. The binned line also
// runs one pass of each kind on the first codebook: their counts must be equal.
void bench_sweep(size_t n, bool binned, size_t bins = 0) {
  const int k = 32;
  DeviceBuffer<float> w, h;
  std::unique_ptr<nq::quant::ResidentValues> values;
  double setup_ms = 0;
  if (binned) {
    std::vector<float> hw, hh;
    host_data(n, 9, hw, hh);
    const auto s0 = std::chrono::steady_clock::now();
    values = nq::cuda::make_resident_values_binned(hw.data(), hh.data(), n, bins);
    setup_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
  } else {
    w.allocate(n);
    h.allocate(n);
    fill_data(w.get(), h.get(), n, 9);
  }
  Codebook cb = uniform_codebook(k, -0.15, 0.15);
  for (double& l : cb.l) l = std::log2(static_cast<double>(k));
  const char* check = "";
  if (binned) {  // one pass of each kind on the first codebook, from a device copy of the same data
    DeviceBuffer<float> dw(n), dh(n);
    fill_data(dw.get(), dh.get(), n, 9);
    nq::quant::AssignAccum a, b;
    nq::cuda::assign_accumulate_device(dw.get(), dh.get(), n, cb.c.data(), cb.l.data(), k, 1e-5, nullptr, a);
    values->assign_accumulate(cb.c.data(), cb.l.data(), k, 1e-5, b);
    check = a.count == b.count ? "; counts equal op (a)" : "; counts DIFFER from op (a)";
  }
  int passes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int p = 0; p < 64; ++p) {
    const double lambda = 1e-7 * std::pow(10.0, 4.0 * p / 63.0);
    double prev = nq::quant::infinity();
    for (int it = 0; it < 50; ++it) {
      nq::quant::AssignAccum acc;
      if (binned)
        values->assign_accumulate(cb.c.data(), cb.l.data(), k, lambda, acc);
      else
        nq::cuda::assign_accumulate_device(w.get(), h.get(), n, cb.c.data(), cb.l.data(), k, lambda, nullptr, acc);
      ++passes;
      std::vector<std::pair<double, double>> cl;
      for (int j = 0; j < k; ++j) {
        if (acc.count[j] == 0) {
          cl.push_back({cb.c[j], nq::quant::infinity()});
          continue;
        }
        const double c = acc.sum_h[j] > 0 ? acc.sum_hw[j] / acc.sum_h[j] : acc.sum_w[j] / acc.count[j];
        cl.push_back({c, -std::log2(static_cast<double>(acc.count[j]) / static_cast<double>(n))});
      }
      std::sort(cl.begin(), cl.end());
      for (int j = 0; j < k; ++j) {
        cb.c[j] = cl[j].first;
        if (j && !(cb.c[j] > cb.c[j - 1])) cb.c[j] = std::nextafter(cb.c[j - 1], 1e300);
        cb.l[j] = cl[j].second;
      }
      if (prev - acc.cost <= 1e-5 * std::fabs(acc.cost)) break;
      prev = acc.cost;
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char extra[200];
  if (binned)
    std::snprintf(extra, sizeof extra, "64 lambdas, %d passes, %.3f ms/pass (target <=1 s); set-up %.0f ms%s", passes,
                  ms / passes, setup_ms, check);
  else
    std::snprintf(extra, sizeof extra, "64 lambdas, %d passes, %.3f ms/pass (target <=1 s)", passes, ms / passes);
  report(binned ? "lambda sweep binned k=32" : "lambda sweep k=32", static_cast<double>(n), ms, 8.0 * n * passes,
         extra);
}

// One ECSQ pass of the resident values' binned path at several bin counts (k = 32, λ = 1e-5, the fused lines'
// codebook), each against the fused pass over the same device data: the host's plan grows with the bins and the
// values left to the device shrink with them, so this says which count the device wants. Per pass: wall time
// (plan, copies, gather, op (a)), the plan alone (the same BinnedValues on the host), the share of values left.
void bench_binned_bins(size_t n, int reps) {
  const int k = 32;
  const double lambda = 1e-5;
  std::vector<float> w, h;
  host_data(n, 7, w, h);
  const Codebook cb = uniform_codebook(k, -0.15, 0.15);
  double fused_ms = 0;
  nq::quant::AssignAccum want;
  {
    DeviceBuffer<float> dw(n), dh(n);
    dw.upload(w.data(), n);
    dh.upload(h.data(), n);
    fused_ms = time_ms([&] {
      nq::cuda::assign_accumulate_device(dw.get(), dh.get(), n, cb.c.data(), cb.l.data(), k, lambda, nullptr, want);
    }, reps, 1);
  }
  for (const size_t bins : {size_t{32}, size_t{64}, size_t{128}, size_t{256}}) {
    const std::unique_ptr<nq::quant::ResidentValues> values =
        nq::cuda::make_resident_values_binned(w.data(), h.data(), n, bins);
    nq::quant::AssignAccum got;
    std::vector<double> t;
    for (int r = 0; r <= reps; ++r) {  // the first is a warm-up
      const auto t0 = std::chrono::steady_clock::now();
      values->assign_accumulate(cb.c.data(), cb.l.data(), k, lambda, got);
      t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    t.erase(t.begin());
    std::sort(t.begin(), t.end());
    const double ms = t[t.size() / 2];
    const nq::quant::BinnedValues host(w.data(), h.data(), n, bins);
    std::vector<double> tp;
    size_t left = 0;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      left = host.plan(cb.c.data(), cb.l.data(), k, lambda).left_values;
      tp.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(tp.begin(), tp.end());
    char name[64], extra[200];
    std::snprintf(name, sizeof name, "binned pass bins=%zu k=32", bins);
    std::snprintf(extra, sizeof extra, "host plan %.3f ms, %.2f%% of values on the device; fused pass %.3f ms (%.1fx); %s",
                  tp[tp.size() / 2], 100.0 * static_cast<double>(left) / static_cast<double>(n), fused_ms,
                  fused_ms / ms, got.count == want.count ? "counts equal op (a)" : "counts DIFFER from op (a)");
    report(name, static_cast<double>(n), ms, 0, extra);
  }
}

// Huffman bit packing of n 16-level indices (k = 16 after quantization): the GPU packer end to end (host symbols
// in, stream bytes out, copies included) against the CPU encoder in the same run; the bytes must be equal.
void bench_huffman_pack(size_t n) {
  std::mt19937_64 rng(3);
  std::geometric_distribution<int> g(0.35);
  std::vector<int32_t> sym(n);
  std::vector<uint64_t> counts(16, 0);
  for (auto& v : sym) ++counts[static_cast<size_t>(v = std::min(g(rng), 15))];
  const std::vector<uint8_t> lengths = nq::coding::huffman_code_lengths(counts);
  const uint64_t bits = nq::coding::huffman_stream_bits(counts, lengths);
  const nq::coding::HuffmanEncoder enc(lengths);
  std::vector<uint8_t> gpu;
  const double ms = time_ms([&] { gpu = nq::cuda::huffman_pack(sym.data(), n, enc.table(), bits); }, 5, 1);
  const auto t0 = std::chrono::steady_clock::now();
  nq::coding::BitWriter bw(bits);
  enc.encode(sym.data(), n, bw);
  const std::vector<uint8_t> cpu = bw.finish();
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char extra[160];
  std::snprintf(extra, sizeof extra, "end to end incl. copies; CPU encoder %.1f ms (%.1fx); %s", cpu_ms, cpu_ms / ms,
                gpu == cpu ? "bytes equal CPU" : "MISMATCH vs CPU");
  report("huffman pack 16 levels", static_cast<double>(n), ms, 4.0 * n, extra);
}

// Pruning selection (op (g)) of half of n weights: the device's radix selection end to end (upload, eight
// histogram passes, tie ranks, mask download) against the CPU's nth_element in the same run; masks must be equal.
void bench_select_pruned(size_t n) {
  std::vector<float> w, h;
  host_data(n, 5, w, h);
  std::vector<uint8_t> gpu(n), cpu(n);
  nq::quant::PruneArrays a;
  a.w = {w.data()};
  a.h = {h.data()};
  a.n = {n};
  a.mask = {gpu.data()};
  const int64_t count = static_cast<int64_t>(n / 2);
  const double ms = time_ms([&] { nq::cuda::select_pruned(a, count); }, 3, 1);
  a.mask = {cpu.data()};
  const auto t0 = std::chrono::steady_clock::now();
  nq::cpu::select_pruned(a, count);
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char extra[160];
  std::snprintf(extra, sizeof extra, "end to end incl. copies; CPU nth_element %.0f ms (%.1fx); %s", cpu_ms,
                cpu_ms / ms, gpu == cpu ? "masks equal CPU" : "MISMATCH vs CPU");
  report("prune select half", static_cast<double>(n), ms, 9.0 * n, extra);
}

// The same 64 λ through the library: nq::quantize_lambdas (upload, device sort, one start, all λ in lockstep —
// binned passes, one per λ, at these sizes — a labelled pass per λ, finalize on the host), end to end.
void bench_sweep_lockstep(size_t n) {
  std::vector<float> w, h;
  host_data(n, 9, w, h);
  nq::QuantizeParams q;
  q.method = nq::Method::kEcsq;
  q.k = 32;
  q.max_iter = 50;
  q.tol = 1e-5;
  q.backend = nq::Backend::kCuda;
  std::vector<double> lambdas;
  for (int p = 0; p < 64; ++p) lambdas.push_back(1e-7 * std::pow(10.0, 4.0 * p / 63.0));
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<nq::QuantizeResult> r = nq::quantize_lambdas(w.data(), h.data(), n, q, lambdas);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  long long iters = 0;
  for (const auto& x : r) iters += x.iterations;
  char extra[128];
  std::snprintf(extra, sizeof extra, "64 lambdas in lockstep, %lld iterations in all, end to end (target <=1 s)",
                iters);
  report("lambda sweep lockstep k=32", static_cast<double>(n), ms, 8.0 * n * static_cast<double>(iters), extra);
}

// Op (f): one ECSQ assignment pass over many rows at once (the row/group driver's pass): rows of 4096, each under its
// own k = 16 codebook with λ > 0, through the resident-rows object (w and h uploaded once, before timing; a pass
// uploads one table per row and downloads each row's sums). GB/s counts w and h read once. The CPU op (a) runs the
// first 512 rows one by one (one block each: one core) on the same data for the speed-up per weight; their counts
// must equal the device's.
void bench_rows_ecsq(int64_t rows, int reps, const char* note) {
  const int64_t len = 4096;
  const int k = 16;
  const double lambda = 1e-5;
  const size_t n = static_cast<size_t>(rows * len);
  std::vector<float> w, h;
  host_data(n, 13, w, h);
  std::vector<int64_t> begin(static_cast<size_t>(rows) + 1), task_rows(static_cast<size_t>(rows));
  for (int64_t r = 0; r <= rows; ++r) begin[static_cast<size_t>(r)] = r * len;
  for (int64_t r = 0; r < rows; ++r) task_rows[static_cast<size_t>(r)] = r;
  const Codebook cb = uniform_codebook(k, -0.15, 0.15);
  nq::quant::CodebookBatch books;
  for (int64_t r = 0; r < rows; ++r) books.add(cb.c.data(), cb.l.data(), k, lambda);
  std::vector<nq::quant::AssignAccum> out;
  double ms = 0;
  {
    const std::unique_ptr<nq::quant::ResidentRows> values =
        nq::cuda::make_resident_rows(w.data(), h.data(), begin.data(), rows, nullptr);
    ms = time_ms([&] { values->assign_accumulate(task_rows.data(), books, nullptr, out); }, reps, 1);
  }
  // The CPU op (a) on the first rows, one row at a time.
  const int64_t cpu_rows = std::min<int64_t>(rows, 512);
  std::vector<nq::quant::AssignAccum> cpu(static_cast<size_t>(cpu_rows));
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < cpu_rows; ++r)
    nq::cpu::assign_accumulate(w.data() + r * len, h.data() + r * len, static_cast<size_t>(len), cb.c.data(),
                               cb.l.data(), k, lambda, nullptr, cpu[static_cast<size_t>(r)]);
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int64_t differ = 0;
  for (int64_t r = 0; r < cpu_rows; ++r)
    differ += cpu[static_cast<size_t>(r)].count != out[static_cast<size_t>(r)].count;
  const double speedup = (cpu_ms / static_cast<double>(cpu_rows * len)) / (ms / static_cast<double>(n));
  char extra[240];
  std::snprintf(extra, sizeof extra,
                "rows=%lld x 4096%s, k=16, lambda=%g, one pass end to end (tables up, sums down); CPU op (a) row by "
                "row (one core) %.0fx slower/weight; %s",
                static_cast<long long>(rows), note, lambda, speedup,
                differ == 0 ? "counts equal CPU" : "counts DIFFER from CPU");
  report("rows ECSQ pass k=16", static_cast<double>(n), ms, 8.0 * n, extra);
}

// Row-scope ECSQ end to end through nq::quantize_model (--scope row --backend cuda): every row's search on the host,
// every pass over all unfinished rows one op (f) launch. The CPU backend runs the first 64 rows as a model of its
// own in the same run (all host threads, each row alone) for the speed-up per weight.
void bench_rows_ecsq_model(int64_t rows) {
  const int64_t len = 4096;
  const size_t n = static_cast<size_t>(rows * len);
  std::vector<float> w, h;
  host_data(n, 17, w, h);
  auto model_of = [&](int64_t r, std::vector<float>& v) {
    nq::TensorSet m;
    m.add(nq::Tensor::from_f32("fc.weight", {r, len}, std::vector<float>(v.begin(), v.begin() + r * len)));
    return m;
  };
  nq::ModelQuantizeParams p;
  p.quant.method = nq::Method::kEcsq;
  p.quant.k = 16;
  p.quant.lambda = 1e-5;
  p.quant.max_iter = 50;
  p.scope = nq::parse_scope("row");
  const int64_t cpu_rows = std::min<int64_t>(rows, 64);
  const nq::TensorSet gm = model_of(rows, w), gi = model_of(rows, h), cm = model_of(cpu_rows, w),
                      ci = model_of(cpu_rows, h);
  p.quant.backend = nq::Backend::kCuda;
  auto t0 = std::chrono::steady_clock::now();
  const nq::QuantizedModel g = nq::quantize_model(gm, &gi, p);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  p.quant.backend = nq::Backend::kCpu;
  t0 = std::chrono::steady_clock::now();
  const nq::QuantizedModel c = nq::quantize_model(cm, &ci, p);
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  size_t differ = 0;
  for (size_t i = 0; i < c.tensors[0].indices.size(); ++i) differ += c.tensors[0].indices[i] != g.tensors[0].indices[i];
  const double speedup = (cpu_ms / static_cast<double>(cpu_rows * len)) / (ms / static_cast<double>(n));
  char extra[240];
  std::snprintf(extra, sizeof extra,
                "rows=%lld x 4096, k=16, lambda=1e-5, <=50 iterations per row, end to end; CPU backend (all threads, "
                "first 64 rows) %.1fx slower/weight; %zu of %zu indices differ from it",
                static_cast<long long>(rows), speedup, differ, c.tensors[0].indices.size());
  report("rows ECSQ model k=16", static_cast<double>(n), ms, 0, extra);
}

void bench_hessian(int reps, int64_t batch) {
  using nq::nn::Network;
  const nq::Model model = nq::build_model("lenet5", 1);
  Network<float> net(model.spec(), nq::Backend::kCuda);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> wts(static_cast<size_t>(net.num_params()));
  for (auto& v : wts) v = 0.05f * nd(rng);
  net.set_weights(wts);
  std::vector<float> x(static_cast<size_t>(batch * net.input_size()));
  for (auto& v : x) v = nd(rng);
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (auto& v : y) v = static_cast<int32_t>(rng() % 10);
  nq::nn::Buffer<float> dx(nq::Backend::kCuda), seed(nq::Backend::kCuda), out(nq::Backend::kCuda);
  nq::nn::Buffer<int32_t> dy(nq::Backend::kCuda);
  dx.upload(x.data(), static_cast<int64_t>(x.size()));
  dy.upload(y.data(), batch);
  seed.resize(batch * 10);
  out.resize(net.num_params());
  const double g = time_ms([&] {
    net.forward(dx.data(), dy.data(), batch);
    nq::nn::cuda::softmax_ce_backward(net.probs(), dy.data(), seed.data(), 1.0f / batch, batch, 10);
    net.backward(nq::nn::BackwardMode::kGradient, seed.data(), out.data());
  }, reps);
  const double hs = time_ms([&] {
    net.forward(dx.data(), dy.data(), batch);
    nq::nn::cuda::softmax_ce_hessian(net.probs(), seed.data(), 1.0f / batch, batch, 10);
    net.backward(nq::nn::BackwardMode::kHessian, seed.data(), out.data());
  }, reps);
  const std::string name = "lenet5 b" + std::to_string(batch);
  report(name + " gradient pass", batch, g, 0);
  char extra[64];
  std::snprintf(extra, sizeof extra, "hessian/gradient = %.2f (target <=2)", hs / g);
  report(name + " hessian pass", batch, hs, 0, extra);
}

}  // namespace

// --fused K LAMBDA N [FORM]: bench_fused's data and codebook, one warm-up pass (the profiler skips it) and one pass,
// in the form named (default, no-thresholds or per-warp).
int profile_fused(int k, double lambda, size_t n, const FusedForm& form) {
  DeviceBuffer<float> w(n), h(n);
  fill_data(w.get(), h.get(), n, 42);
  nq::cuda::set_fused_strategy(form.strategy);
  char name[128];
  std::snprintf(name, sizeof name, "fused k=%d lambda=%g%s (one pass)", k, lambda, form.name);
  report(name, static_cast<double>(n), fused_pass_ms(w.get(), h.get(), n, k, lambda, nullptr, 1, 1), 8.0 * n);
  return 0;
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const bool tiny = argc > 1 && std::strcmp(argv[1], "--tiny") == 0;
  const bool fused_only = (argc == 5 || argc == 6) && std::strcmp(argv[1], "--fused") == 0;
  if (argc > 1 && !quick && !tiny && !fused_only) {
    std::fprintf(stderr, "usage: nq_gpu_bench [--quick | --tiny | --fused K LAMBDA N [default|no-thresholds|per-warp]]\n");
    return 2;
  }
  if (fused_only) {
    const int k = std::atoi(argv[2]);
    const double lambda = std::atof(argv[3]);
    const double n = std::atof(argv[4]);
    const char* form_name = argc == 6 ? argv[5] : "default";
    const int form = std::strcmp(form_name, "default") == 0         ? 0
                     : std::strcmp(form_name, "no-thresholds") == 0 ? 1
                     : std::strcmp(form_name, "per-warp") == 0      ? 2
                                                                    : -1;
    if (k < 1 || !(lambda >= 0) || !(n >= 1 && n <= 4e9) || form < 0) {
      std::fprintf(stderr,
                   "nq_gpu_bench --fused: K >= 1, LAMBDA >= 0, 1 <= N <= 4e9 and FORM default, no-thresholds or "
                   "per-warp (got %s %s %s %s)\n",
                   argv[2], argv[3], argv[4], form_name);
      return 2;
    }
    if (!nq::cuda_available()) {
      std::fprintf(stderr, "nq_gpu_bench: no CUDA device\n");
      return 3;
    }
    try {
      return profile_fused(k, lambda, static_cast<size_t>(n), kFusedForms[form]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "nq_gpu_bench: %s\n", e.what());
      return 1;
    }
  }
  // Sizes: full, --quick, --tiny.
  auto pick = [&](size_t full, size_t q, size_t t) { return tiny ? t : quick ? q : full; };
  try {
    if (!nq::cuda_available()) {
      std::fprintf(stderr, "nq_gpu_bench: no CUDA device\n");
      return 3;
    }
    std::printf("device: %s\n", nq::cuda_device_description().c_str());
    size_t free_b = 0, total_b = 0;
    NQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const int reps = static_cast<int>(pick(21, 5, 1));
    const bool full = !quick && !tiny;
    bench_copy(pick(size_t{1} << 31, size_t{1} << 31, size_t{1} << 20));  // 2 GiB, far beyond L2
    bench_fused(pick(100000000, 10000000, 100003), reps);
    // N = 1e9 needs w, h, labels (12 GB) + workspace.
    if (full && free_b > size_t{14} * 1000 * 1000 * 1000) bench_fused(size_t{1000000000}, 7);
    const size_t row_total = pick(std::min<size_t>(1000000000, free_b / 20 * 1), size_t{1} << 24,
                                  size_t{1} << 14);  // 12 B/weight + slack
    bench_rows(row_total, static_cast<int>(pick(5, 3, 1)));
    bench_sweep(pick(100000000, 10000000, 20011), false);
    bench_sweep(pick(100000000, 10000000, 20011), true, tiny ? 16 : 0);
    bench_binned_bins(pick(100000000, 10000000, 20011), static_cast<int>(pick(11, 5, 1)));
    bench_rows_exact(static_cast<int64_t>(pick(20000, 256, 4)));
    bench_huffman_pack(pick(100000000, 10000000, 100003));
    bench_select_pruned(pick(100000000, 10000000, 100003));
    bench_hessian(reps, static_cast<int64_t>(pick(1024, 1024, 32)));
    // 2^18 rows of 4096 (about 1e9 weights): w and h (8 GB) on the device plus a host copy, or 2^16 rows.
    const bool full_rows = full && free_b > size_t{12} * 1000 * 1000 * 1000;
    bench_rows_ecsq(static_cast<int64_t>(pick(full_rows ? size_t{1} << 18 : size_t{1} << 16, size_t{1} << 12, 8)),
                    static_cast<int>(pick(5, 3, 1)), !full || full_rows ? "" : " (2^16 rows: device memory)");
    bench_rows_ecsq_model(static_cast<int64_t>(pick(8192, 512, 8)));
    // Last: end to end with 64 host finalizes of 1e8 indices, the longest line (the step's time cap may end it).
    bench_sweep_lockstep(pick(100000000, 10000000, 20011));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nq_gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
