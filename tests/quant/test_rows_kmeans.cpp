// Op (e) rows_kmeans on the CPU — row_lloyd.h's driver, the code the CUDA kernel runs — against nq::quantize's
// own driver (SortedData + init_centers + lloyd_sorted, or the k >= distinct shortcut) row by row: bit for bit
// equal centres, labels, iteration counts and convergence flags.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>

#include "netquant/error.h"
#include "quant/rows_kmeans_cases.h"

namespace nq::quant {
namespace {

using rows_cases::host_driver_row;
using rows_cases::make_batch;
using rows_cases::make_extremes_batch;
using rows_cases::RowsBatch;
using rows_cases::RowsResult;
using row_lloyd::InitRule;

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void expect_equals_host_driver(const RowsBatch& b) {
  RowsResult got(b);
  cpu::rows_kmeans(b.job(), got.out());
  for (int64_t r = 0; r < b.rows(); ++r) {
    SCOPED_TRACE(b.name + ", row " + std::to_string(r));
    const RawResult want = host_driver_row(b, r);
    const size_t ri = static_cast<size_t>(r);
    ASSERT_EQ(got.center_count[ri], static_cast<int32_t>(want.centers.size()));
    for (size_t j = 0; j < want.centers.size(); ++j)
      ASSERT_TRUE(same_bits(got.centers[ri * b.k + j], want.centers[j]))
          << "centre " << j << ": " << got.centers[ri * b.k + j] << " vs " << want.centers[j];
    for (size_t j = want.centers.size(); j < static_cast<size_t>(b.k); ++j)
      ASSERT_EQ(got.centers[ri * b.k + j], -7.0) << "written past the row's centres";
    EXPECT_EQ(got.iterations[ri], want.iterations);
    EXPECT_EQ(got.converged[ri] != 0, want.converged);
    const size_t begin = static_cast<size_t>(b.row_begin[r]);
    for (size_t i = 0; i < want.labels.size(); ++i) ASSERT_EQ(got.labels[begin + i], want.labels[i]) << "value " << i;
  }
}

const std::vector<int> kLengths = {1, 2, 3, 31, 32, 33, 255, 256, 257, 1000, 4099, 0, 17, 4096, 64};

TEST(RowsKmeans, EqualsTheHostDriverRowByRow) {
  uint64_t seed = 1;
  for (const int k : {1, 2, 3, 16, 256})
    for (const bool weighted : {true, false})
      for (const InitRule init : {InitRule::kLinear, InitRule::kQuantile})
        for (const bool warm : {false, true}) {
          RowsBatch b = make_batch("k=" + std::to_string(k) + (weighted ? " weighted" : " unweighted") + " init=" +
                                       std::to_string(static_cast<int>(init)) + (warm ? " warm" : ""),
                                   kLengths, k, weighted, init, warm, ++seed);
          expect_equals_host_driver(b);
        }
}

TEST(RowsKmeans, ExactRowsEqualTheHostExactDriver) {
  uint64_t seed = 500;
  for (const int k : {1, 2, 3, 16, 256})
    for (const bool weighted : {true, false}) {
      RowsBatch b = make_batch("exact k=" + std::to_string(k) + (weighted ? " weighted" : ""), kLengths, k, weighted,
                               InitRule::kLinear, false, ++seed);
      b.exact = true;
      expect_equals_host_driver(b);
    }
  RowsBatch warm = make_batch("exact ignores warm starts", kLengths, 16, true, InitRule::kQuantile, true, 7);
  warm.exact = true;
  expect_equals_host_driver(warm);
}

TEST(RowsKmeans, StopsWhereTheHostDriverStops) {
  // Few iterations, no tolerance (only the fixed point stops), and a loose tolerance.
  for (const int max_iter : {1, 2, 7})
    for (const double tol : {0.0, 1e-7, 1e-2}) {
      RowsBatch b = make_batch("max_iter=" + std::to_string(max_iter) + " tol=" + std::to_string(tol), kLengths, 16,
                               true, InitRule::kLinear, false, 100 + max_iter);
      b.max_iter = max_iter;
      b.tol = tol;
      expect_equals_host_driver(b);
    }
}

TEST(RowsKmeans, NearCoincidentAndExtremeValues) {
  expect_equals_host_driver(make_extremes_batch(InitRule::kLinear));
  expect_equals_host_driver(make_extremes_batch(InitRule::kQuantile));
}

TEST(RowsKmeans, ThreadCountDoesNotChangeABit) {
  const RowsBatch b = make_batch("threads", kLengths, 16, true, InitRule::kQuantile, true, 77);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  RowsResult one(b);
  cpu::rows_kmeans(b.job(), one.out());
  omp_set_num_threads(std::max(2, saved));
  RowsResult many(b);
  cpu::rows_kmeans(b.job(), many.out());
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(one.centers.data(), many.centers.data(), one.centers.size() * sizeof(double)), 0);
  EXPECT_EQ(one.labels, many.labels);
  EXPECT_EQ(one.iterations, many.iterations);
}

// The workspace layout both backends carve (the device with its sort storage in the table region): every array
// inside the bytes asked for, 8-byte aligned where it holds doubles, and no two overlapping.
TEST(RowsKmeans, WorkspaceArraysAreDisjointAndInBounds) {
  for (const int n_max : {1, 3, 4, 5, 1000, 4096, 8192, 65536})
    for (const int k : {1, 2, 16, 255, 256, 4096})
      for (const size_t region : {size_t{0}, size_t{17000}, size_t{70000}, size_t{300000}}) {
        const size_t bytes = row_lloyd::workspace_bytes(n_max, k, region);
        const row_lloyd::Workspace w = row_lloyd::carve_workspace(nullptr, n_max, k, region);
        const auto at = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
        struct Span { uintptr_t a, b; const char* name; };
        const size_t te = static_cast<size_t>(row_lloyd::table_entries(n_max)), kk = static_cast<size_t>(k);
        std::vector<Span> spans = {
            {at(w.t0), at(w.t0) + 8 * te, "t0"},      {at(w.t1), at(w.t1) + 8 * te, "t1"},
            {at(w.t2), at(w.t2) + 8 * te, "t2"},      {at(w.c), at(w.c) + 8 * kk, "c"},
            {at(w.cand), at(w.cand) + 8 * kk, "cand"}, {at(w.scat), at(w.scat) + 8 * kk, "scat"},
            {at(w.raw), at(w.raw) + 4 * (kk + 1), "raw"}, {at(w.bounds), at(w.bounds) + 4 * (kk + 1), "bounds"},
            {at(w.prev), at(w.prev) + 4 * (kk + 1), "prev"}, {at(w.st), at(w.st) + sizeof(row_lloyd::State), "st"},
            {at(w.ws), at(w.ws) + 4 * static_cast<size_t>(n_max), "ws"},
            {at(w.hs), at(w.hs) + 4 * static_cast<size_t>(n_max), "hs"}};
        for (const Span& x : spans) {
          SCOPED_TRACE(testing::Message() << x.name << " n_max=" << n_max << " k=" << k << " region=" << region);
          EXPECT_LE(x.b, bytes);
          EXPECT_EQ(x.a % 4, 0u);
          for (const Span& y : spans) {
            if (&x != &y) {
              EXPECT_TRUE(x.b <= y.a || y.b <= x.a) << "overlaps " << y.name;
            }
          }
        }
        EXPECT_GE(at(w.c), region) << "the caller's region reaches into the arrays";
        for (const void* p : {static_cast<const void*>(w.t0), static_cast<const void*>(w.c),
                              static_cast<const void*>(w.cand), static_cast<const void*>(w.scat),
                              static_cast<const void*>(w.st)})
          EXPECT_EQ(at(p) % 8, 0u);
      }
}

// The row driver calls the op on slices of rows; results must not depend on the slice size (one row per call,
// a few rows, everything at once), warm starts included.
TEST(RowsKmeans, SlicingTheRowsChangesNothing) {
  const RowsBatch b = make_batch("slices", kLengths, 16, true, InitRule::kQuantile, true, 31);
  std::vector<std::vector<float>> starts(static_cast<size_t>(b.rows()));
  std::vector<const std::vector<float>*> warm;
  for (int64_t r = 0; r < b.rows(); ++r) {
    for (int32_t j = 0; j < b.initial_count[static_cast<size_t>(r)]; ++j)
      starts[static_cast<size_t>(r)].push_back(static_cast<float>(b.initial[static_cast<size_t>(r) * b.k + j]));
    warm.push_back(&starts[static_cast<size_t>(r)]);
  }
  QuantizeParams q;
  q.method = Method::kHwKmeans;
  q.k = b.k;
  q.init = Init::kQuantile;
  const auto whole = quantize_rows_kmeans(b.w.data(), b.h.data(), b.row_begin, q, Backend::kCpu, warm);
  ASSERT_EQ(whole.size(), static_cast<size_t>(b.rows()));
  for (const int64_t slice : {int64_t{1}, int64_t{300}, int64_t{5000}}) {
    const auto sliced = quantize_rows_kmeans(b.w.data(), b.h.data(), b.row_begin, q, Backend::kCpu, warm, slice);
    ASSERT_EQ(sliced.size(), whole.size());
    for (size_t r = 0; r < whole.size(); ++r) {
      EXPECT_EQ(sliced[r].codebook, whole[r].codebook) << "slice " << slice << " row " << r;
      EXPECT_EQ(sliced[r].indices, whole[r].indices) << "slice " << slice << " row " << r;
      EXPECT_EQ(sliced[r].iterations, whole[r].iterations);
    }
  }
}

TEST(RowsKmeans, RejectsBadJobs) {
  RowsBatch b = make_batch("bad", {10, 20}, 4, true, InitRule::kLinear, true, 3);
  RowsResult res(b);
  RowsKmeansJob j = b.job();
  j.k = 0;
  EXPECT_THROW(cpu::rows_kmeans(j, res.out()), Error);
  j = b.job();
  j.initial = nullptr;  // counts without centres
  EXPECT_THROW(cpu::rows_kmeans(j, res.out()), Error);
  j = b.job();
  j.init = 2;
  EXPECT_THROW(cpu::rows_kmeans(j, res.out()), Error);
  b.initial_count[1] = 5;  // more than k
  EXPECT_THROW(cpu::rows_kmeans(b.job(), res.out()), Error);
  RowsBatch big;
  big.w.assign(static_cast<size_t>(kRowsKmeansMaxRow) + 1, 0.5f);
  big.row_begin.push_back(kRowsKmeansMaxRow + 1);
  RowsResult big_res(big);
  try {
    cpu::rows_kmeans(big.job(), big_res.out());
    ADD_FAILURE() << "a row over the limit was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

}  // namespace
}  // namespace nq::quant
