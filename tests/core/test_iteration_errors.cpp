// IterationErrors: what an OpenMP loop's iterations throw comes out after the region, and it is always the lowest
// iteration's error, whatever the thread count and the order the threads reach the throwing iterations.
#include <gtest/gtest.h>
#include <omp.h>

#include <stdexcept>
#include <string>

#include "core/iteration_errors.h"

namespace nq {
namespace {

TEST(IterationErrors, RethrowsTheLowestIterationsErrorForAnyThreadCount) {
  for (int threads : {1, 2, 3, 8}) {
    for (int trial = 0; trial < 20; ++trial) {
      IterationErrors errors;
      int ran = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : ran)
      for (int i = 0; i < 200; ++i)
        errors.run(static_cast<size_t>(i), [&] {
          ++ran;
          if (i == 170 || i == 37 || i == 38 || i == 120) throw std::runtime_error("iteration " + std::to_string(i));
        });
      EXPECT_EQ(ran, 200) << "every iteration runs: an error stops none of the others";
      try {
        errors.rethrow_first();
        ADD_FAILURE() << "nothing rethrown";
      } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "iteration 37") << threads << " threads";
      }
    }
  }
  IterationErrors none;
  none.run(0, [] {});
  EXPECT_NO_THROW(none.rethrow_first());
}

}  // namespace
}  // namespace nq
