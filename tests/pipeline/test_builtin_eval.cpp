// The sweep's evaluator for the built-in networks, against a replay of what it promises: test metrics on the test
// set, validation accuracy on the last N training images, fine-tuning on the training images before them only.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "netquant/error.h"
#include "netquant/pipeline.h"
#include "pipeline/small_mnist.h"

namespace nq {
namespace {

class BuiltinEval : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::have_fashion_mnist())
      GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)";
    dir_ = ::testing::TempDir() + "nq_builtin_eval_" + std::to_string(::getpid());
    testing::write_small_mnist(dir_, 713, 211);  // awkward sizes: batches end part-full
    // A briefly trained LeNet-300-100, quantized coarsely enough that fine-tuning moves its accuracy.
    model_ = build_model("lenet300", 5);
    TrainParams tp;
    tp.epochs = 1;
    tp.lr = 0.05;
    tp.progress = false;
    train(model_, load_mnist(dir_, true), nullptr, tp);
    ModelQuantizeParams qp;
    qp.quant.method = Method::kKmeans;
    qp.quant.k = 6;
    quantized_ = quantize_model(model_.weights(), nullptr, qp);
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string dir_;
  Model model_;
  QuantizedModel quantized_;
};

TEST_F(BuiltinEval, ValidationImagesAreTheLastTrainingImagesAndFineTuningNeverSeesThem) {
  BuiltinEvalOptions options;
  options.model = "lenet300";
  options.data_dir = dir_;
  options.finetune_epochs = 1;
  options.validation_images = 197;
  options.seed = 9;
  const TaskMetrics m = make_builtin_evaluator(options)(quantized_, quantized_.dequantize());

  // The replay: the same split cut by hand, the same fine-tuning on its first part.
  const Dataset all = load_mnist(dir_, true), test = load_mnist(dir_, false);
  const Dataset fit = dataset_range(all, 0, 713 - 197), validation = dataset_range(all, 713 - 197, 713);
  Model net = build_model("lenet300", options.seed);
  net.set_weights(quantized_.dequantize());
  const EvalResult before = evaluate(net, test);
  EXPECT_EQ(m.accuracy, before.accuracy);
  EXPECT_EQ(m.loss, before.loss);
  EXPECT_EQ(m.accuracy_validation, evaluate(net, validation).accuracy);

  QuantizedModel tuned = quantized_;
  FinetuneParams fp;
  fp.epochs = 1;
  fp.seed = options.seed;
  fp.progress = false;
  finetune_shared_values(build_model("lenet300", options.seed), tuned, fit, fp);
  net.set_weights(tuned.dequantize());
  const EvalResult after = evaluate(net, test);
  // The loss is continuous in the codebook: fine-tuning on other images (say all 713) would not land on it.
  EXPECT_EQ(m.loss_finetuned, after.loss);
  EXPECT_EQ(m.accuracy_finetuned, after.accuracy);
  EXPECT_EQ(m.accuracy_finetuned_validation, evaluate(net, validation).accuracy);
  EXPECT_NE(m.loss_finetuned, m.loss) << "fine-tuning did not move the codebook: the replay checks nothing";
}

TEST_F(BuiltinEval, WithoutValidationImagesNoValidationAccuracyAndAllTrainingImagesFineTune) {
  BuiltinEvalOptions options;
  options.model = "lenet300";
  options.data_dir = dir_;
  options.finetune_epochs = 1;
  const TaskMetrics m = make_builtin_evaluator(options)(quantized_, quantized_.dequantize());
  EXPECT_TRUE(std::isnan(m.accuracy_validation));
  EXPECT_TRUE(std::isnan(m.accuracy_finetuned_validation));
  QuantizedModel tuned = quantized_;
  FinetuneParams fp;
  fp.epochs = 1;
  fp.seed = options.seed;
  fp.progress = false;
  finetune_shared_values(build_model("lenet300", options.seed), tuned, load_mnist(dir_, true), fp);
  Model net = build_model("lenet300", options.seed);
  net.set_weights(tuned.dequantize());
  EXPECT_EQ(m.loss_finetuned, evaluate(net, load_mnist(dir_, false)).loss);
}

TEST_F(BuiltinEval, HoldingOutEveryTrainingImageIsRefusedNamingTheDirectory) {
  BuiltinEvalOptions options;
  options.model = "lenet300";
  options.data_dir = dir_;
  for (int64_t n : {int64_t{713}, int64_t{5000}, int64_t{-1}}) {
    options.validation_images = n;
    try {
      make_builtin_evaluator(options);
      ADD_FAILURE() << n << " validation images were accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(n < 0 ? "negative" : dir_), std::string::npos) << e.what();
    }
  }
  options.validation_images = 712;  // one image left to train on is enough
  EXPECT_NO_THROW(make_builtin_evaluator(options));
}

}  // namespace
}  // namespace nq
