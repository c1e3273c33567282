// Internal: scans of stored indices (an IndexArray's raw array at its width, with its pruned mark) that the .nq
// writer, the reader and the quantizer's statistics share: checking them against a codebook's size, and counting
// them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace nq {

// One more than the largest index in data[begin, end) that is not the pruned mark (0 when all are pruned). Seen
// unsigned, the mark is its width's largest value (0xFF, 0xFFFF, or -1 as 0xFFFFFFFF), so adding one wraps it to
// 0 and the scan is a plain max reduction, which vectorises; a negative int32 index other than the mark comes out
// huge. An index is outside a codebook of k levels exactly when this exceeds k.
template <class Index>
uint64_t largest_index_plus_one(const Index* data, size_t begin, size_t end) {
  using Unsigned = std::make_unsigned_t<Index>;
  Unsigned top = 0;
  for (size_t i = begin; i < end; ++i) top = std::max(top, static_cast<Unsigned>(static_cast<Unsigned>(data[i]) + 1u));
  return top;
}

// The first i in [begin, end) whose index is outside a codebook of `levels` (not the mark, and >= levels), or
// `end`: the vectorised scan above, and a walk only where it finds one.
template <class Index>
size_t first_index_outside(const Index* data, size_t begin, size_t end, Index mark, uint64_t levels) {
  if (largest_index_plus_one(data, begin, end) <= levels) return end;
  for (size_t i = begin; i < end; ++i)
    if (data[i] != mark && static_cast<uint64_t>(static_cast<int64_t>(data[i])) >= levels) return i;
  return end;
}

// counts[v] += how many of data[begin, end) are v, for v < k; returns how many are the pruned mark, and sets `bad`
// when any other is k or more. One-byte indices are counted over all 256 values, the mark's bin included: no
// branch on which weights are pruned (that is data, and mispredicts).
template <class Index, class Count>
uint64_t count_indices(const Index* data, size_t begin, size_t end, Index mark, size_t k, Count* counts, bool& bad) {
  if constexpr (sizeof(Index) == 1) {
    uint64_t all[256] = {};
    for (size_t i = begin; i < end; ++i) ++all[data[i]];
    for (size_t v = 0; v < 256; ++v) {
      if (v == static_cast<uint8_t>(mark)) continue;
      if (v < k)
        counts[v] += static_cast<Count>(all[v]);
      else
        bad = bad || all[v] > 0;
    }
    return all[static_cast<uint8_t>(mark)];
  } else {
    uint64_t pruned = 0;
    for (size_t i = begin; i < end; ++i) {
      if (data[i] == mark) {
        ++pruned;
      } else if (static_cast<uint64_t>(static_cast<int64_t>(data[i])) >= k) {
        bad = true;
      } else {
        ++counts[static_cast<size_t>(data[i])];
      }
    }
    return pruned;
  }
}

}  // namespace nq
