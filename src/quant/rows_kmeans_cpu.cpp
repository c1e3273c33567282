// Op (e) on the CPU: every row through row_lloyd.h's driver with a one-worker team, rows spread over OpenMP
// threads (each row's result depends on that row alone, so the thread count never changes a bit).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/iteration_errors.h"

#include "netquant/error.h"
#include "quant/nearest_thresholds.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"
#include "quant/exact_row.h"
#include "quant/row_lloyd.h"

namespace nq::cpu {

namespace {

// Rows of up to this many values per centre are labelled value by value; longer ones through thresholds.
constexpr int kDirectLabelsPerCentre = 32;

// One row by nq::quantize's exact path: the k ≥ distinct shortcut (one level per value, nearest labels) or
// exact_row's DP (labels by cluster start). Returns the iteration count quantize() reports (0 or 1).
int exact_row_on_host(const quant::exact_row::Scratch& xs, const float* ws, const float* hs, const float* w, int n,
                      int k, double* centers, double* first_value, int32_t* labels, int32_t& count) {
  if (const int m = quant::exact_representation(ws, n, k, centers)) {
    count = m;
    quant::NearestThresholds(std::vector<double>(centers, centers + m)).label_all(w, static_cast<size_t>(n), labels);
    return 0;
  }
  const int m = quant::exact_row::solve_row(xs, ws, hs, n, k, centers, first_value);
  count = m;
  for (int i = 0; i < n; ++i) labels[i] = quant::exact_row::label(w[i], first_value, m);
  return 1;
}

// The host's team: one worker, nothing to wait for.
struct SoloTeam {
  int rank() const { return 0; }
  int size() const { return 1; }
  void sync() const {}
};

}  // namespace

void rows_kmeans(const quant::RowsKmeansJob& job, const quant::RowsKmeansOut& out) {
  namespace rl = quant::row_lloyd;
  const int64_t n_max = quant::check_rows_kmeans_job(job);
  const rl::Params params{job.k, static_cast<rl::InitRule>(job.init), job.max_iter, job.tol};
  const size_t k = static_cast<size_t>(job.k);

  // Each thread's workspace is allocated here, and each row's work runs under IterationErrors: nothing may throw
  // out of the OpenMP region (that is std::terminate), so an error is rethrown after it, the lowest row's first.
  const int threads = job.rows > 1 ? std::max(1, omp_get_max_threads()) : 1;
  const size_t space_doubles = (rl::workspace_bytes(static_cast<int>(n_max), job.k) + 7) / 8;
  const size_t exact_doubles = job.exact ? (quant::exact_row::scratch_bytes(static_cast<int>(n_max), job.k) + 7) / 8 : 0;
  std::vector<std::vector<double>> spaces(static_cast<size_t>(threads), std::vector<double>(space_doubles));
  std::vector<std::vector<double>> exact_spaces(static_cast<size_t>(threads), std::vector<double>(exact_doubles));
  std::vector<std::vector<double>> first_values(static_cast<size_t>(threads), std::vector<double>(job.exact ? k : 0));
  IterationErrors errors;

#pragma omp parallel num_threads(threads)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    const rl::Workspace ws =
        rl::carve_workspace(reinterpret_cast<unsigned char*>(spaces[t].data()), static_cast<int>(n_max), job.k);
    const quant::exact_row::Scratch xs = quant::exact_row::carve_scratch(
        reinterpret_cast<unsigned char*>(exact_spaces[t].data()), static_cast<int>(n_max), job.k);
    double* first_value = first_values[t].data();
    const SoloTeam team;
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < job.rows; ++r) errors.run(static_cast<size_t>(r), [&] {
      const int64_t begin = job.row_begin[r];
      const int n = static_cast<int>(job.row_begin[r + 1] - begin);
      const float* w = job.w + begin;
      const float* h = job.h ? job.h + begin : nullptr;
      if (h && std::none_of(h, h + n, [](float v) { return v > 0; })) h = nullptr;  // as nq::quantize does
      double* c_out = out.centers + static_cast<size_t>(r) * k;
      if (n == 0) {
        out.center_count[r] = 0;
        out.iterations[r] = 0;
        out.converged[r] = 1;
        return;
      }
      sort_pairs(w, h, static_cast<size_t>(n), ws.ws, ws.hs);  // op (b1): stable, −0 before +0, h = 1 if none
      if (job.exact) {
        out.iterations[r] = exact_row_on_host(xs, ws.ws, ws.hs, w, n, job.k, c_out, first_value,
                                              out.labels + begin, out.center_count[r]);
        out.converged[r] = 1;
        return;
      }
      int given_k = 0;
      if (job.initial_count) {
        given_k = job.initial_count[r];
        std::copy(job.initial + static_cast<size_t>(r) * k, job.initial + static_cast<size_t>(r) * k + given_k, ws.c);
      }
      rl::solve(team, ws, n, params, given_k);
      const int kc = ws.st->k;
      std::copy(ws.c, ws.c + kc, c_out);
      // Labels: quant_formulas.h nearest_center per value (the device's rule) for short rows; longer ones first
      // build the float thresholds of the same argmin (NearestThresholds: k bisections over float bit patterns,
      // ~1–2 µs at k = 16) and then count them per value (label_all, vectorised).
      if (n <= kDirectLabelsPerCentre * kc) {
        for (int i = 0; i < n; ++i) out.labels[begin + i] = quant::nearest_center(w[i], ws.c, kc);
      } else {
        quant::NearestThresholds(std::vector<double>(ws.c, ws.c + kc))
            .label_all(w, static_cast<size_t>(n), out.labels + begin);
      }
      out.center_count[r] = kc;
      out.iterations[r] = ws.st->iterations;
      out.converged[r] = static_cast<uint8_t>(ws.st->converged);
    });
  }
  errors.rethrow_first();
}

}  // namespace nq::cpu
