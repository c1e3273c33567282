// `netquant quantize --sharded`, alone and under `mpirun -np 2/3`: the .nq is byte-identical for any number of
// ranks; one process agrees with the in-process quantizer (same Lloyd fixed point, same pruning mask); a rank
// that fails ends the whole job with a message naming it and leaves no output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>

#include "cli/cli_fixture.h"
#include "netquant/backend.h"
#include "netquant/coding.h"
#include "netquant/distributed.h"
#include "netquant/io.h"
#include "nlohmann/json.hpp"

namespace nq {
namespace {

class ShardedCli : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
    // Sizes chosen so that the fixed blocks (16384 weights) cut through tensors and ranks own uneven runs.
    std::mt19937 rng(33);
    std::student_t_distribution<float> heavy(4.0f);
    std::gamma_distribution<float> gamma(0.8f, 1.0f);
    TensorSet model, imp;
    for (auto [name, shape] : {std::pair<const char*, std::vector<int64_t>>{"a.weight", {97, 431}},
                               {"a.bias", {97}},
                               {"b.weight", {40000}},
                               {"c.weight", {23, 1001}}}) {
      std::vector<float> w(static_cast<size_t>(shape_numel(shape))), h(w.size());
      for (auto& v : w) v = 0.05f * heavy(rng);
      for (auto& v : h) v = gamma(rng);
      model.add(Tensor::from_f32(name, shape, w));
      imp.add(Tensor::from_f32(name, shape, h));
    }
    Tensor steps("steps", DType::kI64, {3});  // not quantized: kept as is
    model.add(steps);
    model.metadata()["format"] = "pt";  // kept in a .safetensors output, sharded or not
    write_safetensors(file("model.safetensors"), model);
    write_safetensors(file("imp.safetensors"), imp);
  }
  std::string quantize_args(const std::string& options, const std::string& out) const {
    return " quantize '" + file("model.safetensors") + "' --importance '" + file("imp.safetensors") + "' " + options +
           " -o '" + out + "' --report '" + out + ".json'";
  }
  nlohmann::json report(const std::string& out) const { return nlohmann::json::parse(slurp(out + ".json")); }
};

const char* const kConfigs[] = {
    "--sharded --method hw-kmeans --k 16 --prune 0.3 --importance-transform sqrt",
    "--sharded --method ecsq --target-bits 2.5 --importance-transform normalize --skip-1d",
    "--sharded --method kmeans --bits 3",
    // 300 levels: indices two bytes wide, gathered at that width
    "--sharded --method hw-kmeans --k 300 --prune 0.2 --max-iter 20",
};

TEST_F(ShardedCli, MpiRanksGiveByteIdenticalFiles) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  for (const std::string config : kConfigs) {
    const std::string one = file("one.nq");
    CliRun r = run(quantize_args(config, one));
    ASSERT_EQ(r.status, 0) << config << "\n" << r.err;
    const std::string single = slurp(one);
    ASSERT_FALSE(single.empty());
    for (int np : {2, 3}) {
      const std::string out = file("np" + std::to_string(np) + ".nq");
      r = shell(mpirun(np) + quantize_args(config, out));
      ASSERT_EQ(r.status, 0) << config << " np=" << np << "\n" << r.err;
      EXPECT_TRUE(slurp(out) == single) << config << ": np=" << np << " differs from one process";
      EXPECT_EQ(report(out)["sharded"]["ranks"], np);
      // The statistics are folded in the same order too.
      EXPECT_EQ(report(out)["total"]["hw_distortion"], report(one)["total"]["hw_distortion"]) << config;
    }
  }
}

// ECSQ at λ = 0 moves the weights of zero importance to their nearest level over every rank's centres (a sum over
// the ranks). A model of one block leaves the other ranks without weights, and they must still join that sum: they
// skipped it once, and the job hung. Oracle: one process and the in-process quantizer, byte for byte.
TEST_F(ShardedCli, EcsqAtLambdaZeroWithEmptyRanks) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  std::vector<float> w(1000), h(1000);
  uint64_t s = 7;
  for (size_t i = 0; i < w.size(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    w[i] = static_cast<float>(static_cast<double>(s >> 11) * 0x1.0p-53 - 0.5);
    h[i] = i % 5 == 0 ? 0.0f : 1.0f + static_cast<float>(i % 7);
  }
  TensorSet m, imp;
  m.add(Tensor::from_f32("w", {25, 40}, w));
  imp.add(Tensor::from_f32("w", {25, 40}, h));
  write_safetensors(file("tiny.safetensors"), m);
  write_safetensors(file("tiny_imp.safetensors"), imp);
  const auto args = [&](const std::string& options, const std::string& out) {
    return " quantize '" + file("tiny.safetensors") + "' --importance '" + file("tiny_imp.safetensors") +
           "' --method ecsq --k 8 " + options + " -o '" + out + "'";
  };
  CliRun r = run(args("", file("plain.nq")));
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string plain = slurp(file("plain.nq"));
  r = run(args("--sharded", file("one.nq")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(file("one.nq")) == plain) << "one sharded process differs from the in-process quantizer";
  for (int np : {2, 3}) {
    const std::string out = file("np" + std::to_string(np) + ".nq");
    r = shell("timeout 120 env " + mpirun(np) + args("--sharded", out));
    ASSERT_EQ(r.status, 0) << "np=" << np << " (124: the ranks hung)\n" << r.err;
    EXPECT_TRUE(slurp(out) == plain) << "np=" << np << " differs from the in-process quantizer";
  }
}

// One process, sharded vs the in-process quantizer: pruning selects exactly the same weights — by h·w², also for
// plain k-means, whose clustering ignores the importance — and for hw-kmeans the same Lloyd iteration from the
// same linear start reaches the same fixed point (up to the last bits of the sums), and so does ECSQ, which both
// start from that HW k-means fixed point. Plain k-means on these
// heavy-tailed values stops by the objective tolerance while its centres still move a little per iteration,
// and the last bits of the sums decide which iteration that is (68 in process, 69 sharded, when written).
TEST_F(ShardedCli, OneProcessAgreesWithInProcessQuantizer) {
  struct Case {
    std::string options;
    bool same_fixed_point;
  };
  for (const Case& c : {Case{"--method hw-kmeans --k 8 --prune 0.4 --max-iter 300", true},
                        Case{"--method ecsq --k 8 --lambda 3e-5 --prune 0.4 --max-iter 300", true},
                        Case{"--method kmeans --k 8 --prune 0.4 --max-iter 300", false},
                        // two-byte indices
                        Case{"--method hw-kmeans --k 300 --prune 0.4 --max-iter 300", true}}) {
    const std::string& options = c.options;
    SCOPED_TRACE(options);
    CliRun r = run(quantize_args("--sharded " + options, file("sharded.safetensors")));
    ASSERT_EQ(r.status, 0) << r.err;
    r = run(quantize_args(options, file("plain.safetensors")));
    ASSERT_EQ(r.status, 0) << r.err;
    const TensorSet a = read_safetensors(file("sharded.safetensors"));
    const TensorSet b = read_safetensors(file("plain.safetensors"));
    EXPECT_EQ(a.metadata(), b.metadata());
    EXPECT_EQ(a.metadata().at("format"), "pt");
    const TensorSet model = read_safetensors(file("model.safetensors"));
    const TensorSet imp = read_safetensors(file("imp.safetensors"));
    ASSERT_EQ(a.size(), b.size());
    int64_t pruned = 0, differ = 0, total = 0;
    double max_pruned = -1, min_kept = 1e300;  // the scores h·w² of the pruned and the kept weights
    for (const Tensor& ta : a) {
      const Tensor* tb = b.find(ta.name());
      ASSERT_NE(tb, nullptr) << ta.name();
      ASSERT_EQ(ta.shape(), tb->shape());
      if (ta.dtype() != DType::kF32) {
        EXPECT_EQ(std::memcmp(ta.data(), tb->data(), ta.nbytes()), 0) << ta.name();
        continue;
      }
      const std::vector<float> va = ta.to_f32(), vb = tb->to_f32();
      const std::vector<float> w = model.at(ta.name()).to_f32(), h = imp.at(ta.name()).to_f32();
      for (size_t i = 0; i < va.size(); ++i) {
        ASSERT_EQ(va[i] == 0.0f, vb[i] == 0.0f) << ta.name() << "[" << i << "]: pruning masks differ";
        const double score = static_cast<double>(h[i]) * w[i] * w[i];
        if (va[i] == 0.0f) {
          max_pruned = std::max(max_pruned, score);
          ++pruned;
        } else {
          min_kept = std::min(min_kept, score);
        }
        differ += std::fabs(va[i] - vb[i]) > 1e-6f * (1.0f + std::fabs(vb[i]));
        ++total;
      }
    }
    EXPECT_GT(pruned, total / 3);
    EXPECT_LE(max_pruned, min_kept);
    const auto ja = report(file("sharded.safetensors")), jb = report(file("plain.safetensors"));
    EXPECT_EQ(ja["total"]["clusters"], jb["total"]["clusters"]);
    const double da = ja["total"]["hw_distortion"], db = jb["total"]["hw_distortion"];
    if (c.same_fixed_point) {
      EXPECT_EQ(differ, 0) << "of " << total << " weights";
      EXPECT_NEAR(da, db, 1e-9 * db);
    } else {  // its own objective, the plain squared error, agrees
      const double ma = ja["total"]["mse"], mb = jb["total"]["mse"];
      EXPECT_NEAR(ma, mb, 1e-6 * mb);
    }
  }
}

// --init linear spans the values of positive importance, sharded as in process. Outliers of importance 0 in
// b.weight (one in each of two fixed blocks, and one exactly −0) must not pull the start out to them: both reach
// the same fixed point, and every outlier lands on an outer centre inside the weighted values' range. (The sharded
// driver used to span every value, which gave it a different start and fixed point than the in-process one.)
// ECSQ at λ = 0 too: its values of zero importance go to their nearest centre (quant::relabel_zero_importance) over
// every rank's centres, as in process, where they used to take the lowest one.
TEST_F(ShardedCli, LinearStartIgnoresOutliersOfZeroImportanceAsInProcess) {
  const TensorSet model = read_safetensors(file("model.safetensors"));
  const TensorSet imp = read_safetensors(file("imp.safetensors"));
  TensorSet m2, i2;
  float weighted_max = 0;  // max |w| over values of positive importance
  for (const Tensor& t : model) {
    if (t.dtype() != DType::kF32) { m2.add(t); continue; }
    std::vector<float> w = t.to_f32(), h = imp.at(t.name()).to_f32();
    if (t.name() == "b.weight") {
      const std::pair<size_t, float> outliers[] = {{10, 2.5f}, {20000, -3.0f}, {39999, 1.75f}};
      for (const auto& [i, v] : outliers) {
        w[i] = v;
        h[i] = i == 39999 ? -0.0f : 0.0f;
      }
    }
    for (size_t i = 0; i < w.size(); ++i)
      if (h[i] > 0) weighted_max = std::max(weighted_max, std::fabs(w[i]));
    m2.add(Tensor::from_f32(t.name(), t.shape(), w));
    i2.add(Tensor::from_f32(t.name(), t.shape(), h));
  }
  ASSERT_LT(weighted_max, 1.5f);
  write_safetensors(file("m2.safetensors"), m2);
  write_safetensors(file("i2.safetensors"), i2);
  for (const std::string method : {"hw-kmeans", "ecsq"}) {
    SCOPED_TRACE(method);
    const auto args = [&](const std::string& options, const std::string& out) {
      return " quantize '" + file("m2.safetensors") + "' --importance '" + file("i2.safetensors") + "' --method " +
             method + " --k 8 --max-iter 300 " + options + " -o '" + out + "' --report '" + out + ".json'";
    };
    CliRun r = run(args("--sharded", file("sharded.safetensors")));
    ASSERT_EQ(r.status, 0) << r.err;
    r = run(args("", file("plain.safetensors")));
    ASSERT_EQ(r.status, 0) << r.err;
    const TensorSet a = read_safetensors(file("sharded.safetensors")), b = read_safetensors(file("plain.safetensors"));
    int64_t differ = 0;
    for (const Tensor& ta : a) {
      if (ta.dtype() != DType::kF32) continue;
      const std::vector<float> va = ta.to_f32(), vb = b.at(ta.name()).to_f32();
      for (size_t i = 0; i < va.size(); ++i) {
        differ += std::fabs(va[i] - vb[i]) > 1e-6f * (1.0f + std::fabs(vb[i]));
        EXPECT_LE(std::fabs(va[i]), weighted_max) << ta.name() << "[" << i << "]";
      }
      if (ta.name() == "b.weight") {  // the outliers of zero importance sit on the outer centre on their own side
        EXPECT_TRUE(va[10] > 0 && va[39999] > 0 && va[20000] < 0) << va[10] << " " << va[39999] << " " << va[20000];
      }
    }
    EXPECT_EQ(differ, 0);
    const auto ja = report(file("sharded.safetensors")), jb = report(file("plain.safetensors"));
    EXPECT_EQ(ja["total"]["clusters"], jb["total"]["clusters"]);
    const double da = ja["total"]["hw_distortion"], db = jb["total"]["hw_distortion"];
    EXPECT_NEAR(da, db, 1e-9 * db);
  }
}

// --exclude: the sharded driver selects what quantize_model selects. Oracles: the unsharded run with the same
// --exclude (the same pruning mask; on these two tensors the two stop by the objective tolerance one iteration
// apart — 44 and 43, also without a filter on a file of just them — so their objectives agree to 1e-6, not their
// values), and bit for bit the sharded run over a file holding only the selected tensors (the blocks then cut
// a.weight and c.weight alone). The excluded tensors keep their input bits, and any number of ranks writes the
// same file.
TEST_F(ShardedCli, ExcludeSelectsAsTheUnshardedQuantizer) {
  const std::string options = "--method hw-kmeans --k 8 --prune 0.4 --max-iter 300";
  const std::string exclude = " --exclude '^b\\.|bias'";
  CliRun r = run(quantize_args("--sharded " + options + exclude, file("sharded.safetensors")));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(quantize_args("--sharded " + options + exclude, file("sharded.nq")));
  ASSERT_EQ(r.status, 0) << r.err;
  r = run(quantize_args(options + exclude, file("plain.safetensors")));
  ASSERT_EQ(r.status, 0) << r.err;
  const TensorSet model = read_safetensors(file("model.safetensors"));
  const TensorSet imp = read_safetensors(file("imp.safetensors"));
  const TensorSet a = read_safetensors(file("sharded.safetensors")), b = read_safetensors(file("plain.safetensors"));
  const std::set<std::string> excluded = {"a.bias", "b.weight"};
  int64_t pruned = 0;
  for (const Tensor& m : model) {
    SCOPED_TRACE(m.name());
    const Tensor &ta = a.at(m.name()), &tb = b.at(m.name());
    if (excluded.count(m.name()) || m.dtype() != DType::kF32) {
      for (const Tensor* t : {&ta, &tb}) {
        ASSERT_EQ(t->nbytes(), m.nbytes());
        EXPECT_EQ(std::memcmp(t->data(), m.data(), m.nbytes()), 0);
      }
      continue;
    }
    const std::vector<float> va = ta.to_f32(), vb = tb.to_f32();
    for (size_t i = 0; i < va.size(); ++i) {
      ASSERT_EQ(va[i] == 0.0f, vb[i] == 0.0f) << "[" << i << "]: pruning masks differ";
      pruned += va[i] == 0.0f;
    }
  }
  EXPECT_EQ(pruned, static_cast<int64_t>(0.4 * (97 * 431 + 23 * 1001)));
  const auto ja = report(file("sharded.safetensors")), jb = report(file("plain.safetensors"));
  EXPECT_EQ(ja["total"]["clusters"], jb["total"]["clusters"]);
  EXPECT_EQ(ja["total"]["params"], jb["total"]["params"]);
  const double da = ja["total"]["hw_distortion"], db = jb["total"]["hw_distortion"];
  EXPECT_NEAR(da, db, 1e-6 * db);
  EXPECT_EQ(ja["tensors"].size(), 2u);  // the quantized ones
  TensorSet reduced_model, reduced_imp;
  for (const Tensor& t : model)
    if (!excluded.count(t.name())) reduced_model.add(t);
  for (const Tensor& t : imp)
    if (!excluded.count(t.name())) reduced_imp.add(t);
  write_safetensors(file("model.safetensors"), reduced_model);  // quantize_args reads these two
  write_safetensors(file("imp.safetensors"), reduced_imp);
  r = run(quantize_args("--sharded " + options, file("reduced.nq")));
  ASSERT_EQ(r.status, 0) << r.err;
  const QuantizedModel got = read_nq_file(file("sharded.nq")), want = read_nq_file(file("reduced.nq"));
  ASSERT_EQ(got.codebooks, want.codebooks);
  for (const QuantizedTensor& t : want.tensors) {
    const auto it = std::find_if(got.tensors.begin(), got.tensors.end(),
                                 [&](const QuantizedTensor& g) { return g.name == t.name; });
    ASSERT_NE(it, got.tensors.end()) << t.name;
    EXPECT_EQ(it->quantized, t.quantized) << t.name;
    EXPECT_EQ(it->indices, t.indices) << t.name;
  }
  write_safetensors(file("model.safetensors"), model);
  write_safetensors(file("imp.safetensors"), imp);
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  r = shell(mpirun(2) + quantize_args("--sharded " + options + exclude, file("np2.nq")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(file("np2.nq")) == slurp(file("sharded.nq")));
}

TEST_F(ShardedCli, FailingRankAbortsJobAndLeavesNoOutput) {
  // A NaN in the last tensor: only the last rank reads it.
  TensorSet model = read_safetensors(file("model.safetensors"));
  TensorSet bad;
  for (const Tensor& t : model) {
    if (t.name() != "c.weight") { bad.add(t); continue; }
    std::vector<float> v = t.to_f32();
    v[v.size() - 5] = std::numeric_limits<float>::quiet_NaN();
    bad.add(Tensor::from_f32(t.name(), t.shape(), v));
  }
  write_safetensors(file("bad.safetensors"), bad);
  const std::string args = " quantize '" + file("bad.safetensors") + "' --sharded -o '" + file("bad.nq") + "'";
  CliRun r = run(args);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("tensor 'c.weight': weight 23018 is not finite"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("bad.nq")));
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  r = shell(mpirun(3) + args);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("rank 2 of 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("c.weight"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("bad.nq")));
}

TEST_F(ShardedCli, MpiWithoutShardedIsAClearError) {
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  const CliRun r = shell(mpirun(2) + quantize_args("--method hw-kmeans", file("x.nq")));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("add --sharded"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(file("x.nq")));
}

TEST_F(ShardedCli, InfoReportsTheProcessGroup) {
  CliRun r = run("info");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find(std::string("mpi build:    ") + (mpi_compiled() ? "yes" : "no")), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mpi ranks:    1 (this is rank 0"), std::string::npos) << r.out;
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  r = shell(mpirun(2) + " info");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("mpi ranks:    2 (this is rank 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mpi ranks:    2 (this is rank 1"), std::string::npos) << r.out;
}

TEST_F(ShardedCli, UnsupportedOptionsAreClearErrors) {
  // Each is unsupported (exit 3), as every option --sharded cannot run.
  for (const std::string options : {"--scope tensor", "--method uniform", "--init quantile", "--target-size 10000"}) {
    const CliRun r = run(quantize_args("--sharded " + options, file("x.nq")));
    EXPECT_EQ(r.status, 3) << options << ": " << r.err;
    EXPECT_NE(r.err.find(options == "--target-size 10000" ? "do not run --sharded" : "sharded quantization"),
              std::string::npos)
        << options << ": " << r.err;
    EXPECT_FALSE(exists(file("x.nq")));
  }
  // An importance of the wrong shape is named by its option and file, as the in-process run names it.
  TensorSet wrong;
  wrong.add(Tensor::from_f32("a.weight", {2, 2}, {1, 1, 1, 1}));
  write_safetensors(file("wrong.safetensors"), wrong);
  const CliRun shape = run("quantize '" + file("model.safetensors") + "' --importance '" + file("wrong.safetensors") +
                           "' --sharded -o '" + file("x.nq") + "'");
  EXPECT_EQ(shape.status, 2) << shape.err;
  EXPECT_NE(shape.err.find("--importance " + file("wrong.safetensors") + ": tensor 'a.weight' has shape [2, 2]"),
            std::string::npos)
      << shape.err;
  EXPECT_FALSE(exists(file("x.nq")));
  // k-means sorts its blocks on the GPU when asked: without a device that is a clear error (exit 3) and no
  // output; with one, the run succeeds.
  const CliRun r = run(quantize_args("--sharded --method hw-kmeans --backend cuda", file("x.nq")));
  if (cuda_available()) {
    EXPECT_EQ(r.status, 0) << r.err;
  } else {
    EXPECT_EQ(r.status, 3);
    EXPECT_NE(r.err.find("backend 'cuda'"), std::string::npos) << r.err;
    EXPECT_FALSE(exists(file("x.nq")));
  }
}

}  // namespace
}  // namespace nq
