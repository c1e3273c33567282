// Backend selection: `auto` takes CUDA when a device answers, else the CPU, silently.
#include "netquant/backend.h"

#include <omp.h>

#include <algorithm>
#include <system_error>
#include <thread>
#include <vector>

#include "core/cuda_device.h"
#include "netquant/error.h"

namespace nq {

Backend parse_backend(const std::string& name) {
  if (name == "auto") return Backend::kAuto;
  if (name == "cpu") return Backend::kCpu;
  if (name == "cuda") return Backend::kCuda;
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown backend '" << name << "' (expected auto, cpu or cuda)");
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kCpu: return "cpu";
    case Backend::kCuda: return "cuda";
  }
  return "?";
}

bool cuda_available() {
  try {
    return cuda::device_count() > 0;
  } catch (...) {
    return false;
  }
}

std::string cuda_device_description() {
  try {
    return cuda::device_count() > 0 ? cuda::device_description(cuda::process_device()) : std::string();
  } catch (...) {
    return std::string();
  }
}

Backend resolve_backend(Backend requested) {
  switch (requested) {
    case Backend::kCpu: return Backend::kCpu;
    case Backend::kAuto: return cuda_available() ? Backend::kCuda : Backend::kCpu;
    case Backend::kCuda:
      NQ_CHECK(NQ_HAVE_CUDA, ErrorCode::kUnavailable,
               "backend 'cuda': this netquant was built without CUDA (rebuild with -DNQ_CUDA=ON)");
      NQ_CHECK(cuda_available(), ErrorCode::kUnavailable, "backend 'cuda': no CUDA device is available");
      return Backend::kCuda;
  }
  return Backend::kCpu;
}

namespace {

// Starts an OpenMP team of `team` threads now, or throws Error kOutOfMemory naming why they cannot be had.
void start_thread_team(int team) {
  if (team <= 1) return;
  // libgomp ends the process (exit 1, "Thread creation failed") when it cannot create a team's thread: no room
  // for its stack under `ulimit -v`, or a thread limit. The same threads are tried first as std::threads (same
  // default stack), which throw instead, so the refusal is an error naming the cause. The team is then started
  // here, and the OpenMP runtime keeps it for every later region of this size or less.
  std::vector<std::thread> probe;
  probe.reserve(static_cast<size_t>(team - 1));
  try {
    for (int i = 1; i < team; ++i) probe.emplace_back([] {});
  } catch (const std::system_error& e) {
    for (std::thread& t : probe) t.join();
    NQ_FAIL(ErrorCode::kOutOfMemory, "cannot start " << team << " threads (" << e.what()
                                                     << "): no room for their stacks, or a limit on threads; "
                                                        "use fewer --threads");
  }
  for (std::thread& t : probe) t.join();
#pragma omp parallel num_threads(team)
  {
  }
}

}  // namespace

void set_num_threads(int threads) {
  NQ_CHECK(threads >= 0, ErrorCode::kInvalidArgument, "--threads must be >= 0, got " << threads);
  // Oversubscription beyond a few threads a core buys nothing here, and tens of thousands make the OpenMP runtime
  // fail to create them (or crash): refuse before any parallel region runs.
  const int procs = omp_get_num_procs();
  const int most = std::max(256, 4 * procs);
  NQ_CHECK(threads <= most, ErrorCode::kInvalidArgument,
           "--threads " << threads << " is too many: this machine has " << procs << " cores (at most " << most
                        << " threads; 0 = one per core)");
  const int team = threads == 0 ? procs : threads;
  start_thread_team(team);  // first: a refused team leaves the count as it was, which the runtime can still start
  omp_set_num_threads(team);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace nq
