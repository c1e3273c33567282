// Sharded checkpoints on the command line: `quantize` (in process and --sharded) and `inspect` read an index or a
// model directory as the same model written as one file (the oracle: byte-identical .nq files), and no output may
// land on a shard.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cli/cli_fixture.h"
#include "io/checkpoint_test_util.h"
#include "netquant/distributed.h"
#include "netquant/io.h"
#include "nlohmann/json.hpp"

namespace nq {
namespace {

class CheckpointCli : public CliFixture {
 protected:
  void SetUp() override {
    CliFixture::SetUp();
    // Awkward sizes, a bias, an integer tensor kept raw; three shards of the model, two of the importance.
    TensorSet model = write_model({{"embed.weight", {211, 67}}, {"l0.weight", {97, 131}}, {"l0.bias", {97}},
                                   {"l1.weight", {33, 1001}}, {"head.weight", {10, 67}}},
                                  2026);
    const TensorSet imp = read_safetensors(file("imp.safetensors"));
    model.add(Tensor("step", DType::kI64, {1}));
    ASSERT_EQ(::mkdir(file("ckpt").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(file("hess").c_str(), 0755), 0);
    TensorSet model_order, imp_order;
    index_ = test::write_sharded_checkpoint(file("ckpt"), model, {1, 0, 2, 2, 0, 1}, 3, &model_order,
                                            {{"format", "pt"}});
    imp_index_ = test::write_sharded_checkpoint(file("hess"), imp, {0, 1, 1, 0, 1}, 2, &imp_order);
    // The oracle: the same tensors, in the order the checkpoint is read, as one file each.
    write_safetensors(file("whole.safetensors"), model_order);
    write_safetensors(file("whole_h.safetensors"), imp_order);
  }
  std::string index_, imp_index_;
};

TEST_F(CheckpointCli, QuantizesAnIndexOrADirectoryAsTheWholeFile) {
  for (const std::string options : {"--method hw-kmeans --k 16 --prune 0.25", "--method ecsq --k 32 --lambda 2e-5",
                                    "--method exact --k 8 --scope row --skip-1d"}) {
    SCOPED_TRACE(options);
    CliRun r = run("quantize '" + file("whole.safetensors") + "' --importance '" + file("whole_h.safetensors") +
                   "' " + options + " -o '" + file("whole.nq") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string want = slurp(file("whole.nq"));
    ASSERT_FALSE(want.empty());
    r = run("quantize '" + index_ + "' --importance '" + imp_index_ + "' " + options + " -o '" + file("a.nq") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(slurp(file("a.nq")) == want) << "index differs from the whole file";
    r = run("quantize '" + file("ckpt") + "' --importance '" + file("hess") + "/' " + options + " -o '" +
            file("b.nq") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(slurp(file("b.nq")) == want) << "directory differs from the whole file";
  }
}

// --sharded reads each rank's byte ranges from the shards the entries name: the same file as from the whole model.
TEST_F(CheckpointCli, ShardedQuantizationReadsTheShards) {
  const std::string options = " --sharded --method hw-kmeans --k 16 --prune 0.3 --importance-transform sqrt";
  CliRun r = run("quantize '" + file("whole.safetensors") + "' --importance '" + file("whole_h.safetensors") + "'" +
                 options + " -o '" + file("whole.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run("quantize '" + index_ + "' --importance '" + file("hess") + "'" + options + " -o '" + file("s.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(file("s.nq")) == slurp(file("whole.nq")));
  // Two ranks, each reading its run of blocks from whichever shards hold them.
  if (!mpi_compiled() || !have_mpirun()) GTEST_SKIP() << "netquant built without MPI or mpirun missing";
  r = shell(mpirun(2) + " quantize '" + file("ckpt") + "' --importance '" + imp_index_ + "'" + options + " -o '" +
            file("np2.nq") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(slurp(file("np2.nq")) == slurp(file("whole.nq")));
}

TEST_F(CheckpointCli, RefusesToWriteOverAShard) {
  const std::string shard = file("ckpt/" + test::shard_file_name(1, 3));
  const std::string before = slurp(shard);
  CliRun r = run("quantize '" + index_ + "' --method kmeans --k 4 -o '" + shard + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("refusing to overwrite an input"), std::string::npos) << r.err;
  EXPECT_TRUE(slurp(shard) == before);
  // Through the directory too, and for the importance's shards.
  const std::string imp_shard = file("hess/" + test::shard_file_name(0, 2));
  r = run("quantize '" + file("ckpt") + "' --importance '" + file("hess") + "' --method hw-kmeans --k 4 -o '" +
          imp_shard + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("refusing to overwrite an input"), std::string::npos) << r.err;
}

TEST_F(CheckpointCli, InspectListsTheWholeModel) {
  CliRun r = run("inspect --json '" + index_ + "' '" + file("whole.safetensors") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["files"].size(), 2u);
  EXPECT_EQ(j["files"][0]["format"], "safetensors-sharded");
  EXPECT_EQ(j["files"][0]["metadata"], nlohmann::json({{"format", "pt"}}));
  EXPECT_EQ(j["files"][0]["tensors"], j["files"][1]["tensors"]);
  EXPECT_EQ(j["files"][0]["total"], j["files"][1]["total"]);
  // A broken index is exit 2 naming the index.
  std::ofstream(file("bad.safetensors.index.json")) << R"({"weight_map":{"w":"../w.safetensors"}})";
  r = run("inspect '" + file("bad.safetensors.index.json") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("bad.safetensors.index.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace nq
