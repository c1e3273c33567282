// Internal: exceptions out of OpenMP loops. An exception may not leave an OpenMP region (the runtime calls
// std::terminate), so each iteration's is caught and, after the region, the one of the lowest iteration is
// rethrown: the caller sees the same error whatever the thread count. Only that one is kept (O(1) memory: loops
// over millions of rows or groups use this).
#pragma once

#include <cstddef>
#include <exception>
#include <limits>
#include <mutex>

namespace nq {

class IterationErrors {
 public:
  // Runs iteration i's work, keeping what it throws if no lower iteration has thrown.
  template <class Work>
  void run(size_t i, Work&& work) {
    try {
      work();
    } catch (...) {
      const std::lock_guard<std::mutex> hold(mutex_);
      if (i < first_index_) {
        first_index_ = i;
        first_ = std::current_exception();
      }
    }
  }
  void rethrow_first() const {
    if (first_) std::rethrow_exception(first_);
  }
  // The lowest iteration that threw (SIZE_MAX when none did).
  size_t first_index() const { return first_ ? first_index_ : std::numeric_limits<size_t>::max(); }

 private:
  std::mutex mutex_;
  size_t first_index_ = std::numeric_limits<size_t>::max();
  std::exception_ptr first_;
};

}  // namespace nq
