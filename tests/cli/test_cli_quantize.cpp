// `netquant quantize` end to end: every method and scope on a small safetensors model, the report's keys, the
// dequantized output against the report, and bad inputs (`error:`, exit 2, no output left behind).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli/cli_fixture.h"
#include "netquant/coding.h"
#include "netquant/io.h"
#include "netquant/quantize.h"

namespace nq {
namespace {

class QuantizeCli : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
    model_ = write_model({{"fc1.weight", {13, 31}}, {"fc1.bias", {13}}, {"fc2.weight", {3, 13}}}, 5);
  }
  TensorSet model_;
};

TEST_F(QuantizeCli, EveryMethodAndScope) {
  for (const auto& t : method_table()) {
    for (const char* scope : {"global", "tensor", "row", "group:7"}) {
      std::string args = "quantize '" + file("model.safetensors") + "' -o '" + file("out.safetensors") +
                         "' --importance '" + file("imp.safetensors") + "' --method " + t.name + " --scope " +
                         scope + " --report '" + file("r.json") + "' --quiet";
      if (t.takes_k) args += t.method == Method::kInt ? " --bits 3" : " --k 5";
      if (t.has_lambda) args += " --lambda 1e-5";
      const CliRun r = run(args);
      ASSERT_EQ(r.status, 0) << t.name << " " << scope << ": " << r.err;
      const auto report = nlohmann::json::parse(slurp(file("r.json")));
      for (const char* key : {"params", "clusters", "hw_distortion", "mse", "entropy_bits_per_weight",
                              "fixed_bits_per_weight", "ratio_fixed", "ratio_entropy", "lambda", "seconds",
                              "huffman_bits_per_weight", "ratio_huffman", "ratio_file"})
        EXPECT_TRUE(report["total"].contains(key)) << key;
      EXPECT_EQ(report["method"], t.name);
      EXPECT_EQ(report["scope"], scope);
      EXPECT_EQ(report["tensors"].size(), 3u);
      // The written weights reproduce the report's MSE (oracle: recomputed here in fp64).
      const TensorSet out = read_safetensors(file("out.safetensors"));
      double se = 0;
      int64_t n = 0;
      for (const Tensor& m : model_) {
        const auto a = m.to_f32();
        const auto b = out.at(m.name()).to_f32();
        ASSERT_EQ(out.at(m.name()).shape(), m.shape());
        for (size_t i = 0; i < a.size(); ++i) se += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        n += static_cast<int64_t>(a.size());
      }
      EXPECT_NEAR(report["total"]["mse"].get<double>(), se / n, 1e-9) << t.name << " " << scope;
      // The dequantized file says which quantizer made it (finetune records it from there).
      EXPECT_EQ(out.metadata().at("netquant.quantize.method"), t.name);
      EXPECT_NE(r.out.find("total"), std::string::npos);
    }
  }
}

// Every output is checked before the work: two outputs naming one file (however spelled) are refused and the
// file already there is left as it was; an output in a missing directory fails the run before the main output
// is written; `--report -` leaves stdout to the JSON alone.
TEST_F(QuantizeCli, OutputsAreCheckedBeforeTheWork) {
  const std::string base = "quantize '" + file("model.safetensors") + "' --method hw-kmeans --k 4 --importance '" +
                           file("imp.safetensors") + "'";
  std::ofstream(file("keep.nq")) << "keep";
  for (const std::string& report : {file("keep.nq"), file("sub/../keep.nq"), file("./keep.nq")}) {
    CliRun r = run(base + " -o '" + file("keep.nq") + "' --report '" + report + "'");
    EXPECT_EQ(r.status, 2) << report;
    EXPECT_NE(r.err.find("name the same file"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(file("keep.nq")), "keep");
  }
  CliRun r = run(base + " -o '" + file("out.nq") + "' --report '" + file("nodir/r.json") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--report " + file("nodir/r.json") + ": directory"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("out.nq")));
  r = run(base + " -o '" + file("out.nq") + "' --report -");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);  // throws (the test fails) if anything else is on stdout
  EXPECT_EQ(report["method"], "hw-kmeans");
  EXPECT_NE(r.err.find("wrote " + file("out.nq")), std::string::npos) << r.err;
}

// A .npy tensor is named after its file, so a model and its importance as two .npy files pair by being the one
// tensor each: the result is the one with the same arrays in safetensors under one name.
TEST_F(QuantizeCli, NpyImportancePairsWithAOneTensorModel) {
  const Tensor& w = model_.at("fc1.weight");
  const TensorSet imp = read_safetensors(file("imp.safetensors"));
  write_npy(file("w.npy"), w);
  write_npy(file("w_h.npy"), imp.at("fc1.weight"));
  TensorSet one_w, one_h;
  one_w.add(w);
  one_h.add(imp.at("fc1.weight"));
  write_safetensors(file("one_w.safetensors"), one_w);
  write_safetensors(file("one_h.safetensors"), one_h);
  const std::string opts = " --method hw-kmeans --k 4 -q";
  CliRun r = run("quantize '" + file("w.npy") + "' --importance '" + file("w_h.npy") + "' -o '" + file("a.npy") + "'" +
                 opts);
  ASSERT_EQ(r.status, 0) << r.err;
  r = run("quantize '" + file("one_w.safetensors") + "' --importance '" + file("one_h.safetensors") + "' -o '" +
          file("b.safetensors") + "'" + opts);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_npy(file("a.npy")).to_f32(), read_safetensors(file("b.safetensors")).at("fc1.weight").to_f32());
}

// Rows of a 1-D tensor hold one value each: a note on stderr names the tensor and the ways out; none without
// 1-D tensors in rows (--skip-1d, another scope) or with --quiet. The rows really are single values: fc1.bias
// comes back exactly.
TEST_F(QuantizeCli, RowScopeNotesOneDimensionalTensors) {
  const std::string base = "quantize '" + file("model.safetensors") + "' -o '" + file("out.safetensors") +
                           "' --method kmeans --k 4";
  CliRun r = run(base + " --scope row");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("note: --scope row gives the values of 1-D tensors rows of one value each"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fc1.bias"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("fc1.weight"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--skip-1d"), std::string::npos) << r.err;
  EXPECT_EQ(read_safetensors(file("out.safetensors")).at("fc1.bias").to_f32(), model_.at("fc1.bias").to_f32());
  for (const char* quiet_case : {" --scope row --skip-1d", " --scope tensor", " --scope row --quiet"}) {
    r = run(base + quiet_case);
    ASSERT_EQ(r.status, 0) << quiet_case << ": " << r.err;
    EXPECT_EQ(r.err.find("note:"), std::string::npos) << quiet_case << ": " << r.err;
  }
  // Any other way to a coded model larger than float32 (groups of one value) gets the general note, exactly
  // when the report's ratio is below 1.
  r = run(base + " --scope group:1 --report '" + file("g.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LT(nlohmann::json::parse(slurp(file("g.json")))["total"]["ratio_file"].get<double>(), 1.0);
  EXPECT_NE(r.err.find("note: coded as .nq the model takes more than its float32 size (ratio_file 0."),
            std::string::npos)
      << r.err;
}

// The summary line names the λ an ecsq run used: the one a --target-bits search found (the report's total lambda,
// to 6 significant digits); a method without a λ gets none.
TEST_F(QuantizeCli, SummaryNamesTheLambdaUsed) {
  const std::string base = "quantize '" + file("model.safetensors") + "' -o '" + file("out.nq") + "' --importance '" +
                           file("imp.safetensors") + "' --report '" + file("r.json") + "' --method ";
  CliRun r = run(base + "ecsq --target-bits 2 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const double lambda = nlohmann::json::parse(slurp(file("r.json")))["total"]["lambda"].get<double>();
  ASSERT_GT(lambda, 0);
  char want[64];
  std::snprintf(want, sizeof want, ", lambda %.6g, ", lambda);
  const std::string summary = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(summary.rfind("method ecsq, ", 0), 0u) << summary;
  EXPECT_NE(summary.find(want), std::string::npos) << want << " in: " << summary;
  r = run(base + "kmeans --k 4 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')).find("lambda"), std::string::npos) << r.out;
}

// A run that stops at --max-iter before converging says so on stderr, naming the tensors when each has its own
// problems, as the report's "converged" does; a run that converges (the default here) or --quiet says nothing.
TEST_F(QuantizeCli, MaxIterReachedIsNoted) {
  const std::string base = "quantize '" + file("model.safetensors") + "' -o '" + file("out.safetensors") +
                           "' --importance '" + file("imp.safetensors") + "' --method hw-kmeans --k 8";
  CliRun r = run(base + " --max-iter 1 --scope tensor --report '" + file("r.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(slurp(file("r.json")));
  std::vector<std::string> open;
  for (const auto& t : j["tensors"])
    if (t.contains("converged") && !t["converged"].get<bool>()) open.push_back(t["name"].get<std::string>());
  ASSERT_FALSE(open.empty());
  EXPECT_NE(r.err.find("note: the iterations stopped at --max-iter 1 before converging ("), std::string::npos)
      << r.err;
  for (const std::string& name : open) EXPECT_NE(r.err.find(name), std::string::npos) << name << ": " << r.err;
  r = run(base + " --max-iter 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("note: the iterations stopped at --max-iter 1 before converging;"), std::string::npos)
      << r.err;
  for (const char* quiet_case : {"", " --max-iter 1 --quiet"}) {
    r = run(base + quiet_case);
    ASSERT_EQ(r.status, 0) << quiet_case << ": " << r.err;
    EXPECT_EQ(r.err.find("note:"), std::string::npos) << quiet_case << ": " << r.err;
  }
}

// A model with nothing to quantize (an empty float tensor, an integer one) is copied as stored: the summary line
// gives the bytes on disk (there is no ratio without weights) and a note says nothing was quantized.
TEST_F(QuantizeCli, ModelWithoutWeightsToQuantizeIsCopiedAndSaysSo) {
  TensorSet none;
  none.add(Tensor::from_f32("empty", {0, 3}, {}));
  Tensor ints("steps", DType::kI32, {5});
  none.add(std::move(ints));
  write_safetensors(file("none.safetensors"), none);
  CliRun r = run("quantize '" + file("none.safetensors") + "' -o '" + file("none.nq") + "' --k 4");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("note: no tensor was quantized"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("codebooks cost more"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("nan"), std::string::npos) << r.out;
  const std::string wrote = "wrote " + file("none.nq") + ": " + std::to_string(slurp(file("none.nq")).size()) + " bytes";
  EXPECT_NE(r.out.find(wrote), std::string::npos) << r.out;
  const QuantizedModel back = read_nq_file(file("none.nq"));
  ASSERT_EQ(back.tensors.size(), 2u);
  EXPECT_FALSE(back.tensors[0].quantized);
  EXPECT_FALSE(back.tensors[1].quantized);
  // Only empty float tensors: the line says so instead of a ratio.
  TensorSet empty;
  empty.add(Tensor::from_f32("empty", {0}, {}));
  write_safetensors(file("empty.safetensors"), empty);
  r = run("quantize '" + file("empty.safetensors") + "' -o '" + file("empty.nq") + "' --k 4");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find(std::to_string(slurp(file("empty.nq")).size()) + " bytes, no weights"), std::string::npos)
      << r.out;
}

TEST_F(QuantizeCli, NqOutputPruneAndTarget) {
  CliRun r = run("quantize '" + file("model.safetensors") + "' -o '" + file("out.nq") + "' --importance '" +
              file("imp.safetensors") + "' --method ecsq --k 32 --target-bits 2 --prune 0.5 --quiet --report -");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(exists(file("out.nq")));
  const auto j = nlohmann::json::parse(r.out);  // stdout holds the report alone
  EXPECT_GT(j["total"]["ratio_file"].get<double>(), 0);
}

// --rate-allocation shared-lambda: one λ for every row's codebook, in the report for each tensor, and the file is
// the one --lambda with that λ writes (the oracle: the fixed-λ run, byte for byte).
TEST_F(QuantizeCli, SharedLambdaTargetIsOneLambdaForTheModel) {
  const std::string base = "quantize '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                           "' --method ecsq --k 16 --scope row --skip-1d --quiet";
  CliRun r = run(base + " -o '" + file("shared.nq") + "' --target-bits 2 --rate-allocation shared-lambda --report '" +
                 file("r.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(slurp(file("r.json")));
  EXPECT_EQ(j["params"]["rate_allocation"], "shared-lambda");
  const double lambda = j["total"]["lambda"].get<double>();
  ASSERT_GT(lambda, 0);
  for (const auto& t : j["tensors"]) EXPECT_EQ(t["lambda"].get<double>(), lambda) << t["name"];
  r = run(base + " -o '" + file("fixed.nq") + "' --lambda " + nlohmann::json(lambda).dump());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(file("shared.nq")), slurp(file("fixed.nq")));
  // The default allocation is per problem: each row searches its own λ.
  r = run(base + " -o '" + file("each.nq") + "' --target-bits 2 --report '" + file("e.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(file("e.json")))["params"]["rate_allocation"], "per-problem");
  EXPECT_NE(slurp(file("each.nq")), slurp(file("shared.nq")));
}

TEST_F(QuantizeCli, TargetSizeKeepsTheFileWithinItsBudget) {
  const std::string base = "quantize '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                           "' --method ecsq --k 16 --scope row --quiet";
  // The ends of the range: the λ = 0 file and one level per row.
  CliRun r = run(base + " -o '" + file("top.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(base + " -o '" + file("floor.nq") + "' --lambda 1e9");
  ASSERT_EQ(r.status, 0) << r.err;
  const uint64_t top = slurp(file("top.nq")).size(), floor = slurp(file("floor.nq")).size();
  ASSERT_LT(floor + 200, top);
  const uint64_t budget = (top + floor) / 2;
  r = run(base + " -o '" + file("fit.nq") + "' --target-size " + std::to_string(budget) + " --report '" +
          file("r.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string fit = slurp(file("fit.nq"));
  EXPECT_LE(fit.size(), budget);
  const auto j = nlohmann::json::parse(slurp(file("r.json")));
  EXPECT_EQ(j["params"]["target_size"].get<uint64_t>(), budget);
  EXPECT_EQ(j["params"]["rate_allocation"], "shared-lambda");
  const double lambda = j["total"]["lambda"].get<double>();
  ASSERT_GT(lambda, 0);
  EXPECT_NEAR(j["total"]["ratio_file"].get<double>(), 4.0 * j["total"]["params"].get<double>() / fit.size(), 1e-9);
  // Bit for bit the file --lambda writes at the λ it reports.
  r = run(base + " -o '" + file("fixed.nq") + "' --lambda " + nlohmann::json(lambda).dump());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(fit, slurp(file("fixed.nq")));
  // Units: 1kb is 1000 bytes and 1kib 1024 (both between the two ends of this model's range).
  ASSERT_TRUE(floor < 1000 && top > 1024) << floor << " " << top;
  for (const auto& [text, bytes] : {std::pair<std::string, uint64_t>{"1kb", 1000}, {"1KiB", 1024}}) {
    r = run(base + " -o '" + file("unit.nq") + "' --target-size " + text + " --report '" + file("u.json") + "'");
    ASSERT_EQ(r.status, 0) << text << "\n" << r.err;
    EXPECT_EQ(nlohmann::json::parse(slurp(file("u.json")))["params"]["target_size"].get<uint64_t>(), bytes);
    EXPECT_LE(slurp(file("unit.nq")).size(), bytes) << text;
    EXPECT_GT(slurp(file("unit.nq")).size(), bytes - 100) << text;
  }
  // A ratio is the same budget: float32 bytes over file bytes.
  const double weights = j["total"]["params"].get<double>();
  const double ratio = 4.0 * weights / static_cast<double>(budget);
  r = run(base + " -o '" + file("ratio.nq") + "' --target-file-ratio " + nlohmann::json(ratio).dump() +
          " --report '" + file("q.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(nlohmann::json::parse(slurp(file("q.json")))["total"]["ratio_file"].get<double>(), ratio);
  EXPECT_LE(slurp(file("ratio.nq")).size(), budget);
  // Out of reach: exit 2 naming the floor, and no output.
  r = run(base + " -o '" + file("none.nq") + "' --target-size " + std::to_string(floor - 1));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("is out of reach"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(floor) + " bytes"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("none.nq")));
}

TEST_F(QuantizeCli, CoderPicksTheIndexStreams) {
  // The oracle: the file's own version byte (1 = Huffman only, 2 = rANS streams), `inspect --json` naming each
  // tensor's coder, and every coder's file decompressing to the same bytes.
  const std::string base = "quantize '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                           "' --method ecsq --k 16 --scope row --target-bits 0.3 --quiet";
  std::map<std::string, std::string> files, weights;
  for (const std::string coder : {"huffman", "rans", "auto"}) {
    CliRun r = run(base + " --coder " + coder + " -o '" + file(coder + ".nq") + "' --report '" + file("r.json") + "'");
    ASSERT_EQ(r.status, 0) << coder << ": " << r.err;
    files[coder] = slurp(file(coder + ".nq"));
    // The summary names the file's own size.
    EXPECT_NE(r.out.find("wrote " + file(coder + ".nq") + ": " + std::to_string(files[coder].size()) + " bytes"),
              std::string::npos)
        << r.out;
    EXPECT_EQ(nlohmann::json::parse(slurp(file("r.json")))["params"]["coder"], coder);
    r = run("decompress '" + file(coder + ".nq") + "' -o '" + file(coder + ".safetensors") + "'");
    ASSERT_EQ(r.status, 0) << coder << ": " << r.err;
    weights[coder] = slurp(file(coder + ".safetensors"));
    r = run("inspect --json '" + file(coder + ".nq") + "'");
    ASSERT_EQ(r.status, 0) << coder << ": " << r.err;
    const auto info = nlohmann::json::parse(r.out)["files"][0];
    EXPECT_EQ(info["version"], coder == "huffman" ? 1 : 2) << coder;
    for (const auto& t : info["tensors"]) {
      if (t["quantized"].get<bool>() && coder != "auto") {
        EXPECT_EQ(t["index_coder"], coder) << coder;
      }
    }
  }
  EXPECT_EQ(files["huffman"][8], 1);
  EXPECT_EQ(files["rans"][8], 2);
  // (Whether rANS alone is smaller depends on the tensors' sizes: each chunk's four states cost 16 bytes, a lot
  // for these few hundred weights. auto weighs that per tensor; python/tests checks rANS winning on larger ones.)
  EXPECT_LE(files["auto"].size(), files["huffman"].size());
  EXPECT_LE(files["auto"].size(), files["rans"].size());
  EXPECT_EQ(weights["rans"], weights["huffman"]);
  EXPECT_EQ(weights["auto"], weights["huffman"]);
  // A file budget is met in the coder asked for.
  const uint64_t budget = files["huffman"].size();
  CliRun r = run("quantize '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                 "' --method ecsq --k 16 --scope row --quiet --coder huffman --target-size " + std::to_string(budget) +
                 " -o '" + file("fit.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LE(slurp(file("fit.nq")).size(), budget);
  EXPECT_EQ(slurp(file("fit.nq"))[8], 1);
}

TEST_F(QuantizeCli, BadInputsExitTwo) {
  const std::string m = "'" + file("model.safetensors") + "'";
  const std::string o = " -o '" + file("bad.safetensors") + "'";
  ASSERT_EQ(::mkdir(file("adir").c_str(), 0755), 0);
  for (const std::string& args :
       {"quantize " + m + o + " --method nope", "quantize " + m + o + " --scope group:0",
        "quantize " + m + o + " --prune 1.5", "quantize " + m + o + " --method kmeans --lambda 0.1",
        "quantize " + m + o + " --method kmeans --target-bits 2", "quantize " + m + " -o " + m,
        "quantize '" + file("missing.safetensors") + "'" + o, "quantize " + m + o + " --k 0 --method exact",
        "quantize " + m + o + " --importance '" + file("model.safetensors") + "' --importance-transform log",
        // Out-of-range numbers that share a value or a sign with "unset" are refused, not run as the default.
        "quantize " + m + o + " --k -1", "quantize " + m + o + " --bits -2",
        "quantize " + m + o + " --method ecsq --target-bits 0", "quantize " + m + o + " --method ecsq --target-ratio -4",
        // One λ for every codebook needs ECSQ and a target to search it for.
        "quantize " + m + o + " --method uniform --scope row --target-bits 2 --rate-allocation shared-lambda",
        "quantize " + m + o + " --method ecsq --scope row --lambda 1e-4 --rate-allocation shared-lambda",
        "quantize " + m + o + " --method ecsq --target-bits 2 --rate-allocation shared",
        // A file budget: ecsq alone, one target, one λ for all, a size CLI11 reads (not sharded: ShardedCli).
        "quantize " + m + o + " --method uniform --target-size 10000",
        "quantize " + m + o + " --coder zstd",
        "quantize " + m + o + " --method ecsq --target-size 10000 --target-bits 2",
        "quantize " + m + o + " --method ecsq --target-size 10000 --lambda 1e-4",
        "quantize " + m + o + " --method ecsq --target-size 10000 --target-file-ratio 8",
        "quantize " + m + o + " --method ecsq --target-size 10000 --rate-allocation per-problem",
        "quantize " + m + o + " --method ecsq --target-size ten", "quantize " + m + o + " --method ecsq --target-size 0",
        "quantize " + m + o + " --method ecsq --target-file-ratio 0",
        // Whole numbers CLI11 would wrap (-1 into an unsigned seed) or saturate (past 64 bits) unnoticed.
        "quantize " + m + o + " --init kmeans++ --seed -1",
        "quantize " + m + o + " --init kmeans++ --seed 18446744073709551616",
        "quantize " + m + o + " --init kmeans++ --seed 12abc", "quantize " + m + o + " --batch-weights -1",
        "quantize " + m + o + " --batch-weights 9223372036854775808",
        // A directory as the model, whatever its name.
        "quantize '" + file("adir") + "'" + o}) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("error:", 0), 0u) << args << "\n" << r.err;
    EXPECT_FALSE(exists(file("bad.safetensors"))) << args;
  }
  // The whole-number rule names the option and the range; the range's ends themselves run.
  const CliRun seed = run("quantize " + m + o + " --init kmeans++ --seed -1");
  EXPECT_NE(seed.err.find("--seed: must be a whole number from 0 to 18446744073709551615, got '-1'"),
            std::string::npos)
      << seed.err;
  for (const char* ok : {" --seed 18446744073709551615", " --seed 0", " --batch-weights 9223372036854775807"}) {
    const CliRun r = run("quantize " + m + o + " --init kmeans++ -q" + ok);
    EXPECT_EQ(r.status, 0) << ok << "\n" << r.err;
    std::remove(file("bad.safetensors").c_str());
  }
  // Importance with a wrong shape names the tensor.
  TensorSet imp;
  imp.add(Tensor::from_f32("fc1.weight", {31, 13}, std::vector<float>(13 * 31, 1.0f)));
  imp.add(Tensor::from_f32("fc1.bias", {13}, std::vector<float>(13, 1.0f)));
  imp.add(Tensor::from_f32("fc2.weight", {3, 13}, std::vector<float>(39, 1.0f)));
  write_safetensors(file("badimp.safetensors"), imp);
  const CliRun r = run("quantize " + m + o + " --importance '" + file("badimp.safetensors") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--importance " + file("badimp.safetensors") + ": tensor 'fc1.weight' has shape [31, 13]"),
            std::string::npos)
      << r.err;
  // A missing entry and a non-float one name the file and the tensor too, for quantize, sweep and prune; a missing
  // 1-D entry is fine with --skip-1d, which keeps that tensor in float.
  TensorSet partial;
  partial.add(Tensor::from_f32("fc1.weight", {13, 31}, std::vector<float>(13 * 31, 1.0f)));
  partial.add(Tensor::from_f32("fc2.weight", {3, 13}, std::vector<float>(39, 1.0f)));
  write_safetensors(file("partial.safetensors"), partial);
  TensorSet ints = partial;
  std::vector<int32_t> bias(13, 1);
  ints.add(Tensor::view("fc1.bias", DType::kI32, {13}, bias.data(), nullptr));
  write_safetensors(file("ints.safetensors"), ints);
  const std::string partial_arg = " --importance '" + file("partial.safetensors") + "'";
  // (sweep's -o is a CSV: a .safetensors name is refused as such before the importance is read.)
  for (const std::string& cmd : {"quantize " + m + o,
                                 "sweep " + m + " --method hw-kmeans --k 2,4 -o '" + file("bad.csv") + "'",
                                 "prune " + m + " --prune 0.5" + o}) {
    const CliRun miss = run(cmd + partial_arg);
    EXPECT_EQ(miss.status, 2) << cmd << "\n" << miss.err;
    EXPECT_NE(miss.err.find("--importance " + file("partial.safetensors") + " has no tensor 'fc1.bias'"),
              std::string::npos)
        << cmd << "\n" << miss.err;
    const CliRun non_float = run(cmd + " --importance '" + file("ints.safetensors") + "'");
    EXPECT_EQ(non_float.status, 2) << cmd << "\n" << non_float.err;
    EXPECT_NE(non_float.err.find("tensor 'fc1.bias' has non-float dtype"), std::string::npos) << non_float.err;
    EXPECT_FALSE(exists(file("bad.safetensors"))) << cmd;
    EXPECT_FALSE(exists(file("bad.csv"))) << cmd;
  }
  EXPECT_EQ(run("quantize " + m + " -o '" + file("skip.safetensors") + "' --skip-1d -q" + partial_arg).status, 0);
  // A weight or an importance that is not finite: the message names the file, the tensor and the element.
  TensorSet nan_model = partial, nan_imp = partial;
  std::vector<float> with_nan(13 * 31, 0.5f), with_inf(39, 1.0f);
  with_nan[40] = std::nanf("");
  with_inf[7] = INFINITY;
  nan_model.add(Tensor::from_f32("fc1.bias", {13}, std::vector<float>(13, 0.1f)));
  nan_model[0] = Tensor::from_f32("fc1.weight", {13, 31}, with_nan);
  nan_imp.add(Tensor::from_f32("fc1.bias", {13}, std::vector<float>(13, 1.0f)));
  nan_imp[1] = Tensor::from_f32("fc2.weight", {3, 13}, with_inf);
  write_safetensors(file("nan_model.safetensors"), nan_model);
  write_safetensors(file("inf_imp.safetensors"), nan_imp);
  const CliRun bad_w = run("quantize '" + file("nan_model.safetensors") + "'" + o);
  EXPECT_EQ(bad_w.status, 2) << bad_w.err;
  EXPECT_NE(bad_w.err.find(file("nan_model.safetensors") + ": tensor 'fc1.weight': weight 40 is not finite (nan)"),
            std::string::npos)
      << bad_w.err;
  const CliRun bad_h = run("quantize " + m + o + " --importance '" + file("inf_imp.safetensors") + "'");
  EXPECT_EQ(bad_h.status, 2) << bad_h.err;
  EXPECT_NE(bad_h.err.find(file("inf_imp.safetensors") + ": importance of tensor 'fc2.weight': value 7 is inf"),
            std::string::npos)
      << bad_h.err;
  EXPECT_FALSE(exists(file("bad.safetensors")));
  // More levels than a .nq codebook holds: refused before any work, naming the limit; .safetensors takes them.
  const std::string nq = " -o '" + file("bad.nq") + "'";
  // (int's grid holds at most 16 bits whatever the output: its own check says so.)
  for (const auto& [levels, message] : std::vector<std::pair<std::string, std::string>>{
           {"--k 65537", "at most 65536 levels"},
           {"--bits 17", "at most 65536 levels"},
           {"--method int --bits 17", "int: bits must be in [2, 16]"}}) {
    const CliRun big = run("quantize " + m + nq + " " + levels);
    EXPECT_EQ(big.status, 2) << levels << "\n" << big.err;
    EXPECT_NE(big.err.find(message), std::string::npos) << big.err;
    EXPECT_FALSE(exists(file("bad.nq"))) << levels;
  }
  EXPECT_EQ(run("quantize " + m + " -o '" + file("many.safetensors") + "' --k 65537 --method exact -q").status, 0);
  EXPECT_EQ(run("quantize " + m + " -o '" + file("many.nq") + "' --k 65536 -q").status, 0);
}

// The ends of --bits and --target-size: one past each is refused naming the range, before anything is written.
TEST_F(QuantizeCli, OnePastTheRangeOfBitsAndTargetSize) {
  const std::string m = "'" + file("model.safetensors") + "'";
  const std::string o = " -o '" + file("bad.safetensors") + "'";
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {" --bits 25", "--bits must be in 1..24, got 25"},
           {" --bits 0", "--bits: must be > 0, got 0"},
           {" --method ecsq --target-size 9223372036854775808", "--target-size is out of range"}}) {
    const CliRun r = run("quantize " + m + o + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(exists(file("bad.safetensors"))) << args;
  }
  // The last value in range runs (.safetensors takes any number of levels).
  EXPECT_EQ(run("quantize " + m + o + " --bits 24 -q").status, 0);
}

// Without --k or --bits a method has its documented default: 16 levels ("--k: levels, default 16"), and int a
// 4-bit grid (at most 2^4 - 1 levels, symmetric).
TEST_F(QuantizeCli, DefaultLevelsAreTheDocumentedOnes) {
  const std::string m = "'" + file("model.safetensors") + "'";
  CliRun r = run("quantize " + m + " -o '" + file("d.safetensors") + "' -q --report '" + file("d.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  auto report = nlohmann::json::parse(slurp(file("d.json")));
  EXPECT_EQ(report["params"]["k"], 16);
  EXPECT_GT(report["total"]["clusters"].get<int64_t>(), 8);  // 451 heavy-tailed weights use nearly all 16
  EXPECT_LE(report["total"]["clusters"].get<int64_t>(), 16);
  r = run("quantize " + m + " -o '" + file("i.safetensors") + "' -q --method int --report '" + file("i.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  report = nlohmann::json::parse(slurp(file("i.json")));
  EXPECT_LE(report["total"]["clusters"].get<int64_t>(), 15);
  EXPECT_GT(report["total"]["clusters"].get<int64_t>(), 7);  // more than a 3-bit grid holds
}

}  // namespace
}  // namespace nq
