// Exact selection of the k-th smallest of many unsigned 64-bit keys by bytes, most significant first, from
// histograms alone (no key array is stored or sorted), with the histogram pass supplied by the caller: the pruning
// threshold on the device (kernels/select_pruned.cu) and on the host (quant/prune_cut.cpp, over arrays in memory
// or over a model converted range by range).
#pragma once

#include <cstdint>

#include "netquant/error.h"

namespace nq::quant {

struct RadixSelection {
  uint64_t key;   // the k-th smallest key
  uint64_t rank;  // its rank among the keys equal to it (1-based): keys below it number k − rank
};

// histogram(prefix, mask, shift, hist): hist[d] (256 entries, zeroed by the callee) = #keys with
// (key & mask) == prefix and byte (key >> shift) & 255 == d. k: 1 … number of keys.
template <class Histogram>
RadixSelection radix_select(uint64_t k, Histogram&& histogram) {
  uint64_t prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    uint64_t hist[256];
    histogram(prefix, mask, shift, hist);
    uint64_t below = 0;
    int d = 0;
    for (; d < 256 && below + hist[d] < k; ++d) below += hist[d];
    NQ_CHECK(d < 256, ErrorCode::kInternal, "radix_select: the histograms hold fewer than k keys");
    k -= below;
    prefix |= static_cast<uint64_t>(d) << shift;
    mask |= uint64_t{0xff} << shift;
  }
  return {prefix, k};
}

}  // namespace nq::quant
