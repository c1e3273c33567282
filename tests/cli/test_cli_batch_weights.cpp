// --batch-weights N on quantize, sweep and prune: a model streamed through in waves of N weights (every tensor its
// own wave at N = 1) must give the same output bytes as the model taken at once — the .nq, the sweep CSV, the pruned
// safetensors — with pruning (the streamed selection) and sqrt importance; a negative N exits 2 naming the option.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli_fixture.h"

namespace nq {
namespace {

class BatchWeightsCli : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
    write_model({{"embed.weight", {37, 9}},
                 {"layer.0.weight", {23, 41}},
                 {"layer.0.bias", {23}},
                 {"layer.1.weight", {13, 5, 3}},
                 {"head.weight", {7, 301}}},
                31);
    inputs_ = "'" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") + "' --backend cpu -q ";
  }
  // Runs `command` with and without each batch size, `out` naming its output file; the bytes must agree.
  void expect_same_output(const std::string& command, const std::string& out) {
    CliRun r = run(command + " -o '" + file("whole_" + out) + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string want = slurp(file("whole_" + out));
    ASSERT_FALSE(want.empty());
    for (const char* batch : {"1", "400", "1000"}) {
      SCOPED_TRACE(command + " --batch-weights " + batch);
      r = run(command + " --batch-weights " + batch + " -o '" + file(out) + "'");
      ASSERT_EQ(r.status, 0) << r.err;
      EXPECT_TRUE(slurp(file(out)) == want);
    }
  }
  std::string inputs_;
};

TEST_F(BatchWeightsCli, QuantizeGivesTheSameFileForAnyBatch) {
  expect_same_output("quantize " + inputs_ + "--method hw-kmeans --k 8 --scope row --prune 0.35", "q.nq");
  expect_same_output("quantize " + inputs_ + "--method ecsq --k 16 --lambda 2e-5 --scope tensor --prune 0.2 "
                     "--importance-transform sqrt --exclude embed",
                     "e.nq");
  expect_same_output("quantize " + inputs_ + "--method uniform --k 9 --scope group:64 --prune 0.5", "u.safetensors");
}

TEST_F(BatchWeightsCli, SweepAndPruneGiveTheSameFilesForAnyBatch) {
  expect_same_output("sweep " + inputs_ + "--method ecsq,hw-kmeans --lambdas 1e-6,1e-4 --k 4,8 --k-max 16 "
                     "--scope row --prune 0.25",
                     "s.csv");
  expect_same_output("prune " + inputs_ + "--prune 0.4 --skip-1d", "p.safetensors");
}

// The report says how the run went: one wave by default on this small model, one per tensor at N = 1 (the
// option reached the quantizer), the tensors of a wave together at N = 1000.
TEST_F(BatchWeightsCli, ReportCountsTheWaves) {
  for (const auto& [options, waves] : std::vector<std::pair<std::string, int>>{
           {"--scope row", 1}, {"--scope row --batch-weights 1", 5}, {"--scope tensor --batch-weights 1000", 4},
           {"--scope global --batch-weights 1", 1}}) {
    SCOPED_TRACE(options);
    const CliRun r = run("quantize " + inputs_ + options + " -o '" + file("w.nq") + "' --report '" +
                         file("w.json") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const nlohmann::json report = nlohmann::json::parse(slurp(file("w.json")));
    EXPECT_EQ(report.at("waves").get<int>(), waves);
  }
}

TEST_F(BatchWeightsCli, NegativeBatchIsRefused) {
  const CliRun r = run("quantize " + inputs_ + "--scope row --batch-weights -3 -o '" + file("x.nq") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--batch-weights"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("x.nq")));
}

}  // namespace
}  // namespace nq
