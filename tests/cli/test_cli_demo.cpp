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
  const std::string out = slurp(dir + "/stdout");
  for (const char* row : {"| original", "| k-means per layer (DC)", "| k-means", "| hw k-means", "| uniform",
                          "| iterative ECSQ", "pruned"})
    EXPECT_NE(out.find(row), std::string::npos) << row << "\n" << out;
  const auto j = nlohmann::json::parse(slurp(dir + "/out/demo.json"));
  ASSERT_EQ(j["rows"].size(), 1u + 6u + 1u + 6u);
  const double original = j["rows"][0]["accuracy"].get<double>();
  EXPECT_GT(original, 0.5) << "the quick-trained LeNet-5 should clearly beat chance (10%)";
  for (const auto& row : j["rows"]) {
    EXPECT_GE(row["ratio"].get<double>(), 1.0);
    EXPECT_GT(row["accuracy"].get<double>(), 0.1);
  }
  // The uniform, pruned, fine-tuned model decodes and has LeNet-5's parameter count.
  const QuantizedModel q = read_nq_file(dir + "/out/uniform_pruned_finetuned.nq");
  int64_t params = 0;
  for (const auto& t : q.tensors) params += static_cast<int64_t>(t.indices.size());
  EXPECT_EQ(params, 431080);
  EXPECT_NE(slurp(dir + "/out/points.csv").find("iterative ECSQ (pruned)"), std::string::npos);
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace nq
