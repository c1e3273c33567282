// `netquant demo --quick` end to end on real Fashion-MNIST: Table 1 rows, outputs, and a .nq that decodes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "netquant/coding.h"
#include "netquant/io.h"

namespace nq {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(DemoCli, QuickRunProducesTableAndFiles) {
  struct stat st {};
  if (::stat((std::string(default_data_dir()) + "/t10k-labels-idx1-ubyte.gz").c_str(), &st) != 0)
    GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)";
  char tmpl[] = "/tmp/nq_demo_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string cmd = std::string("'") + NQ_CLI_PATH + "' demo --quick --no-plot -q --out '" + dir +
                          "/out' > '" + dir + "/stdout' 2> '" + dir + "/stderr'";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir + "/stderr");
  EXPECT_EQ(slurp(dir + "/stderr").find("training lenet5"), std::string::npos) << "-q: no progress lines";
  const std::string out = slurp(dir + "/stdout");
  for (const char* row : {"| original", "| k-means per layer (DC)", "| k-means", "| hw k-means", "| uniform",
                          "| iterative ECSQ", "pruned"})
    EXPECT_NE(out.find(row), std::string::npos) << row << "\n" << out;
  const auto j = nlohmann::json::parse(slurp(dir + "/out/demo.json"));
  // --quick: the first 10,000 training images train, the file's last 2,000 choose, the first 2,000 test images report.
  EXPECT_EQ(j["split"]["train_images"], 10000);
  EXPECT_EQ(j["split"]["validation_begin"], 58000);
  EXPECT_EQ(j["split"]["validation_end"], 60000);
  EXPECT_EQ(j["split"]["test_images"], 2000);
  EXPECT_LE(j["split"]["train_images"].get<int64_t>(), j["split"]["validation_begin"].get<int64_t>()) << "disjoint";
  ASSERT_EQ(j["rows"].size(), 1u + 6u + 1u + 6u);
  const double original = j["rows"][0]["accuracy"].get<double>();
  EXPECT_GT(original, 0.5) << "the quick-trained LeNet-5 should clearly beat chance (10%)";
  for (const auto& row : j["rows"]) {
    EXPECT_GE(row["ratio"].get<double>(), 1.0);
    EXPECT_GT(row["accuracy"].get<double>(), 0.1);
  }
  // The pick, made on the validation images held out of the training set (demo.json's accuracy_validation, the
  // accuracy_validation column of points.csv, whose test columns stay empty): a row within budget is within 0.1 points of its float model's (the original,
  // or the pruned and retrained one), and a row marked otherwise is the most accurate point of its method, none of
  // which is within budget.
  const std::string csv = slurp(dir + "/out/points.csv");
  // The columns by their header names.
  auto column_of = [&](const std::string& name) {
    const std::string header = csv.substr(0, csv.find('\n'));
    int column = 1;
    for (size_t at = 0;; ++column) {
      const size_t comma = header.find(',', at);
      if (header.substr(at, comma == std::string::npos ? std::string::npos : comma - at) == name) return column;
      if (comma == std::string::npos) return -1;
      at = comma + 1;
    }
  };
  const int validation_column = column_of("accuracy_validation"), test_column = column_of("accuracy");
  ASSERT_GT(validation_column, 2);
  ASSERT_GT(test_column, 2);
  // The field at a column of a line that starts at the method (column 2); methods hold no commas.
  auto field_at = [](const std::string& line, int column) {
    size_t pos = 0;
    for (int field = 2; field < column; ++field) pos = line.find(',', pos + 1);
    return line.substr(pos + 1, line.find(',', pos + 1) - pos - 1);
  };
  double reference = j["rows"][0]["accuracy_validation"].get<double>();
  EXPECT_GT(reference, 0.5);
  for (const auto& row : j["rows"]) {
    const std::string method = row["method"].get<std::string>();
    if (method.rfind("pruned", 0) == 0) reference = row["accuracy_validation"].get<double>();
    if (method == "original" || method.rfind("pruned", 0) == 0) continue;
    const double acc = row["accuracy_validation"].get<double>();
    if (row["within_budget"].get<bool>()) {
      EXPECT_GE(acc, reference - 0.001 - 1e-9) << method;
      continue;
    }
    const std::string label = method + (row["pruned"].get<bool>() ? " (pruned)" : "");
    size_t points = 0;
    for (size_t at = csv.find("," + label + ","); at != std::string::npos; at = csv.find("," + label + ",", at + 1)) {
      const size_t line_end = csv.find('\n', at);
      const std::string line = csv.substr(at, line_end - at);
      EXPECT_EQ(field_at(line, test_column), "") << label << ": the demo's points see no test image";
      const double point_acc = std::stod(field_at(line, validation_column));
      EXPECT_LT(point_acc, reference - 0.001) << label << ": a point within budget was not picked";
      EXPECT_LE(point_acc, acc + 1e-9) << label << ": not the most accurate point";
      ++points;
    }
    EXPECT_GT(points, 0u) << label;
  }
  // The uniform, pruned, fine-tuned model decodes and has LeNet-5's parameter count.
  const QuantizedModel q = read_nq_file(dir + "/out/uniform_pruned_finetuned.nq");
  int64_t params = 0;
  for (const auto& t : q.tensors) params += static_cast<int64_t>(t.indices.size());
  EXPECT_EQ(params, 431080);
  EXPECT_NE(slurp(dir + "/out/points.csv").find("iterative ECSQ (pruned)"), std::string::npos);
  // The pruned float row counts the kept weights' positions as the quantized rows do: 32 bits per kept weight plus
  // the file's gap streams and their code tables as the paper counts a table (Σ b_j, one codeword per entry). The
  // file stores each table's lengths in W ≤ 5 bits apiece (README), so Σ b_j ≤ (2^W − 1)/W ≤ 6.2 times its stored
  // bits, which describe_nq_file gives together with the index tables'.
  {
    const NqFileInfo info = describe_nq_file(dir + "/out/uniform_pruned_finetuned.nq");
    double kept = 0, positions = 0, tables = 0;
    for (const auto& t : info.tensors) {
      kept += static_cast<double>(t.params - t.pruned);
      positions += static_cast<double>(t.position_bits);
      tables += static_cast<double>(t.table_bits);
    }
    ASSERT_GT(positions, 0);
    double float_ratio = 0;
    for (const auto& row : j["rows"])
      if (row["method"] == "pruned, retrained (float)") float_ratio = row["ratio"].get<double>();
    EXPECT_LE(float_ratio, 32.0 * 431080 / (32.0 * kept + positions) * (1 + 1e-12));
    EXPECT_GE(float_ratio, 32.0 * 431080 / (32.0 * kept + positions + 6.2 * tables) * (1 - 1e-12));
  }
  // eval takes the .nq itself: the accuracy and loss of its decompressed weights, to the last digit.
  {
    const std::string cli = std::string("'") + NQ_CLI_PATH + "' ";
    const std::string nq = "'" + dir + "/out/uniform_pruned_finetuned.nq'";
    const std::string eval = cli + "eval --model lenet5 --limit 500 --json -q --weights ";
    const int st = std::system((cli + "decompress " + nq + " -o '" + dir + "/d.safetensors' -q && " + eval + nq +
                                " > '" + dir + "/eval_nq' && " + eval + "'" + dir + "/d.safetensors' > '" + dir +
                                "/eval_st'").c_str());
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const auto a = nlohmann::json::parse(slurp(dir + "/eval_nq")), b = nlohmann::json::parse(slurp(dir + "/eval_st"));
    EXPECT_EQ(a["accuracy"], b["accuracy"]);
    EXPECT_EQ(a["loss"], b["loss"]);
    EXPECT_EQ(a["samples"], 500);
  }

  // The pruned rows start from the retrained pruned model: 90% of the weights exactly 0 (the demo's prune), and
  // `train --keep-zeros` from it keeps every one of those zeros while the rest train.
  EXPECT_NE(out.find("| pruned, retrained (float)"), std::string::npos) << out;
  const std::string retrained = dir + "/out/lenet5_pruned_retrained.safetensors";
  const TensorSet before = read_tensors(retrained);
  int64_t zeros = 0, total = 0;
  for (const Tensor& t : before)
    for (float v : t.to_f32()) zeros += v == 0.0f, ++total;
  EXPECT_EQ(total, 431080);
  EXPECT_GE(zeros, static_cast<int64_t>(0.9 * 431080)) << "the pruned weights must still be 0 after retraining";
  const std::string again = dir + "/again.safetensors";
  const std::string train_cmd = std::string("'") + NQ_CLI_PATH + "' train --model lenet5 --optimizer adam --epochs 1 " +
                                "--train-subset 640 --test-subset 100 --keep-zeros --init '" + retrained + "' -o '" +
                                again + "' > /dev/null 2> '" + dir + "/train_err'";
  const int train_status = std::system(train_cmd.c_str());
  ASSERT_TRUE(WIFEXITED(train_status) && WEXITSTATUS(train_status) == 0) << slurp(dir + "/train_err");
  const TensorSet after = read_tensors(again);
  ASSERT_EQ(after.size(), before.size());
  int64_t moved = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const std::vector<float> a = before[i].to_f32(), b = after[i].to_f32();
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j) {
      if (a[j] == 0.0f) {
        ASSERT_EQ(b[j], 0.0f) << before[i].name() << "[" << j << "]";
      }
      moved += a[j] != b[j];
    }
  }
  EXPECT_GT(moved, (total - zeros) / 2) << "the surviving weights must train";
  // train --prune prunes --init by quantize --prune's rule (floor(0.9·N) weights of the trained model) and holds
  // them at 0: the retrained model has that many zeros.
  const std::string pruned_run = dir + "/pruned_run.safetensors";
  const int prune_status = std::system((std::string("'") + NQ_CLI_PATH + "' train --model lenet5 --optimizer adam " +
                                        "--epochs 1 --train-subset 320 --test-subset 100 --prune 0.9 --init '" + dir +
                                        "/out/lenet5.safetensors' --importance '" + dir +
                                        "/out/hessian.safetensors' -o '" + pruned_run + "' > /dev/null 2> '" + dir +
                                        "/prune_err'").c_str());
  ASSERT_TRUE(WIFEXITED(prune_status) && WEXITSTATUS(prune_status) == 0) << slurp(dir + "/prune_err");
  int64_t pruned_zeros = 0;
  for (const Tensor& t : read_tensors(pruned_run))
    for (float v : t.to_f32()) pruned_zeros += v == 0.0f;
  EXPECT_EQ(pruned_zeros, static_cast<int64_t>(0.9 * 431080)) << slurp(dir + "/prune_err");
  // --keep-zeros without --init is a usage error (a fresh model's zero biases would never train).
  const int bad = std::system((std::string("'") + NQ_CLI_PATH + "' train --model lenet5 --keep-zeros -o '" + dir +
                               "/x.safetensors' > /dev/null 2> '" + dir + "/bad_err'").c_str());
  EXPECT_TRUE(WIFEXITED(bad) && WEXITSTATUS(bad) == 2);
  EXPECT_NE(slurp(dir + "/bad_err").find("--keep-zeros"), std::string::npos) << slurp(dir + "/bad_err");
  struct stat none {};
  EXPECT_NE(::stat((dir + "/x.safetensors").c_str(), &none), 0) << "a failed run writes nothing";
  const std::string cli = std::string("'") + NQ_CLI_PATH + "' ";
  // finetune from a dequantized .safetensors records the method `quantize` wrote into its metadata.
  const int deq = std::system((cli + "quantize '" + dir + "/out/lenet5.safetensors' --method kmeans --k 8 -q -o '" +
                               dir + "/deq.safetensors' > /dev/null 2>&1 && " + cli + "finetune --model lenet5 " +
                               "--weights '" + dir + "/deq.safetensors' --train-subset 256 -q -o '" + dir +
                               "/ft.nq' > /dev/null 2> '" + dir + "/ft_err' && " + cli + "inspect '" + dir +
                               "/ft.nq' > '" + dir + "/ft_out'").c_str());
  ASSERT_TRUE(WIFEXITED(deq) && WEXITSTATUS(deq) == 0) << slurp(dir + "/ft_err");
  EXPECT_NE(slurp(dir + "/ft_out").find("method kmeans"), std::string::npos) << slurp(dir + "/ft_out");
  // --quiet drops the progress, set-up and per-epoch/step lines but never the result: train's last line (with its
  // test accuracy), lc's and wetrain's tables.
  const std::string weights = " --weights '" + dir + "/out/lenet5.safetensors'";
  const int quiet_train = std::system((cli + "train --model lenet5 --epochs 1 --train-subset 320 --test-subset 100 -q -o '" +
                                       dir + "/q.safetensors' > '" + dir + "/q_out' 2> '" + dir + "/q_err'").c_str());
  ASSERT_TRUE(WIFEXITED(quiet_train) && WEXITSTATUS(quiet_train) == 0) << slurp(dir + "/q_err");
  EXPECT_EQ(slurp(dir + "/q_out").find("epoch"), std::string::npos) << slurp(dir + "/q_out");
  EXPECT_NE(slurp(dir + "/q_err").find("test accuracy"), std::string::npos) << slurp(dir + "/q_err");
  EXPECT_EQ(slurp(dir + "/q_err").find("parameters"), std::string::npos) << slurp(dir + "/q_err");
  // A run that diverges (NaN weights) says so and writes nothing, where it used to write them and exit 0.
  const int diverged = std::system((cli + "train --model lenet5 --epochs 1 --train-subset 320 --test-subset 100 " +
                                    "--lr 1e30 -q -o '" + dir + "/nan.safetensors' > /dev/null 2> '" + dir +
                                    "/nan_err'").c_str());
  EXPECT_TRUE(WIFEXITED(diverged) && WEXITSTATUS(diverged) == 2) << slurp(dir + "/nan_err");
  EXPECT_NE(slurp(dir + "/nan_err").find("training diverged"), std::string::npos) << slurp(dir + "/nan_err");
  EXPECT_NE(::stat((dir + "/nan.safetensors").c_str(), &none), 0) << "a diverged run writes nothing";
  const int quiet_lc = std::system((cli + "lc --model lenet5" + weights + " --steps 1 --train-subset 320 " +
                                    "--test-subset 100 -q -o '" + dir + "/lc.nq' > '" + dir + "/lc_out' 2> '" + dir +
                                    "/lc_err'").c_str());
  ASSERT_TRUE(WIFEXITED(quiet_lc) && WEXITSTATUS(quiet_lc) == 0) << slurp(dir + "/lc_err");
  EXPECT_NE(slurp(dir + "/lc_out").find("direct compression"), std::string::npos) << slurp(dir + "/lc_out");
  EXPECT_NE(slurp(dir + "/lc_out").find("LC: 1 steps in"), std::string::npos) << slurp(dir + "/lc_out");
  EXPECT_EQ(slurp(dir + "/lc_out").find("step 0"), std::string::npos) << slurp(dir + "/lc_out");
  const std::string wetrain = cli + "wetrain --model lenet5" + weights + " --train-subset 320 --test-subset 100 " +
                              "--calibration 64 -q";
  const int quiet_we = std::system((wetrain + " > '" + dir + "/we_out' 2> '" + dir + "/we_err'").c_str());
  ASSERT_TRUE(WIFEXITED(quiet_we) && WEXITSTATUS(quiet_we) == 0) << slurp(dir + "/we_err");
  EXPECT_NE(slurp(dir + "/we_out").find("after 1 epoch(s)"), std::string::npos) << slurp(dir + "/we_out");
  // wetrain writes .nq only, as lc and finetune: another extension is refused before any work.
  const int we_bad = std::system((wetrain + " -o '" + dir + "/we.safetensors' > /dev/null 2> '" + dir + "/we_err'").c_str());
  EXPECT_TRUE(WIFEXITED(we_bad) && WEXITSTATUS(we_bad) == 2);
  EXPECT_NE(slurp(dir + "/we_err").find("-o must name a .nq file"), std::string::npos) << slurp(dir + "/we_err");
  EXPECT_NE(::stat((dir + "/we.safetensors").c_str(), &none), 0) << "a failed run writes nothing";
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace nq
