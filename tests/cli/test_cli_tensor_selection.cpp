// --include / --exclude on quantize, prune, sweep (and lc's help): the output equals the in-process quantizer run
// on the model without the deselected tensors (read back from the .nq: codebooks and indices bit for bit), the
// deselected tensors come back with their input bits, an importance file need not hold them, the reports record
// the patterns, and a bad pattern or an empty selection exits 2 naming the patterns with no output written.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "netquant/coding.h"
#include "netquant/io.h"
#include "netquant/quantize.h"

namespace nq {
namespace {

class SelectionCli : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
    model_ = write_model({{"model.embed_tokens.weight", {41, 7}},
                          {"model.layers.0.attn.q_proj.weight", {19, 7}},
                          {"model.layers.0.attn.q_proj.bias", {19}},
                          {"model.layers.0.post_norm.weight", {7}},
                          {"model.layers.1.mlp.fc.weight", {11, 17}},
                          {"lm_head.weight", {41, 7}}},
                         21);
    imp_ = read_safetensors(file("imp.safetensors"));
  }
  // The model, or its importance, without the tensors the test's --exclude deselects.
  static TensorSet reduced(const TensorSet& set) {
    TensorSet out;
    for (const Tensor& t : set)
      if (!kExcluded.count(t.name())) out.add(t);
    return out;
  }
  static bool same_bits(const Tensor& a, const Tensor& b) {
    return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
           std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
  }
  static inline const std::string kPattern = "embed|lm_head|norm";
  static inline const std::set<std::string> kExcluded = {"model.embed_tokens.weight",
                                                         "model.layers.0.post_norm.weight", "lm_head.weight"};
  TensorSet model_, imp_;
};

TEST_F(SelectionCli, QuantizeExcludeEqualsTheReducedModel) {
  // The importance holds only the selected tensors: accepted with --exclude, refused without it.
  write_safetensors(file("imp_reduced.safetensors"), reduced(imp_));
  const std::string base = "quantize '" + file("model.safetensors") + "' --importance '" +
                           file("imp_reduced.safetensors") + "' --backend cpu -q ";
  CliRun r = run(base + "--method hw-kmeans --k 8 -o '" + file("x.nq") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("model.embed_tokens.weight"), std::string::npos) << r.err;
  struct Config {
    std::string options;
    Method method;
    int k;
    double lambda, prune;
    const char* scope;
  };
  for (const Config& c :
       {Config{"--method hw-kmeans --k 8 --prune 0.3", Method::kHwKmeans, 8, 0, 0.3, "global"},
        Config{"--method ecsq --k 12 --lambda 3e-5 --scope row", Method::kEcsq, 12, 3e-5, 0, "row"}}) {
    SCOPED_TRACE(c.options);
    r = run(base + c.options + " --exclude '" + kPattern + "' -o '" + file("q.nq") + "' --report '" +
            file("r.json") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    r = run(base + c.options + " --exclude '" + kPattern + "' -o '" + file("q.safetensors") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    ModelQuantizeParams p;
    p.quant.method = c.method;
    p.quant.k = c.k;
    p.quant.lambda = c.lambda;
    p.quant.backend = Backend::kCpu;
    p.prune = c.prune;
    p.scope = parse_scope(c.scope);
    const TensorSet imp = reduced(imp_);
    const QuantizedModel want = quantize_model(reduced(model_), &imp, p);
    const QuantizedModel got = read_nq_file(file("q.nq"));
    ASSERT_EQ(got.codebooks, want.codebooks);
    ASSERT_EQ(got.tensors.size(), model_.size());
    const TensorSet deq = read_safetensors(file("q.safetensors"));
    const TensorSet want_deq = want.dequantize();
    size_t w = 0;
    for (size_t i = 0; i < model_.size(); ++i) {
      const std::string& name = model_[i].name();
      SCOPED_TRACE(name);
      ASSERT_EQ(got.tensors[i].name, name);  // the input's order
      if (kExcluded.count(name)) {
        EXPECT_FALSE(got.tensors[i].quantized);
        EXPECT_TRUE(same_bits(deq.at(name), model_[i])) << "the .safetensors output changed an excluded tensor";
        EXPECT_TRUE(same_bits(got.dequantize().at(name), model_[i])) << "the .nq changed an excluded tensor";
        continue;
      }
      const QuantizedTensor& want_t = want.tensors[w++];
      ASSERT_TRUE(got.tensors[i].quantized);
      EXPECT_EQ(got.tensors[i].indices, want_t.indices);
      EXPECT_EQ(got.tensors[i].first_codebook, want_t.first_codebook);
      EXPECT_TRUE(same_bits(deq.at(name), want_deq.at(name)));
    }
    const auto report = nlohmann::json::parse(slurp(file("r.json")));
    EXPECT_EQ(report["params"]["exclude"], kPattern);
    EXPECT_EQ(report["params"]["include"], "");
    EXPECT_EQ(report["tensors"].size(), model_.size() - kExcluded.size());  // the quantized ones, as for skip_1d
  }
  // --include selecting the same tensors gives the same file.
  const std::string config = "--method hw-kmeans --k 8 --prune 0.3";
  r = run(base + config + " --exclude '" + kPattern + "' -o '" + file("ex.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(base + config + " --include 'q_proj|mlp' -o '" + file("in.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(file("ex.nq")) == slurp(file("in.nq")));
  EXPECT_NE(r.out.find("--include 'q_proj|mlp'"), std::string::npos) << r.out;  // the summary line says so
}

TEST_F(SelectionCli, BadPatternOrEmptySelectionExits2AndWritesNothing) {
  const std::string base = "quantize '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") +
                           "' -o '" + file("out.nq") + "' --report '" + file("r.json") + "' ";
  struct Case {
    std::string options, needle;
  };
  for (const Case& c : {Case{"--exclude '(embed'", "--exclude '(embed' is not a valid regular expression (RE2 syntax)"},
                        Case{"--include 'q_proj[' --exclude norm", "--include 'q_proj[' is not a valid"},
                        Case{"--include '^embed'", "--include '^embed' leaves no tensor to quantize"},
                        Case{"--include norm --exclude weight",
                             "--include 'norm' / --exclude 'weight' leave no tensor to quantize"},
                        Case{"--exclude . --sharded", "--exclude '.' leaves no tensor to quantize"},
                        Case{"--exclude '(' --sharded", "--exclude '(' is not a valid"}}) {
    const CliRun r = run(base + c.options);
    EXPECT_EQ(r.status, 2) << c.options << ": " << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.options << ": " << r.err;
    EXPECT_FALSE(exists(file("out.nq"))) << c.options;
    EXPECT_FALSE(exists(file("r.json"))) << c.options;
  }
  // prune and sweep refuse them the same way.
  CliRun r =
      run("prune '" + file("model.safetensors") + "' --prune 0.5 --exclude . -o '" + file("p.safetensors") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("leaves no tensor"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("p.safetensors")));
  r = run("sweep '" + file("model.safetensors") + "' --method hw-kmeans --k 2,4 --include '*' -o '" + file("s.csv") +
          "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--include '*' is not a valid"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("s.csv")));
}

TEST_F(SelectionCli, PruneKeepsExcludedTensorsAndMatchesTheReducedModel) {
  write_safetensors(file("imp_reduced.safetensors"), reduced(imp_));
  const CliRun r = run("prune '" + file("model.safetensors") + "' --importance '" + file("imp_reduced.safetensors") +
                       "' --prune 0.4 --exclude '" + kPattern + "' -o '" + file("p.safetensors") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const TensorSet got = read_safetensors(file("p.safetensors"));
  ModelQuantizeParams p;
  p.prune = 0.4;
  const TensorSet imp = reduced(imp_);
  const TensorSet want = prune_model(reduced(model_), &imp, p);
  ASSERT_EQ(got.size(), model_.size());
  int64_t selected = 0;
  for (size_t i = 0; i < model_.size(); ++i) {
    const std::string& name = model_[i].name();
    SCOPED_TRACE(name);
    EXPECT_EQ(got[i].name(), name);
    EXPECT_TRUE(same_bits(got[i], kExcluded.count(name) ? model_[i] : want.at(name)));
    if (!kExcluded.count(name)) selected += model_[i].numel();
  }
  // The count on stderr is of the selected weights only.
  EXPECT_NE(r.err.find(std::to_string(static_cast<int64_t>(0.4 * static_cast<double>(selected))) + " of " +
                       std::to_string(selected)),
            std::string::npos)
      << r.err;
}

TEST_F(SelectionCli, SweepRecordsThePatternsAndEqualsQuantize) {
  // A pattern with a comma and a quote must stay one CSV cell.
  const std::string exclude = "embed|lm_he{1,2}ad|norm|\"";
  write_safetensors(file("imp_reduced.safetensors"), reduced(imp_));
  const CliRun r = run("sweep '" + file("model.safetensors") + "' --importance '" + file("imp_reduced.safetensors") +
                       "' --method hw-kmeans --k 3,5 --exclude '" + exclude + "' --backend cpu -q -o '" +
                       file("s.csv") + "' --json '" + file("s.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string csv = slurp(file("s.csv"));
  const std::vector<std::string> header = csv_cells(csv.substr(0, csv.find('\n')));
  ASSERT_GE(header.size(), 2u);
  EXPECT_EQ(header[header.size() - 2], "include");
  EXPECT_EQ(header.back(), "exclude");
  const auto json = nlohmann::json::parse(slurp(file("s.json")));
  int rows = 0;
  for (const auto& row : read_csv(csv)) {
    EXPECT_EQ(row.at("include"), "");
    EXPECT_EQ(row.at("exclude"), exclude);
    EXPECT_EQ(json["points"][rows]["exclude"], exclude);
    // Each point is what quantize gives with the same selection (the hw_distortion column, to the CSV's digits).
    ModelQuantizeParams p;
    p.quant.k = std::stoi(row.at("knob"));
    p.quant.backend = Backend::kCpu;
    const TensorSet imp = reduced(imp_);
    const QuantizedModel want = quantize_model(reduced(model_), &imp, p);
    EXPECT_EQ(std::stoll(row.at("params")), want.total.params + 41 * 7 * 2 + 7) << "params counts every tensor";
    EXPECT_NEAR(std::stod(row.at("hw_distortion")), want.total.hw_distortion, 1e-8 * want.total.hw_distortion);
    ++rows;
  }
  EXPECT_EQ(rows, 2);
}

TEST_F(SelectionCli, EveryQuantizingCommandOffersTheFilters) {
  for (const char* command : {"quantize", "sweep", "prune", "lc"}) {
    const CliRun r = run(std::string(command) + " --help");
    EXPECT_EQ(r.status, 0) << command;
    EXPECT_NE(r.out.find("--include REGEX"), std::string::npos) << command;
    EXPECT_NE(r.out.find("--exclude REGEX"), std::string::npos) << command;
    EXPECT_NE(r.out.find("RE2 syntax"), std::string::npos) << command;
  }
}

}  // namespace
}  // namespace nq
