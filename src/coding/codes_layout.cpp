// The codes layout: each weight's column in its problem's row of a padded table, for lookup-table kernels.
#include "coding/codes_layout.h"

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "coding/nq_format.h"
#include "core/parallel_for.h"
#include "netquant/coding.h"
#include "netquant/error.h"

namespace nq::coding {

namespace {

// Weights per task, as dequantization takes them.
constexpr int64_t kCodesChunk = int64_t{1} << 17;

template <class Code>
void write_codes(const QuantizedTensor& t, const CodesShape& shape, Code* out) {
  const int64_t n = static_cast<int64_t>(t.indices.size());
  const int64_t columns = shape.columns;
  const auto pruned_code = static_cast<Code>(shape.pruned_code);
  std::atomic<bool> out_of_range{false};
  t.indices.visit([&](const auto* idx, auto mark) {
    parallel_for_chunks(n, kCodesChunk, [&](int64_t i0, int64_t i1) {
      bool bad = false;
      for (int64_t i = i0; i < i1; ++i) {
        const auto v = idx[i];
        const bool pruned = v == mark;
        bad |= !pruned & (static_cast<int64_t>(v) >= columns);
        out[i] = pruned ? pruned_code : static_cast<Code>(v);
      }
      if (bad) out_of_range.store(true, std::memory_order_relaxed);
    });
  });
  NQ_ASSERT_MSG(!out_of_range.load(), t.name << ": an index outside its codebook");
}

}  // namespace

CodesShape codes_shape(const std::string& what, int64_t numel, int64_t problem_size, int64_t num_problems,
                       int64_t max_k, int64_t levels, bool any_pruned) {
  CodesShape s;
  // An empty tensor has an empty table (a file may still give it codebooks: there is nothing for them to index).
  if (numel == 0) return s;
  s.problems = num_problems;
  s.columns = max_k + (any_pruned ? 1 : 0);
  s.pruned_code = any_pruned ? max_k : -1;
  s.codes_dtype = s.columns <= 256 ? DType::kU8 : s.columns <= 32768 ? DType::kI16 : DType::kI32;
  NQ_ASSERT_MSG(problem_size > 0 && s.problems == (numel - 1) / problem_size + 1,
                what << ": " << s.problems << " problems of " << problem_size << " for " << numel << " weights");
  // Rows are padded to the longest codebook, so one long codebook among many short ones (a hand-made model, or a
  // hostile file whose few bytes declare many problems) could ask for far more entries than the tensor has weights
  // or the file stores levels. Quantizers keep only the levels they use (at most a problem's weights): their tables
  // stay under 3 entries per weight, plus 65,537 for a one-problem tensor. Refused above 64 per weight and stored
  // level.
  const double entries = static_cast<double>(s.problems) * static_cast<double>(s.columns);
  const double bound = 64.0 * (static_cast<double>(numel) + static_cast<double>(levels)) + 65537.0;
  NQ_CHECK(entries <= bound, ErrorCode::kUnsupported,
           what << ": its " << s.problems << " codebooks padded to " << s.columns << " columns would take " << entries
                << " table entries for " << numel << " weights and " << levels
                << " stored levels (one codebook far longer than the others); decompress its values instead");
  return s;
}

Tensor tensor_codes(const QuantizedTensor& t, const CodesShape& shape) {
  NQ_ASSERT(static_cast<int64_t>(t.indices.size()) == shape_numel(t.shape));
  Tensor out = Tensor::uninitialized(codes_name(t.name), shape.codes_dtype, t.shape);
  switch (shape.codes_dtype) {
    case DType::kU8:
      write_codes(t, shape, out.mutable_data_as<uint8_t>());
      break;
    case DType::kI16:
      write_codes(t, shape, out.mutable_data_as<int16_t>());
      break;
    default:
      write_codes(t, shape, out.mutable_data_as<int32_t>());
      break;
  }
  return out;
}

Tensor tensor_codebook(const QuantizedTensor& t, const std::vector<std::vector<float>>& codebooks,
                       const CodesShape& shape, DType codebook_dtype) {
  NQ_ASSERT(dtype_is_float(codebook_dtype));
  const auto problems = static_cast<size_t>(shape.problems);
  const auto columns = static_cast<size_t>(shape.columns);
  NQ_ASSERT(static_cast<size_t>(t.first_codebook) + problems <= codebooks.size());
  std::vector<float> table(problems * columns, 0.0f);  // the padding and the pruned column: +0
  for (size_t p = 0; p < problems; ++p) {
    const auto& cb = codebooks[static_cast<size_t>(t.first_codebook) + p];
    NQ_ASSERT(cb.size() + (shape.pruned_code >= 0 ? 1 : 0) <= columns);
    std::copy(cb.begin(), cb.end(), table.begin() + static_cast<std::ptrdiff_t>(p * columns));
  }
  // Converted per value exactly as dequantization converts a level (Tensor::converted: round to nearest even).
  Tensor out = Tensor::from_f32(codebook_name(t.name),
                                {static_cast<int64_t>(problems), static_cast<int64_t>(columns)}, table);
  return codebook_dtype == DType::kF32 ? out : out.converted(codebook_dtype);
}

std::string codes_name(const std::string& tensor) { return tensor + ".codes"; }
std::string codebook_name(const std::string& tensor) { return tensor + ".codebook"; }

void add_layout_metadata(std::map<std::string, std::string>& metadata, Method method, const Scope& scope) {
  metadata["netquant.layout"] = "codes";
  metadata["netquant.method"] = method_traits(method).name;
  metadata["netquant.scope"] = scope_to_string(scope);
}

void add_tensor_metadata(std::map<std::string, std::string>& metadata, const std::string& tensor,
                         int64_t problem_size, const CodesShape& shape) {
  metadata[tensor + ".problem_size"] = std::to_string(problem_size);
  if (shape.pruned_code >= 0) metadata[tensor + ".pruned_code"] = std::to_string(shape.pruned_code);
}

void check_output_names(const std::string& source, const std::vector<std::pair<std::string, std::string>>& outputs) {
  std::map<std::string, const std::string*> owner;
  for (const auto& [name, tensor] : outputs) {
    NQ_CHECK(name != "__metadata__", ErrorCode::kInvalidArgument,
             source << ": tensor '" << tensor << "' cannot be written as safetensors' reserved name '__metadata__'");
    const auto [at, inserted] = owner.emplace(name, &tensor);
    NQ_CHECK(inserted, ErrorCode::kInvalidArgument,
             source << ": the codes layout would write two tensors named '" << name << "' (from tensor '"
                    << *at->second << "' and from tensor '" << tensor << "'); rename one, or decompress the values");
  }
}

}  // namespace nq::coding

namespace nq {

TensorSet codes_layout(const QuantizedModel& model, std::optional<DType> dtype, const std::string& source) {
  using namespace coding;
  NQ_CHECK(!dtype || dtype_is_float(*dtype), ErrorCode::kInvalidArgument, "the codebooks' dtype must be a float dtype");
  std::vector<std::pair<std::string, std::string>> outputs;
  for (const auto& t : model.tensors) {
    if (t.quantized) {
      outputs.emplace_back(codes_name(t.name), t.name);
      outputs.emplace_back(codebook_name(t.name), t.name);
    } else {
      outputs.emplace_back(t.name, t.name);
    }
  }
  check_output_names(source, outputs);
  TensorSet out;
  add_layout_metadata(out.metadata(), model.method, model.scope);
  for (const auto& t : model.tensors) {
    if (!t.quantized) {
      out.add(dequantize_tensor(t, {}, dtype.value_or(t.original.dtype())));  // as decompress writes it
      continue;
    }
    const int64_t numel = shape_numel(t.shape);
    const int64_t problems = numel == 0 ? 0 : t.num_problems;
    int64_t max_k = 0, levels = 0;
    for (int64_t p = 0; p < problems; ++p) {
      const auto k = static_cast<int64_t>(model.codebooks[static_cast<size_t>(t.first_codebook + p)].size());
      max_k = std::max(max_k, k);
      levels += k;
    }
    const CodesShape shape = codes_shape(source + ": tensor '" + t.name + "'", numel, t.problem_size,
                                         t.num_problems, max_k, levels, t.indices.count(kPrunedIndex) > 0);
    out.add(tensor_codes(t, shape));
    out.add(tensor_codebook(t, model.codebooks, shape, dtype.value_or(t.dtype)));
    add_tensor_metadata(out.metadata(), t.name, t.problem_size, shape);
  }
  return out;
}

}  // namespace nq
