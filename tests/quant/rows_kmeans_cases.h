// Test data and the host oracle for op (e) rows_kmeans, shared by the CPU test (tests/quant) and the backend
// parity test (tests/cuda): batches of awkward rows, and what nq::quantize's own driver returns for each row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "quant/row_lloyd.h"

namespace nq::quant::rows_cases {

// A batch: rows back to back, with the op's job fields.
struct RowsBatch {
  std::string name;
  std::vector<float> w, h;           // h empty: unweighted
  std::vector<int64_t> row_begin{0};
  int k = 16;
  row_lloyd::InitRule init = row_lloyd::InitRule::kLinear;
  bool warm = false;                 // start rows from `initial` (a count of 0: the init rule)
  bool exact = false;                // method exact instead of Lloyd
  int max_iter = 100;
  double tol = 1e-7;
  std::vector<double> initial;       // warm: rows × k
  std::vector<int32_t> initial_count;

  int64_t rows() const { return static_cast<int64_t>(row_begin.size()) - 1; }
  RowsKmeansJob job() const {
    RowsKmeansJob j;
    j.w = w.data();
    j.h = h.empty() ? nullptr : h.data();
    j.row_begin = row_begin.data();
    j.rows = rows();
    j.k = k;
    j.init = static_cast<int>(init);
    j.max_iter = max_iter;
    j.tol = tol;
    j.initial = initial.empty() ? nullptr : initial.data();
    j.initial_count = initial_count.empty() ? nullptr : initial_count.data();
    j.exact = exact;
    return j;
  }
};

// What op (e) writes, in host vectors.
struct RowsResult {
  std::vector<double> centers;
  std::vector<int32_t> center_count, labels, iterations;
  std::vector<uint8_t> converged;
  explicit RowsResult(const RowsBatch& b)
      : centers(static_cast<size_t>(b.rows()) * b.k, -7.0),
        center_count(static_cast<size_t>(b.rows()), -7),
        labels(b.w.size(), -7),
        iterations(static_cast<size_t>(b.rows()), -7),
        converged(static_cast<size_t>(b.rows()), 7) {}
  RowsKmeansOut out() {
    return {centers.data(), center_count.data(), labels.data(), iterations.data(), converged.data()};
  }
};

// nq::quantize's kmeans / hw-kmeans / exact path for one row, before finalize: the exact-representation
// shortcut, or init_centers + lloyd_sorted, or exact_dp (the oracle the row drivers must equal bit for bit).
inline RawResult host_driver_row(const RowsBatch& b, int64_t r) {
  const size_t begin = static_cast<size_t>(b.row_begin[r]), n = static_cast<size_t>(b.row_begin[r + 1]) - begin;
  Problem p;
  p.w = b.w.data() + begin;
  p.n = n;
  p.backend = Backend::kCpu;
  if (!b.h.empty() && std::any_of(b.h.begin() + begin, b.h.begin() + begin + n, [](float v) { return v > 0; }))
    p.h = b.h.data() + begin;
  RawResult raw;
  if (n == 0) return raw;
  const SortedData s(p);
  QuantizeParams q;
  q.k = b.k;
  q.max_iter = b.max_iter;
  q.tol = b.tol;
  q.init = b.init == row_lloyd::InitRule::kQuantile ? Init::kQuantile : Init::kLinear;
  if (b.warm) {
    const double* c = b.initial.data() + static_cast<size_t>(r) * b.k;
    q.initial_centers.assign(c, c + b.initial_count[static_cast<size_t>(r)]);
  }
  if (static_cast<size_t>(b.k) >= s.distinct()) {
    raw.centers = distinct_values(s);
    raw.labels = nearest_labels(p, raw.centers);
    raw.iterations = 0;
    return raw;
  }
  if (b.exact) return exact_dp(p, s, q);
  raw = lloyd_sorted(s, q);
  raw.labels = nearest_labels(p, raw.centers);  // what finalize labels them with
  raw.labels_nearest = false;
  return raw;
}

// Rows of varying length and character: heavy-tailed values, duplicates (rounded values), near-coincident values
// (a few ulps apart), a constant row, ±0, importances zero in some rows and spanning many decades in others.
inline RowsBatch make_batch(const std::string& name, const std::vector<int>& lengths, int k, bool weighted,
                            row_lloyd::InitRule init, bool warm, uint64_t seed) {
  RowsBatch b;
  b.name = name;
  b.k = k;
  b.init = init;
  b.warm = warm;
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (size_t r = 0; r < lengths.size(); ++r) {
    const int n = lengths[r];
    const int kind = static_cast<int>(r % 6);
    for (int i = 0; i < n; ++i) {
      double v = 0.05 * t(rng);
      if (kind == 1) v = std::round(v * 200.0) / 200.0;                                       // many duplicates
      if (kind == 2) v = std::nextafter(0.3f, 1.0f) + static_cast<float>(i % 5) * 3e-8f;        // a few ulps apart
      if (kind == 3) v = 0.125;                                                               // constant
      if (kind == 4 && i % 7 == 0) v = (i % 14 == 0) ? -0.0 : 0.0;                            // signed zeros
      b.w.push_back(static_cast<float>(v));
      if (weighted) {
        double hv = u(rng) * 2.0;
        if (kind == 5) hv = std::pow(10.0, -12.0 + 24.0 * u(rng));                            // many decades
        if (kind == 0 && r % 12 == 6) hv = 0.0;                                               // all-zero row
        if (kind == 1 && i % 9 == 0) hv = 0.0;                                                // weightless members
        b.h.push_back(static_cast<float>(hv));
      }
    }
    b.row_begin.push_back(static_cast<int64_t>(b.w.size()));
  }
  if (warm) {  // starts from a shifted linear codebook, some rows with fewer centres, every fourth with none
    b.initial.assign(lengths.size() * static_cast<size_t>(k), 0.0);
    for (size_t r = 0; r < lengths.size(); ++r) {
      const int m = r % 4 == 3 ? 0 : std::max(1, k - static_cast<int>(r % 3));
      b.initial_count.push_back(m);
      for (int j = 0; j < m; ++j) b.initial[r * k + j] = -0.11 + 0.23 * (j + 0.37) / m;
    }
  }
  return b;
}

// Rows of values a few ulps apart around 1e-30 and 1e30 (centres a few ulps apart force the non-monotone corner
// of the pairwise rule; huge and tiny magnitudes stress the shifted prefix sums), every fourth row with far
// outliers at -3e38; k = 8, importances 1..5. Rows of 50 .. 1493 values.
inline RowsBatch make_extremes_batch(row_lloyd::InitRule init) {
  RowsBatch b;
  b.name = std::string("extremes init=") + std::to_string(static_cast<int>(init));
  b.k = 8;
  b.init = init;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> ulp(0, 6);
  for (int r = 0; r < 40; ++r) {
    const int n = 50 + 37 * r;
    const float base = r % 2 ? 1e30f : 1e-30f;
    for (int i = 0; i < n; ++i) {
      float v = base;
      for (int s = ulp(rng); s > 0; --s) v = std::nextafter(v, 2 * base);
      if (r % 4 == 3 && i % 3 == 0) v = -3e38f;  // a far outlier
      b.w.push_back(v);
      b.h.push_back(static_cast<float>(1 + (i % 5)));
    }
    b.row_begin.push_back(static_cast<int64_t>(b.w.size()));
  }
  return b;
}

}  // namespace nq::quant::rows_cases
