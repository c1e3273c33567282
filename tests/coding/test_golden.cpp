// Golden .nq files pinned to format version 1: one valid file decodes to known values and re-encodes to the
// same bytes; deliberately broken files are each rejected with kBadFile. NQ_WRITE_GOLDEN=1 regenerates them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "coding/byte_stream.h"
#include "coding/huffman.h"
#include "coding/nq_format.h"
#include "coding_test_util.h"
#include "netquant/atomic_file.h"

using namespace nq;
using namespace nq::coding;

namespace {

const std::string kDir = std::string(NQ_SOURCE_DIR) + "/tests/data/golden/";

// Global scope, k = 4; a pruned f32 tensor, a bf16 tensor, an f16 bias kept in float.
QuantizedModel golden_model() {
  QuantizedModel m;
  m.method = Method::kUniform;
  m.scope.kind = ScopeKind::kGlobal;
  m.codebooks = {{-0.5f, -0.125f, 0.25f, 1.0f}};
  QuantizedTensor a;
  a.name = "fc1.weight";
  a.shape = {4, 6};
  a.problem_size = 24;
  a.num_problems = 1;
  for (int i = 0; i < 24; ++i) a.indices.push_back(i % 5 == 3 ? kPrunedIndex : (i * 7) % 4 == 3 ? 1 : (i * 7) % 4);
  m.tensors.push_back(a);
  QuantizedTensor b;
  b.name = "fc1.bias";
  b.dtype = DType::kF16;
  b.shape = {3};
  b.quantized = false;
  b.original = Tensor::from_f32("fc1.bias", {3}, {0.5f, -1.0f, 2.0f}).converted(DType::kF16);
  m.tensors.push_back(b);
  QuantizedTensor c;
  c.name = "fc2.weight";
  c.dtype = DType::kBF16;
  c.shape = {2, 5};
  c.problem_size = 10;
  c.num_problems = 1;
  for (int i = 0; i < 10; ++i) c.indices.push_back((i * 3) % 4);
  m.tensors.push_back(c);
  return m;
}

// Tensor scope, one tensor, k = 3, counts 2/6/2: Huffman lengths 2/1/2.
QuantizedModel tiny_model() {
  QuantizedModel m;
  m.scope.kind = ScopeKind::kTensor;
  m.codebooks = {{-1.0f, 0.0f, 1.0f}};
  QuantizedTensor t;
  t.name = "w";
  t.shape = {10};
  t.problem_size = 10;
  t.num_problems = 1;
  t.indices = {1, 1, 0, 1, 2, 1, 1, 0, 2, 1};
  m.tensors.push_back(t);
  return m;
}

uint64_t get_u64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[at + static_cast<size_t>(i)]) << (8 * i);
  return v;
}
void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
// Recomputes the checksums of a one-tensor file after an edit, so the reader reaches the planted problem.
void refresh_crcs(std::vector<uint8_t>& b) {
  const size_t dir_end = static_cast<size_t>(get_u64(b, 32));
  const size_t off = static_cast<size_t>(get_u64(b, dir_end - 24));
  const size_t len = static_cast<size_t>(get_u64(b, dir_end - 16));
  if (off + len <= b.size()) put_u32(b, dir_end - 8, crc32_update(0, b.data() + off, len));
  put_u32(b, dir_end - 4, crc32_update(0, b.data(), dir_end - 4));
  put_u32(b, b.size() - 8, crc32_update(0, b.data(), b.size() - 8));
}

std::map<std::string, std::vector<uint8_t>> make_golden_files() {
  std::map<std::string, std::vector<uint8_t>> files;
  auto g = golden_model();
  files["valid.nq"] = serialize_nq(g);
  // The same model with rANS index streams: version 2, a coder byte per quantized tensor.
  g.index_coder = IndexCoder::kRans;
  files["valid_rans.nq"] = serialize_nq(g);

  auto tiny = tiny_model();
  const auto t = serialize_nq(tiny);
  auto bad = t;
  bad[1] = 'X';
  files["bad_magic.nq"] = bad;
  bad = t;
  bad[8] = 3;
  files["bad_version.nq"] = bad;
  files["truncated.nq"] = std::vector<uint8_t>(t.begin(), t.end() - 11);
  bad = t;
  bad[bad.size() - 12] ^= 0x40;  // inside the payload: payload and file CRCs no longer match
  files["bad_crc.nq"] = bad;
  // Over-subscribed code lengths {1,1,2} in place of {2,1,2} (same 9-bit table), checksums refreshed.
  bad = t;
  {
    const size_t dir_end = static_cast<size_t>(get_u64(bad, 32));
    const size_t table_at = dir_end + 1 + 1 + 12 + 1;  // codebook count, k, 3 floats, alphabet
    BitWriter w;
    write_code_lengths({2, 1, 2}, w);
    const auto ok_table = w.finish();
    EXPECT_EQ(0, std::memcmp(bad.data() + table_at, ok_table.data(), ok_table.size()));
    BitWriter w2;
    write_code_lengths({1, 1, 2}, w2);
    const auto over = w2.finish();
    EXPECT_EQ(over.size(), ok_table.size());
    std::memcpy(bad.data() + table_at, over.data(), over.size());
    refresh_crcs(bad);
  }
  files["oversubscribed.nq"] = bad;
  bad = t;
  {
    const size_t dir_end = static_cast<size_t>(get_u64(bad, 32));
    put_u64(bad, dir_end - 16, 1u << 20);  // payload length far past the end of the file
    refresh_crcs(bad);
  }
  files["offset_past_eof.nq"] = bad;
  // The one-tensor file with a rANS stream, its last byte (the stream's) changed and the checksums refreshed: the
  // chunk no longer decodes back to the coder's start state.
  tiny.index_coder = IndexCoder::kRans;
  bad = serialize_nq(tiny);
  EXPECT_EQ(bad[8], 2);
  bad[bad.size() - kNqTrailerSize - 1] ^= 0x10;
  refresh_crcs(bad);
  files["rans_bad_stream.nq"] = bad;
  return files;
}

// Seed corpora of the fuzz targets (tests/fuzz/corpus/{nq,huffman}), refreshed with the golden files.
void write_fuzz_seeds(const std::map<std::string, std::vector<uint8_t>>& golden) {
  const std::string fuzz = std::string(NQ_SOURCE_DIR) + "/tests/fuzz/corpus/";
  auto put = [](const std::string& path, const std::vector<uint8_t>& b) {
    write_file_atomic(path, std::string(b.begin(), b.end()));
  };
  for (const auto& [name, bytes] : golden) put(fuzz + "nq/golden_" + name, bytes);
  int seed = 0;
  for (ScopeKind scope : {ScopeKind::kGlobal, ScopeKind::kTensor, ScopeKind::kRow, ScopeKind::kGroup}) {
    nq::testing::ModelSpec spec;
    spec.scope = scope;
    spec.group = 16;
    spec.prune = seed % 2 ? 0.5 : 0.0;
    spec.with_raw = seed % 2 == 0;
    spec.k = 5;
    auto m = nq::testing::random_model(spec, static_cast<uint64_t>(++seed));
    m.tensors.resize(3);  // keep seeds small
    put(fuzz + "nq/model_" + scope_to_string(m.scope).substr(0, 5) + ".nq", serialize_nq(m));
    m.index_coder = IndexCoder::kRans;  // and version 2: the rANS streams
    put(fuzz + "nq/model_" + scope_to_string(m.scope).substr(0, 5) + "_rans.nq", serialize_nq(m));
  }
  // Huffman seeds: [alphabet u16][count u16][code-length table][stream].
  const std::vector<std::vector<uint64_t>> dists = {{5}, {3, 9}, {1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144},
                                                    {0, 0, 7, 0, 1, 1, 0, 30}, std::vector<uint64_t>(300, 1)};
  int n = 0;
  for (const auto& counts : dists) {
    const auto lengths = huffman_code_lengths(counts);
    std::vector<uint32_t> symbols;
    for (size_t s = 0; s < counts.size(); ++s)
      for (uint64_t c = 0; c < counts[s]; ++c) symbols.push_back(static_cast<uint32_t>((s * 7919 + c) % counts.size()));
    symbols.erase(std::remove_if(symbols.begin(), symbols.end(), [&](uint32_t s) { return lengths[s] == 0; }),
                  symbols.end());
    BitWriter w;
    write_code_lengths(lengths, w);
    auto table = w.finish();
    BitWriter sw;
    HuffmanEncoder(lengths).encode(symbols.data(), symbols.size(), sw);
    auto stream = sw.finish();
    std::vector<uint8_t> b = {static_cast<uint8_t>(counts.size()), static_cast<uint8_t>(counts.size() >> 8),
                              static_cast<uint8_t>(symbols.size()), static_cast<uint8_t>(symbols.size() >> 8)};
    b.insert(b.end(), table.begin(), table.end());
    b.insert(b.end(), stream.begin(), stream.end());
    put(fuzz + "huffman/seed" + std::to_string(n++), b);
  }
}

std::vector<uint8_t> load(const std::string& name) {
  std::ifstream in(kDir + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << kDir + name << " missing (regenerate with NQ_WRITE_GOLDEN=1)";
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(Golden, FilesAreUpToDate) {
  const auto files = make_golden_files();
  if (const char* w = std::getenv("NQ_WRITE_GOLDEN"); w && std::string(w) == "1") {
    for (const auto& [name, bytes] : files) write_file_atomic(kDir + name, std::string(bytes.begin(), bytes.end()));
    write_fuzz_seeds(files);
  }
  // The writer must still produce exactly the pinned bytes (a change of format needs a version bump; a change of the
  // writer's choices within the format keeps the old file as a fixture that must still read, as
  // valid_rans_stop38.nq).
  for (const auto& [name, bytes] : files) EXPECT_EQ(load(name), bytes) << name;
}

TEST(Golden, ValidFileDecodesToKnownValues) {
  const auto bytes = load("valid.nq");
  ASSERT_GE(bytes.size(), 16u);
  EXPECT_EQ(bytes[8], 1);  // version 1
  QuantizedModel m = parse_nq(bytes.data(), bytes.size(), "valid.nq");
  ASSERT_EQ(m.tensors.size(), 3u);
  EXPECT_EQ(m.method, Method::kUniform);
  ASSERT_EQ(m.codebooks.size(), 1u);
  EXPECT_EQ(m.codebooks[0], (std::vector<float>{-0.5f, -0.125f, 0.25f, 1.0f}));
  const std::vector<int32_t> fc1 = {0, 1, 2, -1, 0, 1, 2, 1, -1, 1, 2, 1, 0, -1, 2, 1, 0, 1, -1, 1, 0, 1, 2, -1};
  EXPECT_EQ(m.tensors[0].indices, fc1);
  EXPECT_EQ(m.tensors[0].name, "fc1.weight");
  EXPECT_EQ(m.tensors[2].indices, (std::vector<int32_t>{0, 3, 2, 1, 0, 3, 2, 1, 0, 3}));
  EXPECT_EQ(m.tensors[2].dtype, DType::kBF16);
  EXPECT_FALSE(m.tensors[1].quantized);
  EXPECT_EQ(m.tensors[1].original.to_f32(), (std::vector<float>{0.5f, -1.0f, 2.0f}));
  EXPECT_EQ(serialize_nq(m), bytes);  // re-encoding reproduces the file
}

TEST(Golden, RansFileDecodesToTheSameModel) {
  const auto v1 = load("valid.nq"), v2 = load("valid_rans.nq");
  ASSERT_GE(v2.size(), 16u);
  EXPECT_EQ(v2[8], 2);  // version 2
  QuantizedModel a = parse_nq(v1.data(), v1.size(), "valid.nq");
  QuantizedModel b = parse_nq(v2.data(), v2.size(), "valid_rans.nq");
  nq::testing::expect_same_model(b, a);
  b.index_coder = IndexCoder::kRans;
  EXPECT_EQ(serialize_nq(b), v2);  // re-encoding reproduces the file
  b.index_coder = IndexCoder::kHuffman;
  EXPECT_EQ(serialize_nq(b), v1);  // and the version-1 file, asked for Huffman
}

// The same model as stop 38's writer wrote it with `--coder rans` (kept as it was, not regenerated): it also stored a
// shared Huffman table, which no tensor used (every one is rANS). Today's writer leaves it out (flag bit 0 clear,
// 3 bytes fewer); the old file still reads to the same model, and re-encodes to today's.
TEST(Golden, Stop38RansFileStillReads) {
  const auto v1 = load("valid.nq"), old = load("valid_rans_stop38.nq"), now = load("valid_rans.nq");
  ASSERT_GE(old.size(), 16u);
  EXPECT_EQ(old[8], 2);
  EXPECT_EQ(old[10] & 1, 1);  // the shared table's flag
  EXPECT_EQ(now[10] & 1, 0);
  EXPECT_EQ(old.size(), now.size() + 3);
  QuantizedModel a = parse_nq(v1.data(), v1.size(), "valid.nq");
  QuantizedModel b = parse_nq(old.data(), old.size(), "valid_rans_stop38.nq");
  nq::testing::expect_same_model(b, a);
  b.index_coder = IndexCoder::kRans;
  EXPECT_EQ(serialize_nq(b), now);
}

TEST(Golden, BrokenFilesAreRejected) {
  const std::map<std::string, std::string> expect = {
      {"bad_magic.nq", "bad magic"},          {"bad_version.nq", "version 3"},
      {"truncated.nq", "truncated"},          {"bad_crc.nq", "checksum"},
      {"oversubscribed.nq", "over-subscribed"}, {"offset_past_eof.nq", "past the end"},
      {"rans_bad_stream.nq", "rANS chunk 0"}};
  for (const auto& [name, message] : expect) {
    const auto bytes = load(name);
    try {
      parse_nq(bytes.data(), bytes.size(), name);
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadFile) << name;
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << name << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << "message names the file: " << e.what();
    }
  }
}
