// Format dispatch by file name: .safetensors, .npy, IDX (*-ubyte, *.idx*, .gz), a sharded checkpoint's index
// (*.json), or a model directory.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/string_util.h"
#include "io/sharded_checkpoint.h"
#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {

namespace {

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_idx_name(const std::string& path) {
  std::string base = base_name(path);
  for (char& c : base) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);  // any letter case
  // .gz: the content decides (parse_idx checks the gzip and IDX magic).
  return ends_with(base, ".gz") || ends_with(base, "-ubyte") || base.find(".idx") != std::string::npos;
}

}  // namespace

std::string resolve_tensor_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return path;
  std::vector<std::string> indexes, files;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code kind;
    if (!it->is_regular_file(kind)) continue;  // follows symbolic links (the Hugging Face cache's snapshots)
    const std::string name = it->path().filename().string();
    if (has_extension(name, ".safetensors.index.json")) indexes.push_back(name);
    else if (has_extension(name, ".safetensors")) files.push_back(name);
  }
  NQ_CHECK(!ec, ErrorCode::kIo, path << ": cannot list the directory: " << ec.message());
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  auto list = [](const std::vector<std::string>& names) {
    std::string out;
    for (size_t i = 0; i < names.size() && i < 6; ++i) out += (i ? ", " : "") + names[i];
    if (names.size() > 6) out += " and " + std::to_string(names.size() - 6) + " more";
    return out;
  };
  const std::string dir = ends_with(path, "/") ? path : path + "/";
  if (indexes.size() == 1) return dir + indexes[0];
  NQ_CHECK(indexes.empty(), ErrorCode::kInvalidArgument,
           path << ": is a directory with " << indexes.size() << " checkpoint indexes (" << list(indexes)
                << "); name the one to read");
  if (files.size() == 1) return dir + files[0];
  NQ_CHECK(!files.empty(), ErrorCode::kIo,
           path << ": is a directory without a *.safetensors.index.json or .safetensors file");
  NQ_FAIL(ErrorCode::kInvalidArgument, path << ": is a directory with " << files.size()
                                            << " .safetensors files and no *.safetensors.index.json (" << list(files)
                                            << "); name the file to read");
}

std::vector<std::string> tensor_input_files(const std::string& path) {
  const std::string file = resolve_tensor_path(path);
  std::vector<std::string> out{file};
  if (!is_checkpoint_index_name(file)) return out;
  for (const std::string& shard : read_checkpoint_index(file).shards) out.push_back(shard_path(file, shard));
  return out;
}

bool named_like_model_or_data(const std::string& path) {
  return has_extension(path, ".safetensors") || has_extension(path, ".safetensors.index.json") ||
         has_extension(path, ".npy") || has_extension(path, ".nq") || is_idx_name(path);
}

bool is_safetensors_model(const std::string& path) {
  const std::string file = resolve_tensor_path(path);
  return has_extension(file, ".safetensors") || is_checkpoint_index_name(file);
}

TensorSet read_safetensors_model(const std::string& path) {
  const std::string file = resolve_tensor_path(path);
  return is_checkpoint_index_name(file) ? read_sharded_safetensors(file) : read_safetensors(file);
}

TensorSet read_tensors(const std::string& given) {
  const std::string path = resolve_tensor_path(given);
  TensorSet out;
  if (has_extension(path, ".safetensors") || is_checkpoint_index_name(path)) return read_safetensors_model(path);
  if (has_extension(path, ".npy")) {
    out.add(read_npy(path));
  } else if (is_idx_name(path)) {
    out.add(read_idx(path));
  } else {
    // A name that is not there says so first: its type is beside the point.
    struct stat st {};
    NQ_CHECK(::stat(path.c_str(), &st) == 0, ErrorCode::kIo, path << ": cannot open: " << std::strerror(errno));
    const bool nq = has_extension(path, ".nq");
    NQ_FAIL(ErrorCode::kUnsupported, path << ": unknown file type (expected .safetensors, a sharded checkpoint's "
                                             "*.safetensors.index.json, .npy, or an IDX file named *-ubyte, "
                                             "*.idx*, *.gz)"
                                          << (nq ? "; a .nq file is a compressed model: `netquant decompress` "
                                                   "turns it into .safetensors"
                                                 : ""));
  }
  return out;
}

void write_tensors(const std::string& path, const TensorSet& tensors) {
  if (has_extension(path, ".safetensors")) {
    write_safetensors(path, tensors);
  } else if (has_extension(path, ".npy")) {
    NQ_CHECK(tensors.size() == 1, ErrorCode::kInvalidArgument,
             path << ": a .npy file holds exactly one tensor, got " << tensors.size()
                  << "; write .safetensors for several");
    write_npy(path, tensors[0]);
  } else {
    NQ_FAIL(ErrorCode::kUnsupported, path << ": unknown output type (expected .safetensors or .npy)");
  }
}

}  // namespace nq
