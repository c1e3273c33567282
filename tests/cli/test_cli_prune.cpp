// `netquant prune`: the weights `quantize --prune` would prune set to 0, every other value, dtype and the metadata
// kept. Oracles: nq::prune_model (itself checked against a brute-force ranking in test_quantize_model.cpp) for the
// bytes, and `quantize --prune` of the output, which must prune exactly its new zeros. Bad input names the problem,
// exits 2 and writes nothing.
#include <cstring>

#include "cli/cli_fixture.h"
#include "netquant/coding.h"
#include "netquant/quantize.h"

namespace nq {
namespace {

class PruneCli : public CliFixture {};

TEST_F(PruneCli, WritesWhatQuantizePrunesAndKeepsDtypes) {
  TensorSet model = write_model({{"fc1.weight", {37, 29}}, {"fc1.bias", {37}}, {"fc2.weight", {10, 37}}}, 3);
  // One tensor in bf16, one in f64: their bits must come back untouched where nothing is pruned.
  TensorSet mixed;
  mixed.add(model[0].converted(DType::kBF16));
  mixed.add(model[1]);
  mixed.add(model[2].converted(DType::kF64));
  mixed.metadata()["format"] = "pt";
  write_safetensors(file("model.safetensors"), mixed);
  for (const bool skip_1d : {false, true}) {
    SCOPED_TRACE(skip_1d ? "--skip-1d" : "all tensors");
    const CliRun r = run("prune '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                         "' --prune 0.55 -o '" + file("pruned.safetensors") + "'" + (skip_1d ? " --skip-1d" : ""));
    ASSERT_EQ(r.status, 0) << r.err;
    const TensorSet out = read_tensors(file("pruned.safetensors"));
    const TensorSet imp = read_tensors(file("imp.safetensors"));
    ModelQuantizeParams p;
    p.prune = 0.55;
    p.skip_1d = skip_1d;
    const TensorSet expect = prune_model(mixed, &imp, p);
    ASSERT_EQ(out.size(), expect.size());
    EXPECT_EQ(out.metadata(), mixed.metadata());
    int64_t zeros = 0, quantized = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_EQ(out[i].name(), expect[i].name());
      ASSERT_EQ(out[i].dtype(), mixed[i].dtype());
      ASSERT_EQ(out[i].nbytes(), expect[i].nbytes());
      EXPECT_EQ(std::memcmp(out[i].data(), expect[i].data(), out[i].nbytes()), 0) << out[i].name();
      if (skip_1d && out[i].shape().size() == 1) {
        EXPECT_EQ(std::memcmp(out[i].data(), mixed[i].data(), out[i].nbytes()), 0) << "a 1-D tensor was pruned";
        continue;
      }
      quantized += out[i].numel();
      for (float v : out[i].to_f32()) zeros += v == 0.0f;
    }
    EXPECT_EQ(zeros, static_cast<int64_t>(0.55 * static_cast<double>(quantized)));
    EXPECT_NE(r.err.find(std::to_string(zeros) + " of " + std::to_string(quantized)), std::string::npos) << r.err;
    // Quantizing the pruned model with the same fraction prunes exactly its zeros.
    const CliRun q = run("quantize '" + file("pruned.safetensors") + "' --importance '" + file("imp.safetensors") +
                         "' --prune 0.55 --method hw-kmeans --k 8 -o '" + file("q.nq") + "'" +
                         (skip_1d ? " --skip-1d" : ""));
    ASSERT_EQ(q.status, 0) << q.err;
    const QuantizedModel qm = read_nq_file(file("q.nq"));
    for (size_t i = 0; i < out.size(); ++i) {
      if (!qm.tensors[i].quantized) continue;
      const std::vector<float> v = out[i].to_f32();
      for (size_t j = 0; j < v.size(); ++j)
        ASSERT_EQ(qm.tensors[i].indices[j] == kPrunedIndex, v[j] == 0.0f) << out[i].name() << "[" << j << "]";
    }
  }
}

TEST_F(PruneCli, BadInputIsRefusedAndWritesNothing) {
  write_model({{"w", {5, 7}}}, 4);
  const std::string m = "'" + file("model.safetensors") + "'", out = "'" + file("out.safetensors") + "'";
  CliRun r = run("prune " + m + " -o " + out);  // --prune is required
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--prune"), std::string::npos) << r.err;
  r = run("prune " + m + " --prune 1.0 -o " + out);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("in [0, 1)"), std::string::npos) << r.err;  // the rule every pruning command shares
  for (const char* cmd : {"quantize", "sweep"}) {
    const CliRun q = run(std::string(cmd) + " " + m + " --prune 1 -o '" + file("q.nq") + "'");
    EXPECT_EQ(q.status, 2) << cmd << ": " << q.err;
    EXPECT_NE(q.err.find("in [0, 1)"), std::string::npos) << cmd << ": " << q.err;
  }
  EXPECT_FALSE(exists(file("q.nq")));
  // An importance of another shape names the tensor.
  TensorSet bad_imp;
  bad_imp.add(Tensor::from_f32("w", {7, 5}, std::vector<float>(35, 1.0f)));
  write_safetensors(file("bad_imp.safetensors"), bad_imp);
  r = run("prune " + m + " --importance '" + file("bad_imp.safetensors") + "' --prune 0.5 -o " + out);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("'w'"), std::string::npos) << r.err;
  // The output may not be the input.
  const std::string before = slurp(file("model.safetensors"));
  r = run("prune " + m + " --prune 0.5 -o " + m);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(slurp(file("model.safetensors")), before) << "the input was overwritten";
  EXPECT_FALSE(exists(file("out.safetensors")));
}

}  // namespace
}  // namespace nq
