// Internal: closed-form / searched quantizers onto fixed codebook shapes (ALGORITHMS §8 C steps) and
// weighted-entropy quantization (§9). Each returns a sorted codebook and one index per value.
// `h` may be nullptr (all ones); weighted versions replace means by h-weighted means.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nq::quant {

struct FixedCodebookResult {
  std::vector<float> codebook;   // sorted ascending
  std::vector<int32_t> indices;  // one per value, into codebook
  int iterations = 0;            // rounds for iterative fits (pow2 scale, int asymmetric, wentropy)
  bool converged = true;
  std::vector<double> objective_history;  // wentropy: S per sweep (non-decreasing); others: empty
};

// {−a, +a} with the importance-weighted optimal a = Σh|w| / Σh; `scaled == false` gives {−1, +1}.
FixedCodebookResult quantize_binary(const float* w, const float* h, size_t n, bool scaled = true);
// {−a, 0, +a}: optimal a and threshold (sorted |w| scan of the weighted score), then q = a·sgn(w) where
// |w| > a/2.
FixedCodebookResult quantize_ternary(const float* w, const float* h, size_t n);
// {±a·2^−e : e = 0..levels−1} with a learned scale a (alternating rounding and a = Σh w q / Σh q²).
FixedCodebookResult quantize_pow2(const float* w, const float* h, size_t n, int levels, int max_iter);
// b-bit uniform integer grid: symmetric {−(2^(b−1)−1) .. 2^(b−1)−1}·s or asymmetric (min/max affine grid),
// scale (and offset) chosen to minimise Σ h (ŵ − w)².
FixedCodebookResult quantize_int(const float* w, const float* h, size_t n, int bits, bool symmetric, int max_iter);
// Park et al. weighted-entropy quantization with `levels` levels (sign-symmetric, RMS representatives).
FixedCodebookResult quantize_wentropy(const float* w, size_t n, int levels, int max_iter);

}  // namespace nq::quant
