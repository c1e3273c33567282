// A quantized tensor's values: codebooks converted once, then one table read per weight on the threads.
#include "quant/dequantize.h"

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "core/parallel_for.h"
#include "netquant/error.h"

namespace nq::quant {

namespace {

// Weights per task: a few hundred KB of output, enough to hide the scheduling.
constexpr int64_t kDequantizeChunk = int64_t{1} << 17;

template <class Out, class Convert>
void dequantize_into(const QuantizedTensor& qt, const std::vector<std::vector<float>>& codebooks, Out* out,
                     Convert convert) {
  const size_t n = qt.indices.size();
  if (n == 0) return;
  const size_t ps = qt.problem_size > 0 ? static_cast<size_t>(qt.problem_size) : n;
  const size_t problems = (n + ps - 1) / ps;
  const size_t first = static_cast<size_t>(qt.first_codebook);
  NQ_ASSERT_MSG(first + problems <= codebooks.size(),
                qt.name << ": codebooks " << first << ".." << first + problems << " of " << codebooks.size());
  // Converted tables, when they are small beside the tensor (nearly always: a codebook has at most as many levels
  // as its problem has weights in every scope but a tiny group's); otherwise each weight is converted itself.
  std::vector<size_t> table_at;
  std::vector<Out> tables;
  if (problems <= n / 16 + 1) {
    table_at.resize(problems + 1);
    size_t total = 0;
    for (size_t p = 0; p < problems; ++p) {
      table_at[p] = total;
      total += codebooks[first + p].size() + 1;  // and +0 after the levels: where the pruned mark looks
    }
    table_at[problems] = total;
    if (total <= n) {
      tables.resize(total);
      parallel_for(static_cast<int64_t>(problems), 64, [&](int64_t p) {
        const auto& cb = codebooks[first + static_cast<size_t>(p)];
        auto at = tables.begin() + static_cast<std::ptrdiff_t>(table_at[static_cast<size_t>(p)]);
        *std::transform(cb.begin(), cb.end(), at, convert) = convert(0.0f);
      });
    } else {
      table_at.clear();
    }
  }
  const Out zero = convert(0.0f);  // +0 in every float dtype
  std::atomic<bool> out_of_range{false};
  qt.indices.visit([&](const auto* idx, auto mark) {
    parallel_for_chunks(static_cast<int64_t>(n), kDequantizeChunk, [&](int64_t i0, int64_t i1) {
      bool bad = false;
      for (size_t i = static_cast<size_t>(i0); i < static_cast<size_t>(i1);) {
        const size_t p = i / ps;
        const size_t end = std::min(static_cast<size_t>(i1), (p + 1) * ps);
        const auto& cb = codebooks[first + p];
        const size_t k = cb.size();
        if (!table_at.empty()) {
          // Branch-free (the mask is data): the pruned mark, and any index past the codebook, read table[k] = +0.
          // (The mark is not always past it: 0xFFFF with 65,536 levels at two bytes.)
          const Out* table = tables.data() + table_at[p];
          using Unsigned = std::make_unsigned_t<std::decay_t<decltype(*idx)>>;
          const auto unsigned_mark = static_cast<Unsigned>(mark);
          for (; i < end; ++i) {
            const auto v = static_cast<Unsigned>(idx[i]);
            const bool pruned = v == unsigned_mark;
            bad |= !pruned & (v >= k);
            out[i] = table[pruned ? k : std::min<size_t>(v, k)];
          }
        } else {
          for (; i < end; ++i) {
            const auto v = idx[i];
            const bool pruned = v == mark;
            bad |= !pruned && static_cast<size_t>(v) >= k;
            out[i] = pruned || static_cast<size_t>(v) >= k ? zero : convert(cb[static_cast<size_t>(v)]);
          }
        }
      }
      if (bad) out_of_range.store(true, std::memory_order_relaxed);
    });
  });
  NQ_ASSERT_MSG(!out_of_range.load(), qt.name << ": an index outside its codebook");
}

}  // namespace

Tensor dequantize_indices(const QuantizedTensor& qt, const std::vector<std::vector<float>>& codebooks, DType dtype) {
  NQ_ASSERT_MSG(static_cast<int64_t>(qt.indices.size()) == shape_numel(qt.shape),
                qt.name << ": " << qt.indices.size() << " indices for shape " << shape_to_string(qt.shape));
  Tensor t = Tensor::uninitialized(qt.name, dtype, qt.shape);
  switch (dtype) {
    case DType::kF32:
      dequantize_into(qt, codebooks, t.mutable_data_as<float>(), [](float v) { return v; });
      break;
    case DType::kF64:
      dequantize_into(qt, codebooks, t.mutable_data_as<double>(), [](float v) { return static_cast<double>(v); });
      break;
    case DType::kF16:
      dequantize_into(qt, codebooks, static_cast<uint16_t*>(t.mutable_data()), [](float v) { return f32_to_f16(v); });
      break;
    case DType::kBF16:
      dequantize_into(qt, codebooks, static_cast<uint16_t*>(t.mutable_data()), [](float v) { return f32_to_bf16(v); });
      break;
    default:
      NQ_FAIL(ErrorCode::kInvalidArgument, qt.name << ": cannot dequantize to " << dtype_name(dtype) << " (not a float dtype)");
  }
  return t;
}

}  // namespace nq::quant
