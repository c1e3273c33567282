// `netquant decompress` / `inspect` on .nq files end to end, and quantize -> .nq -> decompress bit-exactness
// against `quantize -o OUT.safetensors` for every scope, with and without pruning.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli/cli_fixture.h"
#include "coding/codes_lookup.h"
#include "coding/coding_test_util.h"
#include "netquant/coding.h"
#include "netquant/io.h"

namespace nq {
namespace {

using NqCli = CliFixture;

void expect_bitwise_equal(const TensorSet& a, const TensorSet& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& t : a) {
    const Tensor* u = b.find(t.name());
    ASSERT_NE(u, nullptr) << t.name();
    EXPECT_EQ(t.dtype(), u->dtype()) << t.name();
    EXPECT_EQ(t.shape(), u->shape()) << t.name();
    ASSERT_EQ(t.nbytes(), u->nbytes()) << t.name();
    EXPECT_EQ(0, std::memcmp(t.data(), u->data(), t.nbytes())) << t.name() << " differs";
  }
}

TEST_F(NqCli, DecompressWritesDequantizedWeights) {
  nq::testing::ModelSpec spec;
  spec.scope = ScopeKind::kRow;
  spec.prune = 0.5;
  spec.with_raw = true;
  spec.dtype = DType::kF16;
  auto m = nq::testing::random_model(spec, 5);
  write_nq_file(file("m.nq"), m);
  CliRun r = run("decompress '" + file("m.nq") + "' -o '" + file("m.safetensors") + "' --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const TensorSet out = read_safetensors(file("m.safetensors"));
  ASSERT_EQ(out.size(), m.tensors.size());
  for (const auto& t : m.tensors) {
    const Tensor& o = out.at(t.name);
    if (!t.quantized) {
      EXPECT_EQ(0, std::memcmp(o.data(), t.original.data(), t.original.nbytes()));
      continue;
    }
    std::vector<float> f(t.indices.size());
    for (size_t j = 0; j < f.size(); ++j) f[j] = nq::testing::dequantized_value(m, t, j);
    const Tensor expect = Tensor::from_f32(t.name, t.shape, f).converted(DType::kF16);
    EXPECT_EQ(o.dtype(), DType::kF16);
    EXPECT_EQ(0, std::memcmp(o.data(), expect.data(), expect.nbytes())) << t.name;
  }
  r = run("decompress '" + file("m.nq") + "' -o '" + file("m32.safetensors") + "' --dtype f32 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_safetensors(file("m32.safetensors")).at("layer0.weight").dtype(), DType::kF32);
  // --dtype bf16: the float32 values rounded to bfloat16.
  r = run("decompress '" + file("m.nq") + "' -o '" + file("mbf.safetensors") + "' --dtype bf16 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor bf16 = read_safetensors(file("mbf.safetensors")).at("layer0.weight");
  const Tensor want = read_safetensors(file("m32.safetensors")).at("layer0.weight").converted(DType::kBF16);
  EXPECT_EQ(bf16.dtype(), DType::kBF16);
  ASSERT_EQ(bf16.nbytes(), want.nbytes());
  EXPECT_EQ(0, std::memcmp(bf16.data(), want.data(), want.nbytes()));
}

TEST_F(NqCli, DecompressRefusesBadInputAndLeavesNothing) {
  nq::testing::ModelSpec spec;
  auto m = nq::testing::random_model(spec, 6);
  write_nq_file(file("m.nq"), m);
  const std::string good = slurp(file("m.nq"));
  // Overwriting the input is refused.
  CliRun r = run("decompress '" + file("m.nq") + "' -o '" + file("m.nq") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(slurp(file("m.nq")), good);
  // A corrupt payload byte: exit 2, error names the file, no output file left.
  std::string bad = good;
  bad[bad.size() - 20] ^= 1;
  std::ofstream(file("bad.nq"), std::ios::binary) << bad;
  r = run("decompress '" + file("bad.nq") + "' -o '" + file("out.safetensors") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("bad.nq"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("out.safetensors")));
  r = run("decompress '" + file("m.nq") + "' -o '" + file("o.safetensors") + "' --dtype f8");
  EXPECT_EQ(r.status, 2);
  // What is written is safetensors: another name is refused, not written with the wrong contents.
  for (const char* name : {"d.npy", "d"}) {
    r = run("decompress '" + file("m.nq") + "' -o '" + file(name) + "'");
    EXPECT_EQ(r.status, 2) << name;
    EXPECT_NE(r.err.find("name the output *.safetensors"), std::string::npos) << r.err;
    EXPECT_FALSE(exists(file(name))) << name;
  }
}

TEST_F(NqCli, InspectReportsVersionChecksumsAndRatios) {
  nq::testing::ModelSpec spec;
  spec.scope = ScopeKind::kTensor;
  spec.prune = 0.2;
  auto m = nq::testing::random_model(spec, 7);
  write_nq_file(file("m.nq"), m);
  CliRun r = run("inspect '" + file("m.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("version 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksums: ok"), std::string::npos) << r.out;
  r = run("inspect --json '" + file("m.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& f = j.contains("files") ? j["files"][0] : j;
  EXPECT_EQ(f["version"], 1);
  EXPECT_EQ(f["checksums_ok"], true);
  EXPECT_EQ(f["tensors"].size(), m.tensors.size());
  EXPECT_NEAR(f["ratio_file"].get<double>(), m.total.ratio_file, 1e-9 * m.total.ratio_file);
  for (size_t t = 0; t < m.tensors.size(); ++t) {  // per tensor: the same record + payload as the writer counts
    const double expected = m.tensors[t].stats.ratio_file;
    EXPECT_NEAR(f["tensors"][t]["ratio_file"].get<double>(), expected, 1e-9 * expected) << m.tensors[t].name;
  }
  // A flipped payload byte: what is stored is still shown, with the mismatch, and the run fails (exit 2, the
  // file named, no --json-out written).
  std::string bad = slurp(file("m.nq"));
  bad[bad.size() - 20] ^= 1;
  std::ofstream(file("bad.nq"), std::ios::binary) << bad;
  r = run("inspect '" + file("bad.nq") + "' --json-out '" + file("bad.json") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.out.find("checksums: MISMATCH"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(file("bad.nq") + ": checksums do not match"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("bad.json")));
  r = run("inspect --json '" + file("bad.nq") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["files"][0]["checksums_ok"], false);
  // Only the whole-file CRC wrong (a bit of the stored value in the trailer, [size - 8, size - 4)): the header's
  // and every payload's own CRCs still match, and the file is still refused.
  std::string trailer_bad = slurp(file("m.nq"));
  trailer_bad[trailer_bad.size() - 8] ^= 4;
  std::ofstream(file("crc.nq"), std::ios::binary) << trailer_bad;
  r = run("inspect --json '" + file("crc.nq") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find(file("crc.nq") + ": checksums do not match"), std::string::npos) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["files"][0]["checksums_ok"], false);
  // Only a payload's own CRC wrong: the flipped payload byte of bad.nq with the whole-file CRC recomputed over it
  // (zlib's CRC-32 of [0, size - 8), stored little-endian), so the trailer vouches for the damaged bytes.
  std::string payload_bad = bad;
  const uint32_t whole = static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(payload_bad.data()), static_cast<uInt>(payload_bad.size() - 8)));
  for (int b = 0; b < 4; ++b) payload_bad[payload_bad.size() - 8 + b] = static_cast<char>((whole >> (8 * b)) & 0xff);
  std::ofstream(file("payload.nq"), std::ios::binary) << payload_bad;
  r = run("inspect --json '" + file("payload.nq") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find(file("payload.nq") + ": checksums do not match"), std::string::npos) << r.err;
  const auto checked = nlohmann::json::parse(r.out)["files"][0];
  EXPECT_EQ(checked["checksums_ok"], false);
}

// ---- quantize -> .nq -> decompress is bit-exact with quantize -> safetensors ---------------------------------

TEST_F(NqCli, QuantizeNqDecompressBitExact) {
  ASSERT_EQ(run("quantize --help").status, 0) << "the quantize command must answer --help";
  std::mt19937_64 rng(9);
  TensorSet model;
  std::normal_distribution<float> g(0.0f, 0.05f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, DType dt) {
    std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
    for (auto& x : v) x = g(rng);
    model.add(Tensor::from_f32(name, shape, v).converted(dt));
  };
  add("fc1.weight", {37, 29}, DType::kF32);
  add("fc1.bias", {37}, DType::kF32);
  add("fc2.weight", {10, 37}, DType::kF16);
  add("fc3.weight", {5, 64}, DType::kBF16);
  write_safetensors(file("model.safetensors"), model);
  for (const std::string scope : {"global", "tensor", "row", "group:64"}) {
    for (const std::string extra : {"", " --prune 0.5"}) {
      const std::string common = "quantize '" + file("model.safetensors") + "' --method uniform --k 8 --scope " +
                                 scope + extra + " --quiet -o ";
      SCOPED_TRACE(common);
      CliRun a = run(common + "'" + file("q.safetensors") + "'");
      ASSERT_EQ(a.status, 0) << a.err;
      CliRun b = run(common + "'" + file("q.nq") + "'");
      ASSERT_EQ(b.status, 0) << b.err;
      CliRun c = run("decompress '" + file("q.nq") + "' -o '" + file("d.safetensors") + "' --quiet");
      ASSERT_EQ(c.status, 0) << c.err;
      expect_bitwise_equal(read_safetensors(file("q.safetensors")), read_safetensors(file("d.safetensors")));
      // The file itself, header and metadata included (the input has no __metadata__ of its own to lose).
      EXPECT_EQ(slurp(file("d.safetensors")), slurp(file("q.safetensors")));
      EXPECT_EQ(read_safetensors(file("d.safetensors")).metadata().at("netquant.quantize.method"), "uniform");
      // The codes layout looks up to the same values.
      c = run("decompress '" + file("q.nq") + "' -o '" + file("c.safetensors") + "' --codes --quiet");
      ASSERT_EQ(c.status, 0) << c.err;
      const TensorSet codes = read_safetensors(file("c.safetensors"));
      EXPECT_EQ(codes.metadata().at("netquant.scope"), scope);
      EXPECT_EQ(codes.metadata().at("netquant.method"), "uniform");
      EXPECT_EQ(codes.at("fc1.weight.codes").dtype(), DType::kU8);
      EXPECT_EQ(codes.at("fc2.weight.codebook").dtype(), DType::kF16);
      std::string why;
      const auto looked_up = nq::testing::look_up_codes(codes, &why);
      ASSERT_TRUE(looked_up) << why;
      expect_bitwise_equal(read_safetensors(file("q.safetensors")), *looked_up);
    }
  }
}

// Names the codes layout cannot write (a model with "W" and "W.codes") are refused with both named, exit 2, nothing
// written; the values of the same file still decompress.
TEST_F(NqCli, DecompressCodesRefusesCollidingNames) {
  nq::testing::ModelSpec spec;
  spec.with_raw = true;
  auto m = nq::testing::random_model(spec, 8);
  for (auto& t : m.tensors)
    if (!t.quantized) {
      t.name = "layer0.weight.codes";
      t.original.set_name(t.name);
      break;
    }
  write_nq_file(file("m.nq"), m);
  CliRun r = run("decompress '" + file("m.nq") + "' -o '" + file("c.safetensors") + "' --codes");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("two tensors named 'layer0.weight.codes'"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("c.safetensors")));
  r = run("decompress '" + file("m.nq") + "' -o '" + file("v.safetensors") + "' --quiet");
  EXPECT_EQ(r.status, 0) << r.err;
}

}  // namespace
}  // namespace nq
