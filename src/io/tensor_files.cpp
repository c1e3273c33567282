// Format dispatch by file name: .safetensors, .npy, IDX (*-ubyte, *.idx*, .gz).
#include <sys/stat.h>

#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_idx_name(const std::string& path) {
  std::string base = base_name(path);
  if (ends_with(base, ".gz")) return true;  // content decides: parse_idx checks the gzip and IDX magic
  return ends_with(base, "-ubyte") || base.find(".idx") != std::string::npos;
}

}  // namespace

TensorSet read_tensors(const std::string& path) {
  TensorSet out;
  struct stat st {};
  // Whatever its name says, a directory is the same mistake (exit 2), not an unknown file type.
  NQ_CHECK(::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode), ErrorCode::kIo, path << ": is a directory");
  if (ends_with(path, ".safetensors")) return read_safetensors(path);
  if (ends_with(path, ".npy")) {
    out.add(read_npy(path));
  } else if (is_idx_name(path)) {
    out.add(read_idx(path));
  } else {
    const bool nq = ends_with(path, ".nq");
    NQ_FAIL(ErrorCode::kUnsupported, path << ": unknown file type (expected .safetensors, .npy, or an IDX file "
                                             "named *-ubyte, *.idx*, *.gz)"
                                          << (nq ? "; a .nq file is a compressed model: `netquant decompress` "
                                                   "turns it into .safetensors"
                                                 : ""));
  }
  return out;
}

void write_tensors(const std::string& path, const TensorSet& tensors) {
  if (ends_with(path, ".safetensors")) {
    write_safetensors(path, tensors);
  } else if (ends_with(path, ".npy")) {
    NQ_CHECK(tensors.size() == 1, ErrorCode::kInvalidArgument,
             path << ": a .npy file holds exactly one tensor, got " << tensors.size()
                  << "; write .safetensors for several");
    write_npy(path, tensors[0]);
  } else {
    NQ_FAIL(ErrorCode::kUnsupported, path << ": unknown output type (expected .safetensors or .npy)");
  }
}

}  // namespace nq
