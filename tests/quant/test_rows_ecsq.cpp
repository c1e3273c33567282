// The row/group ECSQ driver (quantize_rows_ecsq over op (f), every row's λ search sharing each pass) against one
// nq::quantize (or quantize_lambdas) per row: codebooks, indices, statistics, λ, iteration counts and histories
// bit for bit — at a given λ, at a target rate (the search's growth and bisection phases), with warm starts,
// weightless and empty rows, k from 1 to beyond the distinct values, and rows sliced across op calls.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "netquant/error.h"
#include "netquant/quantize.h"
#include "quant/binned_pass.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"
#include "quant/same_result.h"

namespace nq::quant {
namespace {

using test::expect_same_result;
using test::same_bits;

// Rows of awkward lengths (one empty); row 3's importances are all zero (it runs unweighted), every 11th value's
// importance is zero, row 5 holds only a few distinct values (k reaches them), row 6 one value repeated.
struct Rows {
  std::vector<float> w, h;
  std::vector<int64_t> begin{0};
};
Rows make_rows(uint64_t seed) {
  const std::vector<int> lengths = {1, 2, 3, 257, 31, 33, 40, 0, 1000, 4099, 17, 256};
  std::mt19937_64 rng(seed);
  std::student_t_distribution<double> t(3.0);
  std::gamma_distribution<double> g(0.7, 1.0);
  Rows r;
  for (size_t row = 0; row < lengths.size(); ++row) {
    for (int i = 0; i < lengths[row]; ++i) {
      float w = static_cast<float>(0.05 * t(rng));
      if (row == 5) w = static_cast<float>(static_cast<int>(rng() % 4)) * 0.01f;
      if (row == 6) w = 0.125f;
      r.w.push_back(w);
      r.h.push_back(row == 3 || i % 11 == 0 ? 0.0f : static_cast<float>(g(rng)));
    }
    r.begin.push_back(static_cast<int64_t>(r.w.size()));
  }
  return r;
}

QuantizeParams ecsq(int k, double lambda) {
  QuantizeParams q;
  q.method = Method::kEcsq;
  q.k = k;
  q.lambda = lambda;
  q.backend = Backend::kCpu;
  return q;
}

// The driver's results against one quantize() per row (with that row's warm start, if any).
void expect_rows_equal_quantize(const Rows& d, bool weighted, const QuantizeParams& q,
                                const std::vector<std::vector<float>>& warm_codebooks, int64_t slice_values,
                                const std::string& what) {
  std::vector<const std::vector<float>*> warm;
  for (const auto& c : warm_codebooks) warm.push_back(&c);
  const float* h = weighted ? d.h.data() : nullptr;
  const auto sets = quantize_rows_ecsq(d.w.data(), h, d.begin, q, Backend::kCpu, warm, {}, slice_values);
  ASSERT_EQ(sets.size(), 1u);
  ASSERT_EQ(sets[0].size(), d.begin.size() - 1);
  for (size_t r = 0; r + 1 < d.begin.size(); ++r) {
    QuantizeParams qr = q;
    if (!warm.empty()) qr.initial_centers.assign(warm_codebooks[r].begin(), warm_codebooks[r].end());
    const size_t b = static_cast<size_t>(d.begin[r]), n = static_cast<size_t>(d.begin[r + 1]) - b;
    const QuantizeResult want = quantize(d.w.data() + b, h ? h + b : nullptr, n, qr);
    expect_same_result(sets[0][r], want, what + ", row " + std::to_string(r));
    EXPECT_EQ(sets[0][r].backend, Backend::kCpu);
  }
}

TEST(RowsEcsq, EachRowEqualsItsOwnQuantizeAtAGivenLambda) {
  const Rows d = make_rows(7);
  for (const int k : {1, 2, 5, 16, 300})
    for (const double lambda : {0.0, 1e-5, 3e-4})
      for (const bool weighted : {true, false})
        expect_rows_equal_quantize(d, weighted, ecsq(k, lambda), {}, kRowsSliceValues,
                                   "k " + std::to_string(k) + " lambda " + std::to_string(lambda) +
                                       (weighted ? " weighted" : " unweighted"));
}

// A row of kBinnedMinValues values or more, whose passes quantize() runs binned (sums equal to op (a)'s only to
// rounding: the histories differed in the last bits, and at tol = 0 an iteration count by one), next to short
// rows: every row still has quantize()'s bits, at one λ and at several.
TEST(RowsEcsq, ARowLongEnoughToBinIsQuantizedAsQuantizeDoes) {
  Rows d;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(-2.0, -1.0);
  std::gamma_distribution<double> g(0.7, 1.0);
  for (const size_t len : {size_t{300}, kBinnedMinValues + 3347, size_t{41}}) {
    for (size_t i = 0; i < len; ++i) {
      d.w.push_back(static_cast<float>(u(rng)));
      d.h.push_back(static_cast<float>(g(rng)));
    }
    d.begin.push_back(static_cast<int64_t>(d.w.size()));
  }
  ASSERT_TRUE(use_binned_pass(kBinnedMinValues + 3347)) << "the long row must be one quantize() runs binned";
  QuantizeParams q = ecsq(2, 3.667e-7);
  q.init = Init::kQuantile;
  q.tol = 0;
  for (const bool weighted : {false, true})
    expect_rows_equal_quantize(d, weighted, q, {}, kRowsSliceValues, weighted ? "weighted" : "unweighted");
  const std::vector<double> lambdas = {1e-6, 3e-5};
  const auto sets = quantize_rows_ecsq(d.w.data(), d.h.data(), d.begin, ecsq(8, 0.0), Backend::kCpu, {}, lambdas);
  for (size_t r = 0; r + 1 < d.begin.size(); ++r) {
    const size_t b = static_cast<size_t>(d.begin[r]), n = static_cast<size_t>(d.begin[r + 1]) - b;
    const auto want = quantize_lambdas(d.w.data() + b, d.h.data() + b, n, ecsq(8, 0.0), lambdas);
    for (size_t m = 0; m < lambdas.size(); ++m)
      expect_same_result(sets[m][r], want[m], "row " + std::to_string(r) + ", λ " + std::to_string(lambdas[m]));
  }
}

TEST(RowsEcsq, TargetRatesSearchRowByRowAsQuantizeDoes) {
  const Rows d = make_rows(8);
  for (const double bits : {0.3, 1.0, 2.5, 20.0}) {  // 20 bits: beyond the λ = 0 rate, that point is the answer
    QuantizeParams q = ecsq(16, 0.0);
    q.target_bits = bits;
    expect_rows_equal_quantize(d, true, q, {}, kRowsSliceValues, "target " + std::to_string(bits) + " bits");
  }
  QuantizeParams q = ecsq(8, 0.0);
  q.target_ratio = 12.0;
  q.max_iter = 3;
  expect_rows_equal_quantize(d, true, q, {}, kRowsSliceValues, "target ratio 12, 3 iterations");
}

TEST(RowsEcsq, WarmStartsInitRulesIterationLimitsAndSlices) {
  const Rows d = make_rows(9);
  std::vector<std::vector<float>> warm(d.begin.size() - 1);
  for (size_t r = 0; r < warm.size(); r += 2) warm[r] = {0.02f, -0.04f, 0.0f, 0.02f, 0.1f};  // unsorted, repeated
  for (const Init init : {Init::kLinear, Init::kQuantile, Init::kKmeansPP}) {
    QuantizeParams q = ecsq(6, 2e-5);
    q.init = init;
    q.seed = 5;
    expect_rows_equal_quantize(d, true, q, warm, kRowsSliceValues, std::string("warm, init ") + init_name(init));
    q.max_iter = 1;
    q.tol = 0;
    expect_rows_equal_quantize(d, true, q, {}, kRowsSliceValues, std::string("1 iteration, init ") + init_name(init));
  }
  // A non-finite warm centre is the caller's error, as it is for quantize().
  for (const float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<std::vector<float>> broken = warm;
    broken[3] = {0.0f, bad};
    std::vector<const std::vector<float>*> ptrs;
    for (const auto& c : broken) ptrs.push_back(&c);
    try {
      quantize_rows_ecsq(d.w.data(), d.h.data(), d.begin, ecsq(4, 1e-5), Backend::kCpu, ptrs, {});
      ADD_FAILURE() << "a warm centre " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  }
  // Slices of a few values: every row alone or with its neighbours; nothing changes.
  for (const int64_t slice : {int64_t{1}, int64_t{50}, int64_t{4200}})
    expect_rows_equal_quantize(d, true, ecsq(4, 1e-5), warm, slice, "slices of " + std::to_string(slice));
}

TEST(RowsEcsq, SeveralLambdasEqualQuantizeLambdasPerRow) {
  const Rows d = make_rows(10);
  const std::vector<double> lambdas = {0.0, 1e-5, 1e-5, 4e-4, 1e-2};
  const QuantizeParams q = ecsq(12, 0.0);
  for (const int64_t slice : {kRowsSliceValues, int64_t{300}}) {
    const auto sets = quantize_rows_ecsq(d.w.data(), d.h.data(), d.begin, q, Backend::kCpu, {}, lambdas, slice);
    ASSERT_EQ(sets.size(), lambdas.size());
    for (size_t r = 0; r + 1 < d.begin.size(); ++r) {
      const size_t b = static_cast<size_t>(d.begin[r]), n = static_cast<size_t>(d.begin[r + 1]) - b;
      const std::vector<QuantizeResult> want = quantize_lambdas(d.w.data() + b, d.h.data() + b, n, q, lambdas);
      for (size_t m = 0; m < lambdas.size(); ++m)
        expect_same_result(sets[m][r], want[m], "row " + std::to_string(r) + ", λ " + std::to_string(lambdas[m]));
    }
  }
  QuantizeParams target = q;
  target.target_bits = 1;
  EXPECT_THROW(quantize_rows_ecsq(d.w.data(), d.h.data(), d.begin, target, Backend::kCpu, {}, lambdas), Error);
  EXPECT_THROW(quantize_rows_ecsq(d.w.data(), d.h.data(), d.begin, q, Backend::kCpu, {}, {1e-3, -1.0}), Error);
}

// Checks a pass of op (f) over `task_rows` (labels from labels[1], a sentinel each side) against op (a) on each
// task's row alone: task i under codebook (c[i], l[i]) at lambda[i].
void expect_pass_equals_op_a(const Rows& d, const std::vector<uint8_t>& weighted, const std::vector<int64_t>& task_rows,
                             const std::vector<const std::vector<double>*>& c,
                             const std::vector<const std::vector<double>*>& l, const std::vector<double>& lambda,
                             const std::vector<int32_t>& labels, const std::vector<AssignAccum>& out) {
  ASSERT_EQ(out.size(), task_rows.size());
  EXPECT_EQ(labels.front(), -9);
  EXPECT_EQ(labels.back(), -9);
  size_t at = 1;
  for (size_t i = 0; i < task_rows.size(); ++i) {
    const int64_t r = task_rows[i];
    const size_t b = static_cast<size_t>(d.begin[r]), n = static_cast<size_t>(d.begin[r + 1]) - b;
    AssignAccum want;
    std::vector<int32_t> want_labels(n);
    cpu::assign_accumulate(d.w.data() + b, weighted[static_cast<size_t>(r)] ? d.h.data() + b : nullptr, n,
                           c[i]->data(), l[i]->data(), static_cast<int>(c[i]->size()), lambda[i], want_labels.data(),
                           want);
    SCOPED_TRACE("task " + std::to_string(i) + ", row " + std::to_string(r));
    for (size_t j = 0; j < c[i]->size(); ++j) {
      EXPECT_TRUE(same_bits(out[i].sum_h[j], want.sum_h[j]));
      EXPECT_TRUE(same_bits(out[i].sum_hw[j], want.sum_hw[j]));
      EXPECT_TRUE(same_bits(out[i].sum_w[j], want.sum_w[j]));
      EXPECT_EQ(out[i].count[j], want.count[j]);
    }
    EXPECT_TRUE(same_bits(out[i].distortion, want.distortion));
    EXPECT_TRUE(same_bits(out[i].sq_error, want.sq_error));
    EXPECT_TRUE(same_bits(out[i].cost, want.cost));
    for (size_t e = 0; e < n; ++e) ASSERT_EQ(labels[at + e], want_labels[e]) << "value " << e;
    at += n;
  }
}

size_t labels_of(const Rows& d, const std::vector<int64_t>& task_rows) {
  size_t total = 0;
  for (const int64_t r : task_rows) total += static_cast<size_t>(d.begin[r + 1] - d.begin[r]);
  return total;
}

// Op (f) on the CPU: each task is op (a) on its row alone, whatever the task order, repeats and label layout.
TEST(RowsEcsq, ResidentRowsPassEqualsOpAPerRow) {
  const Rows d = make_rows(11);
  const int64_t rows = static_cast<int64_t>(d.begin.size()) - 1;
  std::vector<uint8_t> weighted(static_cast<size_t>(rows), 1);
  weighted[3] = 0;
  const auto values = ops_make_resident_rows(Backend::kCpu, d.w.data(), d.h.data(), d.begin.data(), rows,
                                             weighted.data());
  const std::vector<int64_t> task_rows = {9, 0, 3, 9, 7, 11, 4, 8, 1, 2, 5, 6, 10};
  CodebookBatch books;
  std::mt19937_64 rng(12);
  std::vector<std::vector<double>> cs, ls;
  for (size_t i = 0; i < task_rows.size(); ++i) {
    const int k = 1 + static_cast<int>(rng() % 9);
    std::vector<double> c, l;
    for (int j = 0; j < k; ++j) {
      c.push_back(-0.1 + 0.2 * (j + 0.5 * (rng() % 100) / 100.0) / k);
      l.push_back(j == 1 ? std::numeric_limits<double>::infinity() : 0.5 + (rng() % 40) / 10.0);
    }
    if (k == 2) l[0] = 1.0;
    books.add(c.data(), l.data(), k, i % 3 == 0 ? 0.0 : 1e-4 * static_cast<double>(i));
    cs.push_back(c);
    ls.push_back(l);
  }
  std::vector<int32_t> labels(labels_of(d, task_rows) + 2, -9);
  std::vector<AssignAccum> out;
  values->assign_accumulate(task_rows.data(), books, labels.data() + 1, out);
  std::vector<const std::vector<double>*> c, l;
  for (size_t i = 0; i < task_rows.size(); ++i) {
    c.push_back(&cs[i]);
    l.push_back(&ls[i]);
  }
  expect_pass_equals_op_a(d, weighted, task_rows, c, l, books.lambda, labels, out);

  // One codebook shared by every task (the sharded driver's blocks): still op (a) per row.
  for (const double lambda : {0.0, 3e-4}) {
    SCOPED_TRACE("shared codebook, lambda " + std::to_string(lambda));
    std::fill(labels.begin(), labels.end(), -9);
    values->assign_accumulate_shared(task_rows.data(), task_rows.size(), cs[4].data(), ls[4].data(),
                                     static_cast<int>(cs[4].size()), lambda, labels.data() + 1, out);
    expect_pass_equals_op_a(d, weighted, task_rows, std::vector<const std::vector<double>*>(task_rows.size(), &cs[4]),
                            std::vector<const std::vector<double>*>(task_rows.size(), &ls[4]),
                            std::vector<double>(task_rows.size(), lambda), labels, out);
  }
  const int64_t bad_row = rows;
  CodebookBatch one;
  one.add(cs[0].data(), ls[0].data(), static_cast<int>(cs[0].size()), 0.0);
  EXPECT_THROW(values->assign_accumulate(&bad_row, one, nullptr, out), Error);
  const std::vector<int64_t> backwards = {0, 5, 3};
  EXPECT_THROW(ops_make_resident_rows(Backend::kCpu, d.w.data(), nullptr, backwards.data(), 2, nullptr), Error);
}

}  // namespace
}  // namespace nq::quant
