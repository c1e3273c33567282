// Internal: closed-form / searched quantizers onto fixed codebook shapes (the C steps of [LC],
// Carreira-Perpiñán & Idelbayev 2017) and weighted-entropy quantization (Park et al. 2017). Each returns a
// sorted codebook and one index per value.
// `h` may be nullptr (all ones); weighted versions replace means by h-weighted means.
//
// Conventions shared by every function here (the engine relies on them):
//  - Inputs are validated: n > 0, every w finite, every h finite and >= 0 (kInvalidArgument otherwise).
//    If every h is zero the importance carries no information and the unweighted fit is used instead.
//  - A value exactly 0 takes the positive sign where a codebook has no zero level (w >= 0 -> +).
//  - binary/ternary return their full fixed shape ({-a,+a}, {-a,0,+a}) even when a level is unused, so the
//    codebook states the method; only the degenerate a == 0 (all w zero, or all weight on zeros) collapses to
//    {0}. pow2, int and wentropy return only the levels actually used, sorted, with indices compacted (the
//    engine reports "clusters used").
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nq::quant {

struct FixedCodebookResult {
  std::vector<float> codebook;   // sorted ascending
  std::vector<int32_t> indices;  // one per value, into codebook
  int iterations = 0;            // rounds for iterative fits (pow2 scale, int asymmetric, wentropy)
  bool converged = true;
  // wentropy: S before the first sweep, then after each sweep (non-decreasing);
  // pow2 / int: Σ h (ŵ − w)² of the start point, then after each refit (non-increasing); binary/ternary: empty.
  std::vector<double> objective_history;
  double scale = 0;   // binary/ternary: a; pow2: a; int: s; wentropy: 0 (no single scale)
  double offset = 0;  // int asymmetric: z (level q is q·s + z); 0 elsewhere
};

// {−a, +a} with the importance-weighted optimal a = Σh|w| / Σh; `scaled == false` gives {−1, +1}.
FixedCodebookResult quantize_binary(const float* w, const float* h, size_t n, bool scaled = true);
// {−a, 0, +a}: optimal a and threshold (sorted |w| scan of the weighted score), then q = a·sgn(w) where
// |w| > a/2.
FixedCodebookResult quantize_ternary(const float* w, const float* h, size_t n);
// {±a·2^−e : e = 0..levels−1} with a learned scale a (alternating rounding and a = Σh w q / Σh q²).
// levels in [1, 32]; max_iter >= 1 rounds of (round, refit).
FixedCodebookResult quantize_pow2(const float* w, const float* h, size_t n, int levels, int max_iter);
// b-bit uniform integer grid: symmetric {−(2^(b−1)−1) .. 2^(b−1)−1}·s or asymmetric (min/max affine grid),
// scale (and offset) chosen to minimise Σ h (ŵ − w)². bits in [2, 16] symmetric, [1, 16] asymmetric.
FixedCodebookResult quantize_int(const float* w, const float* h, size_t n, int bits, bool symmetric, int max_iter);
// Park et al. weighted-entropy quantization with `levels` levels (sign-symmetric, RMS representatives).
// levels in [2, 65536]; max_iter >= 1 boundary sweeps.
FixedCodebookResult quantize_wentropy(const float* w, size_t n, int levels, int max_iter);

// Exponent e in [e_min, e_max] of the power of two 2^e nearest to the magnitude m >= 0 (ties to the larger
// magnitude). Equals ⌊log2(4m/3)⌋ clipped ([LC]), computed exactly: with 2^k <= m < 2^(k+1) the
// midpoint between 2^k and 2^(k+1) is 1.5·2^k, so the upper one wins iff 2m >= 3·2^k (exact in double).
// m below 2^e_min (including 0) gives e_min: there is no zero level, the smallest magnitude is nearest.
inline int nearest_pow2_exponent(double m, int e_min, int e_max) {
  if (!(m > 0)) return e_min;
  int k = std::ilogb(m);
  if (2.0 * m >= 3.0 * std::ldexp(1.0, k)) ++k;
  return k < e_min ? e_min : (k > e_max ? e_max : k);
}

namespace detail {
// Validates w (finite), h (finite, >= 0) and n > 0; returns false when h should be treated as all ones
// (h == nullptr, or every h_i == 0). `what` names the method in messages.
bool validate_inputs(const float* w, const float* h, size_t n, const char* what);
// Σ h (ŵ − w)² in fp64 for ŵ_i = codebook[indices[i]] (h == nullptr: all ones).
double weighted_sq_error(const float* w, const float* h, size_t n, const std::vector<float>& codebook,
                         const std::vector<int32_t>& indices);
// Compacts integer level ids (any range; ids must order like their values) to the used ids only: returns
// them sorted ascending and writes each value's position among them into `indices`.
std::vector<int64_t> compact_levels(const std::vector<int64_t>& level_of, std::vector<int32_t>& indices);
// Exact global search of a scale a > 0 for a symmetric magnitude ladder: every value w is reconstructed as
// sgn(w)·a·m with m the element of `mags` (strictly descending, >= 0) nearest to |w|/a (ties to the larger).
// f(a) = Σ h (a·m(a) − |w|)² is continuous and piecewise quadratic, with a piece boundary each time one
// |w|/a crosses a midpoint of `mags`; sweeping the n·(|mags|−1) boundaries in increasing a with running
// sums Σh|w|m and Σh m² minimises every piece in O(1). Returns up to `keep` scales, best first (the running
// sums drift, so callers re-evaluate them exactly). O(n log n + n·|mags|·log min(n, |mags|)) time, O(n + |mags|)
// memory.
std::vector<double> sweep_scales(const float* w, const float* h, size_t n, const std::vector<double>& mags,
                                 size_t keep);
// Work bound (n·|mags|) above which callers fall back to a heuristic scan instead of sweep_scales.
constexpr double kSweepScalesLimit = 8.0 * 1024 * 1024;
}  // namespace detail

}  // namespace nq::quant
