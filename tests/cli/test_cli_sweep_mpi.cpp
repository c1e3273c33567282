// `netquant sweep` end to end, alone and under `mpirun -np 2/3`: distributed CSV byte-identical to a single
// process, and a failing rank ends the whole job cleanly with no output file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>

#include "netquant/distributed.h"
#include "netquant/io.h"

namespace nq {
namespace {

class SweepCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nq_cli_sweep_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::mt19937 rng(21);
    std::student_t_distribution<float> heavy(4.0f);
    std::gamma_distribution<float> gamma(0.8f, 1.0f);
    TensorSet model, imp;
    for (auto [name, rows, cols] : {std::tuple<const char*, int, int>{"fc1.weight", 53, 31}, {"fc2.weight", 7, 53}}) {
      std::vector<float> w(static_cast<size_t>(rows * cols)), h(w.size());
      for (auto& v : w) v = 0.1f * heavy(rng);
      for (auto& v : h) v = gamma(rng);
      model.add(Tensor::from_f32(name, {rows, cols}, w));
      imp.add(Tensor::from_f32(name, {rows, cols}, h));
    }
    write_safetensors(file("model.safetensors"), model);
    write_safetensors(file("imp.safetensors"), imp);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  static bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  }
  // Runs a shell command line; returns the exit status and captures stderr.
  int run(const std::string& cmdline, std::string* err = nullptr) const {
    const std::string cmd = cmdline + " >'" + file("stdout") + "' 2>'" + file("stderr") + "'";
    const int st = std::system(cmd.c_str());
    if (err) *err = slurp(file("stderr"));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }
  std::string sweep_args(const std::string& out) const {
    return " sweep '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
           "' --method ecsq,uniform,hw-kmeans --lambdas 1e-5:1e-2:7 --k 2,4,8,16 -q -o '" + out + "'";
  }
  static bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }
  std::string mpirun(int np) const {
    // Root is allowed explicitly (CI runs as root); --oversubscribe lets 3 ranks share 2 cores.
    return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
           "mpirun --oversubscribe -np " + std::to_string(np) + " '" + NQ_CLI_PATH + "'";
  }
  std::string dir_;
};

TEST_F(SweepCli, SingleProcessCsvHasEveryPointAndKnownColumns) {
  std::string err;
  ASSERT_EQ(run(std::string("'") + NQ_CLI_PATH + "'" + sweep_args(file("one.csv")), &err), 0) << err;
  std::istringstream is(slurp(file("one.csv")));
  std::string header, line;
  std::getline(is, header);
  EXPECT_EQ(header.rfind("index,method,scope,knob_name,knob,lambda,", 0), 0u) << header;
  int rows = 0;
  while (std::getline(is, line)) ++rows;
  EXPECT_EQ(rows, 7 + 4 + 4);
}

TEST_F(SweepCli, BadOptionsExitTwoWithoutOutput) {
  std::string err;
  EXPECT_EQ(run(std::string("'") + NQ_CLI_PATH + "' sweep '" + file("model.safetensors") +
                    "' --method ecsq --lambdas 3:1:4 -o '" + file("bad.csv") + "'",
                &err),
            2);
  EXPECT_EQ(err.rfind("error: ", 0), 0u) << err;
  EXPECT_FALSE(exists(file("bad.csv")));
  EXPECT_EQ(run(std::string("'") + NQ_CLI_PATH + "' sweep '" + file("model.safetensors") +
                    "' --method nosuch -o '" + file("bad.csv") + "'",
                &err),
            2);
  EXPECT_NE(err.find("nosuch"), std::string::npos) << err;
}

TEST_F(SweepCli, MpiRanksGiveByteIdenticalCsv) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  std::string err;
  ASSERT_EQ(run(std::string("'") + NQ_CLI_PATH + "'" + sweep_args(file("one.csv")), &err), 0) << err;
  const std::string single = slurp(file("one.csv"));
  for (int np : {2, 3}) {
    const std::string out = file("np" + std::to_string(np) + ".csv");
    ASSERT_EQ(run(mpirun(np) + sweep_args(out), &err), 0) << err;
    EXPECT_EQ(slurp(out), single) << "np=" << np;
  }
}

TEST_F(SweepCli, FailingRankAbortsJobAndLeavesNoOutput) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  std::string err;
  const std::string out = file("fail.csv");
  const int status = run("NQ_TEST_FAIL_RANK=1 " + mpirun(2) + sweep_args(out), &err);
  EXPECT_NE(status, 0);
  EXPECT_NE(err.find("rank 1"), std::string::npos) << err;
  EXPECT_FALSE(exists(out));
}

}  // namespace
}  // namespace nq
