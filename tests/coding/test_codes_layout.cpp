// The codes layout (decompress --codes, codes_layout): every weight looked up in its table row must be the model's
// own value, computed here from its indices and codebooks (not by the library's dequantization), in every scope,
// dtype and pruning; the codes' width at its edges; the refusals.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "coding/codes_layout.h"
#include "coding_test_util.h"
#include "netquant/error.h"
#include "netquant/io.h"

using namespace nq;
using nq::testing::ModelSpec;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/nq_codes_" + std::to_string(::getpid()) + "_" + name;
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

// The bytes of one float value in `dtype`, converted independently of the library's tensor code.
std::vector<uint8_t> value_bytes(float v, DType dtype) {
  std::vector<uint8_t> out(dtype_size(dtype));
  if (dtype == DType::kF32) std::memcpy(out.data(), &v, 4);
  if (dtype == DType::kF64) {
    const double d = v;
    std::memcpy(out.data(), &d, 8);
  }
  if (dtype == DType::kF16 || dtype == DType::kBF16) {
    const uint16_t h = dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
    std::memcpy(out.data(), &h, 2);
  }
  return out;
}

// decompress --codes of `nq_path` must fail with `code`, its message holding each of `needles`, and leave no output.
void expect_codes_refused(const std::string& nq_path, const std::string& st_path, ErrorCode code,
                          const std::vector<std::string>& needles) {
  std::remove(st_path.c_str());
  try {
    decompress_nq_file(nq_path, st_path, std::nullopt, DecompressLayout::kCodes);
    ADD_FAILURE() << nq_path << ": accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& needle : needles) EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_FALSE(file_exists(st_path)) << nq_path;
}

int64_t code_at(const Tensor& codes, size_t i) {
  switch (codes.dtype()) {
    case DType::kU8: return codes.data_as<uint8_t>()[i];
    case DType::kI16: return codes.data_as<int16_t>()[i];
    case DType::kI32: return codes.data_as<int32_t>()[i];
    default: ADD_FAILURE() << codes.name() << ": codes of dtype " << dtype_name(codes.dtype()); return -1;
  }
}

// `layout` must hold `m` in the codes layout, with codebooks in `dtype` (nullopt: each tensor's own).
void expect_layout_of(const QuantizedModel& m, const TensorSet& layout, std::optional<DType> dtype) {
  const auto& meta = layout.metadata();
  ASSERT_EQ(meta.count("netquant.layout"), 1u);
  EXPECT_EQ(meta.at("netquant.layout"), "codes");
  EXPECT_EQ(meta.at("netquant.method"), method_traits(m.method).name);
  EXPECT_EQ(meta.at("netquant.scope"), scope_to_string(m.scope));
  size_t outputs = 0;
  for (const auto& t : m.tensors) {
    SCOPED_TRACE(t.name);
    if (!t.quantized) {
      ++outputs;
      const Tensor& o = layout.at(t.name);
      const DType want = dtype && dtype_is_float(t.original.dtype()) ? *dtype : t.original.dtype();
      ASSERT_EQ(o.dtype(), want);
      const Tensor expect = t.original.dtype() == want ? t.original : t.original.converted(want);
      EXPECT_EQ(0, std::memcmp(o.data(), expect.data(), expect.nbytes()));
      continue;
    }
    outputs += 2;
    const Tensor& codes = layout.at(t.name + ".codes");
    const Tensor& table = layout.at(t.name + ".codebook");
    const size_t n = t.indices.size();
    EXPECT_EQ(codes.shape(), t.shape);
    // The columns: the largest of the tensor's codebooks, and the pruned column when a weight is pruned.
    const int64_t problems = n == 0 ? 0 : t.num_problems;
    size_t max_k = 0;
    for (int64_t p = 0; p < problems; ++p)
      max_k = std::max(max_k, m.codebooks[static_cast<size_t>(t.first_codebook + p)].size());
    const bool pruned = t.indices.count(kPrunedIndex) > 0;
    const int64_t columns = n == 0 ? 0 : static_cast<int64_t>(max_k) + (pruned ? 1 : 0);  // empty: [0, 0]
    ASSERT_EQ(table.shape(), (std::vector<int64_t>{problems, columns}));
    const DType want_codes = columns <= 256 ? DType::kU8 : columns <= 32768 ? DType::kI16 : DType::kI32;
    EXPECT_EQ(codes.dtype(), want_codes);
    const DType table_dtype = dtype.value_or(t.dtype);
    ASSERT_EQ(table.dtype(), table_dtype);
    EXPECT_EQ(meta.at(t.name + ".problem_size"), std::to_string(t.problem_size));
    if (pruned)
      EXPECT_EQ(meta.at(t.name + ".pruned_code"), std::to_string(max_k));
    else
      EXPECT_EQ(meta.count(t.name + ".pruned_code"), 0u);
    const size_t width = dtype_size(table_dtype);
    const auto* cells = static_cast<const uint8_t*>(table.data());
    for (size_t i = 0; i < n; ++i) {
      const int64_t code = code_at(codes, i);
      const size_t row = i / static_cast<size_t>(t.problem_size);
      ASSERT_TRUE(code >= 0 && code < columns) << "weight " << i << " code " << code;
      ASSERT_EQ(t.indices[i] == kPrunedIndex, pruned && code == static_cast<int64_t>(max_k)) << "weight " << i;
      const auto want = value_bytes(nq::testing::dequantized_value(m, t, i), table_dtype);
      ASSERT_EQ(0, std::memcmp(cells + (row * static_cast<size_t>(columns) + static_cast<size_t>(code)) * width,
                               want.data(), width))
          << "weight " << i << " row " << row << " code " << code;
    }
    // Padding and the pruned column are +0; with several codebooks, each row is its codebook ascending.
    for (int64_t p = 0; p < problems; ++p) {
      const auto& cb = m.codebooks[static_cast<size_t>(t.first_codebook + p)];
      std::vector<float> sorted = cb;
      if (t.num_problems > 1) std::stable_sort(sorted.begin(), sorted.end());
      for (int64_t c = 0; c < columns; ++c) {
        const float v = static_cast<size_t>(c) < sorted.size() ? sorted[static_cast<size_t>(c)] : 0.0f;
        const auto want = value_bytes(v, table_dtype);
        ASSERT_EQ(0, std::memcmp(cells + (static_cast<size_t>(p * columns + c)) * width, want.data(), width))
            << "row " << p << " column " << c;
      }
    }
  }
  EXPECT_EQ(layout.size(), outputs);
}

}  // namespace

// Streamed from the file and built in memory from the file read back (and from the model itself): the same layout,
// each weight its own value.
TEST(CodesLayout, EveryWeightIsItsRowsEntry) {
  int seed = 0;
  for (const ScopeKind scope : {ScopeKind::kGlobal, ScopeKind::kTensor, ScopeKind::kRow, ScopeKind::kGroup}) {
    for (const int64_t group : {int64_t{7}, int64_t{1000}}) {
      if (scope != ScopeKind::kGroup && group != 7) continue;
      for (const double prune : {0.0, 0.3, 1.0}) {
        for (const DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
          ModelSpec spec;
          spec.scope = scope;
          spec.group = group;
          spec.prune = prune;
          spec.with_raw = true;
          spec.dtype = dt;
          spec.k = scope == ScopeKind::kGlobal ? 300 : 40;  // global: two-byte codes
          QuantizedModel m = nq::testing::random_model(spec, 500 + static_cast<uint64_t>(seed++));
          m.index_coder = seed % 2 ? IndexCoder::kHuffman : IndexCoder::kRans;
          SCOPED_TRACE(scope_to_string(m.scope) + " prune " + std::to_string(prune) + " " + dtype_name(dt));
          const std::string nq_path = temp_path("m.nq"), st_path = temp_path("m.safetensors");
          write_nq_file(nq_path, m);
          for (const std::optional<DType> dtype : {std::optional<DType>(), std::optional<DType>(DType::kF32)}) {
            decompress_nq_file(nq_path, st_path, dtype, DecompressLayout::kCodes);
            const TensorSet streamed = read_safetensors(st_path);
            expect_layout_of(m, streamed, dtype);
            const TensorSet in_memory = codes_layout(read_nq_file(nq_path), dtype);
            EXPECT_EQ(in_memory.metadata(), streamed.metadata());
            ASSERT_EQ(in_memory.size(), streamed.size());
            for (size_t i = 0; i < streamed.size(); ++i) {
              EXPECT_EQ(in_memory[i].name(), streamed[i].name());
              ASSERT_EQ(in_memory[i].nbytes(), streamed[i].nbytes());
              EXPECT_EQ(0, std::memcmp(in_memory[i].data(), streamed[i].data(), streamed[i].nbytes())) << streamed[i].name();
            }
          }
          // The model before it was written: its codebooks as the quantizer left them (here ascending too).
          expect_layout_of(m, codes_layout(m), std::nullopt);
          std::remove(nq_path.c_str());
          std::remove(st_path.c_str());
        }
      }
    }
  }
}

// One tensor of k levels, all used, with or without a pruned weight: the codes take the narrowest type that holds
// the columns (uint8 to 256, int16 to 32768, else int32).
TEST(CodesLayout, CodeWidthsAtTheirEdges) {
  for (const int k : {255, 256, 32767, 32768, 40000}) {
    for (const bool prune : {false, true}) {
      QuantizedModel m;
      m.method = Method::kUniform;
      m.scope.kind = ScopeKind::kTensor;
      std::mt19937_64 rng(static_cast<uint64_t>(k));
      m.codebooks.push_back(nq::testing::random_codebook(rng, k));
      QuantizedTensor t;
      t.name = "w";
      t.shape = {static_cast<int64_t>(k) + 3};
      t.problem_size = t.shape[0];
      t.num_problems = 1;
      std::vector<int32_t> idx(static_cast<size_t>(t.shape[0]));
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>((i * 7919) % static_cast<size_t>(k));
      if (prune) idx[1] = kPrunedIndex;
      t.indices = IndexArray(idx);
      m.tensors.push_back(std::move(t));
      SCOPED_TRACE("k " + std::to_string(k) + (prune ? " pruned" : ""));
      const std::string nq_path = temp_path("w.nq"), st_path = temp_path("w.safetensors");
      write_nq_file(nq_path, m);
      decompress_nq_file(nq_path, st_path, std::nullopt, DecompressLayout::kCodes);
      const TensorSet out = read_safetensors(st_path);
      expect_layout_of(m, out, std::nullopt);
      const int64_t columns = k + (prune ? 1 : 0);
      EXPECT_EQ(out.at("w.codes").dtype(), columns <= 256 ? DType::kU8 : columns <= 32768 ? DType::kI16 : DType::kI32);
      std::remove(nq_path.c_str());
      std::remove(st_path.c_str());
    }
  }
}

// A model whose tensor names would collide with the layout's ("W" and "W.codes"), or one named "__metadata__":
// refused by name, no file written.
TEST(CodesLayout, RefusesCollidingNamesAndWritesNothing) {
  ModelSpec spec;
  spec.with_raw = true;
  QuantizedModel m = nq::testing::random_model(spec, 71);
  for (auto& t : m.tensors)
    if (!t.quantized) {
      t.name = m.tensors[0].name + ".codebook";
      t.original.set_name(t.name);
      break;
    }
  const std::string nq_path = temp_path("clash.nq"), st_path = temp_path("clash.safetensors");
  write_nq_file(nq_path, m);
  expect_codes_refused(nq_path, st_path, ErrorCode::kInvalidArgument, {"'layer0.weight.codebook'", "'layer0.weight'"});
  EXPECT_THROW(codes_layout(m), Error);
  // The values layout has no such names: it still works.
  decompress_nq_file(nq_path, st_path);
  EXPECT_TRUE(file_exists(st_path));
  // A tensor named as safetensors' metadata key cannot be written in either layout (it would turn the header into
  // a file no reader takes).
  for (auto& t : m.tensors)
    if (!t.quantized) {
      t.name = "__metadata__";
      t.original.set_name(t.name);
      break;
    }
  write_nq_file(nq_path, m);
  expect_codes_refused(nq_path, st_path, ErrorCode::kInvalidArgument, {"'__metadata__'"});
  std::remove(st_path.c_str());
  EXPECT_THROW(decompress_nq_file(nq_path, st_path), Error);
  EXPECT_FALSE(file_exists(st_path));
  std::remove(nq_path.c_str());
}

// One codebook of 60,000 levels among 3,000 of one level, each on one weight: the padded table would be 1.8·10^8
// entries for a file of a few hundred KB (a hostile file could ask for that). Refused (kUnsupported) rather than
// allocated. Tables of up to 64 entries per weight and stored level are written: here fixed codebooks of 256 levels on
// groups of 4 weights, in every group or in one group of ten (the rest of one level), as a hand-made model may have.
TEST(CodesLayout, RefusesATableFarLargerThanTheFile) {
  std::mt19937_64 rng(5);
  QuantizedModel m;
  m.method = Method::kEcsq;
  m.scope.kind = ScopeKind::kRow;
  QuantizedTensor t;
  t.name = "w";
  t.shape = {3000, 1};
  t.problem_size = 1;
  t.num_problems = 3000;
  std::vector<int32_t> idx(3000, 0);
  m.codebooks.push_back(nq::testing::random_codebook(rng, 60000));
  idx[0] = 59999;
  for (int p = 1; p < 3000; ++p) m.codebooks.push_back({0.5f});
  t.indices = IndexArray(idx);
  m.tensors.push_back(t);
  const std::string nq_path = temp_path("huge.nq"), st_path = temp_path("huge.safetensors");
  write_nq_file(nq_path, m);
  expect_codes_refused(nq_path, st_path, ErrorCode::kUnsupported, {"tensor 'w'", "decompress its values instead"});
  EXPECT_THROW(codes_layout(m), Error);
  for (const int every : {1, 10}) {
    QuantizedModel g;
    g.method = Method::kInt;
    g.scope = Scope{ScopeKind::kGroup, 4};
    QuantizedTensor gt;
    gt.name = "g";
    gt.shape = {1001};
    gt.problem_size = 4;
    gt.num_problems = 251;
    std::vector<int32_t> gidx(1001);
    for (int p = 0; p < 251; ++p)
      g.codebooks.push_back(p % every == 0 ? nq::testing::random_codebook(rng, 256) : std::vector<float>{0.25f});
    for (size_t i = 0; i < gidx.size(); ++i) gidx[i] = static_cast<int32_t>(rng() % g.codebooks[i / 4].size());
    gidx[5] = kPrunedIndex;
    gt.indices = IndexArray(gidx);
    g.tensors.push_back(gt);
    write_nq_file(nq_path, g);
    decompress_nq_file(nq_path, st_path, std::nullopt, DecompressLayout::kCodes);
    expect_layout_of(g, read_safetensors(st_path), std::nullopt);
  }
  std::remove(nq_path.c_str());
  std::remove(st_path.c_str());
}

// A corrupt file fails as the values layout fails (kBadFile) and leaves no output.
TEST(CodesLayout, CorruptFilesLeaveNoOutput) {
  const std::string st_path = temp_path("bad.safetensors");
  for (const char* name : {"bad_crc.nq", "truncated.nq", "rans_bad_stream.nq", "oversubscribed.nq"})
    expect_codes_refused(std::string(NQ_TEST_DATA_DIR) + "/golden/" + name, st_path, ErrorCode::kBadFile, {name});
}
