// Huge-page-backed allocations (huge_pages.h): an anonymous mapping of the size rounded up to whole 2 MiB pages
// plus one page of slack, trimmed to a 2 MiB-aligned start, so that every page of it can be a huge page.
#include "core/huge_pages.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace nq {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

size_t round_up(size_t bytes) { return (bytes + kHugePage - 1) & ~(kHugePage - 1); }

// NQ_HUGE_PAGES=0 turns the advice off (a machine where compaction stalls cost more than the faults they save).
bool huge_pages_wanted() {
  static const bool wanted = [] {
    const char* v = std::getenv("NQ_HUGE_PAGES");
    return !(v && v[0] == '0' && v[1] == '\0');
  }();
  return wanted;
}

}  // namespace

#if defined(__linux__)

void* allocate_huge(size_t bytes) {
  const size_t len = round_up(bytes);
  if (len < bytes || len + kHugePage < len) throw std::bad_alloc();
  void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t lo = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (lo + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
  // Give back the slack on both sides: the mapping is then exactly [start, start + len).
  if (start > lo) munmap(raw, start - lo);
  const uintptr_t end = start + len, raw_end = lo + len + kHugePage;
  if (raw_end > end) munmap(reinterpret_cast<void*>(end), raw_end - end);
  void* p = reinterpret_cast<void*>(start);
  if (huge_pages_wanted()) madvise(p, len, MADV_HUGEPAGE);  // advice: failure leaves 4 KiB pages
  return p;
}

void free_huge(void* p, size_t bytes) noexcept {
  if (p) munmap(p, round_up(bytes));
}

void advise_huge_pages(void* p, size_t bytes) noexcept {
  if (bytes < kHugePagesFrom || !huge_pages_wanted()) return;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
  const uintptr_t a = (lo + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1), b = hi & ~(uintptr_t{kHugePage} - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
}

std::string huge_pages_status() {
  if (!huge_pages_wanted()) return "off (NQ_HUGE_PAGES=0)";
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  if (!std::getline(f, modes)) return "asked for, but this kernel has no transparent huge pages";
  const size_t a = modes.find('['), b = modes.find(']');
  const std::string mode = a != std::string::npos && b != std::string::npos && b > a ? modes.substr(a + 1, b - a - 1)
                                                                                      : modes;
  const std::string which = kHugePageArrays ? "arrays of " + std::to_string(kHugePagesFrom >> 20) + " MiB or more"
                                            : "filled vectors only (AddressSanitizer build)";
  if (mode == "never") return "asked for (" + which + "), but the kernel has them off (transparent_hugepage: never)";
  return "asked for (" + which + "; transparent_hugepage: " + mode + ")";
}

#else

std::string huge_pages_status() { return "not on this platform"; }

void* allocate_huge(size_t bytes) {
  void* p = std::calloc(bytes ? bytes : 1, 1);  // zeroed, as the Linux mapping is
  if (!p) throw std::bad_alloc();
  return p;
}
void free_huge(void* p, size_t) noexcept { std::free(p); }
void advise_huge_pages(void*, size_t) noexcept {}

#endif

}  // namespace nq
