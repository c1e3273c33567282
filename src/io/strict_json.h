// JSON from untrusted files, parsed the way the safetensors reference does: valid UTF-8, bounded nesting, and no
// duplicate keys in any object (nlohmann silently keeps the last one). Shared by the safetensors header and the
// sharded-checkpoint index (model.safetensors.index.json).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nq::io {

struct StrictJson {
  nlohmann::json root;                     // std::map-backed: ordered_json would be quadratic on hostile input
  std::vector<std::string> top_level_keys; // the root object's keys in file order (empty unless it is an object)
};

// `what` names the text in errors, e.g. "model.safetensors: safetensors header"; every failure is kBadFile.
StrictJson parse_strict_json(const char* text, size_t n, const std::string& what);

}  // namespace nq::io
