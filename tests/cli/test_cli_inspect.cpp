// `netquant inspect` end to end: the built binary on good and bad files, exit statuses, stderr, JSON output,
// statistics checked against a long-double brute-force oracle.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli/cli_fixture.h"
#include "netquant/io.h"

namespace nq {
namespace {

using InspectCli = CliFixture;

TEST_F(InspectCli, HelpExitsZero) {
  CliRun r = run("inspect --help");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("--json"), std::string::npos);
}

TEST_F(InspectCli, StatisticsMatchBruteForce) {
  std::mt19937 rng(77);
  std::normal_distribution<float> g(3.0f, 0.5f);  // |mean| >> std stresses the std computation
  std::vector<float> w(1237);
  for (auto& v : w) v = (rng() % 5 == 0) ? 0.0f : g(rng);
  w[5] = std::nanf("");
  w[6] = INFINITY;
  TensorSet set;
  set.add(Tensor::from_f32("layer.weight", {1237}, w));
  Tensor h = Tensor::from_f32("half", {3, 3}, {0, 1, -2, 0.5f, 0, 0, 7, 8, -9}).converted(DType::kF16);
  set.add(h);
  // bf16 (exact here too) decoded as bf16: read as f16 its bits would be other numbers entirely.
  set.add(Tensor::from_f32("brain", {4}, {1.5f, -2.0f, 0.0f, 96.0f}).converted(DType::kBF16));
  set.metadata()["format"] = "pt";
  write_safetensors(file("m.safetensors"), set);

  CliRun r = run("inspect --json '" + file("m.safetensors") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  const auto& f = doc["files"][0];
  EXPECT_EQ(f["format"], "safetensors");
  EXPECT_EQ(f["metadata"]["format"], "pt");
  ASSERT_EQ(f["tensors"].size(), 3u);
  // Oracle: long double, finite values only, population std.
  long double sum = 0, ss = 0, lo = INFINITY, hi = -INFINITY;
  int64_t n = 0, zeros = 0;
  for (float v : w) {
    if (v == 0) ++zeros;
    if (!std::isfinite(v)) continue;
    sum += v, ++n, lo = std::min<long double>(lo, v), hi = std::max<long double>(hi, v);
  }
  const long double mean = sum / n;
  for (float v : w)
    if (std::isfinite(v)) ss += (v - mean) * (v - mean);
  const auto& t = f["tensors"][0];
  EXPECT_EQ(t["name"], "layer.weight");
  EXPECT_EQ(t["count"], 1237);
  EXPECT_EQ(t["nonfinite"], 2);
  EXPECT_EQ(t["min"].get<double>(), static_cast<double>(lo));
  EXPECT_EQ(t["max"].get<double>(), static_cast<double>(hi));
  EXPECT_NEAR(t["mean"].get<double>(), static_cast<double>(mean), 1e-12);
  EXPECT_NEAR(t["std"].get<double>(), static_cast<double>(std::sqrt(ss / n)), 1e-12);
  EXPECT_DOUBLE_EQ(t["zero_fraction"].get<double>(), static_cast<double>(zeros) / 1237);
  const auto& hj = f["tensors"][1];
  EXPECT_EQ(hj["dtype"], "F16");
  EXPECT_EQ(hj["shape"], (std::vector<int64_t>{3, 3}));
  EXPECT_DOUBLE_EQ(hj["mean"].get<double>(), 5.5 / 9);  // (0+1-2+0.5+0+0+7+8-9)/9, all exact in f16
  EXPECT_DOUBLE_EQ(hj["zero_fraction"].get<double>(), 3.0 / 9);
  const auto& bj = f["tensors"][2];
  EXPECT_EQ(bj["dtype"], "BF16");
  EXPECT_EQ(bj["min"].get<double>(), -2.0);
  EXPECT_EQ(bj["max"].get<double>(), 96.0);
  EXPECT_DOUBLE_EQ(bj["mean"].get<double>(), 95.5 / 4);
  EXPECT_EQ(f["total"]["count"], 1237 + 9 + 4);

  // Text mode prints a table with both tensors and a totals row.
  CliRun text = run("inspect '" + file("m.safetensors") + "'");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("layer.weight"), std::string::npos);
  EXPECT_NE(text.out.find("[3, 3]"), std::string::npos);
  EXPECT_NE(text.out.find("total (3 tensors)"), std::string::npos);
  EXPECT_NE(text.out.find("2 nan/inf"), std::string::npos);
}

TEST_F(InspectCli, SeveralFormatsAndJsonOut) {
  write_npy(file("v.npy"), Tensor::from_f64("x", {4}, {1, 2, 3, 4}));
  const std::string idx = std::string("\0\0\x08\x02\0\0\0\x02\0\0\0\x02\x01\x00\x03\x04", 16);
  std::ofstream(file("lab-ubyte"), std::ios::binary).write(idx.data(), idx.size());
  CliRun r = run("inspect --json-out '" + file("o.json") + "' '" + file("v.npy") + "' '" + file("lab-ubyte") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("v.npy: npy, 1 tensors"), std::string::npos) << r.out;
  const auto doc = nlohmann::json::parse(slurp(file("o.json")));
  ASSERT_EQ(doc["files"].size(), 2u);
  EXPECT_EQ(doc["files"][0]["tensors"][0]["name"], "v");
  EXPECT_DOUBLE_EQ(doc["files"][0]["tensors"][0]["std"].get<double>(), std::sqrt(1.25));
  EXPECT_EQ(doc["files"][1]["format"], "idx");
  EXPECT_EQ(doc["files"][1]["tensors"][0]["dtype"], "U8");
  EXPECT_DOUBLE_EQ(doc["files"][1]["tensors"][0]["zero_fraction"].get<double>(), 0.25);
  // The JSON output may not replace an input.
  CliRun same = run("inspect --json-out '" + file("v.npy") + "' '" + file("v.npy") + "'");
  EXPECT_EQ(same.status, 2);
  EXPECT_EQ(same.err.rfind("error: ", 0), 0u) << same.err;
  EXPECT_EQ(read_npy(file("v.npy")).numel(), 4);
}

TEST_F(InspectCli, BadFilesExitTwoWithAnError) {
  TensorSet set;
  set.add(Tensor::from_f32("w", {4}, {1, 2, 3, 4}));
  const std::string good = serialize_safetensors(set);
  const std::string truncated = good.substr(0, good.size() - 3);
  std::ofstream(file("cut.safetensors"), std::ios::binary).write(truncated.data(), truncated.size());
  std::ofstream(file("junk.npy"), std::ios::binary) << "not numpy at all";
  std::ofstream(file("junk-ubyte"), std::ios::binary) << "\x1f\x8b garbage";
  for (const char* name : {"cut.safetensors", "junk.npy", "junk-ubyte", "missing.safetensors"}) {
    SCOPED_TRACE(name);
    CliRun r = run("inspect '" + file(name) + "'");
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;  // the message names the file
    // One file: its error is the run's, alone (no "1 of 1 files could not be read" after it, no JSON document).
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    const CliRun json = run("inspect --json '" + file(name) + "'");
    EXPECT_EQ(json.status, 2);
    EXPECT_EQ(json.out, "");
  }
  // A valid file with a dtype netquant cannot hold: unsupported, exit 3, naming the tensor.
  std::string header = R"({"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})";
  std::string f8(8, '\0');
  f8[0] = static_cast<char>(header.size());
  f8 += header + "ab";
  std::ofstream(file("f8.safetensors"), std::ios::binary).write(f8.data(), f8.size());
  CliRun r = run("inspect '" + file("f8.safetensors") + "'");
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.err.find("'q'"), std::string::npos) << r.err;
  // An unknown type is unsupported (exit 3); a missing file, whatever its name, and no file at all are usage errors.
  std::ofstream(file("model.bin")) << "not a model";
  EXPECT_EQ(run("inspect '" + file("model.bin") + "'").status, 3);
  r = run("inspect '" + file("absent.bin") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("absent.bin: cannot open"), std::string::npos) << r.err;
  EXPECT_EQ(run("inspect").status, 2);
}

TEST_F(InspectCli, BadFilesAmongSeveralAreReportedAndTheRestShown) {
  // Upper-case extensions dispatch as lower-case ones; BOOL bytes other than 0/1 count as true (numpy's cast).
  TensorSet set;
  set.add(Tensor::from_f32("w", {3}, {1, 2, 3}));
  Tensor mask("mask", DType::kBool, {4});
  const uint8_t bytes[4] = {0, 1, 2, 0xff};
  std::memcpy(mask.mutable_data(), bytes, 4);
  set.add(mask);
  write_safetensors(file("good.SAFETENSORS"), set);
  write_npy(file("v.NPY"), Tensor::from_f64("v", {2}, {5, 7}));
  std::ofstream(file("junk.npy"), std::ios::binary) << "not numpy at all";
  CliRun r = run("inspect --json '" + file("good.SAFETENSORS") + "' '" + file("junk.npy") + "' '" + file("v.NPY") +
                 "' '" + file("missing.safetensors") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("junk.npy"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("missing.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 of 4 files could not be read"), std::string::npos) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["files"].size(), 4u);
  EXPECT_EQ(doc["files"][0]["tensors"][1]["dtype"], "BOOL");
  EXPECT_EQ(doc["files"][0]["tensors"][1]["max"].get<double>(), 1.0);
  EXPECT_EQ(doc["files"][0]["tensors"][1]["mean"].get<double>(), 0.75);
  EXPECT_NE(doc["files"][1]["error"].get<std::string>().find("junk.npy"), std::string::npos);
  EXPECT_EQ(doc["files"][2]["tensors"][0]["mean"].get<double>(), 6.0);
  EXPECT_TRUE(doc["files"][3].contains("error"));
  // Text mode shows both good files, and --json-out is not written when a file failed.
  std::ofstream(file("junk.nq"), std::ios::binary) << "not a .nq file";
  CliRun text = run("inspect --json-out '" + file("o.json") + "' '" + file("good.SAFETENSORS") + "' '" +
                    file("junk.npy") + "' '" + file("junk.nq") + "' '" + file("v.NPY") + "'");
  EXPECT_EQ(text.status, 2);
  EXPECT_NE(text.out.find("good.SAFETENSORS: safetensors, 2 tensors"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("v.NPY: npy, 1 tensors"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("\n\n\n"), std::string::npos) << "one blank line between files shown:\n" << text.out;
  EXPECT_FALSE(std::ifstream(file("o.json")).good());
}

}  // namespace
}  // namespace nq
