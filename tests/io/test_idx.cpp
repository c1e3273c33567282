// IDX reader and load_mnist: hand-built big-endian files (plain and gzip), malformed headers, zip bombs,
// and the real Fashion-MNIST files checked against a numpy oracle.
#include <sys/stat.h>

#include <cmath>
#include <cstring>

#include "io_test_util.h"
#include "netquant/io.h"

namespace nq {
namespace {

using test::expect_error;

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (24 - 8 * i));
  return s;
}

// Big-endian encoding of `n` little-endian host elements of `esize` bytes: the oracle for the byte swap.
std::string to_be(const void* data, size_t n, size_t esize) {
  std::string out(n * esize, '\0');
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i)
    for (size_t b = 0; b < esize; ++b) out[i * esize + b] = static_cast<char>(p[i * esize + esize - 1 - b]);
  return out;
}

std::string idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) s += be32(d);
  return s;
}

template <class T>
void check_round_trip(uint8_t code, DType dtype, const std::vector<uint32_t>& dims, std::mt19937& rng) {
  size_t n = 1;
  for (auto d : dims) n *= d;
  std::vector<T> values(n);
  std::uniform_real_distribution<double> u(-1e4, 1e4);
  for (auto& v : values) {
    if constexpr (std::is_floating_point_v<T>) v = static_cast<T>(u(rng));
    else v = static_cast<T>(rng());
  }
  const std::string file = idx_header(code, dims) + to_be(values.data(), n, sizeof(T));
  for (bool gz : {false, true}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)) + (gz ? " gzip" : " plain"));
    const std::string bytes = gz ? test::gzip_compress(file) : file;
    Tensor t = parse_idx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem.idx");
    ASSERT_EQ(t.dtype(), dtype);
    std::vector<int64_t> shape(dims.begin(), dims.end());
    ASSERT_EQ(t.shape(), shape);
    ASSERT_EQ(t.nbytes(), n * sizeof(T));
    if (n > 0) {  // memcmp's pointers must not be null, even for 0 bytes
      EXPECT_EQ(std::memcmp(t.data(), values.data(), n * sizeof(T)), 0);
    }
  }
}

TEST(Idx, RoundTripEveryTypeAwkwardShapes) {
  std::mt19937 rng(1234);
  for (const auto& dims : std::vector<std::vector<uint32_t>>{{7}, {3, 5, 17}, {1, 1, 33}, {0, 4}, {}}) {
    check_round_trip<uint8_t>(0x08, DType::kU8, dims, rng);
    check_round_trip<int8_t>(0x09, DType::kI8, dims, rng);
    check_round_trip<int16_t>(0x0B, DType::kI16, dims, rng);
    check_round_trip<int32_t>(0x0C, DType::kI32, dims, rng);
    check_round_trip<float>(0x0D, DType::kF32, dims, rng);
    check_round_trip<double>(0x0E, DType::kF64, dims, rng);
  }
}

TEST(Idx, GzipDetectedByContentNotExtension) {
  test::TempDir dir;
  std::vector<uint8_t> v = {0, 1, 2, 250, 255, 9};
  const std::string raw = idx_header(0x08, {2, 3}) + std::string(v.begin(), v.end());
  test::write_bytes(dir.file("labels.bin"), test::gzip_compress(raw));  // gzip without .gz
  test::write_bytes(dir.file("plain.gz"), raw);                         // plain with .gz
  for (const char* name : {"labels.bin", "plain.gz"}) {
    Tensor t = read_idx(dir.file(name));
    ASSERT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(std::memcmp(t.data(), v.data(), 6), 0) << name;
  }
  EXPECT_EQ(read_idx(dir.file("plain.gz")).name(), "plain");
}

TEST(Idx, MultiMemberGzipConcatenates) {
  const std::string raw = idx_header(0x08, {5}) + std::string("\x01\x02\x03\x04\x05", 5);
  const std::string bytes = test::gzip_compress(raw.substr(0, 7)) + test::gzip_compress(raw.substr(7));
  Tensor t = parse_idx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "two.gz");
  ASSERT_EQ(t.numel(), 5);
  EXPECT_EQ(t.data_as<uint8_t>()[4], 5);
}

void expect_bad(const std::string& bytes, std::initializer_list<std::string> needles) {
  expect_error([&] { parse_idx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.idx"); },
               ErrorCode::kBadFile, needles);
}

TEST(Idx, MalformedHeaders) {
  const std::string good = idx_header(0x08, {2, 2}) + std::string(4, '\x07');
  expect_bad("", {"bad.idx", "too short"});
  expect_bad(std::string("\0\0", 2), {"too short"});
  expect_bad("\x01" + good.substr(1), {"not an IDX file"});
  expect_bad(good.substr(0, 1) + "\x01" + good.substr(2), {"not an IDX file"});  // both leading bytes must be 0
  std::string bad_type = good;
  bad_type[2] = 0x0A;
  expect_bad(bad_type, {"unknown IDX element type 0xa"});
  expect_bad(good.substr(0, 9), {"header truncated", "2 dimensions"});
  expect_bad(good.substr(0, good.size() - 1), {"data truncated", "[2, 2]", "needs 4 bytes, file has 3"});
  expect_bad(good + "x", {"1 trailing bytes"});
  // Dims whose product wraps uint64 (or exceeds int64) must be refused, never wrapped or allocated.
  expect_bad(idx_header(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}), {"overflow"});
  expect_bad(idx_header(0x0E, {0xffffffffu, 0xffffffffu}), {"overflow"});
  expect_bad(idx_header(0x08, {0xffffffffu, 0xffffu}), {"data truncated", "file has 0"});
}

TEST(Idx, GzipBombAndBrokenStreams) {
  const std::string good = idx_header(0x08, {64, 64}) + std::string(64 * 64, '\x05');
  const std::string gz = test::gzip_compress(good);
  // Header claims 16 GiB inside a tiny stream: refused before any allocation.
  expect_bad(test::gzip_compress(idx_header(0x08, {0x10000, 0x10000, 4})), {"zip bomb"});
  // The bound is deflate's 1032:1, not far looser: 103,200 announced bytes are more than a stream of a few dozen
  // bytes can hold (a looser bound would inflate it and find the data truncated instead).
  const std::string small = test::gzip_compress(idx_header(0x08, {103200}));
  ASSERT_LT(small.size(), 100u);
  expect_bad(small, {"zip bomb"});
  // A stream that inflates to far more than the header announces: inflation stops, trailing data reported.
  expect_bad(test::gzip_compress(idx_header(0x08, {16}) + std::string(50'000'000, '\0'), 9), {"trailing data"});
  expect_bad(gz.substr(0, gz.size() / 2), {"truncated gzip"});
  expect_bad(gz.substr(0, gz.size() - 4), {"truncated gzip"});  // missing ISIZE of the trailer
  std::string crc = gz;
  crc[crc.size() - 6] ^= 0x55;  // corrupt the CRC32
  expect_bad(crc, {"corrupt gzip", "bad.idx"});
  expect_bad(gz + "garbage!", {"trailing garbage"});
  std::string body = gz;
  body[12] ^= 0xff;
  expect_error([&] { parse_idx(reinterpret_cast<const uint8_t*>(body.data()), body.size(), "b"); },
               ErrorCode::kBadFile, {"b: "});
}

std::string labels_file(const std::vector<uint8_t>& labels) {
  return idx_header(0x08, {static_cast<uint32_t>(labels.size())}) + std::string(labels.begin(), labels.end());
}

TEST(Mnist, SyntheticDirectory) {
  test::TempDir dir;
  std::mt19937 rng(7);
  const uint32_t n = 13, rows = 5, cols = 3;
  std::string pixels(n * rows * cols, '\0');
  for (auto& c : pixels) c = static_cast<char>(rng());
  pixels[0] = static_cast<char>(255);
  pixels[1] = 0;
  std::vector<uint8_t> labels(n);
  for (auto& l : labels) l = rng() % 10;
  test::write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_header(0x08, {n, rows, cols}) + pixels);
  test::write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), test::gzip_compress(labels_file(labels)));
  Dataset ds = load_mnist(dir.path(), false);
  ASSERT_EQ(ds.size(), n);
  ASSERT_EQ(ds.images.shape(), (std::vector<int64_t>{n, 1, rows, cols}));
  EXPECT_EQ(ds.num_classes, 10);
  const float* px = ds.images.data_as<float>();
  EXPECT_EQ(px[0], 1.0f);
  EXPECT_EQ(px[1], 0.0f);
  for (size_t i = 0; i < pixels.size(); ++i) ASSERT_EQ(px[i], static_cast<uint8_t>(pixels[i]) / 255.0f);
  for (uint32_t i = 0; i < n; ++i) EXPECT_EQ(ds.labels[i], labels[i]);

  expect_error([&] { load_mnist(dir.path(), true); }, ErrorCode::kIo,
               {"train-images-idx3-ubyte", "train-images.idx3-ubyte.gz"});
  {  // The other spelling some mirrors use, "...-images.idx3-ubyte", plain and gzipped: the same dataset.
    test::TempDir other;
    test::write_bytes(other.file("t10k-images.idx3-ubyte"), idx_header(0x08, {n, rows, cols}) + pixels);
    test::write_bytes(other.file("t10k-labels.idx1-ubyte.gz"), test::gzip_compress(labels_file(labels)));
    const Dataset again = load_mnist(other.path(), false);
    ASSERT_EQ(again.size(), n);
    EXPECT_EQ(again.labels, ds.labels);
    EXPECT_EQ(std::memcmp(again.images.data(), ds.images.data(), ds.images.nbytes()), 0);
  }
  // Label count disagreeing with the image count.
  labels.pop_back();
  test::write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), test::gzip_compress(labels_file(labels)));
  expect_error([&] { load_mnist(dir.path(), false); }, ErrorCode::kBadFile, {"12 labels for 13 images"});
  labels.push_back(1);
  labels.push_back(2);  // and one label too many
  test::write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), test::gzip_compress(labels_file(labels)));
  expect_error([&] { load_mnist(dir.path(), false); }, ErrorCode::kBadFile, {"14 labels for 13 images"});
  labels.resize(12);
  // A label past 9 widens the class count instead of being dropped.
  labels.push_back(11);
  test::write_bytes(dir.file("t10k-labels-idx1-ubyte.gz"), test::gzip_compress(labels_file(labels)));
  EXPECT_EQ(load_mnist(dir.path(), false).num_classes, 12);
  // Images of the wrong type.
  test::write_bytes(dir.file("t10k-images-idx3-ubyte"), idx_header(0x0D, {n, 1}) + std::string(n * 4, '\0'));
  expect_error([&] { load_mnist(dir.path(), false); }, ErrorCode::kBadFile, {"expected u8 images"});
}

TEST(Mnist, RealFashionMnist) {
  const std::string dir = default_data_dir();
  struct stat st {};
  if (::stat((dir + "/train-images-idx3-ubyte.gz").c_str(), &st) != 0)
    GTEST_SKIP() << "Fashion-MNIST not installed at " << dir << " (apt-get install dataset-fashion-mnist)";
  Dataset train = load_mnist(dir, true);
  Dataset test_set = load_mnist(dir, false);
  ASSERT_EQ(train.size(), 60000);
  ASSERT_EQ(test_set.size(), 10000);
  for (const Dataset* ds : {&train, &test_set}) {
    ASSERT_EQ(ds->images.shape(), (std::vector<int64_t>{ds->size(), 1, 28, 28}));
    EXPECT_EQ(ds->num_classes, 10);
    std::vector<int64_t> hist(10, 0);
    for (int32_t l : ds->labels) {
      ASSERT_TRUE(l >= 0 && l < 10);
      ++hist[l];
    }
    for (int64_t h : hist) EXPECT_EQ(h, ds->size() / 10);  // Fashion-MNIST is exactly balanced
  }
  // Oracle: pixel sums and the first labels as numpy reads the raw gzip files.
  if (!test::python_has_numpy()) GTEST_SKIP() << "numpy unavailable: shape checks only";
  test::TempDir tmp;
  const std::string script = tmp.file("oracle.py");
  test::write_bytes(script,
                    "import gzip, numpy as np\n"
                    "d='" + dir + "'\n"
                    "x=np.frombuffer(gzip.open(d+'/t10k-images-idx3-ubyte.gz').read(),np.uint8,offset=16)\n"
                    "y=np.frombuffer(gzip.open(d+'/t10k-labels-idx1-ubyte.gz').read(),np.uint8,offset=8)\n"
                    "print(int(x.astype(np.int64).sum()), int(x[123456]), ''.join(map(str,y[:20])))\n");
  std::string out;
  ASSERT_EQ(test::run_python(script, &out), 0) << out;
  double sum = 0;
  const float* px = test_set.images.data_as<float>();
  for (int64_t i = 0; i < test_set.images.numel(); ++i) sum += std::lround(px[i] * 255.0f);
  std::string first;
  for (int i = 0; i < 20; ++i) first += std::to_string(test_set.labels[i]);
  const std::string mine = std::to_string(static_cast<int64_t>(sum)) + " " +
                           std::to_string(std::lround(px[123456] * 255.0f)) + " " + first + "\n";
  EXPECT_EQ(out, mine);
}

}  // namespace
}  // namespace nq
