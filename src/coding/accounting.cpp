// Coding statistics: Huffman bits per weight, the paper's compression ratio and the real file ratio.
#include <limits>

#include "coding/nq_format.h"
#include "netquant/coding.h"
#include "netquant/error.h"

namespace nq::coding {

namespace {
double ratio(double original_bits, double coded_bits) { return coded_bits > 0 ? original_bits / coded_bits : 0.0; }
}  // namespace

void fill_coding_stats(QuantizedModel& model, const ModelEncoding& enc) {
  NQ_ASSERT(enc.tensors.size() == model.tensors.size());
  // Totals: the paper's denominator counts a shared codebook and a shared table once.
  double total_params = 0, total_huffman_bits = 0, total_paper_bits = 0;
  for (size_t i = 0; i < model.tensors.size(); ++i) {
    auto& t = model.tensors[i];
    const auto& e = enc.tensors[i];
    const double n = static_cast<double>(e.params);
    total_params += n;
    double paper_bits;
    double huffman_bits;
    if (e.quantized) {
      // Choi et al. 2017 eqs. 1, 2, 10: Σ_j (n_j + 1)·b_j + k·b (+ positions): stream + one codeword per table entry + codebook.
      huffman_bits = static_cast<double>(e.index_bits + e.position_bits);
      paper_bits = static_cast<double>(e.index_bits + e.index_table_paper + e.codebook_bits + e.position_bits +
                                       e.gap_table_paper);
      const bool shared_cb = model.scope.kind == ScopeKind::kGlobal;
      total_paper_bits += static_cast<double>(e.index_bits + e.position_bits + e.gap_table_paper) +
                          (enc.shared_table ? 0.0 : static_cast<double>(e.index_table_paper)) +
                          (shared_cb ? 0.0 : static_cast<double>(e.codebook_bits));
    } else {
      huffman_bits = 8.0 * static_cast<double>(e.payload_bytes);
      paper_bits = huffman_bits;
      total_paper_bits += paper_bits;
    }
    total_huffman_bits += huffman_bits;
    t.stats.huffman_bits_per_weight = n > 0 ? huffman_bits / n : 0;
    t.stats.ratio_huffman = ratio(32.0 * n, paper_bits);
    t.stats.ratio_file = ratio(32.0 * n, 8.0 * static_cast<double>(e.payload_bytes + e.record_bytes));
  }
  total_paper_bits += static_cast<double>(enc.shared_table_paper + enc.global_codebook_bits);
  model.total.huffman_bits_per_weight = total_params > 0 ? total_huffman_bits / total_params : 0;
  model.total.ratio_huffman = ratio(32.0 * total_params, total_paper_bits);
  model.total.ratio_file = ratio(32.0 * total_params, 8.0 * static_cast<double>(enc.file_size));
}

}  // namespace nq::coding

namespace nq {

void account_coding(QuantizedModel& model) {
  // A codebook beyond what .nq holds cannot be coded: no statistics (NaN) rather than an error, so that a
  // dequantized .safetensors output or a sweep point with that many levels still completes.
  for (const auto& cb : model.codebooks) {
    if (cb.size() <= static_cast<size_t>(kNqMaxLevels)) continue;
    const double none = std::numeric_limits<double>::quiet_NaN();
    model.total.huffman_bits_per_weight = model.total.ratio_huffman = model.total.ratio_file = none;
    for (auto& t : model.tensors) t.stats.huffman_bits_per_weight = t.stats.ratio_huffman = t.stats.ratio_file = none;
    return;
  }
  coding::fill_coding_stats(model, coding::encode_nq(model));
}

}  // namespace nq
