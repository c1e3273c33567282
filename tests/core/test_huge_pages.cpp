// Huge-page arrays and advice (core/huge_pages.h) against the kernel's own account of the mapping (proc_smaps.h: its
// extent and its VmFlags, where "hg" is MADV_HUGEPAGE) and against std::vector as the oracle of contents: every
// byte written is read back, across the size threshold, growth, copies and moves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/huge_pages.h"
#include "core/scratch_vector.h"
#include "proc_smaps.h"

namespace nq {
namespace {

constexpr size_t kTwoMiB = size_t{2} << 20;

bool has_flag(const std::string& flags, const std::string& flag) {
  std::istringstream in(flags);
  std::string f;
  while (in >> f)
    if (f == flag) return true;
  return false;
}

// Whether memory advised for huge pages shows the advice: the kernel has them on, and NQ_HUGE_PAGES=0 (the
// documented switch) does not turn the advice off.
bool advice_expected() {
  const char* env = std::getenv("NQ_HUGE_PAGES");
  if (env && std::string(env) == "0") return false;
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  return static_cast<bool>(std::getline(f, mode)) && mode.find("[never]") == std::string::npos;
}

TEST(HugePages, AllocationsAreAlignedWholeAndAdvised) {
#ifndef __linux__
  GTEST_SKIP() << "huge pages are a Linux feature here";
#else
  std::mt19937_64 rng(7);
  for (size_t bytes : {kHugePagesFrom, kHugePagesFrom + 1, 3 * kTwoMiB + 4097, (size_t{33} << 20) - 3}) {
    auto* p = static_cast<unsigned char*>(allocate_huge(bytes));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kTwoMiB, 0u) << bytes;
    const test::SmapsEntry m = test::smaps_entry_holding(p);
    ASSERT_TRUE(m.found) << bytes;
    // A mapping of its own, exactly the size rounded up to whole 2 MiB pages (the slack was given back).
    EXPECT_EQ(m.begin, reinterpret_cast<uintptr_t>(p)) << bytes;
    EXPECT_EQ(m.end - m.begin, (bytes + kTwoMiB - 1) / kTwoMiB * kTwoMiB) << bytes;
    EXPECT_EQ(has_flag(m.flags, "hg"), advice_expected()) << bytes << ": VmFlags" << m.flags;
    // Fresh memory reads as zero (the contract Tensor's zeroed buffers rely on).
    EXPECT_EQ(std::count(p, p + bytes, 0), static_cast<std::ptrdiff_t>(bytes)) << bytes;
    std::vector<unsigned char> pattern(bytes);
    for (auto& b : pattern) b = static_cast<unsigned char>(rng());
    std::copy(pattern.begin(), pattern.end(), p);
    EXPECT_TRUE(std::equal(pattern.begin(), pattern.end(), p)) << bytes;
    free_huge(p, bytes);
    const test::SmapsEntry after = test::smaps_entry_holding(p);
    EXPECT_FALSE(after.found && after.begin == m.begin && after.end == m.end) << bytes << ": still mapped";
  }
#endif
}

TEST(HugePages, AnImpossibleSizeIsBadAlloc) {
  EXPECT_THROW(allocate_huge(std::numeric_limits<size_t>::max() - 5), std::bad_alloc);
  EXPECT_THROW(allocate_huge(std::numeric_limits<size_t>::max() / 2), std::bad_alloc);
}

TEST(HugePages, AssignAdvisedFillsAndAdvisesFreshStorage) {
#ifndef __linux__
  GTEST_SKIP() << "huge pages are a Linux feature here";
#else
  // Fresh storage: filled with the value throughout, and the whole 2 MiB pages inside it advised.
  std::vector<int32_t> v{1, 2, 3};
  const size_t n = (kHugePagesFrom / sizeof(int32_t)) * 3 + 1001;
  assign_advised(v, n, int32_t{-7});
  ASSERT_EQ(v.size(), n);
  EXPECT_EQ(std::count(v.begin(), v.end(), -7), static_cast<std::ptrdiff_t>(n));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(v.data());
  const uintptr_t first = (lo + kTwoMiB - 1) / kTwoMiB * kTwoMiB;  // the first whole 2 MiB page inside
  EXPECT_EQ(has_flag(test::smaps_entry_holding(reinterpret_cast<void*>(first)).flags, "hg"), advice_expected());
  // Storage it already has: filled in place (the same buffer), shorter or not.
  const int32_t* before = v.data();
  assign_advised(v, n / 2, int32_t{5});
  EXPECT_EQ(v.data(), before);
  ASSERT_EQ(v.size(), n / 2);
  EXPECT_EQ(std::count(v.begin(), v.end(), 5), static_cast<std::ptrdiff_t>(n / 2));
  // Below the threshold nothing is advised: a small vector's page keeps its flags.
  std::vector<int32_t> small;
  small.reserve(1000);
  const std::string flags = test::smaps_entry_holding(small.data()).flags;
  assign_advised(small, 1000, int32_t{1});
  EXPECT_EQ(test::smaps_entry_holding(small.data()).flags, flags);
  EXPECT_EQ(std::count(small.begin(), small.end(), 1), 1000);
#endif
}

TEST(HugePages, ScratchVectorHoldsItsContentsAcrossTheThreshold) {
  // Grown by push_back from empty across kHugePagesFrom (heap → huge mapping → larger mapping), copied, moved,
  // shrunk: every element against a std::vector built alongside.
  std::mt19937 rng(11);
  const size_t n = kHugePagesFrom / sizeof(float) * 2 + 12345;
  ScratchVector<float> s;
  std::vector<float> ref;
  for (size_t i = 0; i < n; ++i) {
    const float x = static_cast<float>(rng()) * 0x1p-32f;
    s.push_back(x);
    ref.push_back(x);
  }
  ASSERT_EQ(s.size(), ref.size());
  EXPECT_TRUE(std::equal(ref.begin(), ref.end(), s.begin()));
  ScratchVector<float> copy = s;
  EXPECT_TRUE(std::equal(ref.begin(), ref.end(), copy.begin()));
  ScratchVector<float> moved = std::move(copy);
  EXPECT_TRUE(std::equal(ref.begin(), ref.end(), moved.begin()));
  moved.resize(777);
  moved.shrink_to_fit();  // a huge mapping handed back for a heap block
  EXPECT_TRUE(std::equal(moved.begin(), moved.end(), ref.begin()));
  // An exact-size array of the threshold's size gets a 2 MiB-aligned mapping (Linux).
  ScratchVector<unsigned char> exact(kHugePagesFrom);
#ifdef __linux__
  if (kHugePageArrays) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(exact.data()) % kTwoMiB, 0u);
  }
#endif
  exact.back() = 3;
  EXPECT_EQ(exact.back(), 3);
}

}  // namespace
}  // namespace nq
