// Shared harness for the CLI tests: a scratch directory per test and a runner for the built `netquant`
// binary (NQ_CLI_PATH) that captures the exit status, stdout and stderr.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

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
