// Test helper: a real refusal of memory. A test's child process (a death test, "threadsafe" style) lowers its own
// address-space limit to a little over what it maps now, after which a large allocation, a new mapping or a
// thread's stack is refused by the kernel, as on a machine or batch job with `ulimit -v`.
#pragma once

#include <sys/resource.h>

#include <cstdio>

#include "core/sanitizers.h"

namespace nq::test {

// AddressSanitizer reserves terabytes of shadow memory up front: no limit near the program's size leaves room.
constexpr bool kUnderAddressSanitizer = kAddressSanitizer;

// This process's mapped address space in KiB (VmSize of /proc/self/status), or −1.
inline long address_space_kib() {
  long kib = -1;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
    std::fclose(f);
  }
  return kib;
}

// Limits this process's address space to what it maps now plus `extra_kib`; false when that cannot be done.
inline bool limit_address_space_to_current_plus(long extra_kib) {
  const long now = address_space_kib();
  rlimit r{};
  if (now <= 0 || getrlimit(RLIMIT_AS, &r) != 0) return false;
  r.rlim_cur = static_cast<rlim_t>(now + extra_kib) * 1024;
  return setrlimit(RLIMIT_AS, &r) == 0;
}

}  // namespace nq::test
