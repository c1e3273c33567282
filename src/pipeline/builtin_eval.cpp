// Sweep evaluator for the built-in networks: test accuracy of each quantized model (and its accuracy on held-out
// training images, for choosing), optionally after fine-tuning its shared values.
#include <memory>
#include <utility>

#include "netquant/error.h"
#include "netquant/pipeline.h"

namespace nq {

SweepEvaluator make_builtin_evaluator(const BuiltinEvalOptions& options) {
  struct Shared {
    Model model;
    Dataset test;
    Dataset train;       // what fine-tuning may use: the training images before the validation images
    Dataset validation;  // the last options.validation_images training images (empty without)
  };
  auto shared = std::make_shared<Shared>();
  shared->model = build_model(options.model, options.seed);
  shared->test = dataset_head(load_mnist(options.data_dir, false), options.test_subset);
  if (options.finetune_epochs > 0 || options.validation_images != 0) {
    ValidationSplit split =
        split_off_validation(load_mnist(options.data_dir, true), options.validation_images, options.data_dir);
    shared->train = std::move(split.fit);
    shared->validation = std::move(split.validation);
  }
  const BuiltinEvalOptions opts = options;
  return [shared, opts](const QuantizedModel& quantized, const TensorSet& dequantized) {
    TaskMetrics m;
    EvalParams ep;
    ep.backend = opts.backend;
    const bool validating = opts.validation_images > 0;
    Model model = shared->model;
    model.set_weights(dequantized);
    const EvalResult before = evaluate(model, shared->test, ep);
    m.accuracy = before.accuracy;
    m.loss = before.loss;
    if (validating) m.accuracy_validation = evaluate(model, shared->validation, ep).accuracy;
    if (opts.finetune_epochs > 0) {
      QuantizedModel tuned = quantized;
      FinetuneParams fp;
      fp.epochs = opts.finetune_epochs;
      fp.train_subset = opts.finetune_subset;
      fp.seed = opts.seed;
      fp.backend = opts.backend;
      fp.progress = false;
      finetune_shared_values(shared->model, tuned, shared->train, fp);
      model.set_weights(tuned.dequantize());
      const EvalResult after = evaluate(model, shared->test, ep);
      m.accuracy_finetuned = after.accuracy;
      m.loss_finetuned = after.loss;
      if (validating) m.accuracy_finetuned_validation = evaluate(model, shared->validation, ep).accuracy;
    }
    return m;
  };
}

}  // namespace nq
