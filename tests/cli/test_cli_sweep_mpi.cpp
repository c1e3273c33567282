// `netquant sweep` end to end, alone and under `mpirun -np 2/3`: distributed CSV byte-identical to a single
// process, and a failing rank ends the whole job cleanly with no output file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli_fixture.h"
#include "netquant/distributed.h"
#include "netquant/io.h"

namespace nq {
namespace {

class SweepCli : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
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
  // The names of the hidden files in the test's directory (a run's temporaries and scratch files), sorted.
  std::vector<std::string> hidden_files() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(file(".")))
      if (e.path().filename().string().rfind('.', 0) == 0) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string sweep_args(const std::string& out) const {
    return " sweep '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
           "' --method ecsq,uniform,hw-kmeans --lambdas 1e-5:1e-2:7 --k 2,4,8,16 -q -o '" + out + "'";
  }
};

TEST_F(SweepCli, SingleProcessCsvHasEveryPointAndKnownColumns) {
  const CliRun r = run(sweep_args(file("one.csv")));
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream is(slurp(file("one.csv")));
  std::string header, line;
  std::getline(is, header);
  EXPECT_EQ(header.rfind("index,method,scope,knob_name,knob,lambda,", 0), 0u) << header;
  int rows = 0;
  while (std::getline(is, line)) ++rows;
  EXPECT_EQ(rows, 7 + 4 + 4);
}

// A point equal to the one before it in every field (here k = 4 asked twice) stays in the CSV, marked in its
// `duplicate` column (and the JSON's `duplicate` field), but the table shows each distinct point once.
TEST_F(SweepCli, DuplicatePointsAreMarkedInTheCsvAndShownOnceInTheTable) {
  const CliRun r = run("sweep '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                       "' --method hw-kmeans --k 4,4,8 -o '" + file("d.csv") + "' --json '" + file("d.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> marks;
  for (const auto& row : read_csv(slurp(file("d.csv")))) marks.push_back(row.at("duplicate"));
  EXPECT_EQ(marks, (std::vector<std::string>{"0", "1", "0"}));
  const auto json = nlohmann::json::parse(slurp(file("d.json")));
  std::vector<bool> json_marks;
  for (const auto& p : json.at("points")) json_marks.push_back(p.at("duplicate").get<bool>());
  EXPECT_EQ(json_marks, (std::vector<bool>{false, true, false}));
  size_t k4_rows = 0;
  for (size_t at = r.out.find("k=4 "); at != std::string::npos; at = r.out.find("k=4 ", at + 1)) ++k4_rows;
  EXPECT_EQ(k4_rows, 1u) << r.out;
  EXPECT_NE(r.out.find("k=8 "), std::string::npos) << r.out;
}

// Weights that are not the --eval-model network's are refused before the data set is read or any point runs,
// naming both (every point would otherwise fail the same way, after its quantization).
TEST_F(SweepCli, WeightsThatAreNotTheEvalNetworksAreRefusedFirst) {
  const CliRun r = run("sweep '" + file("model.safetensors") + "' --method hw-kmeans --k 4 --eval-model lenet300 " +
                       "--data '" + file("no-data-here") + "' -o '" + file("e.csv") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find(file("model.safetensors") + ": "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(--eval-model lenet300)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("no-data-here"), std::string::npos) << "the data set was read first: " << r.err;
  EXPECT_FALSE(exists(file("e.csv")));
}

// Options that would be ignored or wrapped are refused before any point runs, naming themselves; no CSV is written.
TEST_F(SweepCli, MeaninglessOptionsAreRefused) {
  for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
           {" --finetune 1", "--finetune requires --eval-model"},
           {" --finetune -1 --eval-model lenet300", "--finetune: must be a whole number"},
           {" --seed -1", "--seed: must be a whole number"},
           {" --target-bits 3 --target-ratio 20", "give one of --target-bits and --target-ratio"},
           {" --scope group:4611686018427387904", "the group size must be below 2^62"},
           {" --batch-weights -4", "--batch-weights: must be a whole number"},
           {"#--method ecsq --k 4", "--k sets the points of k-methods and int, which --method ecsq does not include "
                                    "(ECSQ's initial centers: --k-max)"},
           {"#--method binary --bits 1:3", "--bits sets the points of k-methods and int, which --method binary "
                                           "does not include\n"}}) {
    // '#': the options alone, without sweep_args' methods and knobs.
    const CliRun r = args[0] == '#' ? run("sweep '" + file("model.safetensors") + "' -q -o '" + file("bad.csv") +
                                          "' " + args.substr(1))
                                    : run(sweep_args(file("bad.csv")) + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(exists(file("bad.csv"))) << args;
  }
}

// A document on stdout (the CSV or the JSON) is alone there: the table and the target's line go to stderr, and
// both on stdout at once is refused.
TEST_F(SweepCli, StdoutHoldsOnlyTheDocument) {
  const std::string base = "sweep '" + file("model.safetensors") + "' --method hw-kmeans --k 2,4,8 -q --target-bits 4";
  CliRun r = run(base + " -o '" + file("s.csv") + "' --json -");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["points"].size(), 3u) << r.out;  // throws if anything else is there
  EXPECT_NE(r.err.find("best point for the target"), std::string::npos) << r.err;
  r = run(base + " -o -");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("index,method,", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find("best point"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("best point for the target"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bits/w"), std::string::npos) << r.err;  // the table's header, on stderr
  EXPECT_EQ(r.out.find("bits/w"), std::string::npos) << r.out;  // (not a CSV column)
  r = run(base + " -o - --json -");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("would both write to stdout"), std::string::npos) << r.err;
}

// Points that stop at --max-iter before converging are named in a note on stderr (one Lloyd iteration cannot
// converge: convergence needs a second objective to compare); converged points or --quiet give none.
TEST_F(SweepCli, MaxIterReachedIsNoted) {
  const std::string base = "sweep '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                           "' --method hw-kmeans --k 4,8 -o '" + file("s.csv") + "'";
  CliRun r = run(base + " --max-iter 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("note: 2 of 2 points stopped at --max-iter 1 before converging (hw-kmeans k=4, hw-kmeans k=8)"),
            std::string::npos)
      << r.err;
  for (const char* quiet_case : {"", " --max-iter 1 -q"}) {
    r = run(base + quiet_case);
    ASSERT_EQ(r.status, 0) << quiet_case << ": " << r.err;
    EXPECT_EQ(r.err.find("note:"), std::string::npos) << quiet_case << ": " << r.err;
  }
}

// int's knob is its grid's bits: --bits, else --k (as quantize reads --k for int), else 2:8.
TEST_F(SweepCli, IntTakesItsBitsFromKWithoutBits) {
  const std::string base = "sweep '" + file("model.safetensors") + "' --method int -q -o -";
  for (const auto& [options, expected] : std::vector<std::pair<std::string, std::string>>{
           {" --k 3,5", "3,5"}, {" --bits 4 --k 3", "4"}, {"", "2,3,4,5,6,7,8"}}) {
    const CliRun r = run(base + options);
    ASSERT_EQ(r.status, 0) << options << ": " << r.err;
    std::istringstream is(r.out);
    std::string line, bits;
    std::getline(is, line);  // header
    while (std::getline(is, line)) {
      std::vector<std::string> cells;
      std::istringstream ls(line);
      for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
      ASSERT_GT(cells.size(), 4u) << line;
      EXPECT_EQ(cells[3], "bits") << line;
      bits += (bits.empty() ? "" : ",") + cells[4];
    }
    EXPECT_EQ(bits, expected) << options;
  }
}

// pow2's knob is its exponents per sign, from --k as in quantize: each sweep point has the clusters and
// distortion that `quantize --method pow2 --k K` reports (the sweep once ran every point at the default 8). Without
// --k the points are 1 to 8 exponents, as --help says.
TEST_F(SweepCli, PowTwoTakesItsExponentsFromK) {
  const std::string common = "' --importance '" + file("imp.safetensors") + "' --method pow2 -q";
  const CliRun r = run("sweep '" + file("model.safetensors") + common + " --k 1,2,3 -o -");
  ASSERT_EQ(r.status, 0) << r.err;
  int rows = 0;
  for (const auto& row : read_csv(r.out)) {
    const std::string k = row.at("knob");
    const CliRun q = run("quantize '" + file("model.safetensors") + common + " --k " + k + " --report - -o '" +
                         file("p.nq") + "'");
    ASSERT_EQ(q.status, 0) << q.err;
    const auto total = nlohmann::json::parse(q.out)["total"];
    EXPECT_EQ(std::stoi(row.at("clusters")), total["clusters"].get<int>()) << "k = " << k;
    EXPECT_LE(std::stoi(row.at("clusters")), 2 * std::stoi(k)) << "k = " << k;
    EXPECT_NEAR(std::stod(row.at("hw_distortion")), total["hw_distortion"].get<double>(),
                1e-6 * total["hw_distortion"].get<double>()) << "k = " << k;
    ++rows;
  }
  EXPECT_EQ(rows, 3);
  const CliRun defaults = run("sweep '" + file("model.safetensors") + common + " -o -");
  ASSERT_EQ(defaults.status, 0) << defaults.err;
  std::vector<std::string> knobs;
  for (const auto& row : read_csv(defaults.out)) knobs.push_back(row.at("knob"));
  EXPECT_EQ(knobs, (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "7", "8"}));
}

// --plot with the CSV on stdout draws from a scratch copy beside the plot and removes it; paths go to the plotting
// script quoted for the shell, a quote in them too; and a plot the script fails to write fails the run.
TEST_F(SweepCli, PlotLeavesNoScratchCsvAndItsFailureIsAnError) {
  if (std::system("/usr/bin/python3 -c 'import numpy, matplotlib' >/dev/null 2>&1") != 0 &&
      std::system("python3 -c 'import numpy, matplotlib' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no Python 3 with numpy and matplotlib";
  const std::string base = "sweep '" + file("model.safetensors") + "' --method hw-kmeans --k 2,4 -q -o - --plot ";
  const std::string png = file("it's rd.png");  // the quote is closed and reopened around \' on the shell line
  CliRun r = run(base + "\"" + png + "\"");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("index,method,", 0), 0u) << r.out;
  EXPECT_EQ(slurp(png).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(hidden_files(), std::vector<std::string>{}) << "the scratch CSV was left behind";
  // The script writes PNG.tmp.png and renames it; a directory in that place makes it fail (exit status 1). The plot
  // comes before the other outputs: its failure leaves no CSV, no JSON and no scratch file.
  ASSERT_EQ(::mkdir(file("rd.png.tmp.png").c_str(), 0755), 0);
  r = run("sweep '" + file("model.safetensors") + "' --method hw-kmeans --k 2,4 -q -o '" + file("rd.csv") +
          "' --json '" + file("rd.json") + "' --plot '" + file("rd.png") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("the matplotlib plot failed"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("rd.png")));
  EXPECT_FALSE(exists(file("rd.csv")));
  EXPECT_FALSE(exists(file("rd.json")));
  EXPECT_EQ(hidden_files(), std::vector<std::string>{});
  // The same with the CSV on stdout, where the plot reads a scratch copy: that copy goes too.
  r = run(base + "'" + file("rd.png") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(r.out, "") << "a failed run printed its CSV";
  EXPECT_FALSE(exists(file("rd.png.csv")));
  EXPECT_EQ(hidden_files(), std::vector<std::string>{});
}

TEST_F(SweepCli, BadOptionsExitTwoWithoutOutput) {
  CliRun r = run("sweep '" + file("model.safetensors") + "' --method ecsq --lambdas 3:1:4 -o '" + file("bad.csv") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_FALSE(exists(file("bad.csv")));
  r = run("sweep '" + file("model.safetensors") + "' --method nosuch -o '" + file("bad.csv") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  // Outputs are checked before the sweep runs: two outputs on one file, or one in a missing directory.
  r = run(sweep_args(file("s.csv")) + " --json '" + file("s.csv") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("name the same file"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("s.csv")));
  r = run(sweep_args(file("s.csv")) + " --plot '" + file("nodir/rd.png") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("s.csv")));
  // A target that no point meets fails the run before anything is written.
  r = run(sweep_args(file("s.csv")) + " --target-ratio 10000");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no sweep point meets the target"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("s.csv")));
}

TEST_F(SweepCli, MpiRanksGiveByteIdenticalCsv) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  CliRun r = run(sweep_args(file("one.csv")));
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string single = slurp(file("one.csv"));
  for (int np : {2, 3}) {
    const std::string out = file("np" + std::to_string(np) + ".csv");
    r = shell(mpirun(np) + sweep_args(out));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(slurp(out), single) << "np=" << np;
  }
}

TEST_F(SweepCli, FailingRankAbortsJobAndLeavesNoOutput) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  const std::string out = file("fail.csv");
  const CliRun r = shell("NQ_TEST_FAIL_RANK=1 " + mpirun(2) + sweep_args(out));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("rank 1"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(out));
}

// --bits of the k-methods counts 2^b levels, b in 1..16: both ends' neighbours are refused before any point runs.
TEST_F(SweepCli, BitsOutsideTheirRangeAreRefused) {
  for (const std::string bits : {"0", "17"}) {
    const CliRun r = run("sweep '" + file("model.safetensors") + "' -q -o '" + file("bad.csv") +
                         "' --method hw-kmeans --bits " + bits);
    EXPECT_EQ(r.status, 2) << bits << "\n" << r.err;
    EXPECT_NE(r.err.find("--bits: " + bits + " is outside 1..16"), std::string::npos) << bits << "\n" << r.err;
    EXPECT_FALSE(exists(file("bad.csv"))) << bits;
  }
}

// A method list with no method is refused (without the check `sweep --method ,` ran no point and exited 0, writing
// nothing, without a word).
TEST_F(SweepCli, AnEmptyMethodListIsRefused) {
  for (const char* methods : {",", ",,"}) {
    const CliRun r = run("sweep '" + file("model.safetensors") + "' -q -o '" + file("bad.csv") + "' --method " +
                         methods);
    EXPECT_EQ(r.status, 2) << methods << "\n" << r.err;
    EXPECT_NE(r.err.find("--method: empty list"), std::string::npos) << methods << "\n" << r.err;
    EXPECT_FALSE(exists(file("bad.csv"))) << methods;
  }
}

}  // namespace
}  // namespace nq
