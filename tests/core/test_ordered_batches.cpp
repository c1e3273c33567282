// for_each_in_ordered_batches against the serial loop it stands for: items of random weights (some alone in their
// batch, some batched), make and take throwing at random items, one to three threads. The oracle is the plain loop
// `for i: take(i, make(i))`: the same items must be taken, in order, with their results, and the same error raised.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "address_space_limit.h"
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

Outcome batched(size_t n, const std::vector<uint64_t>& weights, uint64_t limit, size_t make_fails,
                size_t take_fails) {
  Outcome got;
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
  return got;
}

struct Trial {
  size_t n;
  std::vector<uint64_t> weights;
  uint64_t limit;
  size_t make_fails, take_fails;
};

Trial random_trial(std::mt19937_64& rng) {
  Trial t;
  t.n = rng() % 40;
  t.weights.resize(t.n);
  for (auto& w : t.weights) w = rng() % 3 == 0 ? (uint64_t{1} << 22) + rng() % 100 : rng() % 5000;
  t.limit = 1000 + rng() % 20000;
  t.make_fails = rng() % 3 == 0 ? rng() % (t.n + 1) : SIZE_MAX;
  t.take_fails = rng() % 3 == 0 ? rng() % (t.n + 1) : SIZE_MAX;
  return t;
}

// The child of TakesOnTheCallingThreadWhenNoThreadCanStart: lowers its address-space limit to 1 MiB over what it
// maps now, so no thread stack fits, checks that a thread is indeed refused, then runs the trials on one OpenMP
// thread (a team's threads would need stacks too). Exits 0 when every trial matched the serial loop.
[[noreturn]] void trials_without_room_for_threads() {
  omp_set_num_threads(1);
  if (!nq::test::limit_address_space_to_current_plus(1024)) {
    std::fprintf(stderr, "could not limit the address space\n");
    std::_Exit(3);
  }
  try {
    std::thread t([] {});
    t.join();
    std::fprintf(stderr, "a thread started under the limit: the test cannot check its fallback\n");
    std::_Exit(2);
  } catch (const std::system_error&) {
  }
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 100; ++trial) {
    const Trial t = random_trial(rng);
    const Outcome want = serial(t.n, t.make_fails, t.take_fails);
    const Outcome got = batched(t.n, t.weights, t.limit, t.make_fails, t.take_fails);
    if (got.error != want.error || got.taken != want.taken) {
      std::fprintf(stderr, "trial %d: got %zu items and error '%s', want %zu and '%s'\n", trial, got.taken.size(),
                   got.error.c_str(), want.taken.size(), want.error.c_str());
      std::_Exit(1);
    }
  }
  std::_Exit(0);
}

}  // namespace

TEST(OrderedBatches, TakesWhatTheSerialLoopTakesAndRaisesItsError) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const Trial t = random_trial(rng);
    const Outcome want = serial(t.n, t.make_fails, t.take_fails);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1 + trial % 3);
    const Outcome got = batched(t.n, t.weights, t.limit, t.make_fails, t.take_fails);
    omp_set_num_threads(saved);
    ASSERT_EQ(got.error, want.error) << "trial " << trial;
    ASSERT_EQ(got.taken, want.taken) << "trial " << trial;
  }
}

// When the system refuses the helper thread (std::thread throws std::system_error: no room for its stack under
// `ulimit -v`, or a thread limit), the batches are taken on the calling thread, with the serial loop's outcome.
TEST(OrderedBatches, TakesOnTheCallingThreadWhenNoThreadCanStart) {
  if (nq::test::kUnderAddressSanitizer) GTEST_SKIP() << "AddressSanitizer: no address-space limit leaves room";
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: the limit and one OpenMP thread are its own
  EXPECT_EXIT(trials_without_room_for_threads(), ::testing::ExitedWithCode(0), "");
}
