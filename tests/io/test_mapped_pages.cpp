// Giving back pages of an input mapping (core/mapped_pages.h): the bytes read afterwards are still the file's
// (oracle: the file read with read()), the mapping's resident set falls (oracle: /proc/self/smaps), and memory
// outside a registered mapping is never touched (a heap buffer keeps its contents).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/mapped_pages.h"
#include "io/mapped_file.h"
#include "netquant/atomic_file.h"
#include "proc_smaps.h"

namespace nq {
namespace {

// Resident kB of the mapping that starts at `begin`, from /proc/self/smaps (-1 when not found).
long resident_kb(const void* begin) {
  const test::SmapsEntry m = test::smaps_entry_holding(begin);
  return m.found && m.begin == reinterpret_cast<uintptr_t>(begin) ? m.rss_kb : -1;
}

TEST(MappedPages, ReleasedPagesReadBackAsTheFileAndLeaveTheResidentSet) {
  char dir[] = "/tmp/nq_mapped_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/data.bin";
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::string bytes(64 * page + 123, '\0');  // an odd tail: the last page is partial
  std::mt19937 rng(11);
  for (char& c : bytes) c = static_cast<char>(rng());
  write_file_atomic(path, bytes);
  {
    const auto map = io::MappedFile::open(path);
    const uint8_t* p = map->data();
    uint64_t sum = 0;
    for (size_t i = 0; i < map->size(); i += 64) sum += p[i];  // touch every page
    const long before = resident_kb(p);
    ASSERT_GE(before, static_cast<long>(60 * page / 1024)) << "the touched mapping is not resident";
    // Ranges of awkward sizes and offsets, then all of it.
    for (int round = 0; round < 50; ++round) {
      const size_t at = std::uniform_int_distribution<size_t>(0, bytes.size() - 1)(rng);
      const size_t len = std::uniform_int_distribution<size_t>(1, bytes.size() - at)(rng);
      release_mapped_pages(p + at, len);
      for (size_t i = at; i < at + len; i += 97) ASSERT_EQ(static_cast<char>(p[i]), bytes[i]) << "byte " << i;
    }
    release_mapped_pages(p, map->size());
    const long after = resident_kb(p);
    EXPECT_LE(after, 4 * static_cast<long>(page / 1024)) << "from " << before << " kB";
    EXPECT_TRUE(std::string(reinterpret_cast<const char*>(p), map->size()) == bytes);
    EXPECT_GT(sum, 0u);
  }
  std::remove(path.c_str());
  rmdir(dir);
}

TEST(MappedPages, OtherMemoryIsLeftAlone) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<uint8_t> heap(16 * page);
  for (size_t i = 0; i < heap.size(); ++i) heap[i] = static_cast<uint8_t>(i * 7 + 1);
  const std::vector<uint8_t> copy = heap;
  release_mapped_pages(heap.data(), heap.size());  // not a registered mapping: nothing happens
  EXPECT_TRUE(heap == copy);
  // A registered range that the request overruns is left alone too.
  char dir[] = "/tmp/nq_mapped2_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/small.bin";
  write_file_atomic(path, std::string(3 * page, 'x'));
  {
    const auto map = io::MappedFile::open(path);
    uint64_t sum = 0;
    for (size_t i = 0; i < map->size(); i += 64) sum += map->data()[i];
    const long before = resident_kb(map->data());
    release_mapped_pages(map->data() + page, 3 * page);  // runs past the mapping's end
    EXPECT_EQ(resident_kb(map->data()), before);
    EXPECT_EQ(sum, 'x' * (3 * page / 64));
  }
  std::remove(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace nq
