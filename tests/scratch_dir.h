// Test helpers: a scratch directory that the child of a "threadsafe" death test shares with its parent, and a
// directory's listing (what a run left behind).
#pragma once

#include <dirent.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace nq::test {

// A "threadsafe" death test's child runs its test again from the top in a fresh process: the parent makes the
// directory (mkdtemp under /tmp with this prefix) and names it in the environment `variable`; the child finds it
// there. The parent unsets the variable and removes the directory when done. Empty when it could not be made.
inline std::string death_test_scratch_dir(const char* variable, const std::string& prefix) {
  if (const char* inherited = std::getenv(variable)) return inherited;
  std::string made = "/tmp/" + prefix + "_XXXXXX";
  if (!mkdtemp(&made[0])) return std::string();
  setenv(variable, made.c_str(), 1);
  return made;
}

// The names in `dir`, sorted, without "." and "..".
inline std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (const dirent* e = d ? readdir(d) : nullptr)
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  if (d) closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace nq::test
