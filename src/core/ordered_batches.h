// Internal: items made on the threads and consumed in order, a bounded batch at a time. Coding a model's tensors
// (the .nq writer) and decoding them (decompress) both want every core busy while the output stays in item order
// and only a batch's results are held at once.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/iteration_errors.h"

namespace nq {

// Items [0, n) in batches of consecutive items whose weight(i) sum to at most `limit` (or one item): make(i)
// returns item i's Result, run on the OpenMP threads for a batch's items, then take(i, result) consumes them in
// item order before the next batch is made. An exception from make is rethrown for the batch's lowest failing item,
// before any of that batch is taken, so the error is the one a serial loop would raise.
template <class Result, class Weight, class Make, class Take>
void for_each_in_ordered_batches(size_t n, uint64_t limit, Weight&& weight, Make&& make, Take&& take) {
  // An item of a thread's share of the limit or more (or of 2^22, whichever is less) is a batch of its own, made
  // outside any parallel region so that its own loops (huffman_parallel.h, dequantization) take the threads: a few
  // large tensors in one batch would leave most of a many-core machine idle.
  const uint64_t share = std::min<uint64_t>(limit / static_cast<uint64_t>(std::max(1, omp_get_max_threads())),
                                            uint64_t{1} << 22);
  for (size_t first = 0; first < n;) {
    size_t last = first;
    uint64_t held = 0;
    if (weight(first) >= share)
      ++last;
    else
      while (last < n && weight(last) < share && (last == first || held + weight(last) <= limit)) held += weight(last++);
    std::vector<Result> results(last - first);
    IterationErrors errors;
#pragma omp parallel for schedule(dynamic) if (last - first > 1)
    for (int64_t b = 0; b < static_cast<int64_t>(last - first); ++b)
      errors.run(static_cast<size_t>(b), [&] { results[static_cast<size_t>(b)] = make(first + static_cast<size_t>(b)); });
    errors.rethrow_first();
    for (size_t i = first; i < last; ++i) {
      take(i, results[i - first]);
      results[i - first] = Result();  // freed as soon as it is consumed
    }
    first = last;
  }
}

}  // namespace nq
