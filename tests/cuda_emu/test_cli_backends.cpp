// `netquant quantize --backend cuda` end to end on the emulated device (netquant_emu: the CLI linked against the
// emulation) against `--backend cpu`: the CLI, the model pipeline and the device ops together. Row and group
// k-means, HW k-means and exact promise the CPU's bits, so their .nq files must be byte-equal; global and ECSQ
// problems may differ in the last bits of fp64 sums, so their reports must agree to 1e-9.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "netquant/io.h"

namespace nq {
namespace {

class CliBackends : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
    // Tensors above the 16,384 values under which a global problem stays on the CPU, rows of awkward length.
    write_model({{"fc1.weight", {300, 257}}, {"fc1.bias", {300}}, {"fc2.weight", {41, 300}}}, 21);
  }

  // Quantizes with the backend; returns the report's totals. The device run must launch kernels, the CPU run none.
  nlohmann::json quantize(const std::string& args, const std::string& backend, const std::string& out) {
    const CliRun r = shell("NQ_EMU_VERBOSE=1 '" + std::string(NQ_CLI_PATH) + "' quantize '" +
                           file("model.safetensors") + "' --importance '" + file("imp.safetensors") + "' " + args +
                           " --backend " + backend + " -o '" + file(out) + "' --report '" + file("r.json") +
                           "' --quiet");
    EXPECT_EQ(r.status, 0) << args << " on " << backend << ": " << r.err;
    const size_t at = r.err.find("[cuda emulation] ");
    EXPECT_NE(at, std::string::npos) << r.err;
    const long long launches = at == std::string::npos ? 0 : std::atoll(r.err.c_str() + at + 17);
    if (backend == "cuda") {
      EXPECT_GT(launches, 0) << args << ": nothing ran on the device";
    } else {
      EXPECT_EQ(launches, 0) << args << ": the CPU run launched kernels";
    }
    const nlohmann::json report = nlohmann::json::parse(slurp(file("r.json")));
    EXPECT_EQ(report.at("backend"), backend);
    return report.at("total");
  }
};

// `info --cuda-self-test` on the emulated device: the saxpy kernel, then one GEMM through cuBLAS, opened with
// dlopen from the emulation's own library (tests/cuda_emu/cublas_emu.cpp).
TEST_F(CliBackends, InfoSelfTestOpensCublasAndMultiplies) {
  const CliRun r = run("info --cuda-self-test");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("cuda self-test: max error 0 (ok)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cublas:       opened on first use: libnq_cublas_emu.so, else /"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cublas self-test: relative error "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" (ok), /"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/libnq_cublas_emu.so\n"), std::string::npos) << r.out;
}

TEST_F(CliBackends, RowAndGroupKmeansWriteTheCpuBytes) {
  for (const std::string args : {"--method hw-kmeans --k 16 --scope row", "--method kmeans --k 16 --scope group:64",
                                 "--method hw-kmeans --k 8 --scope group:1000 --prune 0.3",
                                 "--method exact --k 16 --scope group:4096"}) {
    SCOPED_TRACE(args);
    quantize(args, "cpu", "cpu.nq");
    quantize(args, "cuda", "cuda.nq");
    const std::string a = slurp(file("cpu.nq")), b = slurp(file("cuda.nq"));
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << "the .nq files differ";
  }
}

TEST_F(CliBackends, GlobalAndEcsqAgreeWithTheCpu) {
  for (const std::string args : {"--method hw-kmeans --k 16", "--method ecsq --lambda 1e-6",
                                 "--method ecsq --lambda 1e-6 --scope group:64", "--method ecsq --target-bits 3"}) {
    SCOPED_TRACE(args);
    const nlohmann::json c = quantize(args, "cpu", "cpu.nq"), g = quantize(args, "cuda", "cuda.nq");
    for (const char* key : {"hw_distortion", "mse", "entropy_bits_per_weight", "huffman_bits_per_weight"}) {
      const double x = c.at(key).get<double>(), y = g.at(key).get<double>();
      EXPECT_LE(std::fabs(x - y), 1e-9 * std::max(std::fabs(x), 1e-300)) << key << ": " << x << " vs " << y;
    }
    EXPECT_EQ(c.at("clusters"), g.at("clusters"));
  }
}

}  // namespace
}  // namespace nq
