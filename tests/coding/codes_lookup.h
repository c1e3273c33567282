// Test oracle shared by the CLI test, the stress campaign and fuzz_nq (no GoogleTest here): the values a model in
// the codes layout holds, looked up as a lookup-table kernel would, X[i] = X.codebook[i / ps][X.codes[i]] with ps
// from the metadata ("X.problem_size"); tensors without codes pass through as they are.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "netquant/tensor.h"

namespace nq::testing {

// The looked-up values, in the layout's order; nullopt, with `why` set, when a table is missing or not 2-D, or a
// code falls outside its row.
inline std::optional<TensorSet> look_up_codes(const TensorSet& layout, std::string* why) {
  const std::string codes_suffix = ".codes", table_suffix = ".codebook";
  auto base_of = [](const std::string& name, const std::string& suffix) -> std::optional<std::string> {
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      return std::nullopt;
    return name.substr(0, name.size() - suffix.size());
  };
  auto has_codes = [&](const std::optional<std::string>& base) {
    return base && layout.metadata().count(*base + ".problem_size") != 0;
  };
  TensorSet values;
  for (const Tensor& t : layout) {
    const auto base = base_of(t.name(), codes_suffix);
    if (!has_codes(base)) {
      if (!has_codes(base_of(t.name(), table_suffix))) values.add(t);  // a tensor kept in float
      continue;
    }
    const Tensor* table = layout.find(*base + table_suffix);
    if (!table || table->shape().size() != 2) {
      *why = *base + ": no 2-D table " + *base + table_suffix;
      return std::nullopt;
    }
    const uint64_t ps = std::stoull(layout.metadata().at(*base + ".problem_size"));
    const auto columns = static_cast<uint64_t>(table->shape()[1]);
    const size_t width = dtype_size(table->dtype());
    Tensor out = Tensor::uninitialized(*base, table->dtype(), t.shape());
    for (uint64_t i = 0; i < static_cast<uint64_t>(t.numel()); ++i) {
      const int64_t code = t.dtype() == DType::kU8    ? t.data_as<uint8_t>()[i]
                           : t.dtype() == DType::kI16 ? t.data_as<int16_t>()[i]
                                                      : t.data_as<int32_t>()[i];
      const uint64_t cell = ps == 0 ? UINT64_MAX : (i / ps) * columns + static_cast<uint64_t>(code);
      if (code < 0 || static_cast<uint64_t>(code) >= columns || cell >= static_cast<uint64_t>(table->numel())) {
        *why = *base + ": weight " + std::to_string(i) + " has code " + std::to_string(code) + " of " +
               std::to_string(columns) + " columns (problem size " + std::to_string(ps) + ")";
        return std::nullopt;
      }
      std::memcpy(static_cast<uint8_t*>(out.mutable_data()) + i * width,
                  static_cast<const uint8_t*>(table->data()) + cell * width, width);
    }
    values.add(std::move(out));
  }
  return values;
}

}  // namespace nq::testing
