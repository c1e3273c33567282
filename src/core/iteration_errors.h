// Internal: exceptions out of OpenMP loops. An exception may not leave an OpenMP region (the runtime calls
// std::terminate), so each iteration's is kept and, after the region, the one of the lowest iteration is
// rethrown: the caller sees the same error whatever the thread count.
#pragma once

#include <cstddef>
#include <exception>
#include <vector>

namespace nq {

class IterationErrors {
 public:
  explicit IterationErrors(size_t iterations) : errors_(iterations) {}
  // Runs iteration i's work, keeping what it throws.
  template <class Work>
  void run(size_t i, Work&& work) {
    try {
      work();
    } catch (...) {
      errors_[i] = std::current_exception();
    }
  }
  void rethrow_first() const {
    for (const std::exception_ptr& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  std::vector<std::exception_ptr> errors_;
};

}  // namespace nq
