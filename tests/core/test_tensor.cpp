// Tensor storage semantics, TensorSet rules, atomic output files and backend resolution.
#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <omp.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "address_space_limit.h"
#include "scratch_dir.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/error.h"
#include "netquant/tensor.h"

namespace nq {
namespace {

// The names in a directory, "." and ".." left out (empty when it cannot be opened).
using test::entries_of;

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

// The ranged conversion (the quantizer converts big tensors in chunks on the threads) gives the slice of the whole
// conversion, and a range outside the tensor is an error naming it, never a read past its bytes.
TEST(Tensor, RangedConversionIsTheSliceAndChecksItsRange) {
  std::mt19937 rng(11);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> v(41);
  for (auto& x : v) x = nd(rng);
  const Tensor t = Tensor::from_f64("w", {41}, v).converted(DType::kF16);
  const std::vector<float> all = t.to_f32();
  for (const auto& [begin, end] : std::vector<std::pair<int64_t, int64_t>>{{0, 41}, {3, 17}, {40, 41}, {7, 7}}) {
    std::vector<float> part(static_cast<size_t>(end - begin) + 1, -7.0f);  // a sentinel after the range
    t.to_f32(begin, end, part.data());
    for (int64_t i = begin; i < end; ++i) EXPECT_EQ(part[static_cast<size_t>(i - begin)], all[static_cast<size_t>(i)]);
    EXPECT_EQ(part.back(), -7.0f) << "wrote past [" << begin << ", " << end << ")";
  }
  std::vector<float> out(64);
  for (const auto& [begin, end] : std::vector<std::pair<int64_t, int64_t>>{{-1, 2}, {5, 4}, {0, 42}, {41, 42}}) {
    try {
      t.to_f32(begin, end, out.data());
      ADD_FAILURE() << "[" << begin << ", " << end << ") accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("tensor 'w'"), std::string::npos) << e.what();
    }
  }
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

// Owned buffers on both sides of the huge-page threshold (core/huge_pages.h): a zeroed tensor reads as zero
// everywhere (the large one's fresh mapping is never written by the allocator), every element is writable, and a
// copy made on write is a separate buffer with the same values.
TEST(Tensor, OwnedBuffersOfAnySizeAreZeroedAndWritable) {
  for (int64_t n : {int64_t{3}, int64_t{1} << 20, (int64_t{1} << 20) + 1, int64_t{3} << 20}) {  // 4 MiB = 2^20 f32
    Tensor t("t", DType::kF32, {n});
    const float* r = t.data_as<float>();
    int64_t nonzero = 0;
    for (int64_t i = 0; i < n; ++i) nonzero += r[i] != 0.0f;
    EXPECT_EQ(nonzero, 0) << n;
    float* w = t.mutable_data_as<float>();
    for (int64_t i = 0; i < n; ++i) w[i] = static_cast<float>(i % 1001);
    Tensor copy = t;
    copy.mutable_data_as<float>()[n - 1] = -1;
    EXPECT_EQ(t.data_as<float>()[n - 1], static_cast<float>((n - 1) % 1001)) << n;
    Tensor u = Tensor::uninitialized("u", DType::kF64, {n});
    double* d = u.mutable_data_as<double>();
    d[0] = 1.5;
    d[n - 1] = 2.5;
    EXPECT_EQ(u.data_as<double>()[0] + u.data_as<double>()[n - 1], 4.0) << n;
  }
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

// An AtomicFile never committed as a scratch file: after flush its temporary (beside the target, hidden) holds what
// was written, for another reader; its end removes the temporary and never creates the target.
TEST(AtomicFile, FlushedTemporaryIsReadableScratchUntilItsEnd) {
  char dir[] = "/tmp/nq_atomic_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/plot.csv";
  std::string temp;
  {
    AtomicFile f(path);
    temp = f.temp_path();
    EXPECT_EQ(temp.rfind(std::string(dir) + "/.plot.csv.", 0), 0u) << temp;
    f.write("a,b\n1,2\n");
    f.flush();
    EXPECT_EQ(read_file(temp), "a,b\n1,2\n");
  }
  struct stat st {};
  EXPECT_NE(stat(temp.c_str(), &st), 0) << "the temporary outlived its AtomicFile";
  EXPECT_NE(stat(path.c_str(), &st), 0) << "an uncommitted file created its target";
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
    // Run under nohup (SIGHUP ignored) the library leaves that signal alone, as it must (the test below, on an
    // embedder's handler): there is nothing of ours to check for it then.
    struct sigaction inherited {};
    ASSERT_EQ(sigaction(sig, nullptr, &inherited), 0);
    if (inherited.sa_handler == SIG_IGN) {
      std::printf("[   NOTE   ] signal %d is ignored by the environment (nohup?): not checked\n", sig);
      continue;
    }
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
    EXPECT_EQ(entries_of(dir), std::vector<std::string>{"out.bin"}) << "signal " << sig;
    EXPECT_EQ(read_file(path), "old");
    std::remove(path.c_str());
    rmdir(dir);
  }
}

// The temporary is created beside the output (a rename is atomic only within one file system), hidden and named
// after it, and nothing is written to the working directory.
TEST(AtomicFile, TemporaryLivesBesideTheOutput) {
  char dir[] = "/tmp/nq_atomic_dir_XXXXXX", cwd[] = "/tmp/nq_atomic_cwd_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  ASSERT_NE(mkdtemp(cwd), nullptr);
  char saved[4096];
  ASSERT_NE(getcwd(saved, sizeof saved), nullptr);
  ASSERT_EQ(chdir(cwd), 0);
  {
    AtomicFile f(std::string(dir) + "/out.bin");
    f.write("partial");
    const auto beside = entries_of(dir);
    ASSERT_EQ(beside.size(), 1u);
    EXPECT_EQ(beside[0].rfind(".out.bin.tmp-", 0), 0u) << beside[0];
    EXPECT_TRUE(entries_of(cwd).empty());
  }
  EXPECT_TRUE(entries_of(dir).empty());
  ASSERT_EQ(chdir(saved), 0);
  rmdir(dir);
  rmdir(cwd);
}

// A program that embeds netquant and handles SIGTERM itself keeps its handler: the library installs its clean-up
// only where the disposition is still the default. The writer runs as a "threadsafe" death test, a fresh run of
// this binary, because the library installs its handlers once per process and earlier tests here already did.
// read_file returns every byte, for sizes around its 64 KiB read blocks (random bytes, zeros among them).
TEST(ReadFile, ReadsEveryByteOfAnySize) {
  char made[] = "/tmp/nq_read_file_XXXXXX";
  const int fd = mkstemp(made);
  ASSERT_GE(fd, 0);
  close(fd);
  std::mt19937_64 rng(17);
  for (size_t n : {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{65537}, size_t{3 * 65536 + 7}}) {
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() % 4 == 0 ? 0 : rng());
    std::FILE* f = std::fopen(made, "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, n, f), n);
    std::fclose(f);
    EXPECT_TRUE(read_file(made) == bytes) << n << " bytes";
  }
  std::remove(made);
}

// Memory that runs out part-way through is an error naming the file (kOutOfMemory), never the first part of it
// handed back as if it were all of it. A child process limits its address space to 8 MiB over what it maps, then
// reads a 32 MiB file.
TEST(ReadFile, RunningOutOfMemoryIsAnErrorNotAShortFile) {
  if (test::kUnderAddressSanitizer) GTEST_SKIP() << "AddressSanitizer: no address-space limit leaves room";
  static const char* const kDirVariable = "NQ_TEST_READ_FILE_OOM_DIR";
  constexpr size_t kBytes = size_t{32} << 20;
  const std::string dir = test::death_test_scratch_dir(kDirVariable, "nq_read_oom");
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/big.bin";
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) std::fclose(f);
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(kBytes)), 0);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto read_under_limit = [&path] {
    if (!test::limit_address_space_to_current_plus(8 << 10)) std::_Exit(3);
    try {
      const std::string got = read_file(path);
      std::fprintf(stderr, "read_file returned %zu of the file's %zu bytes\n", got.size(), kBytes);
      std::_Exit(1);
    } catch (const Error& e) {
      const bool named = std::string(e.what()).find(path) != std::string::npos;
      if (e.code() == ErrorCode::kOutOfMemory && named) std::_Exit(0);
      std::fprintf(stderr, "%s: %s\n", error_code_name(e.code()), e.what());
      std::_Exit(2);
    }
  };
  EXPECT_EXIT(read_under_limit(), ::testing::ExitedWithCode(0), "");
  unsetenv(kDirVariable);
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

TEST(AtomicFile, AnEmbeddersOwnSignalHandlerIsLeftInPlace) {
  // The fresh run executes this test from the top: it takes the directory from the environment it inherits.
  static const char* const kDirVariable = "NQ_TEST_EMBEDDER_HANDLER_DIR";
  const std::string dir = test::death_test_scratch_dir(kDirVariable, "nq_atomic_own");
  ASSERT_FALSE(dir.empty());
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto write_and_terminate = [&dir] {
    struct sigaction sa {};
    sa.sa_handler = [](int) { _exit(42); };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    AtomicFile a(dir + "/out.bin");  // the first temporary: the library's handlers go in now
    a.write("partial");
    raise(SIGTERM);
  };
  EXPECT_EXIT(write_and_terminate(), ::testing::ExitedWithCode(42), "");
  unsetenv(kDirVariable);
  // Only the embedder's handler ran (ours would have removed the temporary before handing the signal on), so
  // the temporary is still there: clearing up after its own handler is the embedder's business.
  const std::vector<std::string> left = entries_of(dir);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].rfind(".out.bin.tmp-", 0), 0u) << left[0];
  std::remove((dir + "/" + left[0]).c_str());
  rmdir(dir.c_str());
}

// Every error code's CLI exit status, as the README gives them: 2 for bad input or usage, 3 for what is unsupported
// or unavailable (a net or a scope's results that do not fit the available memory, kOutOfMemory, are refused with 3
// too), 1 for a bug.
TEST(Error, ExitStatusesAreTheDocumentedOnes) {
  const std::vector<std::pair<ErrorCode, int>> documented = {
      {ErrorCode::kInvalidArgument, 2}, {ErrorCode::kBadFile, 2},     {ErrorCode::kIo, 2},
      {ErrorCode::kShapeMismatch, 2},   {ErrorCode::kUnsupported, 3}, {ErrorCode::kUnavailable, 3},
      {ErrorCode::kOutOfMemory, 3},     {ErrorCode::kInternal, 1}};
  for (const auto& [code, status] : documented) EXPECT_EQ(exit_status_for(code), status) << error_code_name(code);
}

// --threads: 0 is one thread per core, a count is taken as given, and a negative or absurd count is refused
// before any parallel region runs.
TEST(Backend, ThreadCountsAreCheckedAndZeroMeansOnePerCore) {
  const int saved = omp_get_max_threads();
  set_num_threads(0);
  EXPECT_EQ(num_threads(), omp_get_num_procs());
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  for (const int bad : {-1, std::max(256, 4 * omp_get_num_procs()) + 1}) {
    try {
      set_num_threads(bad);
      ADD_FAILURE() << bad << " threads accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("--threads"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(num_threads(), 3) << "a refused count changed the setting";
  omp_set_num_threads(saved);
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
