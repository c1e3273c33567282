#include "quant/streamed_pruning.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/parallel_for.h"
#include "netquant/error.h"
#include "quant/quant_formulas.h"
#include "quant/radix_select.h"

namespace nq::quant {

namespace {

// A non-negative double's bits order as its value (prune_score turns −0 into +0).
uint64_t score_key(float w, const float* h, int64_t i) {
  const double s = prune_score(w, h ? static_cast<double>(h[i]) : 1.0);
  uint64_t key;
  std::memcpy(&key, &s, sizeof key);
  return key;
}

struct Chunk {
  size_t source;
  int64_t begin, end;
};

// Every source cut into chunks of kInlineLoopMax values, in flat order.
std::vector<Chunk> chunks_of(const std::vector<ValueSource>& sources) {
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < sources.size(); ++s)
    for (int64_t i0 = 0; i0 < sources[s].size(); i0 += kInlineLoopMax)
      chunks.push_back({s, i0, std::min(sources[s].size(), i0 + kInlineLoopMax)});
  return chunks;
}

// body(chunk, keys, n) for every chunk, on the OpenMP threads, each with its own conversion buffers.
template <class Body>
void for_each_key_chunk(const std::vector<ValueSource>& sources, const std::vector<Chunk>& chunks, Body&& body) {
  const int64_t count = static_cast<int64_t>(chunks.size());
#pragma omp parallel if (count > 1)
  {
    std::vector<float> w(static_cast<size_t>(kInlineLoopMax)), h(w.size());
    std::vector<uint64_t> keys(w.size());
#pragma omp for schedule(static)
    for (int64_t c = 0; c < count; ++c) {
      const Chunk& ch = chunks[static_cast<size_t>(c)];
      const ValueSource& src = sources[ch.source];
      const int64_t n = ch.end - ch.begin;
      src.convert(ch.begin, ch.end, w.data(), h.data());
      const float* hp = src.has_importance() ? h.data() : nullptr;
      for (int64_t i = 0; i < n; ++i) keys[static_cast<size_t>(i)] = score_key(w[static_cast<size_t>(i)], hp, i);
      body(static_cast<size_t>(c), keys.data(), n);
    }
  }
}

}  // namespace

PruneCut find_prune_cut(const std::vector<ValueSource>& sources, int64_t count) {
  int64_t total = 0;
  for (const ValueSource& s : sources) total += s.size();
  NQ_CHECK(count >= 1 && count <= total, ErrorCode::kInvalidArgument,
           "pruning: cannot prune " << count << " of " << total << " values");
  const std::vector<Chunk> chunks = chunks_of(sources);
  // Integer counts: the histograms are the same whatever the thread count or the order the threads merge in.
  const RadixSelection sel =
      radix_select(static_cast<uint64_t>(count), [&](uint64_t prefix, uint64_t mask, int shift, uint64_t* hist) {
        std::fill(hist, hist + 256, uint64_t{0});
        std::vector<std::vector<uint64_t>> per_thread(static_cast<size_t>(omp_get_max_threads()),
                                                      std::vector<uint64_t>(256, 0));
        for_each_key_chunk(sources, chunks, [&](size_t, const uint64_t* keys, int64_t n) {
          uint64_t* local = per_thread[static_cast<size_t>(omp_get_thread_num())].data();
          for (int64_t i = 0; i < n; ++i)
            if ((keys[i] & mask) == prefix) ++local[(keys[i] >> shift) & 255];
        });
        for (const auto& local : per_thread)
          for (int d = 0; d < 256; ++d) hist[d] += local[static_cast<size_t>(d)];
      });
  PruneCut cut;
  cut.threshold = sel.key;
  std::vector<int64_t> chunk_ties(chunks.size(), 0);
  for_each_key_chunk(sources, chunks, [&](size_t c, const uint64_t* keys, int64_t n) {
    int64_t ties = 0;
    for (int64_t i = 0; i < n; ++i) ties += keys[i] == sel.key;
    chunk_ties[c] = ties;
  });
  cut.ties.assign(sources.size(), 0);
  for (size_t c = 0; c < chunks.size(); ++c) cut.ties[chunks[c].source] += chunk_ties[c];
  // sel.rank ties still to prune after every score below the threshold, the earliest in flat order.
  int64_t left = static_cast<int64_t>(sel.rank);
  cut.ties_kept.assign(sources.size(), 0);
  for (size_t s = 0; s < sources.size(); ++s) {
    cut.ties_kept[s] = std::min(left, cut.ties[s]);
    left -= cut.ties_kept[s];
  }
  NQ_CHECK(left == 0, ErrorCode::kInternal, "pruning: the tie count disagrees with the selection");
  return cut;
}

void mark_pruned(const PruneCut& cut, size_t source, const float* w, const float* h, int64_t n, uint8_t* mask) {
  const uint64_t thr = cut.threshold;
  const int64_t kept = cut.ties_kept[source];
  const bool all_ties = kept == cut.ties[source];  // then ties need no order: every one is pruned
  parallel_for_chunks(n, kInlineLoopMax, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint64_t key = score_key(w[i], h, i);
      mask[i] = key < thr || (all_ties && key == thr);
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
