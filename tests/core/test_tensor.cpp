// Tensor storage semantics, TensorSet rules, atomic output files and backend resolution.
#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/error.h"
#include "netquant/tensor.h"

namespace nq {
namespace {

TEST(Tensor, ConversionsMatchFloat64Oracle) {
  std::mt19937 rng(3);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> v(37);
  for (auto& x : v) x = nd(rng);
  Tensor t = Tensor::from_f64("w", {37}, v);
  auto f = t.to_f32();
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(f[i], static_cast<float>(v[i]));
  Tensor h = t.converted(DType::kF16);
  EXPECT_EQ(h.dtype(), DType::kF16);
  auto hf = h.to_f64();
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(hf[i], v[i], std::fabs(v[i]) * 1e-3 + 1e-7);
}

TEST(Tensor, BoolBytesOtherThanOneAreTrue) {
  // Writers other than numpy can store any non-zero byte for true; numpy's oracle: astype(float) gives 1 for each.
  Tensor t("mask", DType::kBool, {5});
  const uint8_t bytes[5] = {0, 1, 2, 0x80, 0xff};
  std::memcpy(t.mutable_data(), bytes, 5);
  EXPECT_EQ(t.to_f32(), (std::vector<float>{0, 1, 1, 1, 1}));
  EXPECT_EQ(t.to_f64(), (std::vector<double>{0, 1, 1, 1, 1}));
  EXPECT_EQ(std::memcmp(t.data(), bytes, 5), 0);  // the bytes themselves pass through untouched
}

TEST(Tensor, ViewsAreCopiedOnWrite) {
  auto buf = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3});
  Tensor t = Tensor::view("v", DType::kF32, {3}, buf->data(), buf);
  t.mutable_data_as<float>()[0] = 9;
  EXPECT_EQ((*buf)[0], 1.f);
  EXPECT_EQ(t.data_as<float>()[0], 9.f);
  Tensor copy = t;
  copy.mutable_data_as<float>()[1] = 7;
  EXPECT_EQ(t.data_as<float>()[1], 2.f);
}

TEST(Tensor, ShapeOverflowAndMismatchAreErrors) {
  EXPECT_THROW(shape_numel({int64_t(1) << 40, int64_t(1) << 40}), Error);
  EXPECT_THROW(shape_numel({3, -1}), Error);
  EXPECT_THROW(Tensor::from_f32("x", {2, 2}, {1, 2, 3}), Error);
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({4, 0}), 0);
}

TEST(TensorSet, RejectsDuplicatesAndNamesMissing) {
  TensorSet s;
  s.add(Tensor("a", DType::kF32, {2}));
  EXPECT_THROW(s.add(Tensor("a", DType::kF32, {2})), Error);
  try {
    s.at("fc1.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc1.weight"), std::string::npos);
  }
}

TEST(AtomicFile, UncommittedLeavesNothingAndCommitReplaces) {
  char dir[] = "/tmp/nq_atomic_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/out.bin";
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    f.write("partial");
  }  // destroyed without commit
  EXPECT_EQ(read_file(path), "old");
  {
    AtomicFile f(path);
    f.write("new");
    f.commit();
  }
  EXPECT_EQ(read_file(path), "new");
  EXPECT_THROW(check_output_not_input(path, {path}), Error);
  const std::string link = std::string(dir) + "/alias.bin";
  ASSERT_EQ(symlink(path.c_str(), link.c_str()), 0);
  EXPECT_THROW(check_output_not_input(link, {path}), Error);
  EXPECT_NO_THROW(check_output_not_input(std::string(dir) + "/fresh.bin", {path}));
  std::remove(link.c_str());
  std::remove(path.c_str());
  rmdir(dir);
}

// write_at overwrites bytes already written, anywhere, and later writes still append: checked against the same
// edits made to a std::string, over random pieces of awkward sizes.
TEST(AtomicFile, WriteAtPatchesWrittenBytesAndAppendsAfter) {
  char dir[] = "/tmp/nq_atomic_at_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/out.bin";
  std::mt19937 rng(5);
  std::string expect;
  {
    AtomicFile f(path);
    for (int step = 0; step < 200; ++step) {
      std::string piece(std::uniform_int_distribution<size_t>(1, 9000)(rng), '\0');
      for (char& c : piece) c = static_cast<char>(rng());
      if (expect.size() >= piece.size() && rng() % 2) {
        const size_t at = std::uniform_int_distribution<size_t>(0, expect.size() - piece.size())(rng);
        f.write_at(at, piece.data(), piece.size());
        expect.replace(at, piece.size(), piece);
      } else {
        f.write(piece);
        expect += piece;
      }
      ASSERT_EQ(f.bytes_written(), expect.size());
    }
    f.commit();
  }
  EXPECT_TRUE(read_file(path) == expect);
  std::remove(path.c_str());
  rmdir(dir);
}

// A process ended by SIGTERM / SIGINT / SIGHUP while writing leaves no temporary and keeps the old file. The
// writer runs in a child (fork) that signals itself mid-write; the parent checks the directory afterwards.
TEST(AtomicFile, TerminatingSignalRemovesTemporaries) {
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
    char dir[] = "/tmp/nq_atomic_sig_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/out.bin";
    write_file_atomic(path, "old");
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      AtomicFile a(path), b(std::string(dir) + "/second.bin");
      a.write("partial");
      b.write("partial");
      raise(sig);
      _exit(0);  // not reached: the signal ends the process
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "signal " << sig << ", status " << status;
    std::vector<std::string> left;
    DIR* d = opendir(dir);
    ASSERT_NE(d, nullptr);
    while (const dirent* e = readdir(d))
      if (e->d_name[0] != '.' || (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0))
        left.push_back(e->d_name);
    closedir(d);
    EXPECT_EQ(left, std::vector<std::string>{"out.bin"}) << "signal " << sig;
    EXPECT_EQ(read_file(path), "old");
    std::remove(path.c_str());
    rmdir(dir);
  }
}

TEST(Backend, ResolvesWithoutCrashing) {
  EXPECT_EQ(resolve_backend(Backend::kCpu), Backend::kCpu);
  const Backend a = resolve_backend(Backend::kAuto);
  EXPECT_EQ(a, cuda_available() ? Backend::kCuda : Backend::kCpu);
  if (!cuda_available()) {
    try {
      resolve_backend(Backend::kCuda);
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
      EXPECT_EQ(exit_status_for(e.code()), 3);
    }
  }
  EXPECT_THROW(parse_backend("tpu"), Error);
}

}  // namespace
}  // namespace nq
