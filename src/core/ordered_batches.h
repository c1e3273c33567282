// Internal: items made on the threads and consumed in order, a bounded batch at a time. Coding a model's tensors
// (the .nq writer) and decoding them (decompress) both want every core busy, and their output written while the
// next tensors are made, while the output stays in item order and only two batches' results are held at once.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "core/iteration_errors.h"

namespace nq {

// Items [0, n) in batches of consecutive items whose weight(i) sum to at most `limit` (or one item): make(i)
// returns item i's Result, run on the OpenMP threads for a batch's items, then take(i, result) consumes them in
// item order. A batch is taken on a helper thread while the next one is made, so writing the output (the take of
// both callers) overlaps the work (or, when no thread can be started, on the calling thread before the next one
// is made); at most two batches' results are held. What is taken and what is thrown are the
// serial loop's `for i: take(i, make(i))`: an exception from make is rethrown for the batch's lowest failing item,
// after every item before it is taken; one from take, after the items before it (the batch being made meanwhile
// is dropped).
template <class Result, class Weight, class Make, class Take>
void for_each_in_ordered_batches(size_t n, uint64_t limit, Weight&& weight, Make&& make, Take&& take) {
  // An item of a thread's share of the limit or more (or of 2^22, whichever is less) is a batch of its own, made
  // outside any parallel region so that its own loops (huffman_parallel.h, dequantization) take the threads: a few
  // large tensors in one batch would leave most of a many-core machine idle.
  const uint64_t share = std::min<uint64_t>(limit / static_cast<uint64_t>(std::max(1, omp_get_max_threads())),
                                            uint64_t{1} << 22);
  std::thread taker;          // takes the previous batch
  std::exception_ptr failed;  // what its take threw
  auto wait_for_taker = [&] {
    if (taker.joinable()) taker.join();
    if (failed) std::rethrow_exception(failed);
  };
  try {
    for (size_t first = 0; first < n;) {
      size_t last = first;
      uint64_t held = 0;
      if (weight(first) >= share)
        ++last;
      else
        while (last < n && weight(last) < share && (last == first || held + weight(last) <= limit)) held += weight(last++);
      auto results = std::make_shared<std::vector<Result>>(last - first);
      IterationErrors errors;
#pragma omp parallel for schedule(dynamic) if (last - first > 1)
      for (int64_t b = 0; b < static_cast<int64_t>(last - first); ++b)
        errors.run(static_cast<size_t>(b), [&] { (*results)[static_cast<size_t>(b)] = make(first + static_cast<size_t>(b)); });
      wait_for_taker();
      // Up to the lowest item whose make threw, the items are taken as the serial loop would, then its error.
      const size_t failed_at = errors.first_index();  // the batch's own numbering; SIZE_MAX when none failed
      const size_t stop = failed_at < last - first ? first + failed_at : last;
      auto take_batch = [&take, &failed, results, first, stop] {
        try {
          for (size_t i = first; i < stop; ++i) {
            take(i, (*results)[i - first]);
            (*results)[i - first] = Result();  // freed as soon as it is consumed
          }
        } catch (...) {
          failed = std::current_exception();
        }
      };
      if (stop < last) {
        take_batch();
        wait_for_taker();
        errors.rethrow_first();
      }
      // A helper thread that the system refuses (EAGAIN: no room for its stack under an address-space limit, or
      // a thread limit reached) only costs the overlap: the batch is taken here instead.
      try {
        taker = std::thread(take_batch);
      } catch (const std::system_error&) {
        take_batch();
      }
      first = last;
    }
    wait_for_taker();
  } catch (...) {
    if (taker.joinable()) taker.join();  // never leave the helper running past the caller's state
    throw;
  }
}

}  // namespace nq
