// How a run ends on an error (core/error_exit.h): each kind of exception's `error:` line and exit status, against
// the README's table; an exception thrown inside an OpenMP region, which no catch can reach, ends the run the same
// way through the terminate handler, with the open outputs' temporaries removed; and a thread team the system
// cannot start is an out-of-memory error, not the OpenMP runtime's exit.
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "address_space_limit.h"
#include "scratch_dir.h"
#include "core/error_exit.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/error.h"

namespace nq {
namespace {

template <class Throw>
std::pair<int, std::string> reported(Throw&& throw_it) {
  std::ostringstream err;
  int status = -1;
  try {
    throw_it();
  } catch (...) {
    status = report_error(std::current_exception(), err);
  }
  return {status, err.str()};
}

TEST(ReportError, EachKindHasItsLineAndStatus) {
  EXPECT_EQ(reported([] { throw Error(ErrorCode::kBadFile, "m.safetensors: bad header"); }),
            std::make_pair(2, std::string("error: m.safetensors: bad header\n")));
  EXPECT_EQ(reported([] { throw Error(ErrorCode::kUnavailable, "no GPU"); }),
            std::make_pair(3, std::string("error: no GPU\n")));
  EXPECT_EQ(reported([] { throw Error(ErrorCode::kOutOfMemory, "tensor 'w': out of memory"); }).first, 3);
  EXPECT_EQ(reported([] { throw Error(ErrorCode::kInternal, "broken"); }).first, 1);
  const auto oom = reported([] { throw std::bad_alloc(); });
  EXPECT_EQ(oom.first, 3);
  EXPECT_EQ(oom.second.rfind("error: out of memory (", 0), 0u) << oom.second;
  EXPECT_EQ(reported([] { throw std::logic_error("vector::at"); }),
            std::make_pair(1, std::string("error: internal error (please report): vector::at\n")));
  EXPECT_EQ(reported([] { throw 42; }),
            std::make_pair(1, std::string("error: internal error (please report): an exception of unknown type\n")));
}

// The child: the handler installed, an output half written, then `what` thrown on one thread of an OpenMP team.
template <class Exception>
[[noreturn]] void throw_inside_a_parallel_region(const std::string& dir, const Exception& what) {
  std::set_terminate(exit_on_uncaught_exception);
  AtomicFile out(dir + "/out.bin");
  out.write("partial");
#pragma omp parallel num_threads(2)
  {
    if (omp_get_thread_num() == omp_get_num_threads() - 1) throw what;
  }
  std::_Exit(99);  // not reached: the throw ends the process
}

TEST(ExitOnUncaughtException, AnExceptionOutOfAParallelRegionEndsTheRunAsMainWould) {
  static const char* const kDirVariable = "NQ_TEST_UNCAUGHT_DIR";
  const std::string dir = test::death_test_scratch_dir(kDirVariable, "nq_uncaught");
  ASSERT_FALSE(dir.empty());
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(throw_inside_a_parallel_region(dir, std::bad_alloc()), ::testing::ExitedWithCode(3),
              "error: out of memory \\(an allocation was refused");
  EXPECT_EQ(test::entries_of(dir), std::vector<std::string>{}) << "the output's temporary was left";
  EXPECT_EXIT(throw_inside_a_parallel_region(dir, Error(ErrorCode::kBadFile, "w.npy: truncated")),
              ::testing::ExitedWithCode(2), "error: w.npy: truncated");
  EXPECT_EQ(test::entries_of(dir), std::vector<std::string>{}) << "the output's temporary was left";
  unsetenv(kDirVariable);
  rmdir(dir.c_str());
}

// The child: its address space limited to 1 MiB over what it maps, so no thread stack fits; exits 0 when
// set_num_threads refuses with kOutOfMemory, naming the threads, and leaves the thread count as it was.
[[noreturn]] void start_a_team_without_room() {
  const int before = omp_get_max_threads();
  if (!test::limit_address_space_to_current_plus(1024)) std::_Exit(3);
  try {
    set_num_threads(4);
    std::fprintf(stderr, "a team of 4 started under the limit\n");
    std::_Exit(1);
  } catch (const Error& e) {
    const bool named = std::string(e.what()).find("cannot start 4 threads") != std::string::npos;
    if (e.code() == ErrorCode::kOutOfMemory && named && omp_get_max_threads() == before) std::_Exit(0);
    std::fprintf(stderr, "%s: %s (threads %d, before %d)\n", error_code_name(e.code()), e.what(),
                 omp_get_max_threads(), before);
    std::_Exit(2);
  }
}

TEST(SetNumThreads, ATeamTheSystemCannotStartIsAnOutOfMemoryError) {
  if (test::kUnderAddressSanitizer) GTEST_SKIP() << "AddressSanitizer: no address-space limit leaves room";
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process, whose OpenMP runtime has started no team
  EXPECT_EXIT(start_a_team_without_room(), ::testing::ExitedWithCode(0), "");
  // With room, the team starts and the later regions have it.
  const int saved = omp_get_max_threads();
  set_num_threads(3);
  int seen = 0;
#pragma omp parallel
  {
#pragma omp single
    seen = omp_get_num_threads();
  }
  EXPECT_EQ(seen, 3);
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace nq
