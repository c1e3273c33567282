// CPU op (b1), sort_pairs: a stable sort of (w, h) pairs by w's order key (quant_formulas.h). A stable sort by
// key has one result, so every variant below gives the same bits whatever the thread count or bucket split.
//
// Items are 64-bit: the 32-bit order key above h's bits. Large inputs take one most-significant-digit pass and
// then sort each bucket in cache:
//   1. count the top 12 key bits per thread slice (reads w only);
//   2. pack and scatter each slice to its buckets (stable: offsets bucket-major, then thread);
//   3. sort each bucket by its low 20 bits in two 10-bit LSD passes, the last one unpacking straight into the
//      outputs. Buckets run in parallel, one per thread; a bucket too large to balance runs on every thread.
// That moves each item through DRAM about twice instead of five times (pack, three 11-bit LSD passes, unpack),
// and allocates one scratch array instead of two: on the 2-core VM, 10^7 heavy-tailed pairs sort 1.7× faster
// (bench/RESULTS.md "CPU quantizers").
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/scratch_vector.h"
#include "quant/quant_formulas.h"
#include "quant/quant_ops.h"

namespace nq::cpu {

namespace {

inline uint64_t pack_pair(float w, float h) {
  uint32_t hb;
  std::memcpy(&hb, &h, 4);
  return (static_cast<uint64_t>(quant::float_order_key(w)) << 32) | hb;
}
inline void unpack_pair(uint64_t v, float* w, float* h) {
  *w = quant::float_from_order_key(static_cast<uint32_t>(v >> 32));
  const uint32_t hb = static_cast<uint32_t>(v);
  std::memcpy(h, &hb, 4);
}
inline uint32_t item_key(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

// Digits of the order key: the top kTopBits split the input into buckets, two kLowBits digits sort a bucket.
constexpr int kTopBits = 12;
constexpr int kLowBits = 10;
constexpr size_t kTopBuckets = size_t{1} << kTopBits;
constexpr size_t kLowBuckets = size_t{1} << kLowBits;
static_assert(kTopBits + 2 * kLowBits == 32, "the digits cover the key");
// Buckets this small are sorted by insertion (fewer steps than clearing and scanning two digit histograms).
constexpr size_t kInsertionMax = 32;

// Turns counts into exclusive offsets; false when every item has the same digit (the pass would move nothing).
bool offsets_from_counts(size_t* hist, size_t nbuckets, size_t n) {
  bool moves = true;
  size_t run = 0;
  for (size_t d = 0; d < nbuckets; ++d) {
    const size_t c = hist[d];
    if (c == n && n > 0) moves = false;
    hist[d] = run;
    run += c;
  }
  return moves;
}

// Sorts the m items of src (equal above bit low_bits ≤ 2·kLowBits of the key) by their low bits, one thread; tmp
// has room for m items; the result goes unpacked to ws/hs. src may be modified.
void sort_bucket(uint64_t* src, size_t m, int low_bits, uint64_t* tmp, float* ws, float* hs) {
  if (low_bits == 0 || m == 1) {
    for (size_t i = 0; i < m; ++i) unpack_pair(src[i], &ws[i], &hs[i]);
    return;
  }
  if (m <= kInsertionMax) {
    for (size_t i = 1; i < m; ++i) {  // stable: an item moves only past strictly greater keys
      const uint64_t v = src[i];
      size_t j = i;
      for (; j > 0 && item_key(src[j - 1]) > item_key(v); --j) src[j] = src[j - 1];
      src[j] = v;
    }
    for (size_t i = 0; i < m; ++i) unpack_pair(src[i], &ws[i], &hs[i]);
    return;
  }
  // One digit of up to kLowBits bits, or two (the second at kLowBits); the last pass unpacks.
  const int passes = low_bits > kLowBits ? 2 : 1;
  const uint32_t mask0 = passes == 2 ? uint32_t(kLowBuckets - 1) : (uint32_t{1} << low_bits) - 1;
  const uint32_t mask1 = passes == 2 ? (uint32_t{1} << (low_bits - kLowBits)) - 1 : 0;
  size_t lo[kLowBuckets] = {}, hi[kLowBuckets] = {};
  for (size_t i = 0; i < m; ++i) {
    const uint32_t key = item_key(src[i]);
    ++lo[key & mask0];
    ++hi[(key >> kLowBits) & mask1];
  }
  const uint64_t* cur = src;
  if (passes == 2 && offsets_from_counts(lo, mask0 + 1, m)) {
    for (size_t i = 0; i < m; ++i) tmp[lo[item_key(src[i]) & mask0]++] = src[i];
    cur = tmp;
  }
  size_t* last = passes == 2 ? hi : lo;
  const int shift = passes == 2 ? kLowBits : 0;
  const uint32_t mask = passes == 2 ? mask1 : mask0;
  if (offsets_from_counts(last, size_t{mask} + 1, m)) {
    for (size_t i = 0; i < m; ++i) {
      const size_t pos = last[(item_key(cur[i]) >> shift) & mask]++;
      unpack_pair(cur[i], &ws[pos], &hs[pos]);
    }
  } else {
    for (size_t i = 0; i < m; ++i) unpack_pair(cur[i], &ws[i], &hs[i]);
  }
}

// The same passes over a large bucket on every thread: each thread counts its slice, offsets are laid out
// digit-major then thread (stable), each thread scatters its slice. tmp has room for m items.
void sort_bucket_parallel(uint64_t* src, size_t m, int low_bits, uint64_t* tmp, float* ws, float* hs,
                          int threads) {
  std::vector<size_t> hist(static_cast<size_t>(threads) * kLowBuckets);
  const int passes = low_bits > kLowBits ? 2 : 1;
  uint64_t* cur = src;
  uint64_t* other = tmp;
  for (int pass = 0; pass < passes; ++pass) {
    const int shift = pass * kLowBits;
    const int bits = std::min(kLowBits, low_bits - shift);  // 0 when the bucket's keys are all equal
    const uint32_t mask = (uint32_t{1} << bits) - 1;
    const size_t digits = size_t{mask} + 1;
    const bool last = pass == passes - 1;
    bool moves = bits > 0;
#pragma omp parallel num_threads(threads)
    {
      const int team = omp_get_num_threads();  // may be smaller than asked (nested): slice by the real team
      const int t = omp_get_thread_num();
      const size_t chunk = (m + team - 1) / team;
      const size_t i0 = std::min(m, t * chunk), i1 = std::min(m, i0 + chunk);
      size_t* hh = &hist[static_cast<size_t>(t) * kLowBuckets];
      if (moves) {
        std::fill(hh, hh + digits, size_t{0});
        for (size_t i = i0; i < i1; ++i) ++hh[(item_key(cur[i]) >> shift) & mask];
#pragma omp barrier
#pragma omp single
        {
          size_t run = 0;
          for (size_t d = 0; d < digits; ++d) {
            size_t total = 0;
            for (int u = 0; u < team; ++u) {
              size_t& c = hist[static_cast<size_t>(u) * kLowBuckets + d];
              total += c;
              const size_t count = c;
              c = run;
              run += count;
            }
            if (total == m) moves = false;
          }
        }  // implicit barrier
      }
      if (moves && !last) {
        for (size_t i = i0; i < i1; ++i) other[hh[(item_key(cur[i]) >> shift) & mask]++] = cur[i];
      } else if (moves) {
        for (size_t i = i0; i < i1; ++i) {
          const size_t pos = hh[(item_key(cur[i]) >> shift) & mask]++;
          unpack_pair(cur[i], &ws[pos], &hs[pos]);
        }
      } else if (last) {
        for (size_t i = i0; i < i1; ++i) unpack_pair(cur[i], &ws[i], &hs[i]);
      }
    }
    if (moves && !last) std::swap(cur, other);
  }
}

// Rows and groups (n ≤ 2^16, one thread): four 8-bit LSD passes whose histograms are all counted while packing;
// 256-entry tables stay in L1, about twice as fast here as the wide-digit sort or a comparison sort at 4096.
void sort_pairs_small(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  ScratchVector<uint64_t> a_buf(n), b_buf(n);
  uint64_t* a = a_buf.data();
  uint64_t* b = b_buf.data();
  size_t hist[4][256] = {};
  for (size_t i = 0; i < n; ++i) {
    a[i] = pack_pair(w[i], h ? h[i] : 1.0f);
    const uint32_t key = item_key(a[i]);
    ++hist[0][key & 255u];
    ++hist[1][(key >> 8) & 255u];
    ++hist[2][(key >> 16) & 255u];
    ++hist[3][key >> 24];
  }
  for (int pass = 0; pass < 4; ++pass) {
    if (!offsets_from_counts(hist[pass], 256, n)) continue;
    size_t* hh = hist[pass];
    const int shift = 32 + 8 * pass;
    for (size_t i = 0; i < n; ++i) b[hh[(a[i] >> shift) & 255u]++] = a[i];
    std::swap(a, b);
  }
  for (size_t i = 0; i < n; ++i) unpack_pair(a[i], &w_sorted[i], &h_sorted[i]);
}

}  // namespace

void sort_pairs(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  if (n == 0) return;
  if (n <= (size_t{1} << 16)) return sort_pairs_small(w, h, n, w_sorted, h_sorted);
  const int threads = static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(1, omp_get_max_threads())),
                                                        std::max<size_t>(1, n / 65536)));
  // Uninitialised: the scatter is the first write (in parallel, page faults too).
  ScratchVector<uint64_t> items(n);
  std::vector<size_t> hist;  // [thread][top digit]: counts, then scatter offsets
  std::vector<uint32_t> key_min, key_max;
  std::vector<size_t> bucket_begin(kTopBuckets + 1);
  // The top digit is the kTopBits bits below the prefix that every key shares; low_bits below it are left for
  // the buckets. It is first counted as the key's top bits; inputs of one sign and a narrow range (a row of
  // positive scales, values in [1, 2)) are counted again one digit lower.
  int low_bits = 32 - kTopBits;
  bool recount = false;
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads();  // may be smaller than asked (nested regions): slice by it
    const int t = omp_get_thread_num();
    const size_t chunk = (n + team - 1) / team;
    const size_t i0 = std::min(n, t * chunk), i1 = std::min(n, i0 + chunk);
#pragma omp single
    {
      hist.assign(static_cast<size_t>(team) * kTopBuckets, 0);
      key_min.assign(static_cast<size_t>(team), UINT32_MAX);
      key_max.assign(static_cast<size_t>(team), 0);
    }  // implicit barrier
    size_t* hh = &hist[static_cast<size_t>(t) * kTopBuckets];
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = i0; i < i1; ++i) {
      const uint32_t key = quant::float_order_key(w[i]);
      lo = std::min(lo, key);
      hi = std::max(hi, key);
      ++hh[key >> (32 - kTopBits)];
    }
    key_min[static_cast<size_t>(t)] = lo;
    key_max[static_cast<size_t>(t)] = hi;
#pragma omp barrier
#pragma omp single
    {
      const uint32_t kmin = *std::min_element(key_min.begin(), key_min.end());
      const uint32_t kmax = *std::max_element(key_max.begin(), key_max.end());
      const int shared_prefix = kmin == kmax ? 32 : __builtin_clz(kmin ^ kmax);
      if (shared_prefix >= 2) {
        low_bits = std::max(0, 32 - kTopBits - shared_prefix);
        recount = true;
      }
    }  // implicit barrier
    const int shift = low_bits;
    auto top_digit = [shift](uint32_t key) { return (key >> shift) & uint32_t(kTopBuckets - 1); };
    if (recount) {
      std::fill(hh, hh + kTopBuckets, size_t{0});
      for (size_t i = i0; i < i1; ++i) ++hh[top_digit(quant::float_order_key(w[i]))];
#pragma omp barrier
    }
#pragma omp single
    {
      size_t run = 0;
      for (size_t d = 0; d < kTopBuckets; ++d) {
        bucket_begin[d] = run;
        for (int u = 0; u < team; ++u) {
          size_t& c = hist[static_cast<size_t>(u) * kTopBuckets + d];
          const size_t count = c;
          c = run;
          run += count;
        }
      }
      bucket_begin[kTopBuckets] = run;
    }  // implicit barrier
    for (size_t i = i0; i < i1; ++i) {
      const uint64_t v = pack_pair(w[i], h ? h[i] : 1.0f);
      items[hh[top_digit(item_key(v))]++] = v;
    }
  }

  // A bucket small enough to leave the threads balanced is sorted by one thread; larger ones by all of them.
  const size_t big = std::max<size_t>(size_t{1} << 16, n / (4 * static_cast<size_t>(threads)));
  std::vector<size_t> small_buckets, big_buckets;
  size_t small_max = 0, big_max = 0;
  for (size_t d = 0; d < kTopBuckets; ++d) {
    const size_t m = bucket_begin[d + 1] - bucket_begin[d];
    if (m == 0) continue;
    if (m > big || threads == 1) {
      big_buckets.push_back(d);
      big_max = std::max(big_max, m);
    } else {
      small_buckets.push_back(d);
      small_max = std::max(small_max, m);
    }
  }
  if (threads == 1) {  // every bucket in order on this thread, one scratch array
    ScratchVector<uint64_t> tmp(big_max);
    for (size_t d : big_buckets) {
      const size_t b0 = bucket_begin[d], m = bucket_begin[d + 1] - b0;
      sort_bucket(items.data() + b0, m, low_bits, tmp.data(), w_sorted + b0, h_sorted + b0);
    }
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    ScratchVector<uint64_t> tmp(small_max);
#pragma omp for schedule(dynamic, 1)
    for (int64_t s = 0; s < static_cast<int64_t>(small_buckets.size()); ++s) {
      const size_t d = small_buckets[static_cast<size_t>(s)];
      const size_t b0 = bucket_begin[d], m = bucket_begin[d + 1] - b0;
      sort_bucket(items.data() + b0, m, low_bits, tmp.data(), w_sorted + b0, h_sorted + b0);
    }
  }
  if (!big_buckets.empty()) {
    ScratchVector<uint64_t> tmp(big_max);
    for (size_t d : big_buckets) {
      const size_t b0 = bucket_begin[d], m = bucket_begin[d + 1] - b0;
      sort_bucket_parallel(items.data() + b0, m, low_bits, tmp.data(), w_sorted + b0, h_sorted + b0, threads);
    }
  }
}

}  // namespace nq::cpu
