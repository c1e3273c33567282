// Internal: how much memory this process can still take, so that work which cannot fit is refused up front with
// a clear error instead of the process being killed by the kernel's OOM killer half-way through.
#pragma once

#include <cstdint>

namespace nq {

// Bytes this process may still allocate: the smaller of the system's MemAvailable (/proc/meminfo) and the room
// left under a cgroup v2 memory limit (containers: memory.max − memory.current, the page cache counted as free,
// as MemAvailable counts it); 0 when neither can be read, and callers then skip their checks.
uint64_t available_memory_bytes();

}  // namespace nq
