// AVX-512 positions for the ECSQ pass (count_positions_wide.h). Perf on the 2-core Emerald Rapids VM put the
// compare-everything count at a fifth of a λ-sweep's time at k = 32: 32 compares and 32 masked adds per sixteen
// values, against six permute-and-compare probes here.
#include "quant/count_positions_wide.h"

#include "netquant/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
// GCC 12 reports the intrinsics' own _mm*_undefined_* operands as maybe uninitialised (a false positive).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#define NQ_WIDE_POSITIONS 1
#endif

namespace nq::cpu {

#ifdef NQ_WIDE_POSITIONS

namespace {

#define NQ_AVX512 __attribute__((target("avx512f"), always_inline)) inline

// below[j] per lane for 0 ≤ j < 16·Q: bits 0–4 pick within a pair of registers (one vpermt2ps), bit 5 the pair.
template <int Q>
NQ_AVX512 __m512 probe(const __m512* t, __m512i j) {
  if constexpr (Q == 1) {
    return _mm512_permutexvar_ps(j, t[0]);
  } else {
    const __m512 lo = _mm512_permutex2var_ps(t[0], j, t[1]);
    if constexpr (Q == 2) return lo;
    const __m512 hi = _mm512_permutex2var_ps(t[2], j, t[3]);
    return _mm512_mask_blend_ps(_mm512_test_epi32_mask(j, _mm512_set1_epi32(32)), lo, hi);
  }
}

// Sixteen counts. After the halving steps pos ≤ size − 1 with w > below[pos − 1] (or pos = 0); the last probe
// adds the entry at pos itself. `_CMP_GT_OQ` is the scalar `>`: false for a NaN on either side.
template <int Q>
NQ_AVX512 __m512i count16(const __m512* t, __m512 x) {
  const __m512i one = _mm512_set1_epi32(1);
  __m512i pos = _mm512_setzero_si512();
  for (int step = 8 * Q; step >= 1; step >>= 1) {
    const __m512i cand = _mm512_add_epi32(pos, _mm512_set1_epi32(step));
    const __mmask16 gt = _mm512_cmp_ps_mask(x, probe<Q>(t, _mm512_sub_epi32(cand, one)), _CMP_GT_OQ);
    pos = _mm512_mask_mov_epi32(pos, gt, cand);
  }
  const __mmask16 gt = _mm512_cmp_ps_mask(x, probe<Q>(t, pos), _CMP_GT_OQ);
  return _mm512_mask_add_epi32(pos, gt, pos, one);
}

template <int Q>
__attribute__((target("avx512f"))) void count_avx512(const float* w, size_t n, const float* below, int32_t* lab) {
  __m512 t[Q];
  for (int q = 0; q < Q; ++q) t[q] = _mm512_loadu_ps(below + 16 * q);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_si512(reinterpret_cast<void*>(lab + i), count16<Q>(t, _mm512_loadu_ps(w + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_epi32(lab + i, m, count16<Q>(t, _mm512_maskz_loadu_ps(m, w + i)));
  }
}

#undef NQ_AVX512

}  // namespace

void wide_count_positions(const float* w, size_t n, const float* below, int size, int32_t* lab) {
  switch (size) {
    case 16: return count_avx512<1>(w, n, below, lab);
    case 32: return count_avx512<2>(w, n, below, lab);
    case 64: return count_avx512<4>(w, n, below, lab);
  }
  NQ_ASSERT_MSG(false, "wide_count_positions: table size " << size << " (16, 32 or 64)");
}

#else  // no AVX-512 path in this build: wide_window_available() is false, so this is never called

void wide_count_positions(const float*, size_t, const float*, int size, int32_t*) {
  NQ_ASSERT_MSG(false, "wide_count_positions: no AVX-512 path in this build (table size " << size << ")");
}

#endif

}  // namespace nq::cpu
