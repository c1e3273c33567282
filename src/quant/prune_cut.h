// Internal: op (g)'s pruning rule — the `count` smallest scores (quant::prune_score: h·w², and |w| below every
// non-zero h·w² where it is 0) over all quantized weights, ties at the threshold taken in flat order (array order,
// then element order) — as a cut found from histograms: an exact
// radix selection over 16-bit digits of the scores, most significant first, until the scores sharing the selected
// prefix are few enough to collect; one more pass collects them and finishes the selection (and counts each
// array's ties) in memory. On real scores that is three passes. Nothing is stored per weight, so the same cut serves
//   - a model never held converted at once (ValueSource: each pass converts range by range; the driver's waves
//     then mark each tensor when they convert it), and
//   - the host op (g) over arrays in memory (select_pruned_cpu.cpp), which once sorted an 8-byte score per weight.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/model_values.h"
#include "quant/quant_ops.h"

namespace nq::quant {

struct PruneCut {
  uint64_t threshold = 0;          // the bits of the count-th smallest score (a non-negative double)
  std::vector<int64_t> ties;       // per source: its scores equal to the threshold
  std::vector<int64_t> ties_kept;  // per source: how many of those it prunes (its earliest ones)
};

// The keys left once they are this few are collected and the selection finishes in memory (12 bytes each);
// tests pass smaller limits to take the histogram passes on small data.
constexpr uint64_t kPruneCollectMax = uint64_t{1} << 22;

// count: 1 … total values. The sources must have been checked (ValueSource::check_all).
PruneCut find_prune_cut(const std::vector<ValueSource>& sources, int64_t count,
                        uint64_t collect_max = kPruneCollectMax);
// The same over arrays in memory (arrays.mask unused).
PruneCut find_prune_cut(const PruneArrays& arrays, int64_t count, uint64_t collect_max = kPruneCollectMax);

// mask[i] = 1 for source `source`'s values (w, h as ValueSource::convert gives them, h null without importance)
// that the cut prunes, else 0.
void mark_pruned(const PruneCut& cut, size_t source, const float* w, const float* h, int64_t n, uint8_t* mask);

}  // namespace nq::quant
