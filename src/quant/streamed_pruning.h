// Internal: op (g)'s pruning rule — the `count` smallest scores h·w² over all quantized weights, ties at the
// threshold taken in flat order (tensor order, then element order) — for a model that is never held converted at
// once. The threshold comes from an exact radix selection over eight histogram passes (radix_select.h) that convert
// the model range by range and store nothing per weight; a ninth pass counts each tensor's ties. Each tensor's mask
// is then marked when its wave converts it, equal to ops_select_pruned's over the whole converted model.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/model_values.h"

namespace nq::quant {

struct PruneCut {
  uint64_t threshold = 0;          // the bits of the count-th smallest score (a non-negative double)
  std::vector<int64_t> ties;       // per source: its scores equal to the threshold
  std::vector<int64_t> ties_kept;  // per source: how many of those it prunes (its earliest ones)
};

// count: 1 … total values of the sources. Expects the sources checked (ValueSource::check_all).
PruneCut find_prune_cut(const std::vector<ValueSource>& sources, int64_t count);

// mask[i] = 1 for source `source`'s values (w, h as ValueSource::convert gives them, h null without importance)
// that the cut prunes, else 0.
void mark_pruned(const PruneCut& cut, size_t source, const float* w, const float* h, int64_t n, uint8_t* mask);

}  // namespace nq::quant
