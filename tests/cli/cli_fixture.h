// Shared harness for the CLI tests: a scratch directory per test and a runner for the built `netquant`
// binary (NQ_CLI_PATH) that captures the exit status, stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "netquant/io.h"

namespace nq {

struct CliRun {
  int status = -1;  // exit status, or -1 when killed by a signal
  std::string out, err;
};

class CliFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nq_cli_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  // One CSV line's cells, quoted cells included (RFC 4180: "" inside quotes is a quote).
  static std::vector<std::string> csv_cells(const std::string& line) {
    std::vector<std::string> cells(1);
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cells.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        cells.emplace_back();
      } else {
        cells.back() += c;
      }
    }
    return cells;
  }
  // A CSV document as one map per row, keyed by the header's names (each row must have the header's width).
  static std::vector<std::map<std::string, std::string>> read_csv(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);
    const auto header = csv_cells(line);
    std::vector<std::map<std::string, std::string>> rows;
    while (std::getline(in, line)) {
      const auto cells = csv_cells(line);
      EXPECT_EQ(cells.size(), header.size()) << line;
      std::map<std::string, std::string> row;
      for (size_t i = 0; i < header.size() && i < cells.size(); ++i) row[header[i]] = cells[i];
      rows.push_back(row);
    }
    return rows;
  }
  static bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  }
  // Runs a shell command line (e.g. with environment variables or mpirun in front).
  CliRun shell(const std::string& cmdline) const {
    CliRun r;
    const std::string cmd = cmdline + " >'" + file("stdout") + "' 2>'" + file("stderr") + "'";
    const int st = std::system(cmd.c_str());
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(file("stdout"));
    r.err = slurp(file("stderr"));
    return r;
  }
  // Runs `netquant ARGS`.
  CliRun run(const std::string& args) const { return shell(std::string("'") + NQ_CLI_PATH + "' " + args); }

  // A seeded model of heavy-tailed weights (Student-t, 3 dof) and gamma importances, written to
  // model.safetensors and imp.safetensors in the scratch directory; returns the model.
  TensorSet write_model(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::student_t_distribution<double> t(3.0);
    std::gamma_distribution<double> g(0.7, 2.0);
    TensorSet model, imp;
    for (const auto& [name, shape] : shapes) {
      std::vector<float> w(static_cast<size_t>(shape_numel(shape))), h(w.size());
      for (auto& x : w) x = static_cast<float>(0.05 * t(rng));
      for (auto& x : h) x = static_cast<float>(g(rng) + 1e-3);
      model.add(Tensor::from_f32(name, shape, w));
      imp.add(Tensor::from_f32(name, shape, h));
    }
    write_safetensors(file("model.safetensors"), model);
    write_safetensors(file("imp.safetensors"), imp);
    return model;
  }

  static bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }
  // `mpirun -np NP netquant` (append the arguments). Root is allowed explicitly (CI runs as root);
  // --oversubscribe lets more ranks than cores share the machine.
  static std::string mpirun(int np) {
    return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
           "mpirun --oversubscribe -np " + std::to_string(np) + " '" + NQ_CLI_PATH + "'";
  }

  std::string dir_;
};

}  // namespace nq
