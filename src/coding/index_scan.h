// Internal: the scan that checks stored indices against their codebook sizes (the .nq writer before coding, the
// reader after decoding).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace nq::coding {

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

}  // namespace nq::coding
