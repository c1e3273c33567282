// ECSQ's assign + accumulate pass in time sublinear in N, by importance bins (op (a)'s sums without its labels).
//
// For one weight the ECSQ cost of cluster i minus that of cluster j is
//     g_ij(w, h) = h·(c_i − c_j)·(c_i + c_j − 2w) + λ·(l_i − l_j),
// bilinear in (w, h). Over a rectangle [w0, w1] × [h_lo, h_hi] it is therefore smallest at a corner: when it is
// positive, with a rounding margin, at the four corners for every i ≠ j, then every weight in the rectangle takes
// label j under the fp64 argmin of assign_cost (ties included). So the weights are split once into bins of
// similar importance (equal counts by h), each bin sorted by w with block prefix sums. A pass takes, per bin, the
// lower envelope of the costs at the bin's least and greatest importance: between a boundary's two breakpoints
// lie the values whose label depends on h, all handed to op (a) in one call at the end; each cell between two such
// zones is one run, certified by its four corners and added from the prefix sums. (Where the two envelopes differ,
// or a run fails, runs are cut at the middle importance's envelope and halved down to a few values.) On heavy-tailed
// weights about 1% of the values go to op (a), so a pass costs O(bins · k²) plus that: 0.34–0.37 ns per weight
// against op (a)'s 2.9–4.2 at k = 32, λ > 0, on 10^7 values, 2 cores (bench/RESULTS.md, "CPU quantizers").
//
// Same labels as op (a) (the brute-force fp64 argmin and its tie rules), hence the same counts; the sums are
// the same up to rounding (prefix sums in another order). Values of importance 0 all take argmin_j λ·l_j when one
// cluster has the least rate, else they are left to op (a) (their ties go to the nearest centre).
//
// The CUDA backend runs the same plan on the host and op (a) over the values left on the device, from its own copy
// of the binned layout (kernels/resident_values.cu), so a pass there moves ~1% of the data instead of all of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "core/scratch_vector.h"

#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::quant {

// Op (d) (both backends) passes over problems of at least this many values with BinnedValues, when twice its
// peak host memory while being built (an upper bound, per value) is available.
constexpr size_t kBinnedMinValues = size_t{1} << 16;
constexpr uint64_t kBinnedBuildBytesPerValue = 24;
// Switches op (d)'s use of the binned pass off (false) or back on: tests and benches compare it with op (a).
// Set it between runs, not during one.
void set_binned_pass_enabled(bool enabled);
bool binned_pass_enabled();
// Whether op (d) builds a BinnedValues for n values: the switch, the size, and the host memory it needs.
bool use_binned_pass(size_t n);

// One pass split where the backends differ: the certificate's work on the host (plan), op (a) over the values
// left wherever the backend keeps them, and the sum of the two. Both backends run the same plan, so they differ
// only as their op (a) does.
struct BinnedPlan {
  // When set, nothing else applies: op (a) over all the original values is cheaper or required (a codebook the
  // certificate cannot take: a dead cluster, non-ascending centres, a non-finite λ; or most values left over).
  bool whole = false;
  AssignAccum certified;  // the certified runs' sums, and the values of importance 0 when one label takes them all
  // Positions [first, second) in values() / importances() for op (a), in this order (bin order, then the values of
  // importance 0 when op (a) labels them), and their count.
  std::vector<std::pair<size_t, size_t>> left;
  size_t left_values = 0;
};

class BinnedValues {
 public:
  // w, h: n values (h == nullptr: all importances 1), finite, h ≥ 0 (validated by the caller). assign_accumulate
  // reads them again for a whole pass, so they must outlive the object if it is called (plan() does not read them).
  // bins = 0 picks about n / 16384 bins; at most 256 either way. sorted: the same values sorted by op (b1), when the
  // caller has them (the layout is then a stable scatter of those, with no sort of its own); the same object either way.
  BinnedValues(const float* w, const float* h, size_t n, size_t bins = 0, SortedView sorted = {});

  // Op (a) without labels, under op (a)'s conditions on the codebook: out gets sum_h, sum_hw, sum_w, count,
  // distortion, sq_error and cost. plan(), then the CPU's op (a) over the values left (gathered in order) or over
  // all values, then the sum. values_one_by_one (optional): how many values op (a) took.
  void assign_accumulate(const double* centers, const double* code_len, int k, double lambda, AssignAccum& out,
                         size_t* values_one_by_one = nullptr) const;

  // The certificate's part of a pass (parallel over bins on the host). Checks k ≥ 1.
  BinnedPlan plan(const double* centers, const double* code_len, int k, double lambda) const;
  // out = plan.certified + rest, where rest is op (a)'s sums over plan.left's values gathered in order (not for a
  // whole plan: op (a)'s sums over all values are the pass).
  static void finish(const BinnedPlan& plan, const AssignAccum& rest, AssignAccum& out);

  size_t size() const { return n_; }
  size_t bins() const { return bins_.size(); }
  // The binned layout plan.left refers to: the values of positive importance, grouped by bin, each bin ascending,
  // then those of importance 0 in their source's order.
  const ScratchVector<float>& values() const { return w_; }
  const ScratchVector<float>& importances() const { return h_; }

 private:
  struct Bin {
    size_t begin = 0, end = 0;  // positions in w_/h_
    double h_lo = 0, h_hi = 0;  // the least and greatest importance in the bin
  };
  // Sums over positions [a, b) of w_/h_ with x = w − shift_: weighted (Σh, Σh·x, Σh·x²) and plain (n, Σx, Σx²).
  struct RangeSums {
    Moments weighted, plain;
  };
  RangeSums prefix(size_t p) const;  // over [0, p): op (b2)'s block prefix sums plus the block's head, as SortedData
  RangeSums range(size_t a, size_t b) const;

  const float* src_w_;  // the caller's values, for a whole pass
  const float* src_h_;
  size_t n_;
  // [0, positive_): positive importance, grouped by bin, each bin ascending in w (sort_pairs writes all);
  // [positive_, n_): importance 0, in the source's order.
  ScratchVector<float> w_, h_;
  size_t positive_ = 0;
  std::vector<Bin> bins_;
  static constexpr size_t kBlock = 16;
  std::vector<double> ph_, phx_, phx2_, pn_, px_, px2_;  // op (b2)'s block prefix sums, weighted and plain
  double shift_ = 0;
  // The values of importance 0, for a pass where one label takes them all (argmin_j λ·l_j unique, whatever w): their
  // count and their sums of w and w² (in the values' order).
  size_t zero_count_ = 0;
  double zero_sum_w_ = 0, zero_sum_w2_ = 0;

  // Each bin's working vectors in plan(), kept from pass to pass: a pass allocated a dozen small vectors per bin
  // (thousands of allocations, several percent of the plan). plan() holds the lock while it uses them, so calls on
  // one object from several threads stay correct (they take turns).
  struct Run {
    size_t a, b;  // positions [a, b)
    int j;        // the label to certify
  };
  struct BinScratch {
    AssignAccum acc;                                // the certified runs' sums
    std::vector<std::pair<size_t, size_t>> left;    // the ranges left to op (a)
    std::vector<int> hull, hull_other;              // the envelopes at the bin's two ends
    std::vector<double> cut, cut_other;
    std::vector<Run> runs;                          // the certificate's stack
  };
  mutable std::vector<BinScratch> scratch_;
  mutable std::mutex scratch_mutex_;
};

}  // namespace nq::quant
