// Internal: visiting the kept (unpruned) weights of an index array in order without a branch per weight.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace nq {

// f(i) for each i in [a, b) with indices[i] != pruned_index, in order. Which weights are pruned is data (a branch
// per weight on it mispredicts every few weights when pruning is scattered), so 64 weights at a time become a bit
// mask of the kept ones and its set bits are visited: one unpredictable branch per 64 weights. One-byte indices
// are compared 16 at a time with SSE2 where the target has it.
template <class Index, class F>
void for_each_kept(const Index* indices, size_t a, size_t b, Index pruned_index, F&& f) {
  size_t i = a;
  for (; i + 64 <= b; i += 64) {
    uint64_t kept = 0;
#if defined(__SSE2__)
    if constexpr (sizeof(Index) == 1) {
      const __m128i mark = _mm_set1_epi8(static_cast<char>(pruned_index));
      for (int q = 0; q < 4; ++q) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(indices + i + 16 * q));
        const auto pruned = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, mark)));
        kept |= static_cast<uint64_t>(~pruned & 0xFFFFu) << (16 * q);
      }
    } else
#endif
    {
      for (int j = 0; j < 64; ++j) kept |= static_cast<uint64_t>(indices[i + static_cast<size_t>(j)] != pruned_index) << j;
    }
    for (; kept; kept &= kept - 1) f(i + static_cast<size_t>(__builtin_ctzll(kept)));
  }
  for (; i < b; ++i)
    if (indices[i] != pruned_index) f(i);
}

}  // namespace nq
