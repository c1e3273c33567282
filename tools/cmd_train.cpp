// `netquant train`: train a built-in network on an IDX dataset (Fashion-MNIST by default) and save its weights.
#include <algorithm>
#include <cmath>
#include <iostream>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/nn.h"
#include "netquant/pipeline.h"
#include "netquant/quantize.h"

namespace nq::cli {
namespace {

struct TrainOptions {
  CommonOptions common;
  std::string model, data = default_data_dir(), output, optimizer = "sgd", adam_state, init, json, importance;
  int epochs = 10;
  int64_t batch = 64, train_subset = 0, test_subset = 0;
  int64_t validation = 0;  // --validation: the last N training images, held out
  double lr = 0, momentum = 0.9, weight_decay = 0;
  uint64_t seed = 1;
  bool keep_zeros = false;
  double prune = 0;
};

std::string pct(double v) { return std::isnan(v) ? "-" : format_double(100 * v, 4) + "%"; }

void run_train(const TrainOptions& o) {
  apply_common_options(o.common);
  check_outputs({{"-o", o.output}, {"--adam-state", o.adam_state}, {"--json", o.json}}, {o.init, o.importance});
  check_text_output({"--json", o.json});
  TrainParams p;
  p.optimizer = parse_optimizer(o.optimizer);
  NQ_CHECK(o.adam_state.empty() || p.optimizer == OptimizerKind::kAdam, ErrorCode::kInvalidArgument,
           "--adam-state needs --optimizer adam");
  p.epochs = o.epochs;
  p.batch = o.batch;
  p.lr = o.lr;
  p.momentum = o.momentum;
  p.weight_decay = o.weight_decay;
  p.seed = o.seed;
  const bool retrain = o.keep_zeros || o.prune > 0;
  NQ_CHECK(!retrain || !o.init.empty(), ErrorCode::kInvalidArgument,
           (o.prune > 0 ? "--prune" : "--keep-zeros")
               << " retrains the weights given by --init (a pruned model); without --init a fresh model's zero "
                  "biases would stay 0");
  NQ_CHECK(o.importance.empty() || o.prune > 0, ErrorCode::kInvalidArgument,
           "--importance ranks the weights for --prune; give --prune too");
  p.keep_zeros = retrain;
  p.train_subset = o.train_subset;
  // With --validation the epochs are scored on all the held-out images; --test-subset limits the final test.
  p.test_subset = o.validation > 0 ? 0 : o.test_subset;
  p.backend = resolve_backend(parse_backend(o.common.backend));
  Model model = build_model(o.model, o.seed);
  const int64_t tensors = static_cast<int64_t>(model.weights().size());
  check_tensor_output({"-o", o.output}, tensors);
  check_tensor_output({"--adam-state", o.adam_state}, tensors);
  if (!o.init.empty()) load_network_weights(model, o.init);
  if (o.prune > 0) {  // quantize --prune's rule, so that quantizing with the same --prune prunes the same weights
    ModelQuantizeParams prune_params;
    prune_params.prune = o.prune;
    prune_params.quant.backend = p.backend;
    const TensorSet importance = o.importance.empty() ? TensorSet() : read_importance(o.importance, model.weights());
    model.set_weights(prune_model(model.weights(), o.importance.empty() ? nullptr : &importance, prune_params));
    if (!o.common.quiet)
      std::cerr << "pruned " << format_double(100 * o.prune, 4) << "% of --init's weights (smallest "
                << (o.importance.empty() ? "w²" : "h·w²") << "); retraining the rest with those held at 0\n";
  }
  const Dataset test_set = load_mnist(o.data, false);
  // --validation N: the last N training images are held out, to choose later settings (sweep --validation N) by
  // them and leave the test set unseen; the epochs report them in place of the test set.
  const bool validating = o.validation > 0;
  const ValidationSplit split =
      split_off_validation(load_mnist(o.data, true), o.validation, o.data + ": --validation");
  const Dataset& train_set = split.fit;
  const Dataset& validation_set = split.validation;
  const Dataset& epoch_set = validating ? validation_set : test_set;
  const std::string scored = validating ? "validation" : "test";
  const int64_t train_images = p.train_subset ? std::min(p.train_subset, train_set.size()) : train_set.size();
  if (!o.common.quiet)
    std::cerr << model.name() << ": " << model.num_parameters() << " parameters, " << o.optimizer << ", "
              << train_images << " training images"
              << (validating ? " (" + std::to_string(o.validation) + " more held out for validation)" : "")
              << ", backend " << backend_name(p.backend) << ", " << num_threads() << " threads\n";
  p.on_epoch = [&](const EpochStats& s) {
    if (o.common.quiet) return;
    human_output(o.json) << "epoch " << s.epoch << "/" << p.epochs << "  train loss " << format_double(s.train_loss)
              << " acc " << pct(s.train_accuracy) << "  " << scored << " loss " << format_double(s.test_loss) << " acc "
              << pct(s.test_accuracy) << "  " << format_double(s.seconds, 3) << " s  "
              << static_cast<int64_t>(s.images_per_second) << " img/s" << std::endl;
  };
  const TrainResult r = train(model, train_set, &epoch_set, p);
  // A diverged run writes nothing (a lower --lr is the usual cure).
  check_finite_weights(model.weights(), "training diverged (nothing written; try a lower --lr)");
  double test_accuracy = r.epochs.empty() ? std::nan("") : r.epochs.back().test_accuracy;
  if (validating) {  // the test set, once, for the trained model only
    EvalParams ep;
    ep.limit = o.test_subset;
    ep.backend = p.backend;
    test_accuracy = evaluate(model, test_set, ep).accuracy;
  }
  save_weights(model, o.output);
  if (!o.adam_state.empty()) write_tensors(o.adam_state, r.adam_v);
  if (!o.json.empty()) {
    nlohmann::json j;
    j["model"] = model.name();
    j["parameters"] = model.num_parameters();
    j["optimizer"] = o.optimizer;
    j["seconds"] = r.seconds;
    j["train_images"] = train_images;
    j["validation_images"] = o.validation;
    j["test_accuracy"] = test_accuracy;
    for (const EpochStats& s : r.epochs)
      j["epochs"].push_back({{"epoch", s.epoch},
                             {"train_loss", s.train_loss},
                             {"train_accuracy", s.train_accuracy},
                             {scored + "_loss", s.test_loss},
                             {scored + "_accuracy", s.test_accuracy},
                             {"seconds", s.seconds},
                             {"images_per_second", s.images_per_second}});
    write_json(o.json, j);
  }
  // The result, also with --quiet: where it went and the final accuracies.
  std::cerr << "wrote " << o.output << (o.adam_state.empty() ? "" : " and " + o.adam_state) << " ("
            << format_double(r.seconds, 3) << " s"
            << (validating && !r.epochs.empty() ? ", validation accuracy " + pct(r.epochs.back().test_accuracy) : "")
            << (r.epochs.empty() && !validating ? "" : ", test accuracy " + pct(test_accuracy)) << ")\n";
}

void setup_train(CLI::App& sub) {
  auto o = std::make_shared<TrainOptions>();
  sub.add_option("--model", o->model, "lenet300 | lenet5 | a JSON layer list (file.json)")->required();
  sub.add_option("--data", o->data, "directory with the IDX files (train-*/t10k-*, .gz accepted)")
      ->capture_default_str();
  sub.add_option("-o,--output", o->output, "weights to write (.safetensors)")->required();
  sub.add_option("--optimizer", o->optimizer, "sgd (momentum, weight decay) or adam")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  sub.add_option("--epochs", o->epochs, "passes over the training set")->capture_default_str()->check(kCount);
  sub.add_option("--batch", o->batch, "mini-batch size")->capture_default_str()->check(kPositive);
  sub.add_option("--lr", o->lr, "learning rate (0 = 0.01 for sgd, 0.001 for adam)")
      ->capture_default_str()
      ->check(kNonNegative);
  sub.add_option("--momentum", o->momentum, "SGD momentum")->capture_default_str();
  sub.add_option("--weight-decay", o->weight_decay, "L2 weight decay on all parameters")->capture_default_str();
  sub.add_option("--seed", o->seed, "initialization and shuffling seed")->capture_default_str()->check(kSeed);
  sub.add_option("--adam-state", o->adam_state, "also write Adam's second moment v (.safetensors; importance)");
  add_image_count(sub, "--train-subset", o->train_subset, "train on the first N images (0 = all)");
  add_image_count(sub, "--test-subset", o->test_subset, "evaluate on the first N test images (0 = all)");
  add_image_count(sub, "--validation", o->validation,
                  "hold out the last N training images: the epochs are scored on them instead of the test set, "
                  "which is scored once at the end (for sweep --validation N)");
  sub.add_option("--init", o->init, "start from these weights instead of a fresh initialization (.safetensors, .npy, or a .nq file dequantized)");
  sub.add_flag("--keep-zeros", o->keep_zeros,
               "retrain a pruned model: parameters that are exactly 0 in --init stay 0 (their gradient is masked)");
  sub.add_option("--prune", o->prune,
                 "first prune this fraction of --init's weights with the smallest h·w² (quantize --prune's rule), "
                 "then retrain the rest with them held at 0 (implies --keep-zeros)")
      ->check(kPruneFraction);
  sub.add_option("--importance", o->importance, "importance h for --prune (.safetensors, e.g. from hessian; "
                 "default: w² alone)");
  sub.add_option("--json", o->json, "write per-epoch statistics as JSON ('-' = stdout)");
  add_common_options(sub, o->common);
  sub.callback([o] { run_train(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(train, "train", "train a built-in network (LeNet-300-100, LeNet-5) on Fashion-MNIST", 40,
                    setup_train);
}  // namespace nq::cli
