// Available memory from the kernel's own accounting (see memory_info.h).
#include "core/memory_info.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace nq {

namespace {

// The value of "MemAvailable:" in /proc/meminfo, in bytes; 0 if absent.
uint64_t mem_available() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (f >> key >> kib) {
    std::getline(f, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// A whole-file unsigned number, or 0 when the file is missing or holds something else ("max": no limit).
uint64_t read_number(const char* path) {
  std::ifstream f(path);
  std::string text;
  if (!(f >> text) || text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return 0;
  std::istringstream in(text);
  uint64_t v = 0;
  in >> v;
  return v;
}

// The "file" figure of the cgroup's memory.stat: page cache, which the kernel reclaims before it kills anything.
uint64_t cgroup_file_cache() {
  std::ifstream f("/sys/fs/cgroup/memory.stat");
  std::string key;
  uint64_t value = 0;
  while (f >> key >> value)
    if (key == "file") return value;
  return 0;
}

}  // namespace

uint64_t available_memory_bytes() {
  uint64_t avail = mem_available();
  const uint64_t limit = read_number("/sys/fs/cgroup/memory.max");
  if (limit > 0) {
    // memory.current counts the page cache too (reading a large model fills it); MemAvailable already allows for
    // it, so the cgroup's room does as well. At the limit the room is 1 byte, not "unknown".
    const uint64_t current = read_number("/sys/fs/cgroup/memory.current"), cache = cgroup_file_cache();
    const uint64_t used = current > cache ? current - cache : 0;
    const uint64_t room = limit > used ? limit - used : 1;
    avail = avail ? std::min(avail, room) : room;
  }
  return avail;
}

}  // namespace nq
