// Small string helpers shared by the file-name dispatch (src/io) and the CLI (tools/).
#pragma once

#include <string>

namespace nq {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A file-name suffix (".safetensors", "-ubyte") compared without ASCII case, as file managers and Windows do:
// MODEL.SAFETENSORS names a safetensors file. Only the dispatch is case-blind; the name is used as given.
inline bool has_extension(const std::string& path, const std::string& ext) {
  if (path.size() < ext.size()) return false;
  const size_t at = path.size() - ext.size();
  for (size_t i = 0; i < ext.size(); ++i) {
    char c = path[at + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != ext[i]) return false;  // ext is lower case
  }
  return true;
}

}  // namespace nq
