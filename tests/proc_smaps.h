// Test helper: this process's entry in /proc/self/smaps for the mapping that holds an address (the kernel's own
// account of a mapping: its extent, resident size and VmFlags), the oracle of the memory tests (Linux).
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace nq::test {

struct SmapsEntry {
  bool found = false;
  uintptr_t begin = 0, end = 0;
  long rss_kb = -1;
  std::string flags;  // the VmFlags line's flags ("hg": MADV_HUGEPAGE)
};

inline SmapsEntry smaps_entry_holding(const void* p) {
  SmapsEntry m;
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if ((head >> std::hex >> lo >> dash >> hi) && dash == '-' && line.find(':') > line.find(' ')) {  // a header
      inside = a >= lo && a < hi;
      if (inside) {
        m.found = true;
        m.begin = lo;
        m.end = hi;
      }
      continue;
    }
    if (!inside) continue;
    if (line.rfind("Rss:", 0) == 0) m.rss_kb = std::stol(line.substr(4));
    if (line.rfind("VmFlags:", 0) == 0) m.flags = line.substr(8);
  }
  return m;
}

}  // namespace nq::test
