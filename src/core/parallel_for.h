// Internal: a loop over [0, n) on the OpenMP threads, or inline when it is short. Rows and groups are solved
// inside the model driver's parallel loop, each through the same code as a whole tensor; entering an OpenMP
// region there, even one whose if-clause is false, costs team set-up and futex calls per row, which was a visible
// share of short groups' time. Below serial_max no OpenMP construct is entered at all.
#pragma once

#include <cstdint>

namespace nq {

// Loops over up to this many values (a row, a group, a small tensor) run inline on the calling thread.
constexpr int64_t kInlineLoopMax = 65536;

template <class Body>
void parallel_for(int64_t n, int64_t serial_max, Body&& body) {
  if (n <= serial_max) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

// The chunk of elementwise loops over parameters (optimizer steps, gradient sums): 64 KB of floats, enough work
// per task to hide the scheduling, few enough chunks to balance LeNet-sized parameter vectors over the threads.
constexpr int64_t kElementwiseChunk = 16384;

// body(i0, i1) over [0, n) in chunks of `chunk` values, on the OpenMP threads when there is more than one chunk.
// The chunks are fixed, so elementwise work and per-chunk sums come out the same for any thread count.
template <class Body>
void parallel_for_chunks(int64_t n, int64_t chunk, Body&& body) {
  parallel_for((n + chunk - 1) / chunk, 1, [&](int64_t c) {
    const int64_t i0 = c * chunk;
    body(i0, n - i0 < chunk ? n : i0 + chunk);
  });
}

// Σ body(i) over [0, n) with the same inline rule (an integer sum: exact in any order).
template <class Body>
int64_t parallel_sum(int64_t n, int64_t serial_max, Body&& body) {
  int64_t total = 0;
  if (n <= serial_max) {
    for (int64_t i = 0; i < n; ++i) total += body(i);
    return total;
  }
#pragma omp parallel for schedule(static) reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += body(i);
  return total;
}

}  // namespace nq
