// Gap-width search and gap-stream encoding for pruned tensors.
#include "coding/positions.h"

#include <algorithm>
#include <map>

namespace nq::coding {

namespace {
// Gaps (pruned weights before each kept one, then the trailing run), as (gap, count) pairs.
template <class Index>
std::vector<std::pair<uint64_t, uint64_t>> gap_histogram(const Index* indices, size_t n, Index pruned_index) {
  // Short gaps (the common case) are counted in an array, long ones in a map.
  constexpr uint64_t kDense = 1u << 16;
  std::vector<uint64_t> dense(kDense, 0);
  std::map<uint64_t, uint64_t> sparse;
  uint64_t run = 0;
  auto add = [&](uint64_t gap) {
    if (gap < kDense)
      ++dense[gap];
    else
      ++sparse[gap];
  };
  for (size_t i = 0; i < n; ++i) {
    if (indices[i] == pruned_index) {
      ++run;
    } else {
      add(run);
      run = 0;
    }
  }
  add(run);  // the trailing run, ended by a symbol that points one past the end
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t g = 0; g < kDense; ++g)
    if (dense[g]) out.emplace_back(g, dense[g]);
  out.insert(out.end(), sparse.begin(), sparse.end());
  return out;
}

template <class Index, class Emit>
void for_each_gap_symbol(const Index* indices, size_t n, Index pruned_index, uint64_t filler, Emit&& emit) {
  uint64_t run = 0;
  auto flush = [&] {
    for (; run >= filler; run -= filler) emit(static_cast<uint32_t>(filler));
    emit(static_cast<uint32_t>(run));
    run = 0;
  };
  for (size_t i = 0; i < n; ++i) {
    if (indices[i] == pruned_index)
      ++run;
    else
      flush();
  }
  flush();
}
}  // namespace

template <class Index>
GapPlan plan_gaps(const Index* indices, size_t n, Index pruned_index) {
  const auto gaps = gap_histogram(indices, n, pruned_index);
  GapPlan best;
  uint64_t best_bits = ~uint64_t{0};
  for (int width = kMinGapWidth; width <= kMaxGapWidth; ++width) {
    const uint64_t filler = (uint64_t{1} << width) - 1;
    std::vector<uint64_t> counts(size_t{1} << width, 0);
    for (const auto& [gap, count] : gaps) {
      counts[filler] += (gap / filler) * count;
      counts[gap % filler] += count;
    }
    GapPlan plan;
    plan.width = width;
    plan.lengths = huffman_code_lengths(counts);
    plan.stream_bits = huffman_stream_bits(counts, plan.lengths);
    plan.table_bits = code_lengths_bits(plan.lengths);
    const uint64_t total = plan.stream_bits + plan.table_bits + 8;
    if (total < best_bits) {
      best_bits = total;
      best = std::move(plan);
    }
  }
  return best;
}

template <class Index>
void encode_gaps(const Index* indices, size_t n, Index pruned_index, const GapPlan& plan, BitWriter& out) {
  const HuffmanEncoder enc(plan.lengths);
  const uint64_t filler = (uint64_t{1} << plan.width) - 1;
  std::vector<uint32_t> symbols;
  symbols.reserve(1024);
  auto drain = [&] {
    enc.encode(symbols.data(), symbols.size(), out);
    symbols.clear();
  };
  for_each_gap_symbol(indices, n, pruned_index, filler, [&](uint32_t s) {
    symbols.push_back(s);
    if (symbols.size() == 1024) drain();
  });
  drain();
}

// The widths an IndexArray stores.
template GapPlan plan_gaps(const uint8_t*, size_t, uint8_t);
template GapPlan plan_gaps(const uint16_t*, size_t, uint16_t);
template GapPlan plan_gaps(const int32_t*, size_t, int32_t);
template void encode_gaps(const uint8_t*, size_t, uint8_t, const GapPlan&, BitWriter&);
template void encode_gaps(const uint16_t*, size_t, uint16_t, const GapPlan&, BitWriter&);
template void encode_gaps(const int32_t*, size_t, int32_t, const GapPlan&, BitWriter&);

}  // namespace nq::coding
