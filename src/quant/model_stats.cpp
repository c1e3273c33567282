// Statistics of a quantized model: distortion, entropy and compression ratios per tensor and in total.
#include "quant/model_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/index_scan.h"
#include "core/iteration_errors.h"
#include "core/parallel_for.h"
#include "netquant/error.h"
#include "quant/quant_ops.h"

namespace nq::quant {

namespace {

double ceil_log2(int k) { return k <= 1 ? 0.0 : std::ceil(std::log2(static_cast<double>(k))); }

// counts[j] += how many of indices[b, e) are j (pruned ones not counted), at the stored width (core/index_scan.h).
void count_piece(const IndexArray& indices, int64_t b, int64_t e, int k, int64_t* counts, bool& bad) {
  indices.visit([&](const auto* data, auto mark) {
    count_indices(data, static_cast<size_t>(b), static_cast<size_t>(e), mark, static_cast<size_t>(k), counts, bad);
  });
}

// counts[j] = how many of indices[b, e) are j. A row or a group (up to kInlineLoopMax) is one piece, counted inline
// with no allocation (group:16 over 10^7 weights has 625,000 of them); a larger range is counted in pieces on the
// threads, each into its own bins, then added in piece order (integer counts: any order gives them).
void index_histogram(const IndexArray& indices, int64_t b, int64_t e, int k, int64_t* counts) {
  std::fill(counts, counts + k, int64_t{0});
  bool bad = false;
  if (e - b <= kInlineLoopMax) {
    count_piece(indices, b, e, k, counts, bad);
  } else {
    // Up to kGroup pieces' bins at a time: at most 64 × 65,536 × 8 B = 32 MB for the largest codebooks.
    constexpr int64_t kPiece = int64_t{1} << 20, kGroup = 64;
    const int64_t pieces = (e - b + kPiece - 1) / kPiece;
    std::vector<std::vector<int64_t>> part(static_cast<size_t>(std::min(pieces, kGroup)));
    std::vector<char> part_bad(part.size(), 0);
    for (int64_t g = 0; g < pieces; g += kGroup) {
      const int64_t in_group = std::min(kGroup, pieces - g);
      parallel_for(in_group, 1, [&](int64_t q) {
        auto& bins = part[static_cast<size_t>(q)];
        bins.assign(static_cast<size_t>(k), 0);
        bool piece_bad = false;
        const int64_t c = g + q;
        count_piece(indices, b + c * kPiece, std::min(e, b + (c + 1) * kPiece), k, bins.data(), piece_bad);
        part_bad[static_cast<size_t>(q)] = piece_bad;
      });
      for (int64_t q = 0; q < in_group; ++q) {
        for (int j = 0; j < k; ++j) counts[j] += part[static_cast<size_t>(q)][static_cast<size_t>(j)];
        bad = bad || part_bad[static_cast<size_t>(q)];
      }
    }
  }
  NQ_ASSERT_MSG(!bad, "index_histogram: an index is >= k = " << k);
}

}  // namespace

void fill_model_stats(QuantizedModel& out, const std::vector<TensorErrorSums>& errors,
                      const std::vector<ProblemSummary>& problems, int64_t total_n) {
  const bool global = out.scope.kind == ScopeKind::kGlobal;
  NQ_ASSERT(errors.size() == out.tensors.size());
  NQ_ASSERT(problems.size() == out.codebooks.size());
  QuantStats& tot = out.total;
  tot = QuantStats{};
  double tot_d = 0, tot_m = 0, tot_entropy_bits = 0, tot_fixed_bits = 0, tot_codebook_bits = 0;
  for (size_t t = 0; t < out.tensors.size(); ++t) {
    QuantizedTensor& qt = out.tensors[t];
    QuantStats& st = qt.stats;
    st.params = shape_numel(qt.shape);
    if (!qt.quantized) continue;
    const double n = static_cast<double>(qt.indices.size());
    st.hw_distortion = errors[t].weighted / n;
    st.mse = errors[t].squared / n;
    tot_d += errors[t].weighted;
    tot_m += errors[t].squared;
    // Index bits: per problem (n_kept · H or n_kept · ⌈log2 k⌉); codebooks 32 bits per level (global scope:
    // this tensor's share of the shared codebook). Each problem's histogram on the threads, then the sums in
    // problem order, so the floating-point totals are the same for any thread count.
    struct ProblemCounts {
      int64_t kept = 0;
      int used = 0;
      double entropy = 0;
    };
    std::vector<ProblemCounts> per(static_cast<size_t>(std::max<int64_t>(qt.num_problems, 0)));
    const int64_t numel = static_cast<int64_t>(n);
    IterationErrors problem_errors;  // index_histogram's invariant check, rethrown outside the threads
    parallel_for(qt.num_problems, 1, [&](int64_t pr) { problem_errors.run(static_cast<size_t>(pr), [&] {
      const int k = static_cast<int>(out.codebooks[static_cast<size_t>(qt.first_codebook + pr)].size());
      if (k <= 0) return;
      std::vector<int64_t> counts(static_cast<size_t>(k), 0);
      const int64_t b = global ? 0 : pr * qt.problem_size;
      const int64_t e = global ? numel : std::min<int64_t>(numel, b + qt.problem_size);
      index_histogram(qt.indices, b, e, k, counts.data());
      ProblemCounts& pc = per[static_cast<size_t>(pr)];
      for (int j = 0; j < k; ++j) {
        pc.kept += counts[static_cast<size_t>(j)];
        pc.used += counts[static_cast<size_t>(j)] > 0;
      }
      pc.entropy = histogram_entropy(counts.data(), k);
    }); });
    problem_errors.rethrow_first();
    double ebits = 0, fbits = 0, cbits = 0;
    int clusters = 0;
    int64_t kept = 0;  // the histograms count every index but the pruned ones
    for (int64_t pr = 0; pr < qt.num_problems; ++pr) {
      const int k = static_cast<int>(out.codebooks[static_cast<size_t>(qt.first_codebook + pr)].size());
      const ProblemCounts& pc = per[static_cast<size_t>(pr)];
      clusters = std::max(clusters, pc.used);
      kept += pc.kept;
      ebits += static_cast<double>(pc.kept) * pc.entropy;
      fbits += static_cast<double>(pc.kept) * ceil_log2(k);
      cbits += global ? 32.0 * k * n / static_cast<double>(total_n) : 32.0 * k;
    }
    st.pruned = numel - kept;
    st.clusters = clusters;
    st.entropy_bits_per_weight = ebits / n;
    st.fixed_bits_per_weight = (fbits + cbits) / n;
    st.ratio_fixed = 32.0 * n / (fbits + cbits);
    st.ratio_entropy = 32.0 * n / (ebits + cbits);
    tot_entropy_bits += ebits;
    tot_fixed_bits += fbits;
    tot_codebook_bits += cbits;
    tot.pruned += st.pruned;
    // Iteration counts, λ and timing of the problems this tensor belongs to.
    st.iterations = 0;
    st.converged = true;
    st.lambda = 0;
    st.seconds = 0;
    for (int64_t pr = 0; pr < qt.num_problems; ++pr) {
      const ProblemSummary& r = problems[static_cast<size_t>(qt.first_codebook + pr)];
      st.iterations = std::max(st.iterations, r.iterations);
      st.converged = st.converged && r.converged;
      st.lambda = std::max(st.lambda, r.lambda);
      st.seconds += r.seconds;
    }
  }
  for (const ProblemSummary& r : problems) {
    tot.iterations = std::max(tot.iterations, r.iterations);
    tot.converged = tot.converged && r.converged;
    tot.lambda = std::max(tot.lambda, r.lambda);
  }
  for (const auto& qt : out.tensors) tot.params += qt.stats.params;
  const double N = static_cast<double>(total_n);
  if (total_n > 0) {
    tot.hw_distortion = tot_d / N;
    tot.mse = tot_m / N;
    if (global) {
      // One shared codebook: the entropy of the whole index stream, not the sum of per-tensor entropies.
      tot.clusters = problems[0].levels;
      tot_entropy_bits = problems[0].entropy_bits * static_cast<double>(problems[0].kept);
    } else {
      for (const auto& qt : out.tensors) tot.clusters = std::max(tot.clusters, qt.stats.clusters);
    }
    tot.entropy_bits_per_weight = tot_entropy_bits / N;
    tot.fixed_bits_per_weight = (tot_fixed_bits + tot_codebook_bits) / N;
    tot.ratio_fixed = 32.0 * N / (tot_fixed_bits + tot_codebook_bits);
    tot.ratio_entropy = 32.0 * N / (tot_entropy_bits + tot_codebook_bits);
  }
}

}  // namespace nq::quant
