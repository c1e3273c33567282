// `netquant train --validation` and `netquant sweep --eval-model --validation` on a small cut of the real
// Fashion-MNIST: the held-out images are the last training images, epochs and choices are made on them, and the
// test set is scored without being chosen on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "netquant/coding.h"
#include "netquant/nn.h"
#include "netquant/pipeline.h"
#include "nn/blas_kernels.h"
#include "pipeline/small_mnist.h"

namespace nq {
namespace {

constexpr int64_t kTrainImages = 713, kTestImages = 211, kValidation = 197;

class SweepEvalCli : public CliFixture {
 protected:
  // These tests compare what the CLI computes (a trained net's loss) with the same computation in this process,
  // bit for bit, so the CLI runs must use this process's OpenBLAS kernels. On a CPU that OpenBLAS does not know,
  // the CLI would start itself again with better ones (nn/blas_kernels.h) and round differently: naming this
  // process's core in OPENBLAS_CORETYPE keeps it (InfoCli tests the restart itself).
  void SetUp() override {
    CliFixture::SetUp();
    if (const char* set = std::getenv("OPENBLAS_CORETYPE")) saved_coretype_ = set;
    setenv("OPENBLAS_CORETYPE", nn::cpu::blas_core().c_str(), 1);
    if (!testing::have_fashion_mnist())
      GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)";
    testing::write_small_mnist(file("data"), kTrainImages, kTestImages);
  }
  void TearDown() override {
    if (saved_coretype_.empty())
      unsetenv("OPENBLAS_CORETYPE");
    else
      setenv("OPENBLAS_CORETYPE", saved_coretype_.c_str(), 1);
    CliFixture::TearDown();
  }
  std::string saved_coretype_;
  std::string data() const { return " --data '" + file("data") + "'"; }
  // Trains LeNet-300-100 briefly on the small set, holding out the validation images; returns train's JSON.
  nlohmann::json train_held_out(const std::string& extra = "") {
    const CliRun r = run("train --model lenet300" + data() + " --epochs 2 --lr 0.05 -q --validation " +
                         std::to_string(kValidation) + " -o '" + file("w.safetensors") + "' --json '" +
                         file("train.json") + "'" + extra);
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(slurp(file("train.json")));
  }
  // The weights train_held_out wrote, after checking its last epoch's validation figures against them: scored here
  // on the held-out images, the last kValidation training images.
  Model trained_net_checking_validation(const nlohmann::json& j) const {
    Model net = build_model("lenet300");
    net.set_weights(read_tensors(file("w.safetensors")));
    const Dataset all = load_mnist(file("data"), true);
    const EvalResult held_out = evaluate(net, dataset_range(all, kTrainImages - kValidation, kTrainImages));
    EXPECT_EQ(j["epochs"].back()["validation_accuracy"].get<double>(), held_out.accuracy);
    EXPECT_EQ(j["epochs"].back()["validation_loss"].get<double>(), held_out.loss);
    return net;
  }
};

TEST_F(SweepEvalCli, TrainScoresEpochsOnTheLastTrainingImagesAndTheTestSetOnce) {
  const nlohmann::json j = train_held_out();
  EXPECT_EQ(j["train_images"].get<int64_t>(), kTrainImages - kValidation);
  EXPECT_EQ(j["validation_images"].get<int64_t>(), kValidation);
  ASSERT_EQ(j["epochs"].size(), 2u);
  for (const auto& e : j["epochs"]) {
    EXPECT_TRUE(e.contains("validation_accuracy") && e.contains("validation_loss")) << e.dump();
    EXPECT_FALSE(e.contains("test_accuracy")) << "an epoch was scored on the test set: " << e.dump();
  }
  // The oracles: the written weights scored on the last 197 training images, and by `netquant eval` on the tests.
  trained_net_checking_validation(j);
  const CliRun e = run("eval --model lenet300 --json --weights '" + file("w.safetensors") + "'" + data());
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(j["test_accuracy"].get<double>(), nlohmann::json::parse(e.out)["accuracy"].get<double>());

  // Holding out every training image is refused, naming the directory, and writes nothing.
  const CliRun bad = run("train --model lenet300" + data() + " --epochs 1 --validation 713 -o '" +
                         file("none.safetensors") + "'");
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find(file("data")), std::string::npos) << bad.err;
  EXPECT_FALSE(exists(file("none.safetensors")));
}

// --test-subset limits the final test only: with --validation the epochs are still scored on every held-out image
// (the oracle: the written weights evaluated on all 197 of them), and the test accuracy on the first N test images.
TEST_F(SweepEvalCli, TestSubsetLeavesTheValidationEpochsWhole) {
  const nlohmann::json j = train_held_out(" --test-subset 50");
  ASSERT_EQ(j["epochs"].size(), 2u);
  Model net = trained_net_checking_validation(j);
  EvalParams first;
  first.limit = 50;
  EXPECT_EQ(j["test_accuracy"].get<double>(), evaluate(net, load_mnist(file("data"), false), first).accuracy);
}

// `eval --json` names the split it scored: "train" with --train-set (all 713 training images, as evaluated here),
// else "test" (the 211 test images).
TEST_F(SweepEvalCli, EvalJsonNamesTheSplitItScored) {
  const Model net = build_model("lenet300", 3);
  save_weights(net, file("w0.safetensors"));
  const std::string base = "eval --model lenet300 --json --weights '" + file("w0.safetensors") + "'" + data();
  for (bool train : {true, false}) {
    SCOPED_TRACE(train ? "--train-set" : "test split");
    const CliRun r = run(base + (train ? " --train-set" : ""));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const EvalResult want = evaluate(net, load_mnist(file("data"), train));
    EXPECT_EQ(j["split"], train ? "train" : "test");
    EXPECT_EQ(j["samples"].get<int64_t>(), train ? kTrainImages : kTestImages);
    EXPECT_EQ(j["accuracy"].get<double>(), want.accuracy);
    EXPECT_EQ(j["loss"].get<double>(), want.loss);
  }
}

// The most accurate point of the CSV's rows within a rate target, by one accuracy column; the first of equals.
int most_accurate_within(const std::vector<std::map<std::string, std::string>>& rows, double target_bits,
                         const std::string& by) {
  int want = -1;
  double best = -1;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (std::stod(rows[i].at("huffman_bits_per_weight")) > target_bits) continue;
    const double acc = std::stod(rows[i].at(by));
    if (acc > best) best = acc, want = static_cast<int>(i);
  }
  return want;
}

TEST_F(SweepEvalCli, TargetsChooseByValidationAccuracyWhenImagesAreHeldOut) {
  train_held_out();
  const std::string sweep = "sweep '" + file("w.safetensors") + "' --eval-model lenet300" + data() +
                            " --method hw-kmeans,uniform --k 2,3,4,6,8,16 --finetune 1 -o '" + file("s.csv") + "'";
  const std::string held_out = " --validation " + std::to_string(kValidation);
  auto check = [&](bool validated, double target_bits) {
    char target[32];
    std::snprintf(target, sizeof target, "%.17g", target_bits);  // parses back to the same double
    const CliRun r = run(sweep + (validated ? held_out : std::string()) + " --target-bits " + target + " --json '" +
                         file("s.json") + "'");
    EXPECT_EQ(r.status, 0) << r.err;
    const auto rows = read_csv(slurp(file("s.csv")));
    EXPECT_EQ(rows.size(), 12u);
    for (const auto& row : rows) {
      EXPECT_FALSE(row.at("accuracy").empty());
      EXPECT_FALSE(row.at("accuracy_finetuned").empty());
      EXPECT_EQ(row.at("accuracy_validation").empty(), !validated);
      EXPECT_EQ(row.at("accuracy_finetuned_validation").empty(), !validated);
    }
    // The JSON document holds the same accuracies, each key present exactly when the CSV's column is filled.
    const auto points = nlohmann::json::parse(slurp(file("s.json"))).at("points");
    EXPECT_EQ(points.size(), rows.size());
    for (size_t i = 0; i < rows.size() && i < points.size(); ++i) {
      for (const char* key : {"accuracy", "accuracy_finetuned", "accuracy_validation", "accuracy_finetuned_validation"}) {
        SCOPED_TRACE(std::string(key) + " of point " + std::to_string(i));
        EXPECT_EQ(points[i].contains(key), !rows[i].at(key).empty());
        if (points[i].contains(key) && !rows[i].at(key).empty()) {
          EXPECT_NEAR(points[i][key].get<double>(), std::stod(rows[i].at(key)), 1e-6);
        }
      }
    }
    // The choice recomputed from the CSV: after fine-tuning (as asked), on the held-out images when there are some,
    // else on the test set.
    const int want = most_accurate_within(rows, target_bits,
                                          validated ? "accuracy_finetuned_validation" : "accuracy_finetuned");
    EXPECT_GE(want, 0);
    const std::string said = r.out + r.err;  // the table and the target's line on stdout, the note on stderr
    EXPECT_NE(said.find("best point for the target: index " + std::to_string(want) + " ("), std::string::npos)
        << said;
    EXPECT_NE(said.find(validated ? "chosen by validation accuracy after fine-tuning"
                                  : "chosen by test accuracy after fine-tuning"),
              std::string::npos)
        << said;
    // Choosing on the test images is said to flatter the result, and how not to.
    EXPECT_EQ(said.find("note: the point was chosen on the test images") == std::string::npos, validated) << said;
    return rows;
  };
  check(false, 3.2);
  const auto rows = check(true, 3.2);
  // A target where the two accuracies disagree on the best point, so that choosing by the wrong one shows.
  bool disagreeing = false;
  for (const auto& row : rows) {
    const double target = std::stod(row.at("huffman_bits_per_weight"));
    if (most_accurate_within(rows, target, "accuracy_finetuned_validation") !=
        most_accurate_within(rows, target, "accuracy_finetuned")) {
      check(true, target);
      disagreeing = true;
      break;
    }
  }
  EXPECT_TRUE(disagreeing) << "no target tells validation from test accuracy here: the choice is not tested";

  const CliRun alone = run("sweep '" + file("w.safetensors") + "' --method hw-kmeans --k 2 --validation 5 -o '" +
                           file("bad.csv") + "'");
  EXPECT_EQ(alone.status, 2);
  EXPECT_NE(alone.err.find("--validation requires --eval-model"), std::string::npos) << alone.err;
  EXPECT_FALSE(exists(file("bad.csv")));
}

// A network given as a JSON layer list goes wherever a built-in one does: trained, quantized, fine-tuned (the
// assignment kept), compressed by LC and trained with weighted-entropy quantization, each .nq holding the net's
// own parameters.
TEST_F(SweepEvalCli, ANetGivenAsJsonRunsThroughEveryTrainingCommand) {
  std::ofstream(file("mlp.json"))
      << R"({"name":"mlp","input":[1,28,28],"classes":10,"layers":[{"type":"flatten"},)"
      << R"({"type":"linear","name":"fc1","out":24},{"type":"relu"},{"type":"linear","name":"fc2","out":10}]})";
  const std::string net = " --model '" + file("mlp.json") + "'" + data() + " -q";
  ASSERT_EQ(run("train" + net + " --epochs 1 --lr 0.05 -o '" + file("mlp.safetensors") + "'").status, 0);
  ASSERT_EQ(run("quantize '" + file("mlp.safetensors") + "' --method kmeans --k 8 -q -o '" + file("q.nq") + "'").status,
            0);
  const std::map<std::string, std::vector<int64_t>> shapes = {
      {"fc1.weight", {24, 784}}, {"fc1.bias", {24}}, {"fc2.weight", {10, 24}}, {"fc2.bias", {10}}};
  for (const auto& [command, out] : std::vector<std::pair<std::string, std::string>>{
           {"finetune --weights '" + file("q.nq") + "'", "ft.nq"},
           {"lc --weights '" + file("mlp.safetensors") + "' --c-step kmeans --k 4 --steps 2", "lc.nq"},
           {"wetrain --weights '" + file("mlp.safetensors") + "' --epochs 1", "we.nq"}}) {
    SCOPED_TRACE(command);
    const CliRun r = run(command + net + " -o '" + file(out) + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const QuantizedModel q = read_nq_file(file(out));
    std::map<std::string, std::vector<int64_t>> got;
    for (const auto& t : q.tensors) got[t.name] = t.shape;
    EXPECT_EQ(got, shapes);
  }
  const QuantizedModel before = read_nq_file(file("q.nq")), after = read_nq_file(file("ft.nq"));
  ASSERT_EQ(before.tensors.size(), after.tensors.size());
  for (size_t t = 0; t < before.tensors.size(); ++t) EXPECT_EQ(before.tensors[t].indices, after.tensors[t].indices);
  EXPECT_NE(before.codebooks, after.codebooks) << "fine-tuning moved no shared value";
}

}  // namespace
}  // namespace nq
