// Sweep evaluator for the built-in networks: test accuracy of each quantized model, optionally after
// fine-tuning its shared values.
#include <memory>

#include "netquant/error.h"
#include "netquant/pipeline.h"

namespace nq {

SweepEvaluator make_builtin_evaluator(const BuiltinEvalOptions& options) {
  struct Shared {
    Model model;
    Dataset test;
    Dataset train;
  };
  auto shared = std::make_shared<Shared>();
  shared->model = build_model(options.model, options.seed);
  shared->test = dataset_head(load_mnist(options.data_dir, false), options.test_subset);
  if (options.finetune_epochs > 0) shared->train = load_mnist(options.data_dir, true);
  const BuiltinEvalOptions opts = options;
  return [shared, opts](const QuantizedModel& quantized, const TensorSet& dequantized) {
    TaskMetrics m;
    EvalParams ep;
    ep.backend = opts.backend;
    Model model = shared->model;
    model.set_weights(dequantized);
    const EvalResult before = evaluate(model, shared->test, ep);
    m.accuracy = before.accuracy;
    m.loss = before.loss;
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
    }
    return m;
  };
}

}  // namespace nq
