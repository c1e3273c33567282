// The .nq file: round trips over random models (all scopes, pruning, float-kept tensors, f16/bf16), gap coding,
// accounting against hand-computed formulas, streaming decompression, hostile-input rejection.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>

#include "coding/bit_io.h"
#include "coding/byte_stream.h"
#include "coding/huffman.h"
#include "coding/nq_format.h"
#include "coding/positions.h"
#include "coding_test_util.h"
#include "netquant/atomic_file.h"
#include "netquant/io.h"

using namespace nq;
using namespace nq::coding;
using nq::testing::ModelSpec;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/nq_coding_" + std::to_string(::getpid()) + "_" + name;
}

void expect_bad_file(const std::vector<uint8_t>& bytes, const std::string& why) {
  try {
    parse_nq(bytes.data(), bytes.size(), "mem.nq");
    ADD_FAILURE() << "accepted: " << why;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile) << why << ": " << e.what();
  }
}

// The message names the problem: `needle` must be in it.
void expect_bad_file_saying(const std::vector<uint8_t>& bytes, const std::string& needle) {
  try {
    parse_nq(bytes.data(), bytes.size(), "planted.nq");
    ADD_FAILURE() << "accepted: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadFile) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void expect_writer_refuses(QuantizedModel& m, const std::string& needle) {
  try {
    serialize_nq(m);
    ADD_FAILURE() << "the writer accepted: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// One tensor of four weights per name (two levels each, tensor or group:4 scope).
QuantizedModel four_weight_model(const std::vector<std::string>& names, Scope scope) {
  QuantizedModel m;
  m.method = Method::kUniform;
  m.scope = scope;
  for (const auto& name : names) {
    QuantizedTensor t;
    t.name = name;
    t.shape = {4};
    t.problem_size = 4;
    t.num_problems = 1;
    t.first_codebook = static_cast<int64_t>(m.codebooks.size());
    m.codebooks.push_back({0.5f, 1.0f});
    t.indices = IndexArray(std::vector<int32_t>{0, 1, 0, 1});
    m.tensors.push_back(std::move(t));
  }
  return m;
}

// Little-endian fields of a file being edited by a test: the u64 at `at`, and the low `n` bytes of `v` put there.
uint64_t u64_at(const std::vector<uint8_t>& bytes, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(bytes[at + static_cast<size_t>(i)]) << (8 * i);
  return v;
}
void put_le(std::vector<uint8_t>& bytes, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) bytes[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
// Where the directory ends (the header's field at 32): its checksum takes the last 4 bytes, the payloads follow.
size_t directory_end(const std::vector<uint8_t>& bytes) { return static_cast<size_t>(u64_at(bytes, 32)); }

// After an edit of the directory: the header's and the whole file's checksums recomputed (payloads untouched), so
// the reader reaches the planted problem.
void refresh_directory_crcs(std::vector<uint8_t>& bytes) {
  const size_t dir_end = directory_end(bytes);
  put_le(bytes, dir_end - 4, crc32_update(0, bytes.data(), dir_end - 4), 4);
  put_le(bytes, bytes.size() - 8, crc32_update(0, bytes.data(), bytes.size() - 8), 4);
}

// The last byte of tensor `name`'s name in the file's directory.
uint8_t& last_name_byte(std::vector<uint8_t>& bytes, const std::string& name) {
  const auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  EXPECT_NE(at, bytes.end()) << name;
  return *(at + static_cast<std::ptrdiff_t>(name.size()) - 1);
}

}  // namespace

TEST(Gaps, RoundTripWithPrunedZerosAndLongRuns) {
  std::mt19937_64 rng(21);
  for (double p : {0.0, 0.05, 0.5, 0.9, 0.999, 1.0}) {
    for (size_t n : {1u, 2u, 7u, 100u, 4097u, 200000u}) {
      std::vector<int32_t> idx(n);
      for (auto& v : idx) v = std::uniform_real_distribution<double>(0, 1)(rng) < p ? kPrunedIndex : 3;
      if (n > 10 && p > 0.1 && p < 1.0) std::fill(idx.begin() + 2, idx.begin() + static_cast<long>(n / 2), kPrunedIndex);
      uint64_t kept = 0;
      for (int32_t v : idx) kept += v != kPrunedIndex;
      const GapPlan plan = plan_gaps(idx.data(), n, kPrunedIndex);
      // The chosen width is the cheapest of all 16.
      const auto bytes = encode_gaps(idx.data(), n, kPrunedIndex, plan);
      const uint64_t bits = plan.stream_bits;
      EXPECT_EQ(bytes.size(), (bits + 7) / 8);
      HuffmanDecoder dec(plan.lengths, "gaps");
      BitReader r(bytes.data(), bytes.size(), bits);
      std::vector<int32_t> out(n, kPrunedIndex);
      decode_gaps(r, dec, plan.width, n, kept, "gaps", [&](uint64_t pos) { out[pos] = 3; });
      EXPECT_EQ(r.consumed_bits(), bits);
      EXPECT_EQ(out, idx) << "p=" << p << " n=" << n;
    }
  }
}

TEST(Gaps, ChosenWidthMinimizesTotal) {
  std::mt19937_64 rng(22);
  std::vector<int32_t> idx(50000);
  for (auto& v : idx) v = rng() % 10 == 0 ? 1 : kPrunedIndex;
  const GapPlan best = plan_gaps(idx.data(), idx.size(), kPrunedIndex);
  // Brute force: encode with every width and compare the totals.
  for (int w = kMinGapWidth; w <= kMaxGapWidth; ++w) {
    const uint64_t filler = (uint64_t{1} << w) - 1;
    std::vector<uint64_t> counts(size_t{1} << w, 0);
    uint64_t run = 0;
    auto flush = [&] {
      counts[filler] += run / filler;
      counts[run % filler] += 1;
      run = 0;
    };
    for (int32_t v : idx) {
      if (v == kPrunedIndex)
        ++run;
      else
        flush();
    }
    flush();
    const auto lengths = huffman_code_lengths(counts);
    const uint64_t total = huffman_stream_bits(counts, lengths) + code_lengths_bits(lengths) + 8;
    EXPECT_LE(best.stream_bits + best.table_bits + 8, total) << "width " << w;
  }
}

// The gap passes split a tensor into chunks of 2^20 weights on the threads. Against the serial walk written out
// here (each kept weight's run of pruned ones, fillers first, then the trailing run): masks of several chunks with
// runs across chunk borders, a wholly pruned chunk, runs longer than a filler at every width, every stored width,
// on one and two threads, at one and two bytes per index. The plan must be the cheapest width's (its counts from the walk), the stream the serial
// coder's bytes of the walk's symbols, and gather_kept the kept indices in order.
TEST(Gaps, ChunkedPassesEqualTheSerialWalk) {
  std::mt19937_64 rng(23);
  const size_t chunk = size_t{1} << 20;
  for (int shape = 0; shape < 4; ++shape) {
    const size_t n = shape == 0 ? 3 * chunk + 7 : shape == 1 ? 2 * chunk : shape == 2 ? chunk + 1 : 5 * chunk / 2;
    std::vector<uint16_t> idx(n);
    const double p = shape == 3 ? 0.999 : 0.6;
    for (auto& v : idx) v = std::uniform_real_distribution<double>(0, 1)(rng) < p ? uint16_t{0xFFFF} : static_cast<uint16_t>(rng() % 7);
    // A run across the first border, a wholly pruned second chunk (shape 0), a kept weight on a border.
    // (Shape 2 holds one weight past the border: the run stops at the end.)
    std::fill(idx.begin() + static_cast<long>(chunk - 70000), idx.begin() + static_cast<long>(std::min(n, chunk + 3)),
              uint16_t{0xFFFF});
    if (shape == 0) std::fill(idx.begin() + static_cast<long>(chunk), idx.begin() + static_cast<long>(2 * chunk + 11), uint16_t{0xFFFF});
    if (shape == 1) idx[chunk] = 5;
    if (shape == 2) idx[n - 1] = 0xFFFF;
    // The oracle: the serial walk.
    std::vector<uint64_t> runs;
    std::vector<uint16_t> kept;
    uint64_t run = 0;
    for (uint16_t v : idx) {
      if (v == 0xFFFF) {
        ++run;
      } else {
        runs.push_back(run);
        kept.push_back(v);
        run = 0;
      }
    }
    runs.push_back(run);
    // The same mask at one byte per index too (the writer's common width, with its own kept-weight scan).
    std::vector<uint8_t> narrow(n);
    for (size_t i = 0; i < n; ++i) narrow[i] = idx[i] == 0xFFFF ? uint8_t{0xFF} : static_cast<uint8_t>(idx[i]);
    for (int threads : {1, 2, 3, 4}) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads <= 2 ? threads : threads - 2);
      const bool one_byte = threads > 2;
      const GapPlan plan = one_byte ? plan_gaps(narrow.data(), n, uint8_t{0xFF}) : plan_gaps(idx.data(), n, uint16_t{0xFFFF});
      const auto bytes = one_byte ? encode_gaps(narrow.data(), n, uint8_t{0xFF}, plan)
                                  : encode_gaps(idx.data(), n, uint16_t{0xFFFF}, plan);
      const auto gathered = gather_kept(idx.data(), n, uint16_t{0xFFFF});
      const auto gathered_narrow = gather_kept(narrow.data(), n, uint8_t{0xFF});
      omp_set_num_threads(saved);
      EXPECT_EQ(gathered, kept) << "shape " << shape << " threads " << threads;
      EXPECT_EQ(std::vector<uint16_t>(gathered_narrow.begin(), gathered_narrow.end()), kept) << "shape " << shape;
      uint64_t best_total = ~uint64_t{0};
      int best_width = 0;
      for (int w = kMinGapWidth; w <= kMaxGapWidth; ++w) {
        const uint64_t filler = (uint64_t{1} << w) - 1;
        std::vector<uint64_t> counts(size_t{1} << w, 0);
        for (uint64_t r : runs) {
          counts[filler] += r / filler;
          counts[r % filler] += 1;
        }
        const auto lengths = huffman_code_lengths(counts);
        const uint64_t total = huffman_stream_bits(counts, lengths) + code_lengths_bits(lengths) + 8;
        if (total < best_total) {
          best_total = total;
          best_width = w;
        }
      }
      ASSERT_EQ(plan.width, best_width) << "shape " << shape << " threads " << threads;
      ASSERT_EQ(plan.stream_bits + plan.table_bits + 8, best_total);
      const uint32_t filler = (1u << plan.width) - 1;
      std::vector<uint32_t> symbols;
      for (uint64_t r : runs) {
        for (; r >= filler; r -= filler) symbols.push_back(filler);
        symbols.push_back(static_cast<uint32_t>(r));
      }
      BitWriter w;
      HuffmanEncoder(plan.lengths).encode(symbols.data(), symbols.size(), w);
      ASSERT_EQ(w.bit_count(), plan.stream_bits);
      EXPECT_EQ(bytes, w.finish()) << "shape " << shape << " threads " << threads;
    }
  }
}

TEST(NqFile, RoundTripAllScopesPruningRawAndDtypes) {
  int seed = 100;
  for (ScopeKind scope : {ScopeKind::kGlobal, ScopeKind::kTensor, ScopeKind::kRow, ScopeKind::kGroup}) {
    for (double prune : {0.0, 0.3, 0.97}) {
      for (bool raw : {false, true}) {
        for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
          for (int k : {1, 2, 16, 300}) {
            ModelSpec spec;
            spec.scope = scope;
            spec.group = 50;
            spec.prune = prune;
            spec.with_raw = raw;
            spec.k = k;
            spec.dtype = dt;
            auto m = nq::testing::random_model(spec, static_cast<uint64_t>(++seed));
            // Every coder in turn (seeds advance by one per case, so each scope, prune and k meets all three).
            m.index_coder = std::array{IndexCoder::kHuffman, IndexCoder::kAuto, IndexCoder::kRans}[seed % 3];
            const auto bytes = serialize_nq(m);
            SCOPED_TRACE(scope_to_string(m.scope) + " prune " + std::to_string(prune) + " k " + std::to_string(k) +
                         " coder " + index_coder_name(m.index_coder));
            if (m.index_coder == IndexCoder::kHuffman) {
              EXPECT_EQ(bytes[8], 1);
            }
            const auto back = parse_nq(bytes.data(), bytes.size(), "mem.nq");
            nq::testing::expect_same_model(m, back);
            // Canonical: re-encoding what was read, with the same coder, gives the same bytes.
            auto again = back;
            again.index_coder = m.index_coder;
            EXPECT_EQ(serialize_nq(again), bytes);
            // The sizes-only pass (account_coding, which codes no Huffman stream) counts the file's bytes exactly.
            EXPECT_GT(m.total.ratio_file, 0);
            double params = 0;
            for (const auto& t : m.tensors) params += static_cast<double>(shape_numel(t.shape));
            EXPECT_DOUBLE_EQ(m.total.ratio_file, 32.0 * params / (8.0 * static_cast<double>(bytes.size())));
            account_coding(again);
            EXPECT_DOUBLE_EQ(again.total.ratio_file, m.total.ratio_file);
            // auto is never larger than Huffman alone.
            if (m.index_coder == IndexCoder::kAuto) {
              again.index_coder = IndexCoder::kHuffman;
              EXPECT_LE(bytes.size(), serialize_nq(again).size());
            }
          }
        }
      }
    }
  }
}

// Global scope chooses one shared Huffman table or per-tensor tables, and each tensor's coder; auto must never
// write more than Huffman alone. Small tensors whose histograms differ (so the table choice is close) are where
// choosing the tables first, at each tensor's cheaper coder, and then dropping rANS for too small a saving, left
// Huffman with the costlier tables (stress_model seeds 15922–21936: auto 2–3 bytes over Huffman).
TEST(NqFile, AutoIsNeverLargerThanHuffmanInGlobalScope) {
  // Thousands of tiny models: on one thread, where a team's barriers would cost more than the work (and a busy
  // machine's other core would leave them spinning).
  struct OneThread {
    int saved = omp_get_max_threads();
    OneThread() { omp_set_num_threads(1); }
    ~OneThread() { omp_set_num_threads(saved); }
  } one_thread;
  std::mt19937_64 rng(20261206);
  int v2_files = 0;
  for (int c = 0; c < 3000; ++c) {
    QuantizedModel m;
    m.method = Method::kEcsq;
    m.scope.kind = ScopeKind::kGlobal;
    const int k = 1 + static_cast<int>(rng() % 40);
    m.codebooks.push_back(nq::testing::random_codebook(rng, k));
    const int tensors = 1 + static_cast<int>(rng() % 4);
    const double prune = std::array{0.0, 0.1, 0.5, 0.9}[rng() % 4];
    for (int ti = 0; ti < tensors; ++ti) {
      QuantizedTensor t;
      t.name = "t" + std::to_string(ti);
      const int64_t n = static_cast<int64_t>(rng() % 600);
      t.shape = {n};
      t.problem_size = std::max<int64_t>(n, 1);
      t.num_problems = 1;
      t.first_codebook = 0;
      // Each tensor its own skew: a geometric law of its own ratio over the levels, from its own first level.
      const double ratio = std::uniform_real_distribution<double>(0.05, 0.95)(rng);
      const int first = static_cast<int>(rng() % static_cast<uint64_t>(k));
      t.indices.resize(static_cast<size_t>(n));
      for (size_t i = 0; i < t.indices.size(); ++i) {
        if (std::uniform_real_distribution<double>(0, 1)(rng) < prune) {
          t.indices[i] = kPrunedIndex;
          continue;
        }
        int level = 0;
        while (level + 1 < k && std::uniform_real_distribution<double>(0, 1)(rng) < ratio) ++level;
        t.indices[i] = (first + level) % k;
      }
      m.tensors.push_back(std::move(t));
    }
    SCOPED_TRACE("case " + std::to_string(c) + ", k " + std::to_string(k) + ", " + std::to_string(tensors) +
                 " tensors, prune " + std::to_string(prune));
    QuantizedModel huffman = m, automatic = m;
    huffman.index_coder = IndexCoder::kHuffman;
    automatic.index_coder = IndexCoder::kAuto;
    const auto h = serialize_nq(huffman), a = serialize_nq(automatic);
    ASSERT_LE(a.size(), h.size());
    v2_files += a[8] == 2;
    // With every tensor on rANS, nothing would use a shared Huffman table: the writer must not store one (flag bit 0
    // of the header's flags at byte 10).
    QuantizedModel rans = m;
    rans.index_coder = IndexCoder::kRans;
    bool every_tensor_kept = true;
    for (const auto& t : m.tensors) {
      bool kept = false;
      for (size_t i = 0; i < t.indices.size() && !kept; ++i) kept = t.indices[i] != kPrunedIndex;
      every_tensor_kept = every_tensor_kept && kept;
    }
    if (every_tensor_kept) {
      EXPECT_EQ(serialize_nq(rans)[10] & 1, 0);
    }
    // What auto wrote reads back and re-encodes to itself.
    QuantizedModel back = parse_nq(a.data(), a.size(), "auto.nq");
    nq::testing::expect_same_model(m, back);
    ASSERT_EQ(serialize_nq(back), a);
  }
  EXPECT_GT(v2_files, 20);  // rANS does get chosen here (70 of the 3000 cases), so both sides of the choice are exercised
}

TEST(NqFile, AccountingMatchesThePaperFormula) {
  // One tensor, tensor scope, k = 3 with counts 6/2/2 -> Huffman lengths 1/2/2: 14 bits of stream.
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
  account_coding(m);
  const double n = 10, paper_bits = 14 + (1 + 2 + 2) + 3 * 32;
  EXPECT_DOUBLE_EQ(m.tensors[0].stats.huffman_bits_per_weight, 1.4);
  EXPECT_DOUBLE_EQ(m.tensors[0].stats.ratio_huffman, n * 32 / paper_bits);
  EXPECT_DOUBLE_EQ(m.total.ratio_huffman, n * 32 / paper_bits);
  const auto bytes = serialize_nq(m);
  EXPECT_DOUBLE_EQ(m.total.ratio_file, n * 32 / (8.0 * bytes.size()));
  // The tensor's own file ratio counts its directory record and payload: the file less its fixed header, the
  // directory's checksum and the trailer.
  const double tensor_bytes = static_cast<double>(bytes.size() - kNqHeaderSize - 4 - kNqTrailerSize);
  EXPECT_DOUBLE_EQ(m.tensors[0].stats.ratio_file, n * 32 / (8.0 * tensor_bytes));
  // Pruned: the gap stream and gap table enter the formula.
  m.tensors[0].indices[3] = kPrunedIndex;
  m.tensors[0].indices[4] = kPrunedIndex;
  account_coding(m);
  EXPECT_GT(m.tensors[0].stats.huffman_bits_per_weight, 0);
  EXPECT_LT(m.tensors[0].stats.ratio_huffman, n * 32 / paper_bits);
}

TEST(NqFile, GlobalScopeSharedTableChosenWhenSmaller) {
  // Many small tensors with the same distribution: one shared table wins.
  ModelSpec spec;
  spec.k = 256;
  auto m = nq::testing::random_model(spec, 7);
  for (int i = 0; i < 20; ++i) {
    auto t = m.tensors[0];
    t.name = "copy" + std::to_string(i);
    m.tensors.push_back(t);
  }
  const auto bytes = serialize_nq(m);
  EXPECT_EQ(bytes[10] & kNqFlagSharedTable, kNqFlagSharedTable);
  nq::testing::expect_same_model(m, parse_nq(bytes.data(), bytes.size(), "mem.nq"));
  // The paper's ratio counts the shared table once, as the file stores it: Σ_j (n_j + 1)·b_j + 32·k over the
  // model's histogram and the Huffman code of it.
  account_coding(m);
  std::vector<uint64_t> counts(m.codebooks[0].size(), 0);
  double weights = 0;
  for (const QuantizedTensor& t : m.tensors) {
    weights += static_cast<double>(t.indices.size());
    for (size_t i = 0; i < t.indices.size(); ++i) ++counts[static_cast<size_t>(t.indices[i])];
  }
  const std::vector<uint8_t> lengths = huffman_code_lengths(counts);
  double paper_bits = 32.0 * static_cast<double>(m.codebooks[0].size());
  for (size_t j = 0; j < counts.size(); ++j) paper_bits += static_cast<double>(counts[j] + 1) * lengths[j];
  EXPECT_NEAR(m.total.ratio_huffman, 32 * weights / paper_bits, 1e-9 * m.total.ratio_huffman);
  // One big tensor: its own table is as good; no shared table.
  ModelSpec one;
  one.k = 4;
  auto single = nq::testing::random_model(one, 8);
  single.tensors.resize(1);
  const auto b1 = serialize_nq(single);
  EXPECT_EQ(b1[10] & kNqFlagSharedTable, 0);
}

TEST(NqFile, FileRoundTripDescribeAndStreamingDecompress) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64}) {
    ModelSpec spec;
    spec.scope = ScopeKind::kRow;
    spec.prune = 0.4;
    spec.with_raw = true;
    spec.dtype = dt;
    auto m = nq::testing::random_model(spec, 31);
    const std::string nq_path = temp_path("model.nq");
    const std::string st_path = temp_path("model.safetensors");
    write_nq_file(nq_path, m);
    nq::testing::expect_same_model(m, read_nq_file(nq_path));
    const NqFileInfo info = describe_nq_file(nq_path);
    EXPECT_EQ(info.version, 1);
    EXPECT_TRUE(info.header_crc_ok && info.file_crc_ok);
    ASSERT_EQ(info.tensors.size(), m.tensors.size());
    for (const auto& ti : info.tensors) EXPECT_TRUE(ti.crc_ok);

    decompress_nq_file(nq_path, st_path);
    const TensorSet out = read_safetensors(st_path);
    ASSERT_EQ(out.size(), m.tensors.size());
    for (size_t i = 0; i < m.tensors.size(); ++i) {
      const auto& t = m.tensors[i];
      const Tensor& o = out[i];
      EXPECT_EQ(o.name(), t.name);
      EXPECT_EQ(o.shape(), t.shape);
      if (!t.quantized) {
        EXPECT_EQ(0, std::memcmp(o.data(), t.original.data(), t.original.nbytes()));
        continue;
      }
      ASSERT_EQ(o.dtype(), dt);
      // Expected values computed independently: codebook float, converted once to the dtype.
      std::vector<float> f(t.indices.size());
      for (size_t j = 0; j < f.size(); ++j) f[j] = nq::testing::dequantized_value(m, t, j);
      const Tensor expect = Tensor::from_f32(t.name, t.shape, f).converted(dt);
      EXPECT_EQ(0, std::memcmp(o.data(), expect.data(), expect.nbytes())) << t.name;
    }
    // --dtype f32 override, and refusal to overwrite the input.
    decompress_nq_file(nq_path, st_path, DType::kF32);
    EXPECT_EQ(read_safetensors(st_path)[0].dtype(), DType::kF32);
    EXPECT_THROW(decompress_nq_file(nq_path, nq_path), Error);
    std::remove(nq_path.c_str());
    std::remove(st_path.c_str());
  }
}

// Tensors large enough that the writer and the decompressor split them over the threads (each alone in its batch;
// streams of millions of bits coded in chunks and decoded by speculative segments; gap streams planned, coded and
// scattered in chunks), beside small ones coded side by side: the file must be the one-thread file byte for byte,
// and reading and decompressing it on two threads must give the model back (the oracle: its indices, and its
// values computed element by element).
TEST(NqFile, LargeTensorsSplitOverTheThreadsKeepTheBytes) {
  std::mt19937_64 rng(47);
  int run = 0;
  for (double prune : {0.0, 0.3, 0.97}) {
    for (int k : {16, 300}) {
      QuantizedModel m;
      m.index_coder = run++ % 2 ? IndexCoder::kRans : IndexCoder::kHuffman;  // rANS chunks on the threads too
      m.method = Method::kKmeans;
      m.scope.kind = ScopeKind::kRow;
      for (const auto& shape : std::vector<std::vector<int64_t>>{{4001, 1049}, {5, 7}, {2, 2100007}, {33, 31}}) {
        QuantizedTensor t;
        t.name = "t" + std::to_string(m.tensors.size());
        t.dtype = DType::kF16;
        t.shape = shape;
        const int64_t n = shape_numel(shape);
        t.problem_size = shape.back();
        t.num_problems = shape.front();
        t.first_codebook = static_cast<int64_t>(m.codebooks.size());
        std::vector<int32_t> idx(static_cast<size_t>(n));
        for (int64_t p = 0; p < t.num_problems; ++p) {
          const int levels = k - static_cast<int>(rng() % 3);
          m.codebooks.push_back(nq::testing::random_codebook(rng, levels));
          for (int64_t i = p * t.problem_size; i < (p + 1) * t.problem_size; ++i)
            idx[static_cast<size_t>(i)] = std::uniform_real_distribution<double>(0, 1)(rng) < prune
                                              ? kPrunedIndex
                                              : nq::testing::skewed_index(rng, levels);
        }
        // A run of pruned weights longer than any gap width's filler, across the chunks of the gap passes.
        if (prune > 0 && n > 4000000) std::fill(idx.begin() + 1000000, idx.begin() + 1200000, kPrunedIndex);
        t.indices = IndexArray(idx);
        m.tensors.push_back(std::move(t));
      }
      const int saved = omp_get_max_threads();
      omp_set_num_threads(1);
      const auto one = serialize_nq(m);
      omp_set_num_threads(2);
      const auto two = serialize_nq(m);
      ASSERT_EQ(one, two) << "prune " << prune << " k " << k;
      nq::testing::expect_same_model(m, parse_nq(two.data(), two.size(), "two"));
      const std::string nq_path = temp_path("large.nq"), st_path = temp_path("large.safetensors");
      write_nq_file(nq_path, m);
      decompress_nq_file(nq_path, st_path);
      omp_set_num_threads(saved);
      const TensorSet out = read_safetensors(st_path);
      for (size_t i = 0; i < m.tensors.size(); ++i) {
        const auto& t = m.tensors[i];
        const auto* got = static_cast<const uint16_t*>(out[i].data());
        for (size_t j = 0; j < t.indices.size(); ++j)
          ASSERT_EQ(got[j], f32_to_f16(nq::testing::dequantized_value(m, t, j)))
              << t.name << " weight " << j << " prune " << prune << " k " << k;
      }
      std::remove(nq_path.c_str());
      std::remove(st_path.c_str());
    }
  }
}

// Every group size quantize accepts is one the reader accepts: the largest, 2^62 − 1, round-trips (one group then
// spans each tensor), and 2^62 is refused before quantizing, naming the limit, by the parser and the library.
TEST(NqFile, EveryGroupSizeQuantizeAcceptsReadsBack) {
  TensorSet model;
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::vector<float> w(37 * 5);
  for (auto& v : w) v = nd(rng);
  model.add(Tensor::from_f32("w", {37, 5}, w));
  ModelQuantizeParams mp;
  mp.quant.method = Method::kKmeans;
  mp.quant.k = 4;
  mp.scope = parse_scope("group:" + std::to_string(kMaxGroupSize - 1));
  QuantizedModel q = quantize_model(model, nullptr, mp);
  const auto bytes = serialize_nq(q);
  nq::testing::expect_same_model(q, parse_nq(bytes.data(), bytes.size(), "big_group.nq"));
  for (const std::string& too_big : {std::to_string(kMaxGroupSize), std::string("9223372036854775807"),
                                    std::string("18446744073709551615")}) {
    try {
      parse_scope("group:" + too_big);
      ADD_FAILURE() << too_big << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("below 2^62"), std::string::npos) << e.what();
    }
  }
  mp.scope.group = kMaxGroupSize;
  EXPECT_THROW(quantize_model(model, nullptr, mp), Error);
}

// A model maps names to tensors: the writer refuses two tensors of one name, and the reader a directory that
// repeats one (planted with valid checksums, so the name check is what refuses it). Before, both passed, and
// decompress wrote a safetensors header with one entry for two tensors.
// The directory's own checksum is checked, not only the whole file's: a file whose header CRC is wrong but whose
// trailer CRC was recomputed over it (a tool that patches files) is refused.
TEST(NqFile, HeaderChecksumIsChecked) {
  QuantizedModel m = four_weight_model({"tensor_a", "tensor_b"}, Scope{ScopeKind::kTensor, 0});
  std::vector<uint8_t> bytes = serialize_nq(m);
  bytes[directory_end(bytes) - 2] ^= 0x10;
  put_le(bytes, bytes.size() - 8, crc32_update(0, bytes.data(), bytes.size() - 8), 4);
  expect_bad_file_saying(bytes, "planted.nq: header checksum mismatch");
}

// The directory is read to its last byte: a byte planted between the last record and the header checksum (the
// payload offset, the header's directory end and file size, and every checksum moved to match) is refused.
TEST(NqFile, StrayBytesAfterTheDirectoryAreRefused) {
  QuantizedModel m = four_weight_model({"tensor_a"}, Scope{ScopeKind::kTensor, 0});
  std::vector<uint8_t> bytes = serialize_nq(m);
  const size_t d = directory_end(bytes);
  // The one record ends with its payload offset, length and checksum, then the header checksum.
  ASSERT_EQ(u64_at(bytes, d - 24), d);
  bytes.insert(bytes.begin() + static_cast<long>(d) - 4, 0x00);
  put_le(bytes, d - 24, d + 1, 8);
  put_le(bytes, 32, d + 1, 8);
  put_le(bytes, 40, bytes.size(), 8);
  refresh_directory_crcs(bytes);
  expect_bad_file_saying(bytes, "1 stray bytes after the directory");
}

// A record may not prune more weights than its tensor holds: the pruned count (the varint just before the payload
// offset) of a 4-weight tensor set to 5, checksums recomputed.
TEST(NqFile, PrunedCountAboveTheWeightsIsRefused) {
  QuantizedModel m = four_weight_model({"tensor_a"}, Scope{ScopeKind::kTensor, 0});
  std::vector<uint8_t> bytes = serialize_nq(m);
  uint8_t& pruned = bytes[directory_end(bytes) - 25];
  ASSERT_LT(pruned, 4);  // the record's own count, a one-byte varint
  pruned = 5;
  refresh_directory_crcs(bytes);
  expect_bad_file_saying(bytes, "tensor 'tensor_a': 5 pruned of 4 weights");
}

// A Huffman index stream must be used to its last bit: B (the stream's bit count) of a 4-weight tensor raised from
// 4 to 8 within its one byte, the payload's and the directory's checksums recomputed.
TEST(NqFile, UnusedIndexBitsOfKeptWeightsAreRefused) {
  QuantizedModel m = four_weight_model({"tensor_a"}, Scope{ScopeKind::kTensor, 0});
  m.index_coder = IndexCoder::kHuffman;
  std::vector<uint8_t> bytes = serialize_nq(m);
  const size_t d = directory_end(bytes);
  // The payload: 1 problem, 2 levels (f32 each), alphabet 2, the code-length table, then B and the stream.
  const size_t b_at = d + 1 + 1 + 8 + 1 + static_cast<size_t>((code_lengths_bits({1, 1}) + 7) / 8);
  ASSERT_EQ(bytes[d], 1);
  ASSERT_EQ(bytes[d + 1], 2);
  ASSERT_EQ(bytes[d + 10], 2);
  ASSERT_EQ(bytes[b_at], 4);  // four weights of one bit each
  bytes[b_at] = 8;
  put_le(bytes, d - 8, crc32_update(0, bytes.data() + d, static_cast<size_t>(u64_at(bytes, d - 16))), 4);
  refresh_directory_crcs(bytes);
  expect_bad_file_saying(bytes, "tensor 'tensor_a': index stream has 4 unused bits");
}

TEST(NqFile, TensorNamesAreUnique) {
  QuantizedModel twice = four_weight_model({"tensor_a", "tensor_a"}, Scope{ScopeKind::kTensor, 0});
  expect_writer_refuses(twice, "two tensors named 'tensor_a'");
  // The second name's last byte 'b' -> 'a', checksums recomputed.
  QuantizedModel m = four_weight_model({"tensor_a", "tensor_b"}, Scope{ScopeKind::kTensor, 0});
  std::vector<uint8_t> bytes = serialize_nq(m);
  last_name_byte(bytes, "tensor_b") = 'a';
  refresh_directory_crcs(bytes);
  expect_bad_file_saying(bytes, "planted.nq: tensor 'tensor_a' appears twice");
}

// Tensor names are UTF-8 (they go into safetensors and JSON headers): the writer refuses other bytes, and the reader
// a file that holds them (planted with valid checksums). A problem size of 2^62 or more is refused as a dimension is.
TEST(NqFile, NamesAreUtf8AndProblemSizesBounded) {
  QuantizedModel m = four_weight_model({"tensor_b"}, Scope{ScopeKind::kGroup, 4});
  std::vector<uint8_t> bytes = serialize_nq(m);
  last_name_byte(bytes, "tensor_b") = 0xFF;
  refresh_directory_crcs(bytes);
  expect_bad_file_saying(bytes, "tensor name of 8 bytes is not valid UTF-8");
  QuantizedModel bad_name = four_weight_model({std::string("tensor_") + char(0xFF)}, Scope{ScopeKind::kGroup, 4});
  expect_writer_refuses(bad_name, "is not valid UTF-8");
  // A group of 2^62 weights covers the tensor in one problem, as the count says: only the size bound refuses it.
  m.tensors[0].problem_size = int64_t{1} << 62;
  expect_bad_file_saying(serialize_nq(m), "tensor 'tensor_b': problem size 4611686018427387904 too large");
}

// A tensor with no kept weight decodes no index, so an index stream there is bits left unused: refused, as any
// stream with unused bits is (found by differential fuzzing against the README's reader, python/tests).
TEST(NqFile, IndexStreamOfATensorWithNoKeptWeightIsEmpty) {
  QuantizedModel m;
  m.method = Method::kUniform;
  m.scope = Scope{ScopeKind::kTensor, 0};
  QuantizedTensor t;
  t.name = "all_pruned";
  t.shape = {4};
  t.problem_size = 4;
  t.num_problems = 1;
  t.indices = IndexArray(4, kPrunedIndex);
  m.codebooks.push_back({});
  m.tensors.push_back(t);
  std::vector<uint8_t> bytes = serialize_nq(m);
  EXPECT_EQ(parse_nq(bytes.data(), bytes.size(), "good").tensors.at(0).indices[3], kPrunedIndex);
  // The payload starts at D: codebook count 1, k 0, alphabet 0, a one-byte code-length table, then B = 0.
  const size_t d = directory_end(bytes);
  ASSERT_EQ(std::vector<uint8_t>(bytes.begin() + static_cast<long>(d), bytes.begin() + static_cast<long>(d) + 5),
            (std::vector<uint8_t>{1, 0, 0, 0, 0}));
  // B = 8 and one byte of stream; the payload length, the file size and every checksum follow the edit.
  bytes[d + 4] = 8;
  bytes.insert(bytes.begin() + static_cast<long>(d) + 5, 0xAB);
  put_le(bytes, d - 16, u64_at(bytes, d - 16) + 1, 8);
  put_le(bytes, 40, bytes.size(), 8);
  put_le(bytes, d - 8, crc32_update(0, bytes.data() + d, static_cast<size_t>(u64_at(bytes, d - 16))), 4);
  refresh_directory_crcs(bytes);
  expect_bad_file_saying(bytes, "tensor 'all_pruned': index stream has 8 unused bits (no weight is kept)");
}

TEST(NqFile, CorruptionIsRejectedEverywhere) {
  for (const IndexCoder coder : {IndexCoder::kHuffman, IndexCoder::kRans}) {
  SCOPED_TRACE(index_coder_name(coder));
  ModelSpec spec;
  spec.scope = ScopeKind::kGroup;
  spec.group = 64;
  spec.prune = 0.3;
  spec.with_raw = true;
  auto m = nq::testing::random_model(spec, 41);
  m.index_coder = coder;
  const auto good = serialize_nq(m);
  // Every truncation.
  for (size_t cut = 0; cut < good.size(); cut += (cut < 200 ? 1 : 7)) {
    std::vector<uint8_t> part(good.begin(), good.begin() + static_cast<long>(cut));
    expect_bad_file(part, "truncated at " + std::to_string(cut));
  }
  // Every single-byte flip is caught (CRCs, structure).
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < good.size(); i += 1 + rng() % 5) {
    auto bad = good;
    bad[i] ^= static_cast<uint8_t>(1u << (rng() % 8));
    expect_bad_file(bad, "flip at " + std::to_string(i));
  }
  auto padded = good;
  padded.push_back(0);
  expect_bad_file(padded, "trailing byte");
  }
}

TEST(NqFile, LimitsBoundDecodedElements) {
  for (const IndexCoder coder : {IndexCoder::kHuffman, IndexCoder::kRans}) {
  ModelSpec spec;
  auto m = nq::testing::random_model(spec, 51);
  m.index_coder = coder;
  const auto bytes = serialize_nq(m);
  NqLimits limits;
  limits.max_elements = 100;
  EXPECT_THROW(parse_nq(bytes.data(), bytes.size(), "mem.nq", limits), Error);
  uint64_t total = 0;
  for (const auto& t : m.tensors) total += static_cast<uint64_t>(shape_numel(t.shape));
  limits.max_elements = total;
  EXPECT_NO_THROW(parse_nq(bytes.data(), bytes.size(), "mem.nq", limits));
  }
}

TEST(NqFile, CodebooksBeyondTheFormatHaveNoCodingStatistics) {
  // kNqMaxLevels + 1 levels: the file refuses them, the accounting reports NaN instead of failing (a dequantized
  // output or a sweep point with that many levels still completes); at the limit both work.
  for (const int levels : {kNqMaxLevels, kNqMaxLevels + 1}) {
    QuantizedModel m;
    m.scope.kind = ScopeKind::kTensor;
    m.codebooks.resize(1);
    for (int j = 0; j < levels; ++j) m.codebooks[0].push_back(static_cast<float>(j));
    QuantizedTensor t;
    t.name = "w";
    t.shape = {levels};
    t.problem_size = levels;
    t.num_problems = 1;
    for (int j = 0; j < levels; ++j) t.indices.push_back(j);
    m.tensors.push_back(t);
    account_coding(m);
    if (levels == kNqMaxLevels) {
      EXPECT_DOUBLE_EQ(m.tensors[0].stats.huffman_bits_per_weight, 16.0);
      EXPECT_GT(m.total.ratio_file, 0);
      EXPECT_NO_THROW(serialize_nq(m));
    } else {
      EXPECT_TRUE(std::isnan(m.tensors[0].stats.huffman_bits_per_weight));
      EXPECT_TRUE(std::isnan(m.tensors[0].stats.ratio_huffman));
      EXPECT_TRUE(std::isnan(m.total.ratio_file));
      try {  // the error names the tensor whose codebook is too large
        serialize_nq(m);
        ADD_FAILURE() << "a codebook of " << levels << " levels was written";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tensor 'w' has a codebook of 65537 levels"), std::string::npos)
            << e.what();
      }
    }
  }
}

// The writer's index check runs in chunks of 2^22 on the threads with a vectorised scan: a single index outside its
// row's codebook (just past it, far past it) at random places of a tensor spanning several chunks, at
// every stored width and among pruned weights, is found, and the error names the first one in element order.
TEST(NqFile, RejectsEveryIndexOutsideItsCodebookNamingTheFirst) {
  std::mt19937_64 rng(41);
  const int64_t rows = 1031, cols = 9001;  // 9.3 M weights: three chunks, rows across chunk borders
  for (int trial = 0; trial < 6; ++trial) {
    const int k = trial % 3 == 0 ? 16 : trial % 3 == 1 ? 300 : 70000 % 65536;
    QuantizedModel m;
    m.scope.kind = ScopeKind::kRow;
    QuantizedTensor t;
    t.name = "layer.weight";
    t.shape = {rows, cols};
    t.problem_size = cols;
    t.num_problems = rows;
    for (int64_t r = 0; r < rows; ++r) m.codebooks.push_back(std::vector<float>(static_cast<size_t>(k - (r % 2)), 0.25f));
    std::vector<int32_t> idx(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = rng() % 5 == 0 ? kPrunedIndex : static_cast<int32_t>(rng() % static_cast<uint64_t>(k - 1));
    // Two offenders; the error must name the earlier.
    size_t first = rng() % idx.size(), second = rng() % idx.size();
    if (second < first) std::swap(first, second);
    if (second == first) second = first + 1;
    const int64_t levels = k - static_cast<int64_t>((first / static_cast<size_t>(cols)) % 2);
    idx[first] = static_cast<int32_t>(levels + (trial % 2 ? 0 : 40 * trial));
    idx[second] = static_cast<int32_t>(k + 5);
    t.indices = IndexArray(idx);
    m.tensors.push_back(std::move(t));
    try {
      serialize_nq(m);
      ADD_FAILURE() << "trial " << trial;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      const std::string want = "index " + std::to_string(idx[first]) + " at " + std::to_string(first) + " ";
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what() << " / want " << want;
      EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos) << e.what();
    }
  }
}

// The reader's check of each index against its own row's codebook (rows of different sizes), run per row on the
// threads: a payload made by hand (the writer refuses such models, and the CRCs would stop a corrupted file before
// the decoder) with indices past their row's codebook but inside the table's alphabet. The error names the first
// offender in element order; a payload without one decodes to its indices.
TEST(NqFile, ReaderNamesTheFirstIndexOutsideItsRowsCodebook) {
  std::mt19937_64 rng(43);
  for (int trial = 0; trial < 8; ++trial) {
    const uint64_t rows = 1 + rng() % 300, cols = 1 + rng() % 5000;
    const uint32_t alphabet = trial % 2 ? 300 : 16;  // 2-byte and 1-byte indices
    std::vector<uint32_t> ks(rows);
    for (auto& k : ks) k = alphabet - static_cast<uint32_t>(rng() % (alphabet / 2));
    ks[rng() % rows] = alphabet;
    std::vector<uint32_t> symbols(rows * cols);
    for (uint64_t i = 0; i < symbols.size(); ++i) symbols[i] = static_cast<uint32_t>(rng() % ks[i / cols]);
    size_t first = SIZE_MAX;
    if (trial < 6) {  // two offenders, or none
      size_t a = rng() % symbols.size(), b = rng() % symbols.size();
      for (size_t at : {a, b}) {
        const uint32_t k = ks[at / cols];
        if (k == alphabet) continue;
        symbols[at] = k + static_cast<uint32_t>(rng() % (alphabet - k));
        first = std::min(first, at);
      }
    }
    ByteWriter w;
    w.varint(rows);
    for (uint32_t k : ks) {
      w.varint(k);
      for (uint32_t j = 0; j < k; ++j) w.f32(0.5f * static_cast<float>(j));
    }
    std::vector<uint64_t> counts(alphabet, 0);
    for (uint32_t v : symbols) ++counts[v];
    const auto lengths = huffman_code_lengths(counts);
    w.varint(alphabet);
    BitWriter table;
    write_code_lengths(lengths, table);
    const auto table_bytes = table.finish();
    w.raw(table_bytes.data(), table_bytes.size());
    BitWriter stream;
    HuffmanEncoder(lengths).encode(symbols.data(), symbols.size(), stream);
    w.varint(stream.bit_count());
    const auto stream_bytes = stream.finish();
    w.raw(stream_bytes.data(), stream_bytes.size());
    NqDirectory dir;
    dir.source = "hand.nq";
    dir.scope.kind = ScopeKind::kRow;
    NqRecord rec;
    rec.name = "w";
    rec.shape = {static_cast<int64_t>(rows), static_cast<int64_t>(cols)};
    rec.numel = rows * cols;
    rec.problem_size = cols;
    rec.num_problems = rows;
    std::vector<std::vector<float>> codebooks;
    try {
      const QuantizedTensor t = decode_nq_payload(dir, rec, w.bytes(), codebooks, nullptr, true, nullptr);
      EXPECT_EQ(first, SIZE_MAX) << "trial " << trial << ": accepted an index outside its codebook";
      EXPECT_EQ(t.indices, std::vector<int32_t>(symbols.begin(), symbols.end()));
    } catch (const Error& e) {
      ASSERT_NE(first, SIZE_MAX) << e.what();
      EXPECT_EQ(e.code(), ErrorCode::kBadFile);
      const std::string want = "index " + std::to_string(symbols[first]) + " at weight " + std::to_string(first) +
                               " outside its codebook of " + std::to_string(ks[first / cols]);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what() << " / want " << want;
    }
  }
}

TEST(NqFile, RejectsInconsistentModels) {
  QuantizedModel m;
  m.scope.kind = ScopeKind::kTensor;
  m.codebooks = {{0.5f}};
  QuantizedTensor t;
  t.name = "w";
  t.shape = {3};
  t.problem_size = 3;
  t.num_problems = 1;
  t.indices = {0, 1, 0};  // 1 is outside the codebook
  m.tensors.push_back(t);
  try {
    serialize_nq(m);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}
