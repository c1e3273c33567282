// Writes sharded safetensors checkpoints laid out as Hugging Face's save_pretrained does: shards named
// model-0000i-of-0000n.safetensors beside model.safetensors.index.json, whose "weight_map" maps each tensor to its
// shard and whose "metadata" holds "total_size" (the tensors' bytes).
#pragma once

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "netquant/io.h"

namespace nq::test {

inline std::string shard_file_name(int shard, int shards) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard + 1, shards);
  return name;
}

// Tensor i of `model` goes to shard shard_of[i] (0-based, < shards); every shard gets `metadata`. Returns the
// index's path and, in `read_order`, the tensors in the order netquant reads them back (shards in name order,
// each in its own order).
inline std::string write_sharded_checkpoint(const std::string& dir, const TensorSet& model,
                                            const std::vector<int>& shard_of, int shards,
                                            TensorSet* read_order = nullptr,
                                            const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json index;
  uint64_t total = 0;
  for (int s = 0; s < shards; ++s) {
    TensorSet part;
    part.metadata() = metadata;
    for (size_t i = 0; i < model.size(); ++i) {
      if (shard_of[i] != s) continue;
      part.add(model[i]);
      if (read_order) read_order->add(model[i]);
      index["weight_map"][model[i].name()] = shard_file_name(s, shards);
      total += model[i].nbytes();
    }
    write_safetensors(dir + "/" + shard_file_name(s, shards), part);
  }
  index["metadata"]["total_size"] = total;
  const std::string path = dir + "/model.safetensors.index.json";
  std::ofstream(path) << index.dump(2);
  return path;
}

}  // namespace nq::test
