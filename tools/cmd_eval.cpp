// `netquant eval`: test accuracy and loss of a built-in network with given (e.g. dequantized) weights.
#include <iostream>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/backend.h"
#include "netquant/io.h"
#include "netquant/nn.h"

namespace nq::cli {
namespace {

struct EvalOptions {
  CommonOptions common;
  std::string model, weights, data = default_data_dir();
  bool json = false, train_set = false;
  int64_t limit = 0, batch = 500;
};

void run_eval(const EvalOptions& o) {
  apply_common_options(o.common);
  Model model = build_model(o.model);
  load_network_weights(model, o.weights);
  const Dataset data = load_mnist(o.data, /*train=*/o.train_set);
  EvalParams p;
  p.limit = o.limit;
  p.batch = o.batch;
  p.backend = resolve_backend(parse_backend(o.common.backend));
  const EvalResult r = evaluate(model, data, p);
  if (o.json) {
    write_json("-", {{"model", model.name()},
                     {"weights", o.weights},
                     {"split", o.train_set ? "train" : "test"},
                     {"samples", r.samples},
                     {"accuracy", r.accuracy},
                     {"loss", r.loss}});
    return;
  }
  Table t({"model", "weights", "split", "images", "accuracy %", "loss"});
  t.add_row({model.name(), o.weights, o.train_set ? "train" : "test", std::to_string(r.samples),
             format_double(100 * r.accuracy, 5), format_double(r.loss, 5)});
  std::cout << t.to_string();
}

void setup_eval(CLI::App& sub) {
  auto o = std::make_shared<EvalOptions>();
  sub.add_option("--model", o->model, "lenet300 | lenet5 | a JSON layer list (file.json)")->required();
  sub.add_option("--weights", o->weights, "weights (.safetensors or .npy, any float dtype; or a .nq file, dequantized)")->required();
  sub.add_option("--data", o->data, "directory with the IDX files")->capture_default_str();
  sub.add_flag("--train-set", o->train_set, "evaluate on the training split instead of the test split");
  add_image_count(sub, "--limit", o->limit, "only the first N images (0 = all)");
  sub.add_option("--batch", o->batch, "images per forward pass")->capture_default_str()->check(kPositive);
  sub.add_flag("--json", o->json, "print the result as JSON on stdout");
  add_common_options(sub, o->common);
  sub.callback([o] { run_eval(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(eval, "eval", "test accuracy and loss of a built-in network with given weights", 41, setup_eval);
}  // namespace nq::cli
