#include "quant/prune_cut.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/iteration_errors.h"
#include "core/parallel_for.h"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/radix_select.h"

namespace nq::quant {

namespace {

// A non-negative double's bits order as its value (prune_score turns −0 into +0).
uint64_t key_of(double score) {
  uint64_t key;
  std::memcpy(&key, &score, sizeof key);
  return key;
}
uint64_t score_key(float w, const float* h, int64_t i) {
  return key_of(prune_score(w, h ? static_cast<double>(h[i]) : 1.0));
}

struct Chunk {
  size_t source;
  int64_t begin, end;
};

// Every source of `sizes` cut into chunks of kInlineLoopMax values, in flat order.
std::vector<Chunk> chunks_of(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < sizes.size(); ++s)
    for (int64_t i0 = 0; i0 < sizes[s]; i0 += kInlineLoopMax)
      chunks.push_back({s, i0, std::min(sizes[s], i0 + kInlineLoopMax)});
  return chunks;
}

// Per-thread buffers of one chunk: values converted from a source, and their keys.
struct ChunkScratch {
  std::vector<float> w = std::vector<float>(static_cast<size_t>(kInlineLoopMax));
  std::vector<float> h = std::vector<float>(static_cast<size_t>(kInlineLoopMax));
  std::vector<uint64_t> keys = std::vector<uint64_t>(static_cast<size_t>(kInlineLoopMax));
};

// body(chunk index, keys, n) for every chunk on the OpenMP threads; fill(chunk, scratch) writes the chunk's keys
// into scratch.keys.
template <class Fill, class Body>
void for_each_key_chunk(const std::vector<Chunk>& chunks, Fill& fill, Body&& body) {
  const int64_t count = static_cast<int64_t>(chunks.size());
  IterationErrors errors;  // a chunk's keys, or the collected ones, may not fit in memory: out of the region
#pragma omp parallel if (count > 1)
  {
    ChunkScratch scratch;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < count; ++c)
      errors.run(static_cast<size_t>(c), [&] {
        const Chunk& ch = chunks[static_cast<size_t>(c)];
        fill(ch, scratch);
        body(static_cast<size_t>(c), scratch.keys.data(), ch.end - ch.begin);
      });
  }
  errors.rethrow_first();
}

// Keys of 16-bit digits, most significant first: 65,536-bin histograms (per thread) cut 64-bit keys in four
// passes where bytes take eight. Once the keys sharing the selected prefix are few, one more pass collects them
// (with their chunks) and the selection finishes in memory, ties included: on real scores two histogram passes
// and one collecting pass, instead of eight passes and a ninth for the ties.
constexpr int kDigitBits = 16;
constexpr size_t kBins = size_t{1} << kDigitBits;

// The cut over sources of `sizes` whose chunk keys `fill` computes.
template <class Fill>
PruneCut find_cut(const std::vector<int64_t>& sizes, int64_t count, uint64_t collect_max, Fill fill) {
  int64_t total = 0;
  for (const int64_t n : sizes) total += n;
  NQ_CHECK(count >= 1 && count <= total, ErrorCode::kInvalidArgument,
           "pruning: cannot prune " << count << " of " << total << " values");
  const std::vector<Chunk> chunks = chunks_of(sizes);
  // Integer counts: the histograms are the same whatever the thread count or the order the threads merge in.
  uint64_t k = static_cast<uint64_t>(count), prefix = 0, mask = 0, remaining = static_cast<uint64_t>(total);
  std::vector<int64_t> chunk_ties(chunks.size(), 0);
  PruneCut cut;
  bool found = false;
  for (int shift = 64 - kDigitBits; shift >= 0 && !found; shift -= kDigitBits) {
    if (remaining <= collect_max) {
      // The `remaining` keys with this prefix, then the k-th smallest of them and its ties per chunk.
      std::vector<std::vector<uint64_t>> keys_of(chunks.size());
      for_each_key_chunk(chunks, fill, [&](size_t c, const uint64_t* keys, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
          if ((keys[i] & mask) == prefix) keys_of[c].push_back(keys[i]);
      });
      std::vector<uint64_t> all;
      all.reserve(static_cast<size_t>(remaining));
      for (const auto& v : keys_of) all.insert(all.end(), v.begin(), v.end());
      NQ_CHECK(all.size() == remaining && k >= 1 && k <= remaining, ErrorCode::kInternal,
               "pruning: the collected keys disagree with the histograms");
      std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k - 1), all.end());
      const uint64_t key = all[static_cast<size_t>(k - 1)];
      uint64_t below = 0;
      for (const uint64_t v : all) below += v < key;
      cut.threshold = key;
      k -= below;  // its rank among the keys equal to it
      for (size_t c = 0; c < chunks.size(); ++c)
        chunk_ties[c] = std::count(keys_of[c].begin(), keys_of[c].end(), key);
      found = true;
      break;
    }
    std::vector<uint64_t> hist(kBins, 0);
    std::vector<std::vector<uint64_t>> per_thread(static_cast<size_t>(omp_get_max_threads()));
    for_each_key_chunk(chunks, fill, [&](size_t, const uint64_t* keys, int64_t n) {
      std::vector<uint64_t>& local = per_thread[static_cast<size_t>(omp_get_thread_num())];
      if (local.empty()) local.assign(kBins, 0);
      for (int64_t i = 0; i < n; ++i)
        if ((keys[i] & mask) == prefix) ++local[(keys[i] >> shift) & (kBins - 1)];
    });
    for (const auto& local : per_thread)
      for (size_t d = 0; d < local.size(); ++d) hist[d] += local[d];
    uint64_t below = 0;
    size_t d = 0;
    for (; d < kBins && below + hist[d] < k; ++d) below += hist[d];
    NQ_CHECK(d < kBins, ErrorCode::kInternal, "pruning: the histograms hold fewer keys than the count");
    k -= below;
    remaining = hist[d];
    prefix |= static_cast<uint64_t>(d) << shift;
    mask |= static_cast<uint64_t>(kBins - 1) << shift;
  }
  if (!found) {  // every bit fixed by histograms (many keys share the first 48 bits): count the ties
    cut.threshold = prefix;
    for_each_key_chunk(chunks, fill, [&](size_t c, const uint64_t* keys, int64_t n) {
      int64_t ties = 0;
      for (int64_t i = 0; i < n; ++i) ties += keys[i] == prefix;
      chunk_ties[c] = ties;
    });
  }
  const RadixSelection sel{cut.threshold, k};
  cut.ties.assign(sizes.size(), 0);
  for (size_t c = 0; c < chunks.size(); ++c) cut.ties[chunks[c].source] += chunk_ties[c];
  // sel.rank ties still to prune after every score below the threshold, the earliest in flat order.
  int64_t left = static_cast<int64_t>(sel.rank);
  cut.ties_kept.assign(sizes.size(), 0);
  for (size_t s = 0; s < sizes.size(); ++s) {
    cut.ties_kept[s] = std::min(left, cut.ties[s]);
    left -= cut.ties_kept[s];
  }
  NQ_CHECK(left == 0, ErrorCode::kInternal, "pruning: the tie count disagrees with the selection");
  return cut;
}

}  // namespace

PruneCut find_prune_cut(const std::vector<ValueSource>& sources, int64_t count, uint64_t collect_max) {
  std::vector<int64_t> sizes;
  for (const ValueSource& s : sources) sizes.push_back(s.size());
  return find_cut(sizes, count, collect_max, [&](const Chunk& ch, ChunkScratch& scratch) {
    const ValueSource& src = sources[ch.source];
    src.convert(ch.begin, ch.end, scratch.w.data(), scratch.h.data());
    const float* h = src.has_importance() ? scratch.h.data() : nullptr;
    for (int64_t i = 0; i < ch.end - ch.begin; ++i)
      scratch.keys[static_cast<size_t>(i)] = score_key(scratch.w[static_cast<size_t>(i)], h, i);
  });
}

PruneCut find_prune_cut(const PruneArrays& arrays, int64_t count, uint64_t collect_max) {
  std::vector<int64_t> sizes;
  for (const size_t n : arrays.n) sizes.push_back(static_cast<int64_t>(n));
  return find_cut(sizes, count, collect_max, [&](const Chunk& ch, ChunkScratch& scratch) {
    const float* w = arrays.w[ch.source] + ch.begin;
    const float* h = arrays.h.empty() ? nullptr : arrays.h[ch.source] + ch.begin;
    for (int64_t i = 0; i < ch.end - ch.begin; ++i) scratch.keys[static_cast<size_t>(i)] = score_key(w[i], h, i);
  });
}

void mark_pruned(const PruneCut& cut, size_t source, const float* w, const float* h, int64_t n, uint8_t* mask) {
  const uint64_t thr = cut.threshold;
  const int64_t kept = cut.ties_kept[source];
  const bool all_ties = kept == cut.ties[source];  // then ties need no order: every one is pruned
  // key < thr, or key <= thr when every tie is pruned: one comparison (the threshold is a finite or infinite
  // non-negative double's bits, so + 1 cannot wrap). Restrict pointers and a loop per case, so that it vectorises
  // (byte stores could otherwise alias the inputs).
  const uint64_t limit = all_ties ? thr + 1 : thr;
  parallel_for_chunks(n, kInlineLoopMax, [&](int64_t i0, int64_t i1) {
    uint8_t* __restrict out = mask;
    const float* __restrict wv = w;
    if (h) {
      const float* __restrict hv = h;
      for (int64_t i = i0; i < i1; ++i) out[i] = key_of(prune_score(wv[i], static_cast<double>(hv[i]))) < limit;
    } else {
      for (int64_t i = i0; i < i1; ++i) out[i] = key_of(prune_score(wv[i], 1.0)) < limit;
    }
  });
  if (all_ties) return;
  int64_t left = kept;  // this tensor holds the last pruned ties: its earliest `kept` of them
  for (int64_t i = 0; i < n && left > 0; ++i)
    if (score_key(w[i], h, i) == thr) {
      mask[i] = 1;
      --left;
    }
}

}  // namespace nq::quant
