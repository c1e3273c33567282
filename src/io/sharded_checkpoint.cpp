// Sharded safetensors checkpoints: the index (model.safetensors.index.json) and the shards it names, read as one
// model. The index is untrusted input like any model file: bounded size, strict JSON, shard paths that stay below
// the index's directory, and every shard holding exactly the tensors mapped to it, so that a stale or hand-edited
// index is an error naming the tensor and both files rather than a silently different model.
#include "io/sharded_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "core/string_util.h"
#include "io/mapped_file.h"
#include "io/strict_json.h"
#include "netquant/error.h"

namespace nq {

namespace {

constexpr size_t kMaxIndexSize = 100'000'000;  // as a safetensors header; real indexes are tens of kilobytes

// A name from the index as errors print it: control characters (a JSON "\u0000" included, which would end the
// message early) escaped as \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) {
      out += c;
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += esc;
    }
  }
  return out;
}

// Why a shard path from the index is refused ("" = accepted): it must be relative, stay below the index's
// directory, and name a safetensors file (PyTorch's pytorch_model.bin.index.json has the same layout but pickled
// shards, which netquant does not read).
std::string shard_name_problem(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.find('\0') != std::string::npos) return "contains a NUL character";
  if (name.front() == '/') return "is an absolute path (shards must lie below the index's directory)";
  size_t begin = 0;
  while (begin <= name.size()) {
    size_t end = name.find('/', begin);
    if (end == std::string::npos) end = name.size();
    const std::string part = name.substr(begin, end - begin);
    if (part.empty() || part == "." || part == "..")
      return "has an empty, '.' or '..' path component (shards must lie below the index's directory)";
    begin = end + 1;
  }
  if (!has_extension(name, ".safetensors"))
    return "is not a .safetensors file (netquant reads safetensors checkpoints; convert PyTorch .bin shards "
           "first)";
  return "";
}

// For one shard (in file order), checks that it holds exactly the tensors the index maps to it.
void check_shard_tensors(const CheckpointIndex& index, const std::string& index_path, size_t shard,
                         const std::vector<std::string>& names) {
  const std::string file = shard_path(index_path, index.shards[shard]);
  auto by_name = [](const std::pair<std::string, size_t>& e, const std::string& n) { return e.first < n; };
  for (const std::string& name : names) {
    const auto it = std::lower_bound(index.weight_map.begin(), index.weight_map.end(), name, by_name);
    NQ_CHECK(it != index.weight_map.end() && it->first == name, ErrorCode::kBadFile,
             file << ": holds tensor '" << name << "', which the index " << index_path << " does not list");
    NQ_CHECK(it->second == shard, ErrorCode::kBadFile,
             file << ": holds tensor '" << name << "', which the index " << index_path << " places in '"
                  << index.shards[it->second] << "'");
  }
  // Every name above is mapped here and a shard's names are unique, so a shortfall means a missing tensor.
  size_t mapped = 0;
  for (const auto& e : index.weight_map) mapped += e.second == shard;
  if (mapped == names.size()) return;
  for (const auto& e : index.weight_map) {
    if (e.second == shard && std::find(names.begin(), names.end(), e.first) == names.end())
      NQ_FAIL(ErrorCode::kBadFile, index_path << ": maps tensor '" << e.first << "' to '" << index.shards[shard]
                                              << "', which does not hold it");
  }
}

}  // namespace

bool is_checkpoint_index_name(const std::string& path) { return has_extension(path, ".json"); }

std::string shard_path(const std::string& index_path, const std::string& name) {
  const size_t slash = index_path.find_last_of('/');
  return slash == std::string::npos ? name : index_path.substr(0, slash + 1) + name;
}

CheckpointIndex parse_checkpoint_index(const uint8_t* data, size_t size, const std::string& source) {
  NQ_CHECK(size <= kMaxIndexSize, ErrorCode::kBadFile,
           source << ": checkpoint index is " << size << " bytes, over the limit of " << kMaxIndexSize);
  const io::StrictJson parsed =
      io::parse_strict_json(reinterpret_cast<const char*>(data), size, source + ": checkpoint index");
  const nlohmann::json& root = parsed.root;
  NQ_CHECK(root.is_object(), ErrorCode::kBadFile,
           source << ": checkpoint index must be a JSON object, got " << root.type_name());
  const auto map = root.find("weight_map");
  NQ_CHECK(map != root.end(), ErrorCode::kBadFile,
           source << ": checkpoint index has no \"weight_map\" (the object mapping tensor names to shard files)");
  NQ_CHECK(map->is_object(), ErrorCode::kBadFile,
           source << ": \"weight_map\" must be an object of tensor name -> shard file, got " << map->type_name());
  NQ_CHECK(!map->empty(), ErrorCode::kBadFile, source << ": \"weight_map\" is empty (no tensors)");

  CheckpointIndex out;
  // std::map iterates in key order: tensor names come out sorted, and the shard list is built sorted and unique.
  std::map<std::string, size_t> shard_ids;
  for (const auto& [name, shard] : map->items()) {
    NQ_CHECK(shard.is_string(), ErrorCode::kBadFile,
             source << ": \"weight_map\" entry of tensor '" << printable(name) << "' must be a file name, got "
                    << shard.type_name());
    const std::string& file = shard.get_ref<const std::string&>();
    const std::string problem = shard_name_problem(file);
    NQ_CHECK(problem.empty(), ErrorCode::kBadFile,
             source << ": shard '" << printable(file) << "' of tensor '" << printable(name) << "' " << problem);
    shard_ids.emplace(file, 0);
  }
  for (auto& [file, id] : shard_ids) {
    id = out.shards.size();
    out.shards.push_back(file);
  }
  out.weight_map.reserve(map->size());
  for (const auto& [name, shard] : map->items())
    out.weight_map.emplace_back(name, shard_ids.at(shard.get_ref<const std::string&>()));
  return out;
}

CheckpointIndex read_checkpoint_index(const std::string& path) {
  const auto file = io::MappedFile::open(path);
  return parse_checkpoint_index(file->data(), file->size(), path);
}

// Every shard of the index in name order, each read by `read` (a TensorSet or its header's entries) and checked
// against the index (`name_of` gives a tensor's name) before `take` receives it with its position.
template <class Read, class NameOf, class Take>
void for_each_checked_shard(const std::string& index_path, Read read, NameOf name_of, Take take) {
  const CheckpointIndex index = read_checkpoint_index(index_path);
  for (size_t s = 0; s < index.shards.size(); ++s) {
    auto shard = read(shard_path(index_path, index.shards[s]));
    std::vector<std::string> names;
    names.reserve(shard.size());
    for (const auto& t : shard) names.push_back(name_of(t));
    check_shard_tensors(index, index_path, s, names);
    take(s, shard);
  }
}

TensorSet read_sharded_safetensors(const std::string& index_path) {
  TensorSet out;
  std::map<std::string, std::string> agreed;
  for_each_checked_shard(
      index_path, [](const std::string& file) { return read_safetensors(file); },
      [](const Tensor& t) { return t.name(); },
      [&](size_t s, const TensorSet& shard) {
        for (const Tensor& t : shard) out.add(t);  // a view: the shard's map stays alive through the tensor
        if (s == 0) {
          agreed = shard.metadata();
          return;
        }
        for (auto it = agreed.begin(); it != agreed.end();) {
          const auto other = shard.metadata().find(it->first);
          it = other != shard.metadata().end() && other->second == it->second ? std::next(it) : agreed.erase(it);
        }
      });
  out.metadata() = std::move(agreed);
  return out;
}

std::vector<SafetensorsEntry> read_sharded_safetensors_entries(const std::string& index_path) {
  std::vector<SafetensorsEntry> out;
  for_each_checked_shard(
      index_path, [](const std::string& file) { return read_safetensors_entries(file); },
      [](const SafetensorsEntry& e) { return e.name; },
      [&](size_t, std::vector<SafetensorsEntry>& shard) {
        for (SafetensorsEntry& e : shard) out.push_back(std::move(e));
      });
  return out;
}

}  // namespace nq
