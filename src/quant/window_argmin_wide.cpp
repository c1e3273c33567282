// AVX-512 window search of assign_accumulate's λ > 0 labels (window_argmin_wide.h). Perf on the 2-core Emerald
// Rapids VM showed the scalar search, one value at a time with its 8-lane window reduced across lanes, to be
// latency-bound (a chain of permutes, blends and a store-to-load of the winning index per value); here each lane
// is a value, the window's candidates are visited in order, and no value waits on another.
#include "quant/window_argmin_wide.h"

#include "core/cpu_features.h"

#include <atomic>
#include <cfloat>
#include <algorithm>
#include <cmath>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
// GCC 12 reports the intrinsics' own _mm*_undefined_* operands as maybe uninitialised (a false positive).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#define NQ_WIDE_WINDOW 1
#endif

namespace nq::cpu {

#ifdef NQ_WIDE_WINDOW

namespace {
#define NQ_AVX512 __attribute__((target("avx512f"), always_inline)) inline

// The window is p − kHalfWindow … p + kHalfWindow − 1. On the bench's Student-t weights at k = 32, four
// candidates beat six and eight (7.1 against 7.1 and 7.8 ns per weight at λ = 1e-5, one thread): the values they
// leave unsettled (7 % at λ = 1e-5, a quarter at 1e-4; at k = 64 a quarter and two thirds) cost less in the
// batched full scan than wider windows cost every value (at k = 64, windows of 6, 8 and 12 were no faster).
constexpr int kHalfWindow = 2;

// Up to 8·Q doubles in Q registers (Q = 2: k ≤ 16, 4: k ≤ 32, 8: k ≤ 64), looked up by index per lane. The
// compiler keeps in registers what fits and reads the rest from L1 (a permute takes a memory operand).
template <int Q>
struct Table {
  __m512d q[Q];
};

template <int Q>
NQ_AVX512 Table<Q> load_table(const double* v, int k) {
  alignas(64) double buf[8 * Q];
  for (int j = 0; j < 8 * Q; ++j) buf[j] = j < k ? v[j] : 0.0;  // entries ≥ k are never used
  Table<Q> t;
  for (int q = 0; q < Q; ++q) t.q[q] = _mm512_load_pd(buf + 8 * q);
  return t;
}

// t[j] per lane for 0 ≤ j < 8·Q: bits 0–3 pick within a pair of registers (one vpermt2pd), bits 4 and up the
// pair; other lanes get garbage.
template <int Q>
NQ_AVX512 __m512d lookup(const Table<Q>& t, __m512i j) {
  const __m512d a = _mm512_permutex2var_pd(t.q[0], j, t.q[1]);
  if constexpr (Q == 2) {
    return a;
  } else {
    const __mmask8 bit4 = _mm512_test_epi64_mask(j, _mm512_set1_epi64(16));
    const __m512d lo = _mm512_mask_blend_pd(bit4, a, _mm512_permutex2var_pd(t.q[2], j, t.q[3]));
    if constexpr (Q == 4) {
      return lo;
    } else {
      const __m512d c = _mm512_permutex2var_pd(t.q[4], j, t.q[5]);
      const __m512d hi = _mm512_mask_blend_pd(bit4, c, _mm512_permutex2var_pd(t.q[6], j, t.q[7]));
      return _mm512_mask_blend_pd(_mm512_test_epi64_mask(j, _mm512_set1_epi64(32)), lo, hi);
    }
  }
}

// h·(w − c)² + r with the scalar code's operations in its order (the build never contracts to FMA).
NQ_AVX512 __m512d cost(__m512d wd, __m512d hd, __m512d c, __m512d r) {
  const __m512d d = _mm512_sub_pd(wd, c);
  return _mm512_add_pd(_mm512_mul_pd(hd, _mm512_mul_pd(d, d)), r);
}

template <int Q>
struct Tables {
  Table<Q> c, rl, rbl, rbr;
  __m512i k;
};

// Eight values: their labels, or −1 − p where the window cannot settle them. Returns the settled lanes; *ok:
// the lanes the vector code may decide at all (the rest go to the scalar search).
template <int Q>
NQ_AVX512 __mmask8 label8(const Tables<Q>& T, __m512d wd, __m512d hd, __m512i p, __m256i* out, __mmask8* ok) {
  const __m512d inf = _mm512_set1_pd(HUGE_VAL), dmax = _mm512_set1_pd(DBL_MAX);
  // The scalar search's vector window needs 0 < h ≤ DBL_MAX; a value that is not finite goes to it as well.
  *ok = _mm512_cmp_pd_mask(hd, _mm512_setzero_pd(), _CMP_GT_OQ) & _mm512_cmp_pd_mask(hd, dmax, _CMP_LE_OQ) &
        _mm512_cmp_pd_mask(_mm512_abs_pd(wd), dmax, _CMP_LE_OQ);
  // The window around p in ascending order, strict `<`: the lowest index among the smallest costs. A candidate
  // outside [0, k) costs +inf in the scalar search (its guard entries), which never wins a strict `<`: skipped.
  __m512d bc = inf;
  __m512i best = p;
#pragma GCC unroll 8
  for (int u = -kHalfWindow; u < kHalfWindow; ++u) {
    const __m512i j = _mm512_add_epi64(p, _mm512_set1_epi64(u));
    const __mmask8 valid = _mm512_cmp_epu64_mask(j, T.k, _MM_CMPINT_LT);  // unsigned: j < 0 is out too
    const __m512d x = cost(wd, hd, lookup(T.c, j), lookup(T.rl, j));
    const __mmask8 take = valid & _mm512_cmp_pd_mask(x, bc, _CMP_LT_OQ);
    bc = _mm512_mask_mov_pd(bc, take, x);
    best = _mm512_mask_mov_epi64(best, take, j);
  }
  // The bounds just outside the window (quant::assign_cost_bound): nothing farther left can cost ≤ bc, nothing
  // farther right < bc. Past either end there is nothing (the scalar guards give +inf: done).
  const __m512i jl = _mm512_sub_epi64(p, _mm512_set1_epi64(kHalfWindow + 1));
  const __m512i jr = _mm512_add_epi64(p, _mm512_set1_epi64(kHalfWindow));
  const __mmask8 l_in = _mm512_cmp_epu64_mask(jl, T.k, _MM_CMPINT_LT);
  const __mmask8 r_in = _mm512_cmp_epu64_mask(jr, T.k, _MM_CMPINT_LT);
  const __m512d bl = cost(wd, hd, lookup(T.c, jl), lookup(T.rbl, jl));
  const __m512d br = cost(wd, hd, lookup(T.c, jr), lookup(T.rbr, jr));
  const __mmask8 left_done = static_cast<__mmask8>(~l_in | _mm512_cmp_pd_mask(bl, bc, _CMP_GT_OQ));
  const __mmask8 right_done = static_cast<__mmask8>(~r_in | _mm512_cmp_pd_mask(br, bc, _CMP_GE_OQ));
  const __mmask8 settled = *ok & left_done & right_done & _mm512_cmp_pd_mask(bc, inf, _CMP_LT_OQ);
  const __m512i handed_back = _mm512_sub_epi64(_mm512_set1_epi64(-1), p);
  *out = _mm512_cvtepi64_epi32(_mm512_mask_mov_epi64(handed_back, settled, best));
  return settled;
}

// Values the window could not settle (a small importance lets a far, cheap code win; a bound too weak to prove
// the window's answer), gathered eight at a time and labelled by the exact argmin over all k centres: every
// cost, ascending, strict `<`. It is the scalar search's answer by definition, without its branchy walk.
struct Pending {
  alignas(64) double w[16];
  alignas(64) double h[16];
  alignas(64) int64_t at[16];
  int count = 0;
};

// Returns how many of the batch's lanes it could not label (left with −1 − p for the scalar search).
NQ_AVX512 size_t scan_all(const WideWindowTables& t, const Pending& q, int32_t* lab) {
  const __m512d wd = _mm512_load_pd(q.w), hd = _mm512_load_pd(q.h);
  // Four chains over consecutive quarters of the centres, so that the compare-and-select latencies overlap;
  // merged in ascending order with a strict `<`, they give the lowest index among the smallest costs.
  constexpr int kChains = 4;
  __m512d bc[kChains];
  __m512i best[kChains];
  int begin[kChains + 1];
  for (int c = 0; c <= kChains; ++c) begin[c] = t.k * c / kChains;
  for (int c = 0; c < kChains; ++c) {
    bc[c] = _mm512_set1_pd(HUGE_VAL);
    best[c] = _mm512_setzero_si512();
  }
  const int steps = begin[1] - begin[0] + 1;  // the longest quarter (quarters differ by at most one)
  for (int s = 0; s < steps; ++s) {
#pragma GCC unroll 4
    for (int c = 0; c < kChains; ++c) {
      const int j = begin[c] + s;
      if (j >= begin[c + 1]) continue;
      const __m512d x = cost(wd, hd, _mm512_set1_pd(t.c[j]), _mm512_set1_pd(t.rl[j]));
      const __mmask8 take = _mm512_cmp_pd_mask(x, bc[c], _CMP_LT_OQ);
      bc[c] = _mm512_mask_mov_pd(bc[c], take, x);
      best[c] = _mm512_mask_mov_epi64(best[c], take, _mm512_set1_epi64(j));
    }
  }
  for (int c = 1; c < kChains; ++c) {
    const __mmask8 take = _mm512_cmp_pd_mask(bc[c], bc[0], _CMP_LT_OQ);
    bc[0] = _mm512_mask_mov_pd(bc[0], take, bc[c]);
    best[0] = _mm512_mask_mov_epi64(best[0], take, best[c]);
  }
  // Every cost can be +inf (λ·l_j overflowing for every live cluster, a centre 1e135 away): the lane then keeps
  // its hand-back (−1 − p), and the scalar search applies its own rules.
  const __mmask8 lanes = static_cast<__mmask8>((1u << std::min(q.count, 8)) - 1);
  const __mmask8 found = lanes & _mm512_cmp_pd_mask(bc[0], _mm512_set1_pd(HUGE_VAL), _CMP_LT_OQ);
  alignas(64) int64_t b[8];
  _mm512_store_si512(b, best[0]);
  for (int u = 0; u < 8; ++u)
    if ((found >> u) & 1u) lab[q.at[u]] = static_cast<int32_t>(b[u]);
  return static_cast<size_t>(__builtin_popcount(lanes & ~found));
}

// Adds the lanes `take` of a block to the queue and labels a full batch of eight; returns scan_all's count of
// unlabelled lanes.
NQ_AVX512 size_t enqueue(const WideWindowTables& t, __mmask8 take, __m512d wd, __m512d hd, __m512i at, Pending& q,
                       int32_t* lab) {
  const int c = q.count;
  _mm512_storeu_pd(q.w + c, _mm512_maskz_compress_pd(take, wd));
  _mm512_storeu_pd(q.h + c, _mm512_maskz_compress_pd(take, hd));
  _mm512_storeu_si512(q.at + c, _mm512_maskz_compress_epi64(take, at));
  q.count = c + __builtin_popcount(take);
  if (q.count < 8) return 0;
  const size_t unlabelled = scan_all(t, q, lab);
  q.count -= 8;
  for (int u = 0; u < q.count; ++u) {
    q.w[u] = q.w[u + 8];
    q.h[u] = q.h[u + 8];
    q.at[u] = q.at[u + 8];
  }
  return unlabelled;
}

// The first m lanes of a block through the window: labels (or −1 − p), and the lanes to rescan over every
// centre. back counts the lanes left to the scalar search.
struct Block {
  __m256i labels;
  __mmask8 rescan;
};

template <int Q>
NQ_AVX512 Block label_block(const Tables<Q>& T, __m512d wd, __m512d hd, __m512i p, int m, size_t& back) {
  Block r;
  __mmask8 ok;
  const __mmask8 live = static_cast<__mmask8>((1u << m) - 1);
  const __mmask8 settled = label8(T, wd, hd, p, &r.labels, &ok);
  back += static_cast<size_t>(__builtin_popcount(live & ~ok));
  r.rescan = static_cast<__mmask8>(live & ok & ~settled);
  return r;
}

template <int Q>
__attribute__((target("avx512f"))) size_t labels_avx512(const float* w, const float* h, size_t n,
                                                        const WideWindowTables& t, int32_t* lab) {
  Tables<Q> T;
  T.c = load_table<Q>(t.c, t.k);
  T.rl = load_table<Q>(t.rl, t.k);
  T.rbl = load_table<Q>(t.rbl, t.k);
  T.rbr = load_table<Q>(t.rbr, t.k);
  T.k = _mm512_set1_epi64(t.k);
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  Pending q;
  size_t back = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512d wd = _mm512_cvtps_pd(_mm256_loadu_ps(w + i));
    const __m512d hd = h ? _mm512_cvtps_pd(_mm256_loadu_ps(h + i)) : one;
    const __m512i p = _mm512_cvtepi32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lab + i)));
    const Block r = label_block(T, wd, hd, p, 8, back);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lab + i), r.labels);
    if (__builtin_expect(r.rescan != 0, 0))
      back += enqueue(t, r.rescan, wd, hd, _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(i)), lane), q, lab);
  }
  if (i < n) {  // the tail through a padded block (the padding lanes are dropped)
    alignas(32) float wt[8] = {}, ht[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    alignas(32) int32_t pt[8] = {};
    const int m = static_cast<int>(n - i);
    for (int u = 0; u < m; ++u) {
      wt[u] = w[i + u];
      ht[u] = h ? h[i + u] : 1.0f;
      pt[u] = lab[i + u];
    }
    const __m512d wd = _mm512_cvtps_pd(_mm256_load_ps(wt)), hd = _mm512_cvtps_pd(_mm256_load_ps(ht));
    const __m512i p = _mm512_cvtepi32_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(pt)));
    const Block r = label_block(T, wd, hd, p, m, back);
    _mm256_store_si256(reinterpret_cast<__m256i*>(pt), r.labels);
    for (int u = 0; u < m; ++u) lab[i + u] = pt[u];
    if (r.rescan != 0)
      back += enqueue(t, r.rescan, wd, hd, _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(i)), lane), q, lab);
  }
  if (q.count > 0) {  // the last, partial batch (the lanes past count are not written)
    for (int u = q.count; u < 8; ++u) {
      q.w[u] = 0.0;
      q.h[u] = 1.0;
    }
    back += scan_all(t, q, lab);
  }
  return back;
}

#undef NQ_AVX512

std::atomic<bool> g_wide_enabled{true};

bool cpu_has_avx512f() {
  static const bool has = cpu_vector_features().avx512f;
  return has;
}

}  // namespace

bool wide_window_available() { return cpu_has_avx512f() && g_wide_enabled.load(std::memory_order_relaxed); }
void set_wide_window_enabled(bool enabled) { g_wide_enabled.store(enabled, std::memory_order_relaxed); }

size_t wide_window_labels(const float* w, const float* h, size_t n, const WideWindowTables& t, int32_t* lab) {
  if (t.k <= 16) return labels_avx512<2>(w, h, n, t, lab);
  if (t.k <= 32) return labels_avx512<4>(w, h, n, t, lab);
  return labels_avx512<8>(w, h, n, t, lab);
}

#else  // no wide path in this build: the scalar search labels everything

bool wide_window_available() { return false; }
void set_wide_window_enabled(bool) {}
size_t wide_window_labels(const float*, const float*, size_t n, const WideWindowTables&, int32_t* lab) {
  for (size_t i = 0; i < n; ++i) lab[i] = -1 - lab[i];
  return n;
}

#endif

}  // namespace nq::cpu
