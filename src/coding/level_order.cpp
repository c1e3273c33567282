// Per-problem level order of a .nq tensor (level_order.h): by use for the writer, ascending again for the reader.
#include "coding/level_order.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/parallel_for.h"
#include "netquant/error.h"

namespace nq::coding {

namespace {
// Problems per parallel task: a problem is a row or group, often a few hundred values.
constexpr int64_t kSerialProblems = 16;
}  // namespace

LevelOrder order_levels_by_use(const QuantizedTensor& t, const std::vector<std::vector<float>>& codebooks,
                               uint32_t alphabet) {
  LevelOrder o;
  const auto np = static_cast<size_t>(t.num_problems);
  o.offset.assign(np + 1, 0);
  for (size_t c = 0; c < np; ++c)
    o.offset[c + 1] = o.offset[c] + codebooks[static_cast<size_t>(t.first_codebook) + c].size();
  std::vector<uint64_t> per_level(o.offset.back(), 0), pruned_of(np, 0);
  o.rank_of.resize(o.offset.back());
  o.level_at.resize(o.offset.back());
  const size_t n = t.indices.size(), ps = static_cast<size_t>(t.problem_size);
  t.indices.visit([&](const auto* data, auto mark) {
    parallel_for(static_cast<int64_t>(np), kSerialProblems, [&](int64_t pc) {
      const auto c = static_cast<size_t>(pc);
      const size_t begin = std::min(n, c * ps), end = std::min(n, begin + ps);
      uint64_t* count = per_level.data() + o.offset[c];
      uint64_t pruned = 0;
      for (size_t i = begin; i < end; ++i) {
        if (data[i] == mark) ++pruned;
        else ++count[data[i]];  // below the codebook's size: check_model has checked every index
      }
      pruned_of[c] = pruned;
      uint32_t* level = o.level_at.data() + o.offset[c];
      const auto k = static_cast<uint32_t>(o.offset[c + 1] - o.offset[c]);
      std::iota(level, level + k, 0u);
      std::stable_sort(level, level + k, [&](uint32_t a, uint32_t b) { return count[a] > count[b]; });
      for (uint32_t r = 0; r < k; ++r) o.rank_of[o.offset[c] + level[r]] = r;
    });
  });
  o.counts.assign(alphabet, 0);
  for (size_t c = 0; c < np; ++c) {
    o.pruned += pruned_of[c];
    for (uint64_t r = 0; r < o.offset[c + 1] - o.offset[c]; ++r)
      o.counts[r] += per_level[o.offset[c] + o.level_at[o.offset[c] + r]];
  }
  return o;
}

template <class Index>
std::vector<Index> indices_by_place(const Index* indices, size_t n, Index pruned_index, uint64_t problem_size,
                                    const LevelOrder& order) {
  std::vector<Index> out(n);
  parallel_for_chunks(static_cast<int64_t>(n), int64_t{1} << 16, [&](int64_t i0, int64_t i1) {
    for (auto i = static_cast<size_t>(i0); i < static_cast<size_t>(i1); ++i) {
      const Index v = indices[i];
      out[i] = v == pruned_index ? v : static_cast<Index>(order.rank_of[order.offset[i / problem_size] + v]);
    }
  });
  return out;
}

template std::vector<uint8_t> indices_by_place(const uint8_t*, size_t, uint8_t, uint64_t, const LevelOrder&);
template std::vector<uint16_t> indices_by_place(const uint16_t*, size_t, uint16_t, uint64_t, const LevelOrder&);
template std::vector<int32_t> indices_by_place(const int32_t*, size_t, int32_t, uint64_t, const LevelOrder&);

void restore_ascending_levels(QuantizedTensor& t, std::vector<std::vector<float>>& codebooks) {
  const auto np = static_cast<size_t>(t.num_problems);
  const size_t n = t.indices.size(), ps = static_cast<size_t>(t.problem_size);
  // NaN after every number (a strict weak order on any floats a file may hold).
  auto below = [](float a, float b) { return !std::isnan(a) && (std::isnan(b) || a < b); };
  t.indices.visit_mutable([&](auto* data, auto mark) {
    parallel_for(static_cast<int64_t>(np), kSerialProblems, [&](int64_t pc) {
      const auto c = static_cast<size_t>(pc);
      std::vector<float>& cb = codebooks[static_cast<size_t>(t.first_codebook) + c];
      if (std::is_sorted(cb.begin(), cb.end(), below)) return;
      std::vector<uint32_t> stored(cb.size());  // the place in the file of each ascending level
      std::iota(stored.begin(), stored.end(), 0u);
      std::stable_sort(stored.begin(), stored.end(), [&](uint32_t a, uint32_t b) { return below(cb[a], cb[b]); });
      std::vector<uint32_t> level_of(cb.size());
      std::vector<float> ascending(cb.size());
      for (uint32_t l = 0; l < stored.size(); ++l) {
        level_of[stored[l]] = l;
        ascending[l] = cb[stored[l]];
      }
      cb = std::move(ascending);
      using Index = std::remove_pointer_t<decltype(data)>;
      const size_t begin = std::min(n, c * ps), end = std::min(n, begin + ps);
      for (size_t i = begin; i < end; ++i)
        if (data[i] != mark) data[i] = static_cast<Index>(level_of[data[i]]);
    });
  });
}

}  // namespace nq::coding
