// CPU op (b1), sort_pairs: a stable sort of (w, h) pairs by w's order key (quant_formulas.h). A stable sort by
// key has one result, so every variant below gives the same bits whatever the thread count or bucket split.
//
// Large inputs take one most-significant-digit pass straight into the outputs, then sort each bucket there:
//   1. count the top 12 key bits per thread slice (reads w only);
//   2. scatter each slice's (w, h) to its buckets in the outputs (stable: offsets bucket-major, then thread);
//   3. sort each bucket in place by its low 20 bits: two 10-bit LSD passes through a scratch of packed 64-bit
//      items (key above h's bits), out to the scratch and back. Buckets run in parallel, one per thread (up to a
//      quarter of a thread's share of the input each); a larger bucket runs on every thread.
// Items cross DRAM about twice instead of five times (pack, three 11-bit LSD passes, unpack), and no array of
// the input's size is allocated besides the outputs (the threads' scratches together are at most a quarter of
// their size, or one large bucket's; the outputs' page faults are the only ones of that size): on the 2-core VM
// 10^7 heavy-tailed pairs sort about 2× faster than with the LSD passes (bench/RESULTS.md "CPU quantizers").
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
// A bucket up to this many items is always sorted by one thread, in a scratch of 8 bytes per item (512 KiB: L2).
constexpr size_t kBucketInCache = size_t{1} << 16;
// Larger buckets too, up to a quarter of a thread's share of the input (and 2^22 items, a 32 MiB scratch per
// thread): heavy-tailed weights put most values in a few dozen buckets of 10^5 or more (10^7 Student-t values:
// 60 buckets over 2^16 hold 79 % of them), and sorting those one per thread, with no barriers, took the sort of
// 10^7 pairs from 102–104 to 88–90 ms on the 2-core VM (bench/RESULTS.md "CPU quantizers"). Fewer, larger
// buckets still run on every thread, or one would hold up the rest.
constexpr size_t kBucketPerThreadMax = size_t{1} << 22;

// Turns counts into exclusive offsets; false when every item has the same digit (the pass would move nothing).
template <class Count>
bool offsets_from_counts(Count* hist, size_t nbuckets, size_t n) {
  bool moves = true;
  Count run = 0;
  for (size_t d = 0; d < nbuckets; ++d) {
    const Count c = hist[d];
    if (c == n && n > 0) moves = false;
    hist[d] = run;
    run += c;
  }
  return moves;
}

// Stable insertion sort of packed items by key: few items (short groups) need no histograms.
void insertion_sort_items(uint64_t* a, size_t n) {
  for (size_t i = 1; i < n; ++i) {  // stable: an item moves only past strictly greater keys
    const uint64_t v = a[i];
    size_t j = i;
    for (; j > 0 && item_key(a[j - 1]) > item_key(v); --j) a[j] = a[j - 1];
    a[j] = v;
  }
}

// Stable bottom-up merge sort of n ≤ kTinySort packed items: runs of 8 by insertion, then merges through tmp.
constexpr size_t kTinySort = 64;
void merge_sort_items(uint64_t* a, uint64_t* tmp, size_t n) {
  constexpr size_t kRun = 8;
  for (size_t i = 0; i < n; i += kRun) insertion_sort_items(a + i, std::min(kRun, n - i));
  uint64_t* src = a;
  uint64_t* dst = tmp;
  for (size_t width = kRun; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      const size_t mid = std::min(lo + width, n), hi = std::min(lo + 2 * width, n);
      size_t i = lo, j = mid, o = lo;
      while (i < mid && j < hi) dst[o++] = item_key(src[j]) < item_key(src[i]) ? src[j++] : src[i++];  // ties: left
      while (i < mid) dst[o++] = src[i++];
      while (j < hi) dst[o++] = src[j++];
    }
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + n, a);
}

// Up to kTinySort pairs (short groups, small buckets) sort on the stack: no histograms, no scratch. Reads every
// input before writing, so ws/hs may be w/h.
void sort_tiny(const float* w, const float* h, size_t n, float* ws, float* hs) {
  uint64_t a[kTinySort], tmp[kTinySort];
  for (size_t i = 0; i < n; ++i) a[i] = pack_pair(w[i], h ? h[i] : 1.0f);
  merge_sort_items(a, tmp, n);
  for (size_t i = 0; i < n; ++i) unpack_pair(a[i], &ws[i], &hs[i]);
}

// The digits that sort a bucket whose keys agree above bit low_bits (≤ 2·kLowBits): the first pass (to the
// scratch) by the low digit, the second (back) by the high one; with one digit, the first pass is a plain copy.
struct BucketDigits {
  int shift[2];
  uint32_t mask[2];
  explicit BucketDigits(int low_bits) {
    if (low_bits > kLowBits) {
      shift[0] = 0, mask[0] = uint32_t(kLowBuckets - 1);
      shift[1] = kLowBits, mask[1] = (uint32_t{1} << (low_bits - kLowBits)) - 1;
    } else {
      shift[0] = 0, mask[0] = 0;
      shift[1] = 0, mask[1] = (uint32_t{1} << low_bits) - 1;
    }
  }
  uint32_t digit(int pass, uint32_t key) const { return (key >> shift[pass]) & mask[pass]; }
};

// Sorts the m pairs ws/hs[0, m) in place by the key bits below low_bits (the bits above agree), one thread;
// tmp has room for m items.
void sort_bucket(float* ws, float* hs, size_t m, int low_bits, uint64_t* tmp) {
  if (low_bits == 0 || m <= 1) return;
  if (m <= kTinySort) return sort_tiny(ws, hs, m, ws, hs);
  const BucketDigits dg(low_bits);
  size_t count[2][kLowBuckets] = {};
  for (size_t i = 0; i < m; ++i) {
    const uint32_t key = quant::float_order_key(ws[i]);
    ++count[0][dg.digit(0, key)];
    ++count[1][dg.digit(1, key)];
  }
  const bool moves0 = offsets_from_counts(count[0], size_t{dg.mask[0]} + 1, m);
  const bool moves1 = offsets_from_counts(count[1], size_t{dg.mask[1]} + 1, m);
  if (!moves0 && !moves1) return;  // every key equal: already in order
  for (size_t i = 0; i < m; ++i) {
    const uint64_t v = pack_pair(ws[i], hs[i]);
    tmp[count[0][dg.digit(0, item_key(v))]++] = v;
  }
  for (size_t i = 0; i < m; ++i) {
    const size_t pos = count[1][dg.digit(1, item_key(tmp[i]))]++;
    unpack_pair(tmp[i], &ws[pos], &hs[pos]);
  }
}

// The same two passes over a large bucket on every thread: in each pass every thread counts the digits of the
// slice it will move, offsets are laid out digit-major then thread (stable), and every thread scatters its slice.
// tmp has room for m items.
void sort_bucket_parallel(float* ws, float* hs, size_t m, int low_bits, uint64_t* tmp, int threads) {
  if (low_bits == 0 || m <= 1) return;
  const BucketDigits dg(low_bits);
  std::vector<size_t> hist(static_cast<size_t>(threads) * kLowBuckets);
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads();  // may be smaller than asked (nested): slice by the real team
    const int t = omp_get_thread_num();
    const size_t chunk = (m + team - 1) / team;
    const size_t i0 = std::min(m, t * chunk), i1 = std::min(m, i0 + chunk);
    size_t* hh = &hist[static_cast<size_t>(t) * kLowBuckets];
    for (int pass = 0; pass < 2; ++pass) {
      std::fill(hh, hh + kLowBuckets, size_t{0});
      if (pass == 0) {
        for (size_t i = i0; i < i1; ++i) ++hh[dg.digit(0, quant::float_order_key(ws[i]))];
      } else {
        for (size_t i = i0; i < i1; ++i) ++hh[dg.digit(1, item_key(tmp[i]))];
      }
#pragma omp barrier
#pragma omp single
      {
        size_t run = 0;
        for (size_t d = 0; d <= dg.mask[pass]; ++d)
          for (int u = 0; u < team; ++u) {
            size_t& c = hist[static_cast<size_t>(u) * kLowBuckets + d];
            const size_t count = c;
            c = run;
            run += count;
          }
      }  // implicit barrier
      if (pass == 0) {
        for (size_t i = i0; i < i1; ++i) {
          const uint64_t v = pack_pair(ws[i], hs[i]);
          tmp[hh[dg.digit(0, item_key(v))]++] = v;
        }
      } else {
        for (size_t i = i0; i < i1; ++i) {
          const uint64_t v = tmp[i];
          const size_t pos = hh[dg.digit(1, item_key(v))]++;
          unpack_pair(v, &ws[pos], &hs[pos]);
        }
      }
#pragma omp barrier
    }
  }
}

// Rows and groups under kElevenBitRowsFrom values: four 8-bit LSD passes whose histograms are all counted while
// packing; 256-entry tables stay in L1, about twice as fast here as the wide-digit sort or a comparison sort.
void sort_row_byte_digits(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted, uint64_t* a,
                          uint64_t* b) {
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

// Longer rows and groups: three LSD passes of 11, 11 and 10 bits, whose histograms (32-bit counts, 24 KB: L1)
// are all counted in one read of the keys. The first pass that moves items reads the inputs and packs them, the
// last one unpacks into the outputs, and a pass whose digit is the same for every item is skipped. Rows of 4096
// (one thread, the 2-core VM): 7.5–7.9 ns per item against 9.3–9.7 with the byte digits; at 1024 the 2048-entry
// tables cost more than they save (8.8–9.2 against 8.0–8.3), and the two meet near 2048–3000.
constexpr size_t kElevenBitRowsFrom = 3072;
constexpr int kRowDigits = 3;
constexpr int kRowDigitShift[kRowDigits] = {0, 11, 22};
constexpr uint32_t kRowDigitMask[kRowDigits] = {0x7FFu, 0x7FFu, 0x3FFu};

void sort_row_eleven_bit_digits(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted,
                                uint64_t* a, uint64_t* b) {
  uint32_t hist[kRowDigits][size_t{1} << 11] = {};
  for (size_t i = 0; i < n; ++i) {
    const uint32_t key = quant::float_order_key(w[i]);
    ++hist[0][key & kRowDigitMask[0]];
    ++hist[1][(key >> kRowDigitShift[1]) & kRowDigitMask[1]];
    ++hist[2][key >> kRowDigitShift[2]];
  }
  int active[kRowDigits], nactive = 0;
  for (int d = 0; d < kRowDigits; ++d)
    if (offsets_from_counts(hist[d], size_t{kRowDigitMask[d]} + 1, n)) active[nactive++] = d;
  if (nactive == 0) {  // every key equal: already in order
    for (size_t i = 0; i < n; ++i) {
      w_sorted[i] = w[i];
      h_sorted[i] = h ? h[i] : 1.0f;
    }
    return;
  }
  {  // the first pass: from the inputs, packed, into b (the outputs are written last, so they may be the inputs)
    const int d = active[0];
    uint32_t* hh = hist[d];
    for (size_t i = 0; i < n; ++i) {
      const uint64_t v = pack_pair(w[i], h ? h[i] : 1.0f);
      b[hh[(item_key(v) >> kRowDigitShift[d]) & kRowDigitMask[d]]++] = v;
    }
  }
  for (int p = 1; p < nactive; ++p) {
    const int d = active[p];
    uint32_t* hh = hist[d];
    const int shift = 32 + kRowDigitShift[d];
    if (p + 1 < nactive) {
      for (size_t i = 0; i < n; ++i) a[hh[(b[i] >> shift) & kRowDigitMask[d]]++] = b[i];
      std::swap(a, b);
    } else {  // the last pass unpacks into the outputs
      for (size_t i = 0; i < n; ++i) {
        const size_t pos = hh[(b[i] >> shift) & kRowDigitMask[d]]++;
        unpack_pair(b[i], &w_sorted[pos], &h_sorted[pos]);
      }
      return;
    }
  }
  for (size_t i = 0; i < n; ++i) unpack_pair(b[i], &w_sorted[i], &h_sorted[i]);  // one pass moved the items
}

// Rows and groups (n ≤ 2^16, one thread). The scratch is the calling thread's, kept between calls (a tensor's
// thousands of rows would each allocate it).
void sort_pairs_small(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  if (n <= kTinySort) return sort_tiny(w, h, n, w_sorted, h_sorted);
  thread_local ScratchVector<uint64_t> a_buf, b_buf;
  if (a_buf.size() < n) {
    a_buf.resize(n);
    b_buf.resize(n);
  }
  if (n < kElevenBitRowsFrom) return sort_row_byte_digits(w, h, n, w_sorted, h_sorted, a_buf.data(), b_buf.data());
  sort_row_eleven_bit_digits(w, h, n, w_sorted, h_sorted, a_buf.data(), b_buf.data());
}

}  // namespace

void sort_pairs(const float* w, const float* h, size_t n, float* w_sorted, float* h_sorted) {
  if (n == 0) return;
  if (n <= (size_t{1} << 16)) return sort_pairs_small(w, h, n, w_sorted, h_sorted);
  const int threads = static_cast<int>(std::min<size_t>(static_cast<size_t>(std::max(1, omp_get_max_threads())),
                                                        std::max<size_t>(1, n / 65536)));
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
    for (size_t i = i0; i < i1; ++i) {  // the outputs' first write: their page faults, in parallel
      const size_t pos = hh[top_digit(quant::float_order_key(w[i]))]++;
      w_sorted[pos] = w[i];
      h_sorted[pos] = h ? h[i] : 1.0f;
    }
  }

  // Buckets up to per_thread_max are sorted by one thread each; larger ones by all of them.
  std::vector<size_t> small_buckets, big_buckets;
  size_t small_max = 0, big_max = 0;
  const size_t per_thread_max =
      std::min(kBucketPerThreadMax, std::max(kBucketInCache, n / (4 * static_cast<size_t>(threads))));
  for (size_t d = 0; d < kTopBuckets; ++d) {
    const size_t m = bucket_begin[d + 1] - bucket_begin[d];
    if (m <= 1 || low_bits == 0) continue;  // nothing to order
    if (m > per_thread_max && threads > 1) {
      big_buckets.push_back(d);
      big_max = std::max(big_max, m);
    } else {
      small_buckets.push_back(d);
      small_max = std::max(small_max, m);
    }
  }
#pragma omp parallel num_threads(threads) if (small_buckets.size() > 1)
  {
    ScratchVector<uint64_t> tmp(small_max);
#pragma omp for schedule(dynamic, 1)
    for (int64_t s = 0; s < static_cast<int64_t>(small_buckets.size()); ++s) {
      const size_t d = small_buckets[static_cast<size_t>(s)];
      const size_t b0 = bucket_begin[d], m = bucket_begin[d + 1] - b0;
      sort_bucket(w_sorted + b0, h_sorted + b0, m, low_bits, tmp.data());
    }
  }
  if (!big_buckets.empty()) {
    ScratchVector<uint64_t> tmp(big_max);
    for (size_t d : big_buckets) {
      const size_t b0 = bucket_begin[d], m = bucket_begin[d + 1] - b0;
      sort_bucket_parallel(w_sorted + b0, h_sorted + b0, m, low_bits, tmp.data(), threads);
    }
  }
}

}  // namespace nq::cpu
