// `netquant finetune`: train the shared values of a quantized built-in network with the assignment fixed.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/pipeline.h"

namespace nq::cli {
namespace {

struct FinetuneOptions {
  CommonOptions common;
  std::string model = "lenet5", weights, data = default_data_dir(), output;
  FinetuneParams params;
  std::string optimizer = "adam";
  bool lr_given = false, momentum_given = false;
};

// Dequantized weights (e.g. from `quantize -o X.safetensors`) back to an assignment: the distinct nonzero values
// of all tensors form one shared codebook; exact zeros are treated as pruned and stay zero.
QuantizedModel assignment_from_weights(const TensorSet& weights, const std::string& path) {
  std::map<float, int32_t> levels;
  for (const auto& t : weights)
    for (float v : t.to_f32())
      if (v != 0.0f) levels.emplace(v, 0);
  NQ_CHECK(levels.size() <= 65536, ErrorCode::kInvalidArgument,
           path << ": " << levels.size() << " distinct values: not a quantized model (use a .nq file or the "
                << "dequantized output of `netquant quantize`)");
  QuantizedModel q;
  // The method `quantize -o X.safetensors` records; else unknown, and the levels are exactly what they are.
  const auto made_by = weights.metadata().find("netquant.quantize.method");
  q.method = Method::kExact;
  if (made_by != weights.metadata().end()) {
    try {
      q.method = parse_method(made_by->second);
    } catch (const Error&) {  // another tool's or version's value: not an error, the levels still stand
    }
  }
  q.codebooks.emplace_back();
  for (auto& [value, index] : levels) {
    index = static_cast<int32_t>(q.codebooks[0].size());
    q.codebooks[0].push_back(value);
  }
  for (const auto& t : weights) {
    QuantizedTensor qt;
    qt.name = t.name();
    qt.dtype = t.dtype();
    qt.shape = t.shape();
    qt.problem_size = std::max<int64_t>(t.numel(), 1);
    qt.first_codebook = 0;
    qt.num_problems = 1;
    std::vector<int32_t> indices;
    for (float v : t.to_f32()) indices.push_back(v == 0.0f ? kPrunedIndex : levels.at(v));
    qt.indices = IndexArray(indices);
    qt.stats.params = t.numel();
    q.tensors.push_back(std::move(qt));
  }
  return q;
}

void run(FinetuneOptions& o) {
  apply_common_options(o.common);
  check_outputs({{"-o", o.output}}, {o.weights});
  NQ_CHECK(has_extension(o.output, ".nq"), ErrorCode::kInvalidArgument,
           "-o must name a .nq file, got '" << o.output << "'");
  o.params.optimizer = parse_optimizer(o.optimizer);
  NQ_CHECK(o.params.optimizer == OptimizerKind::kAdam || o.lr_given, ErrorCode::kInvalidArgument,
           "--optimizer sgd needs --lr: SGD's step scales with the gradient, so no one rate suits both the mean "
           "and the summed (--sum-gradients) centre gradients");
  NQ_CHECK(o.params.optimizer == OptimizerKind::kSgd || !o.momentum_given, ErrorCode::kInvalidArgument,
           "--momentum is SGD's (--optimizer sgd); Adam keeps its own moments");
  o.params.backend = resolve_backend(parse_backend(o.common.backend));
  QuantizedModel q = has_extension(o.weights, ".nq") ? read_nq_file(o.weights)
                                                   : assignment_from_weights(read_tensors(o.weights), o.weights);
  const Model model = build_model(o.model, o.params.seed);
  const Dataset train = load_mnist(o.data, true);
  const Dataset test = load_mnist(o.data, false);
  Model m = model;
  try {
    m.set_weights(q.dequantize());
  } catch (const Error& e) {  // a model of another network: name the file
    throw Error(e.code(), o.weights + ": " + e.what());
  }
  EvalParams ep;
  ep.backend = o.params.backend;
  const EvalResult before = evaluate(m, test, ep);
  const FinetuneResult r = finetune_shared_values(model, q, train, o.params);
  m.set_weights(q.dequantize());
  const EvalResult after = evaluate(m, test, ep);
  write_nq_file(o.output, q);
  Table t({"", "test accuracy %", "test loss"});
  t.add_row({"before", format_double(100 * before.accuracy, 4), format_double(before.loss, 4)});
  t.add_row({"after", format_double(100 * after.accuracy, 4), format_double(after.loss, 4)});
  std::cout << t.to_string() << "fine-tuned " << q.codebooks.size() << " codebook(s) for " << o.params.epochs
            << " epoch(s) in " << format_double(r.seconds, 3) << " s -> " << o.output << "\n";
}

void setup_finetune(CLI::App& sub) {
  auto o = std::make_shared<FinetuneOptions>();
  sub.add_option("--model", o->model, "lenet5 | lenet300 | a JSON layer list (file.json)")
      ->capture_default_str();
  sub.add_option("--weights", o->weights, "quantized weights: .nq, or dequantized .safetensors")->required()
      ->check(CLI::ExistingFile);
  sub.add_option("--data", o->data, "MNIST-format data directory")->capture_default_str();
  sub.add_option("-o,--output", o->output, "fine-tuned model (.nq)")->required();
  sub.add_option("--epochs", o->params.epochs, "epochs over the training images")->capture_default_str()->check(kCount);
  sub.add_option("--batch", o->params.batch, "images per step")->capture_default_str()->check(kPositive);
  sub.add_option("--optimizer", o->optimizer,
                 "adam, or sgd with momentum (Deep Compression's; then give --lr). Adam scales each entry's step by "
                 "its own gradient's size, so --sum-gradients changes its steps only through its epsilon")
      ->check(CLI::IsMember({"adam", "sgd"}))
      ->capture_default_str();
  sub.add_option_function<double>(
         "--lr", [o](double lr) { o->params.lr = lr, o->lr_given = true; },
         "learning rate for the shared values (default 0.0001 with adam; sgd needs it given)")
      ->check(kPositive);
  sub.add_option_function<double>(
         "--momentum", [o](double mu) { o->params.momentum = mu, o->momentum_given = true; },
         "SGD momentum, in [0, 1) (default 0.9; with --optimizer sgd)")
      ->check(kFraction);
  add_image_count(sub, "--train-subset", o->params.train_subset, "use the first N training images (0 = all)");
  sub.add_flag("--sum-gradients", [o](int64_t) { o->params.average_gradients = false; },
               "center gradient = sum of member gradients (Deep Compression, with --optimizer sgd) instead of "
               "the mean");
  sub.add_option("--seed", o->params.seed, "shuffle seed")->capture_default_str()->check(kSeed);
  add_common_options(sub, o->common);
  sub.callback([o] { run(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(finetune, "finetune", "fine-tune the shared values (codebook) of a quantized built-in network", 55,
                    setup_finetune);
}  // namespace nq::cli
