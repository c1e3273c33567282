// Compute backends (CPU / CUDA) and how `auto` resolves; thread count for the CPU engine.
#pragma once

#include <string>

namespace nq {

enum class Backend { kAuto, kCpu, kCuda };

Backend parse_backend(const std::string& name);  // "auto" | "cpu" | "cuda"; throws kInvalidArgument
const char* backend_name(Backend backend);

// True when this build has CUDA and a device answers. Never throws, never crashes without a driver.
bool cuda_available();
// The device this process uses (the one an MPI rank chose, else device 0), e.g.
// "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)"; "" when none.
std::string cuda_device_description();

// auto -> cuda when available, else cpu; cuda without a device -> Error kUnavailable (exit 3).
Backend resolve_backend(Backend requested);

// CPU threads used by netquant's parallel loops (OpenMP). 0 = all hardware threads. The threads are started
// here: a count the system cannot start is Error kOutOfMemory naming why (the OpenMP runtime itself would end the
// process when a later region could not create them).
void set_num_threads(int threads);
int num_threads();

}  // namespace nq
