// libFuzzer target for the sharded-checkpoint index (model.safetensors.index.json): nq::Error is the only
// acceptable failure, and what parses must be sorted, unique and point only below the index's directory.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "netquant/error.h"
#include "netquant/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nq::CheckpointIndex index = nq::parse_checkpoint_index(data, size, "fuzz.index.json");
    if (index.weight_map.empty() || index.shards.empty()) std::abort();
    for (size_t i = 1; i < index.shards.size(); ++i)
      if (!(index.shards[i - 1] < index.shards[i])) std::abort();
    for (size_t i = 0; i < index.weight_map.size(); ++i) {
      if (index.weight_map[i].second >= index.shards.size()) std::abort();
      if (i && !(index.weight_map[i - 1].first < index.weight_map[i].first)) std::abort();
    }
    for (const std::string& shard : index.shards) {
      // Relative, no "." or ".." component, a .safetensors file: a shard can never name a file outside.
      if (shard.empty() || shard.front() == '/' || shard.find('\0') != std::string::npos) std::abort();
      if (shard.find("/../") != std::string::npos || shard.rfind("../", 0) == 0) std::abort();
      // The extension in any letter case, as every file name netquant reads (README, "Model and data files").
      if (shard.size() < 12) std::abort();
      std::string extension = shard.substr(shard.size() - 12);
      for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (extension != ".safetensors") std::abort();
    }
  } catch (const nq::Error& e) {
    if (e.code() == nq::ErrorCode::kInternal) std::abort();
  }
  return 0;
}
