// The paper's loop on the built-in networks: fine-tune shared values, evaluate quantized models, and the
// end-to-end demo (train → Hessian → prune → quantize → code → fine-tune → Table 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "netquant/io.h"
#include "netquant/nn.h"
#include "netquant/quantize.h"
#include "netquant/sweep.h"

namespace nq {

// ---- fine-tuning the shared values (Choi et al.; Deep Compression eq. 3) ---------------------------------
struct FinetuneParams {
  int epochs = 1;
  int64_t batch = 128;
  // Adam (the default), or SGD with momentum as Deep Compression fine-tuned its centroids. Adam scales each
  // entry's step by that entry's own gradient size, so the mean and the sum below give it the same steps (but for
  // its ε); with SGD the sum makes an entry with more members move further.
  OptimizerKind optimizer = OptimizerKind::kAdam;
  double lr = 1e-4;
  double momentum = 0.9;          // SGD: buf = momentum·buf + g, entry −= lr·buf (PyTorch's semantics)
  int64_t train_subset = 0;     // first N training images (0 = all)
  bool average_gradients = true;  // center gradient = mean of its members' gradients (false: sum, as [DC])
  uint64_t seed = 1;
  Backend backend = Backend::kAuto;
  bool progress = true;
};
struct FinetuneResult {
  std::vector<double> epoch_loss;  // mean training loss per epoch (weights changing along the way)
  double seconds = 0;
};
// Trains the codebook entries of `quantized` on the task loss with the assignment fixed; pruned weights stay
// exactly 0 and tensors kept in float stay as they are. Deterministic for a seed and thread count.
FinetuneResult finetune_shared_values(const Model& model, QuantizedModel& quantized, const Dataset& train,
                                      const FinetuneParams& params);

// ---- evaluation hook for sweeps ---------------------------------------------------------------------------
struct BuiltinEvalOptions {
  std::string model;              // "lenet300" | "lenet5"
  std::string data_dir = default_data_dir();
  int finetune_epochs = 0;        // > 0: also report the accuracy after fine-tuning the shared values
  int64_t test_subset = 0;        // 0 = the whole test set
  int64_t finetune_subset = 0;    // training images used by fine-tuning (0 = all it may use)
  // > 0: the last this many training images are held out. Each point gets its accuracy there (before and after
  // fine-tuning), for choosing a point without seeing the test set; fine-tuning trains on the images before them.
  int64_t validation_images = 0;
  uint64_t seed = 1;
  Backend backend = Backend::kAuto;
};
// Loads the data once and returns an evaluator computing test accuracy/loss of each quantized model (and its
// validation accuracy with validation_images). Throws when validation_images leaves no training image.
SweepEvaluator make_builtin_evaluator(const BuiltinEvalOptions& options);

// Copy of `dataset` restricted to the given sample indices (in that order).
Dataset dataset_subset(const Dataset& dataset, const std::vector<int64_t>& indices);
Dataset dataset_head(const Dataset& dataset, int64_t n);  // the first n samples (all when n <= 0 or n >= size)
Dataset dataset_range(const Dataset& dataset, int64_t begin, int64_t end);  // samples [begin, end)
// A training file split for choosing without the test set: `fit` its images before the last `validation_images`,
// `validation` those (none: `fit` is `train` itself, moved). Throws kInvalidArgument naming `source` when that
// leaves nothing to fit, or is negative.
struct ValidationSplit {
  Dataset fit, validation;
};
ValidationSplit split_off_validation(Dataset train, int64_t validation_images, const std::string& source);

// ---- the demo ---------------------------------------------------------------------------------------------
struct DemoParams {
  std::string model = "lenet5";
  std::string data_dir = default_data_dir();
  std::string out_dir = "demo_out";
  bool quick = false;
  int epochs = 0;               // 0 = default for the model and mode
  double prune = 0;             // 0 = default: 0.9 (LeNet-5 ≈ 9× with positions; Choi et al.'s pruned LeNet-5: 10.13×)
  // Epochs of retraining the pruned net's surviving weights before the pruned rows (TrainParams::keep_zeros), as
  // Choi et al.'s pruned nets were retrained; -1 = default (2, --quick 1), 0 = quantize the pruned net as it is.
  int retrain_epochs = -1;
  double max_accuracy_loss = 0.1;  // percentage points below the reference accuracy
  uint64_t seed = 1;
  Backend backend = Backend::kAuto;
  bool quiet = false;           // no progress lines on stderr
};
struct DemoRow {
  std::string method;           // "original", "pruned", "k-means", "hw k-means", ...
  bool pruned = false;
  double accuracy = 0;          // before fine-tuning (fraction), on the test images
  double ratio = 0;             // ratio_huffman (positions counted for pruned models)
  double ratio_file = 0;        // original float32 bytes / .nq bytes
  double bits_per_weight = 0;   // 32 / ratio: every bit the ratio counts (indices, tables, codebook, positions)
  double accuracy_finetuned = 0;
  double ratio_finetuned = 0;   // the point chosen after fine-tuning (may differ from the one before)
  int clusters = 0;
  std::string knob;             // "k=16", "λ=3.2e-07"
  bool within_budget = true;    // false: no rate point met the accuracy budget; the row is the most accurate one
  // On the held-out validation images that chose the point (the float rows: the budget's reference).
  double accuracy_validation = 0;
};
struct DemoResult {
  // The split of the training file: images [0, train_images) train (and give the Hessian, the retraining and the
  // fine-tuning), [validation_begin, validation_end) choose the rate points; the test file reports.
  int64_t train_images = 0, validation_begin = 0, validation_end = 0, test_images = 0;
  std::vector<DemoRow> rows;
  std::vector<SweepPoint> points;  // every evaluated rate point (for the CSV and the plot)
  double seconds = 0;
  std::string table;               // the rendered Table 1 (markdown)
};
DemoResult run_demo(const DemoParams& params);

}  // namespace nq
