// for_each_in_ordered_batches against the serial loop it stands for: items of random weights (some alone in their
// batch, some batched), make and take throwing at random items, one to three threads. The oracle is the plain loop
// `for i: take(i, make(i))`: the same items must be taken, in order, with their results, and the same error raised.
#include <gtest/gtest.h>
#include <omp.h>

#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ordered_batches.h"

namespace {

struct Outcome {
  std::vector<std::pair<size_t, std::string>> taken;
  std::string error;
};

Outcome serial(size_t n, size_t make_fails, size_t take_fails) {
  Outcome o;
  try {
    for (size_t i = 0; i < n; ++i) {
      if (i == make_fails) throw std::runtime_error("make " + std::to_string(i));
      const std::string r = "item" + std::to_string(i);
      if (i == take_fails) throw std::runtime_error("take " + std::to_string(i));
      o.taken.emplace_back(i, r);
    }
  } catch (const std::exception& e) {
    o.error = e.what();
  }
  return o;
}

}  // namespace

TEST(OrderedBatches, TakesWhatTheSerialLoopTakesAndRaisesItsError) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = rng() % 40;
    std::vector<uint64_t> weights(n);
    for (auto& w : weights) w = rng() % 3 == 0 ? (uint64_t{1} << 22) + rng() % 100 : rng() % 5000;
    const uint64_t limit = 1000 + rng() % 20000;
    const size_t make_fails = rng() % 3 == 0 ? rng() % (n + 1) : SIZE_MAX;
    const size_t take_fails = rng() % 3 == 0 ? rng() % (n + 1) : SIZE_MAX;
    const int threads = 1 + trial % 3;
    const Outcome want = serial(n, make_fails, take_fails);
    Outcome got;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    try {
      nq::for_each_in_ordered_batches<std::string>(
          n, limit, [&](size_t i) { return weights[i]; },
          [&](size_t i) {
            if (i == make_fails) throw std::runtime_error("make " + std::to_string(i));
            return "item" + std::to_string(i);
          },
          [&](size_t i, std::string& r) {
            if (i == take_fails) throw std::runtime_error("take " + std::to_string(i));
            got.taken.emplace_back(i, r);
          });
    } catch (const std::exception& e) {
      got.error = e.what();
    }
    omp_set_num_threads(saved);
    ASSERT_EQ(got.error, want.error) << "trial " << trial;
    ASSERT_EQ(got.taken, want.taken) << "trial " << trial;
  }
}
