// Activation quantizers for quantized-forward training: the log-domain weighted-entropy quantizer of Park, Ahn & Yoo
// (CVPR 2017, "Weighted-Entropy-Based Quantization", §4) and a linear-grid baseline, fitted on activation histograms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nq {

// Log-domain histogram of non-negative activations (ReLU outputs). Bin b holds x in [2^(b/32), 2^((b+1)/32)):
// every level and every level boundary of a LogQuantizer lies on a multiple of 1/32 octave, so cluster membership is
// a function of the bin and S computed on the histogram equals S computed on the raw samples (derived; tested).
// Per bin: count and Σx (the importance mass). x <= 0 goes to the zero bin; NaN/Inf are rejected.
struct LogHistogram {
  static constexpr int kBinsPerOctave = 32;
  int64_t first_bin = 0;              // bin id of counts[0]
  std::vector<double> counts, sums;   // per bin from first_bin
  double zero_count = 0;              // values <= 0
  double total() const;
  void add(const float* x, size_t n);  // accumulates (widens the bin range as needed)
};
// floor(32·log2 x) for x > 0, the one bin function every caller uses (so fitting and applying agree).
int64_t log_bin(float x);

// b-bit quantizer: 0 plus 2^b − 1 levels r_n = 2^((fsr + n·step)/16), n = 0..2^b−2 (Park et al.). x maps to the
// level nearest in the log domain, n = round-half-up((16·log2 x − fsr)/step), clipped above at n_max; n < 0 (x below
// the geometric midpoint between r_{−1} and r_0, i.e. half a step under r_0) and x <= 0 give 0.
struct LogQuantizer {
  int bits = 3;
  int fsr = 0;   // log2 of the smallest level, in 1/16 octave
  int step = 8;  // spacing between levels, in 1/16 octave (>= 1)
  int num_levels() const { return (1 << bits) - 1; }  // nonzero levels
  double level(int n) const;                          // r_n
  int index_of_bin(int64_t bin) const;                // −1: the zero level; else n in [0, num_levels())
  int index(float x) const;                           // same for a value
  float quantize(float x) const;
};

// S = −Σ_n I_n P_n ln P_n over the clusters of the quantizer (the zero level included) with P_n = count_n / N and
// I_n = mean activation of cluster n (Park et al.: an activation's importance is its value). Empty clusters add 0.
double log_quantizer_weighted_entropy(const LogQuantizer& q, const LogHistogram& h);

struct LogQuantizerSearch {
  int max_step = 32;       // step in 1..max_step (1/16 to 2 octaves per level)
};
// Brute force over the integer grid (fsr, step) for the largest S (Park et al. pick (fsr, step) by S as well; a grid
// this small makes exhaustive search cheap): for each step every fsr that gives a distinct partition of the data is
// scored on the histogram in O(bins). Ties: the smaller step, then the smaller fsr.
// A histogram without positive values gives {bits, 0, 1} (everything quantizes to 0 anyway).
LogQuantizer fit_log_quantizer(const LogHistogram& h, int bits, const LogQuantizerSearch& search = {});

// Linear-grid baseline: levels {0, Δ, ..., (2^b − 1)Δ}, x rounded to the nearest and clipped at the top. Δ =
// clip / (2^b − 1) with the clip chosen among the bin edges 2^(b/32) to minimise the squared error on the histogram
// (each bin's values represented by their mean).
struct LinearQuantizer {
  int bits = 3;
  double delta = 1;
  float quantize(float x) const;
};
LinearQuantizer fit_linear_quantizer(const LogHistogram& h, int bits);

}  // namespace nq
