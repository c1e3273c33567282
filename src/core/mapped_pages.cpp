// Registry of read-only input mappings, and madvise(MADV_DONTNEED) over ranges inside them.
#include "core/mapped_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>

#include "netquant/error.h"

namespace nq {

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<uintptr_t, size_t>& registry() {  // mapping start -> length in bytes
  static std::map<uintptr_t, size_t> r;
  return r;
}
}  // namespace

void register_readonly_mapping(const void* begin, size_t bytes) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[reinterpret_cast<uintptr_t>(begin)] = bytes;
}

void unregister_readonly_mapping(const void* begin) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().erase(reinterpret_cast<uintptr_t>(begin));
}

void release_mapped_pages(const void* data, size_t bytes) {
  if (bytes == 0) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(data), hi = lo + bytes;
  uintptr_t map_lo = 0, map_hi = 0;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    const auto& r = registry();
    auto it = r.upper_bound(lo);  // the last mapping starting at or before lo
    if (it == r.begin()) return;
    it = std::prev(it);
    map_lo = it->first;
    map_hi = it->first + it->second;
  }
  if (hi > map_hi) return;  // not (wholly) inside a registered mapping
  // Whole pages, rounded outwards: a page shared with a neighbour still in use is simply read again. The mapping
  // starts on a page and covers its last page in full.
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t from = lo & ~(page - 1);
  const uintptr_t to = std::min((hi + page - 1) & ~(page - 1), (map_hi + page - 1) & ~(page - 1));
  NQ_ASSERT(from >= map_lo);
  // A failure only leaves the pages resident, which is what happens without the hint.
  (void)madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
}

}  // namespace nq
