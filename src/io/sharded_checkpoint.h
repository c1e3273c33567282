// Internal helpers of the sharded-checkpoint reader (the public API is in netquant/io.h).
#pragma once

#include <string>
#include <vector>

#include "netquant/io.h"

namespace nq {

// A model path naming a checkpoint index rather than a tensor file: any *.json (model.safetensors.index.json).
bool is_checkpoint_index_name(const std::string& path);
// read_safetensors_entries for an index: every shard's header, checked against the index.
std::vector<SafetensorsEntry> read_sharded_safetensors_entries(const std::string& index_path);
// Where the index's shard `name` lies: beside the index, as Hugging Face lays out a model folder.
std::string shard_path(const std::string& index_path, const std::string& name);

}  // namespace nq
