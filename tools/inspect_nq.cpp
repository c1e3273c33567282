// `netquant inspect IN.nq`: format version, per-tensor method, scope, k, bits per weight, ratio, checksums.
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "inspect_nq.h"
#include "netquant/coding.h"
#include "netquant/quantize.h"

namespace nq::cli {

bool inspect_nq(const std::string& path, bool json, nlohmann::json* out, std::ostream& os,
                const char* before) {
  const NqFileInfo info = describe_nq_file(path);
  const std::string method = method_traits(info.method).name;
  const std::string scope = scope_to_string(info.scope);
  bool all_ok = info.header_crc_ok && info.file_crc_ok;
  for (const auto& t : info.tensors) all_ok = all_ok && t.crc_ok;
  if (json && out) {
    nlohmann::json j;
    j["path"] = path;
    j["format"] = "nq";
    j["version"] = info.version;
    j["method"] = method;
    j["scope"] = scope;
    j["shared_huffman_table"] = info.shared_table;
    if (info.scope.kind == ScopeKind::kGlobal) j["k"] = info.global_k;
    j["file_bytes"] = info.file_size;
    j["header_bytes"] = info.header_bytes;
    j["params"] = info.params;
    j["bits_per_weight"] = info.bits_per_weight;
    j["ratio_file"] = info.ratio_file;
    j["checksums_ok"] = all_ok;
    j["header_crc_ok"] = info.header_crc_ok;
    j["file_crc_ok"] = info.file_crc_ok;
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : info.tensors) {
      nlohmann::json tj;
      tj["name"] = t.name;
      tj["dtype"] = dtype_name(t.dtype);
      tj["shape"] = t.shape;
      tj["quantized"] = t.quantized;
      if (t.quantized) {
        tj["method"] = method;
        tj["scope"] = scope;
        tj["k"] = t.max_k;
        tj["codebooks"] = t.num_problems;
        tj["pruned"] = t.pruned;
        tj["index_coder"] = t.rans ? "rans" : "huffman";
        tj["index_bits"] = t.index_bits;
        tj["table_bits"] = t.table_bits;
        tj["codebook_bits"] = t.codebook_bits;
        tj["position_bits"] = t.position_bits;
        tj["gap_width"] = t.gap_width;
      }
      tj["params"] = t.params;
      tj["payload_bytes"] = t.payload_bytes;
      tj["bits_per_weight"] = t.bits_per_weight;
      tj["ratio_file"] = t.ratio_file;
      tj["crc_ok"] = t.crc_ok;
      j["tensors"].push_back(std::move(tj));
    }
    *out = std::move(j);
    return all_ok;
  }
  os << before << path << ": .nq version " << info.version << ", method " << method << ", scope " << scope;
  if (info.scope.kind == ScopeKind::kGlobal) os << ", k " << info.global_k;
  os << (info.shared_table ? ", shared Huffman table" : "") << "\n";
  os << info.params << " weights in " << info.file_size << " bytes: " << format_double(info.bits_per_weight)
            << " bits/weight, ratio " << format_double(info.ratio_file) << "x (vs float32)\n";
  os << "checksums: " << (all_ok ? "ok" : "MISMATCH") << " (header " << (info.header_crc_ok ? "ok" : "bad")
            << ", file " << (info.file_crc_ok ? "ok" : "bad") << ")\n\n";
  Table table({"tensor", "dtype", "shape", "stored", "k", "pruned", "bits/w", "ratio", "crc"});
  for (const auto& t : info.tensors) {
    table.add_row({t.name, dtype_name(t.dtype), shape_to_string(t.shape), t.quantized ? (t.rans ? "rans" : "huffman") : "raw",
                   t.quantized ? std::to_string(t.max_k) : "-", std::to_string(t.pruned),
                   format_double(t.bits_per_weight), format_double(t.ratio_file), t.crc_ok ? "ok" : "BAD"});
  }
  os << table.to_string();
  return all_ok;
}

}  // namespace nq::cli
