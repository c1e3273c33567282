// Gap-width search, gap-stream coding and the kept indices of pruned tensors, in chunks on the threads; the
// parallel scatter of a decoded gap stream.
#include "coding/positions.h"

#include <omp.h>

#include <algorithm>
#include <map>

#include "coding/huffman_parallel.h"
#include "core/kept_mask.h"

namespace nq::coding {

namespace {

// Weights per task of the passes below. The chunks are fixed, and every result is an integer count or a symbol
// sequence, so the outputs are the same for any thread count.
constexpr size_t kGapChunk = size_t{1} << 20;

size_t gap_chunks(size_t n) { return (n + kGapChunk - 1) / kGapChunk; }

// Threads the passes use: one inside another parallel region (the writer's tensors are already on the threads).
int gap_threads() { return omp_in_parallel() ? 1 : std::max(1, omp_get_max_threads()); }

}  // namespace

template <class Index>
KeptLayout kept_layout(const Index* indices, size_t n, Index pruned_index) {
  const size_t chunks = gap_chunks(n);
  KeptLayout cs;
  cs.prev_kept.assign(chunks + 1, -1);
  cs.kept_before.assign(chunks + 1, 0);
  std::vector<int64_t> last(chunks, -1);
#pragma omp parallel for schedule(static) if (chunks > 1 && gap_threads() > 1)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t a = static_cast<size_t>(c) * kGapChunk, b = std::min(n, a + kGapChunk);
    uint64_t kept = 0;  // a branch-free count (the mask is data: a branch on it mispredicts)
    for (size_t i = a; i < b; ++i) kept += indices[i] != pruned_index;
    size_t at = b;  // the last kept weight, scanning back from the end
    while (kept > 0 && indices[at - 1] == pruned_index) --at;
    cs.kept_before[static_cast<size_t>(c) + 1] = kept;
    last[static_cast<size_t>(c)] = kept > 0 ? static_cast<int64_t>(at - 1) : -1;
  }
  for (size_t c = 0; c < chunks; ++c) {
    cs.kept_before[c + 1] += cs.kept_before[c];
    cs.prev_kept[c + 1] = last[c] >= 0 ? last[c] : cs.prev_kept[c];
  }
  return cs;
}

namespace {

// The run of pruned weights after the last kept one (up to the end), coded like a gap.
uint64_t trailing_run(size_t n, const KeptLayout& cs) {
  return static_cast<uint64_t>(static_cast<int64_t>(n) - 1 - cs.prev_kept.back());
}

// Gaps (pruned weights before each kept one, then the trailing run), as (gap, count) pairs in increasing gap.
template <class Index>
std::vector<std::pair<uint64_t, uint64_t>> gap_histogram(const Index* indices, size_t n, Index pruned_index,
                                                         const KeptLayout& cs) {
  // Short gaps (the common case) are counted in an array per thread, long ones in a map. No gap exceeds n, so a
  // small tensor's arrays are only as long as it is.
  const uint64_t dense_size = std::min<uint64_t>(uint64_t{1} << 16, uint64_t{n} + 1);
  const size_t chunks = gap_chunks(n);
  const int threads = chunks > 1 ? gap_threads() : 1;
  std::vector<std::vector<uint64_t>> dense(static_cast<size_t>(threads));
  std::vector<std::map<uint64_t, uint64_t>> sparse(static_cast<size_t>(threads));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t tid = static_cast<size_t>(omp_get_thread_num());
    auto& d = dense[tid];
    if (d.empty()) d.assign(dense_size, 0);
    auto& m = sparse[tid];
    const size_t a = static_cast<size_t>(c) * kGapChunk, b = std::min(n, a + kGapChunk);
    int64_t prev = cs.prev_kept[static_cast<size_t>(c)];
    for_each_kept(indices, a, b, pruned_index, [&](size_t i) {
      const uint64_t gap = static_cast<uint64_t>(static_cast<int64_t>(i) - prev - 1);
      if (gap < dense_size)
        ++d[gap];
      else
        ++m[gap];
      prev = static_cast<int64_t>(i);
    });
  }
  std::vector<uint64_t> total(dense_size, 0);
  std::map<uint64_t, uint64_t> long_gaps;
  for (int t = 0; t < threads; ++t) {
    const size_t tt = static_cast<size_t>(t);
    if (!dense[tt].empty())
      for (uint64_t g = 0; g < dense_size; ++g) total[g] += dense[tt][g];
    for (const auto& [gap, count] : sparse[tt]) long_gaps[gap] += count;
  }
  const uint64_t tail = trailing_run(n, cs);
  if (tail < dense_size)
    ++total[tail];
  else
    ++long_gaps[tail];
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t g = 0; g < dense_size; ++g)
    if (total[g]) out.emplace_back(g, total[g]);
  out.insert(out.end(), long_gaps.begin(), long_gaps.end());
  return out;
}

// The gap symbols of a field of `width` bits, in stream order: for each kept weight its run's fillers and then
// its gap, and the same for the trailing run. Chunks count their symbols, then write them at their offsets.
template <class Index>
std::vector<uint16_t> gap_symbols(const Index* indices, size_t n, Index pruned_index, int width, const KeptLayout& cs) {
  const uint64_t filler = (uint64_t{1} << width) - 1;
  const size_t chunks = gap_chunks(n);
  const bool parallel = chunks > 1 && gap_threads() > 1;
  // Each chunk counts its symbols (one per kept weight, plus its run's fillers), then writes them at its offset.
  auto walk = [&](size_t c, auto&& on_gap) {
    const size_t a = c * kGapChunk, b = std::min(n, a + kGapChunk);
    int64_t prev = cs.prev_kept[c];
    for_each_kept(indices, a, b, pruned_index, [&](size_t i) {
      on_gap(static_cast<uint64_t>(static_cast<int64_t>(i) - prev - 1));
      prev = static_cast<int64_t>(i);
    });
  };
  std::vector<uint64_t> at(chunks + 1, 0);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    uint64_t fillers = 0;
    walk(static_cast<size_t>(c), [&](uint64_t gap) { fillers += gap / filler; });
    at[static_cast<size_t>(c) + 1] =
        cs.kept_before[static_cast<size_t>(c) + 1] - cs.kept_before[static_cast<size_t>(c)] + fillers;
  }
  for (size_t c = 0; c < chunks; ++c) at[c + 1] += at[c];
  const uint64_t tail = trailing_run(n, cs);
  std::vector<uint16_t> symbols(static_cast<size_t>(at[chunks] + tail / filler + 1));
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    uint16_t* __restrict out = symbols.data() + at[static_cast<size_t>(c)];
    walk(static_cast<size_t>(c), [&](uint64_t gap) {
      for (; gap >= filler; gap -= filler) *out++ = static_cast<uint16_t>(filler);
      *out++ = static_cast<uint16_t>(gap);
    });
  }
  uint16_t* out = std::fill_n(symbols.data() + at[chunks], tail / filler, static_cast<uint16_t>(filler));
  *out = static_cast<uint16_t>(tail % filler);
  return symbols;
}

}  // namespace

template <class Index>
GapPlan plan_gaps(const Index* indices, size_t n, Index pruned_index, const KeptLayout* layout) {
  const KeptLayout own = layout ? KeptLayout{} : kept_layout(indices, n, pruned_index);
  const auto gaps = gap_histogram(indices, n, pruned_index, layout ? *layout : own);
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
    // No filler at this width: every wider one codes the same symbols with the same code, and only lengthens the
    // table's final run of zero lengths, so none is smaller (and ties go to the narrower). Stopping here spares a
    // tensor with short gaps the 64 Ki-symbol codes of the widest fields.
    if (counts[filler] == 0) break;
  }
  return best;
}

template <class Index>
std::vector<uint8_t> encode_gaps(const Index* indices, size_t n, Index pruned_index, const GapPlan& plan,
                                 const KeptLayout* layout) {
  const KeptLayout own = layout ? KeptLayout{} : kept_layout(indices, n, pruned_index);
  const auto symbols = gap_symbols(indices, n, pruned_index, plan.width, layout ? *layout : own);
  return encode_stream_parallel(HuffmanEncoder(plan.lengths), symbols.data(), symbols.size(), plan.stream_bits);
}

template <class Index>
std::vector<Index> gather_kept(const Index* indices, size_t n, Index pruned_index, const KeptLayout* layout) {
  const KeptLayout own = layout ? KeptLayout{} : kept_layout(indices, n, pruned_index);
  const KeptLayout& cs = layout ? *layout : own;
  std::vector<Index> kept(static_cast<size_t>(cs.kept_before.back()));
  const size_t chunks = gap_chunks(n);
#pragma omp parallel for schedule(static) if (chunks > 1 && gap_threads() > 1)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t a = static_cast<size_t>(c) * kGapChunk;
    const uint64_t count = cs.kept_before[static_cast<size_t>(c) + 1] - cs.kept_before[static_cast<size_t>(c)];
    if (count == 0) continue;
    // Branch-free up to the chunk's last kept weight (every store lands inside the chunk's share), then that one.
    Index* out = kept.data() + cs.kept_before[static_cast<size_t>(c)];
    const size_t last = static_cast<size_t>(cs.prev_kept[static_cast<size_t>(c) + 1]);
    for (size_t i = a; i < last; ++i) {
      *out = indices[i];
      out += indices[i] != pruned_index;
    }
    *out = indices[last];
  }
  return kept;
}

template <class Index>
bool scatter_kept_parallel(const HuffmanDecoder& code, const uint8_t* data, size_t bytes, uint64_t bits, int width,
                           uint64_t numel, uint64_t kept, const Index* kept_values, Index* out,
                           uint64_t segment_bits, size_t walk_symbols) {
  if (kept == 0 || (segment_bits == 0 && !parallel_decode_pays(bits))) return false;
  std::vector<uint16_t> symbols;  // gap symbols have at most 16 bits
  if (!decode_stream_parallel<uint16_t>(code, data, bytes, bits, [&](size_t total) {
        symbols.resize(total);
        return symbols.data();  // null, refusing, when there are none: a gap stream has at least one symbol
      }, segment_bits))
    return false;
  // Each symbol advances the position by the filler's run, or by its gap and the kept weight after it; the last
  // one (the trailing run) lands exactly on numel, so the advances sum to numel + 1 and there are kept + 1
  // non-filler symbols, the last symbol among them. That is all decode_gaps checks: positions only grow, so every
  // kept one is then below numel.
  const uint32_t filler = (uint32_t{1} << width) - 1;
  const size_t m = symbols.size();
  if (m == 0 || symbols.back() == filler) return false;
  const size_t chunk = walk_symbols ? walk_symbols : size_t{1} << 16;
  const size_t chunks = (m + chunk - 1) / chunk;
  std::vector<uint64_t> advance(chunks + 1, 0), ordinal(chunks + 1, 0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t a = static_cast<size_t>(c) * chunk, b = std::min(m, a + chunk);
    // Σ (s + 1) over all symbols, less one for each filler (a filler advances by s = filler): a plain sum and a
    // count, which vectorise.
    const uint16_t* sym = symbols.data();
    uint64_t sum = 0, fillers = 0;
    for (size_t i = a; i < b; ++i) {
      sum += sym[i];
      fillers += sym[i] == filler;
    }
    const uint64_t adv = sum + (b - a) - fillers, nonfiller = (b - a) - fillers;
    advance[static_cast<size_t>(c) + 1] = adv;
    ordinal[static_cast<size_t>(c) + 1] = nonfiller;
  }
  for (size_t c = 0; c < chunks; ++c) {
    advance[c + 1] += advance[c];
    ordinal[c + 1] += ordinal[c];
  }
  if (ordinal[chunks] != kept + 1 || advance[chunks] != numel + 1) return false;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t a = static_cast<size_t>(c) * chunk, b = std::min(m, a + chunk);
    uint64_t pos = advance[static_cast<size_t>(c)], next = ordinal[static_cast<size_t>(c)];
    // Local restrict pointers: stores of byte-wide indices could otherwise alias the loop's state.
    const uint16_t* __restrict sym = symbols.data();
    const Index* __restrict from = kept_values;
    Index* __restrict to = out;
    // The trailing run's symbol (the very last) has no kept weight; every other non-filler symbol has one.
    const size_t end = b == m ? b - 1 : b;
    for (size_t i = a; i < end; ++i) {
      const uint32_t s = sym[i];
      if (s == filler) {
        pos += filler;
        continue;
      }
      pos += s;
      to[pos] = from[next];
      ++next;
      ++pos;
    }
  }
  return true;
}

// The widths an IndexArray stores.
template KeptLayout kept_layout(const uint8_t*, size_t, uint8_t);
template GapPlan plan_gaps(const uint8_t*, size_t, uint8_t, const KeptLayout*);
template KeptLayout kept_layout(const uint16_t*, size_t, uint16_t);
template GapPlan plan_gaps(const uint16_t*, size_t, uint16_t, const KeptLayout*);
template KeptLayout kept_layout(const int32_t*, size_t, int32_t);
template GapPlan plan_gaps(const int32_t*, size_t, int32_t, const KeptLayout*);
template std::vector<uint8_t> encode_gaps(const uint8_t*, size_t, uint8_t, const GapPlan&, const KeptLayout*);
template std::vector<uint8_t> encode_gaps(const uint16_t*, size_t, uint16_t, const GapPlan&, const KeptLayout*);
template std::vector<uint8_t> encode_gaps(const int32_t*, size_t, int32_t, const GapPlan&, const KeptLayout*);
template std::vector<uint8_t> gather_kept(const uint8_t*, size_t, uint8_t, const KeptLayout*);
template std::vector<uint16_t> gather_kept(const uint16_t*, size_t, uint16_t, const KeptLayout*);
template std::vector<int32_t> gather_kept(const int32_t*, size_t, int32_t, const KeptLayout*);
template bool scatter_kept_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t, int, uint64_t, uint64_t,
                                    const uint8_t*, uint8_t*, uint64_t, size_t);
template bool scatter_kept_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t, int, uint64_t, uint64_t,
                                    const uint16_t*, uint16_t*, uint64_t, size_t);
template bool scatter_kept_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t, int, uint64_t, uint64_t,
                                    const int32_t*, int32_t*, uint64_t, size_t);

}  // namespace nq::coding
