// `netquant demo`: the paper's Table 1 experiment end to end on Fashion-MNIST (the README's first command).
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/pipeline.h"
#include "netquant/sweep.h"
#include "rd_plot.h"

namespace nq::cli {
namespace {

struct DemoOptions {
  CommonOptions common;
  DemoParams params;
  bool no_plot = false;
};

void write_outputs(const DemoOptions& o, const DemoResult& r);

// The outputs go into --out (run_demo makes it when it is not there). A directory this run made is removed again
// if the experiment fails, so that a failed demo leaves nothing behind; one that was already there (a symbolic link
// too, dangling or not) is left as it is. Once the experiment is done its files stay, whatever happens to the
// summary files and the plot after it.
void run(DemoOptions& o) {
  apply_common_options(o.common);
  o.params.backend = resolve_backend(parse_backend(o.common.backend));
  o.params.quiet = o.common.quiet;
  namespace fs = std::filesystem;
  const std::string& dir = o.params.out_dir;
  std::error_code ec;
  const bool existed = fs::exists(fs::symlink_status(dir, ec));
  DemoResult r;
  try {
    r = run_demo(o.params);
  } catch (...) {
    if (!existed && !dir.empty()) fs::remove_all(dir, ec);
    throw;
  }
  write_outputs(o, r);
}

void write_outputs(const DemoOptions& o, const DemoResult& r) {
  const std::string dir = o.params.out_dir;
  write_file_atomic(dir + "/points.csv", sweep_to_csv(r.points));
  write_file_atomic(dir + "/table.md", r.table);
  nlohmann::json j;
  j["model"] = o.params.model;
  j["quick"] = o.params.quick;
  j["seconds"] = r.seconds;
  j["backend"] = backend_name(o.params.backend);
  j["split"] = {{"train_images", r.train_images}, {"validation_begin", r.validation_begin},
                {"validation_end", r.validation_end}, {"test_images", r.test_images}};
  for (const auto& row : r.rows) {
    j["rows"].push_back({{"method", row.method}, {"pruned", row.pruned}, {"accuracy", row.accuracy},
                         {"ratio", row.ratio}, {"ratio_file", row.ratio_file},
                         {"bits_per_weight", row.bits_per_weight}, {"accuracy_finetuned", row.accuracy_finetuned},
                         {"ratio_finetuned", row.ratio_finetuned}, {"clusters", row.clusters}, {"point", row.knob},
                         {"within_budget", row.within_budget}, {"accuracy_validation", row.accuracy_validation}});
  }
  write_json(dir + "/demo.json", j);
  std::string plot_note;
  if (!o.no_plot) {
    if (find_python_with_matplotlib().empty()) {
      plot_note = "(no plot: Python 3 with matplotlib not found)\n";
    } else {
      plot_rd_curve(dir + "/points.csv", dir + "/rd.png", o.params.model + " on Fashion-MNIST: accuracy vs rate");
      plot_note = "plot: " + dir + "/rd.png\n";
    }
  }
  // How coarse the budget is: one standard error of the original's accuracy on the validation images, in points.
  const double n_validation = static_cast<double>(r.validation_end - r.validation_begin);
  const double p = r.rows.empty() ? 0.0 : r.rows.front().accuracy_validation;
  const double standard_error = n_validation > 0 ? 100.0 * std::sqrt(p * (1 - p) / n_validation) : 0.0;
  std::cout << "\n" << r.table << "\n"
            << "Accuracy loss budget " << o.params.max_accuracy_loss << " points on "
            << static_cast<int64_t>(n_validation) << " validation images held out of the training set (one standard "
            << "error there: " << format_double(standard_error, 2) << " points); accuracies shown on the test set.\n"
            << "ratio = Huffman-coded (Choi et al.: N·32 / (Σ(n_j+1)·b_j + k·32), positions counted when pruned).\n"
            << "outputs: " << dir << "/{points.csv,table.md,demo.json,*.safetensors,*.nq}\n"
            << plot_note << "time: " << format_double(r.seconds, 4) << " s\n";
}

void setup_demo(CLI::App& sub) {
  auto o = std::make_shared<DemoOptions>();
  sub.add_option("--model", o->params.model, "built-in network: lenet5 | lenet300")
      ->check(CLI::IsMember({"lenet5", "lenet300"}))
      ->capture_default_str();
  sub.add_option("--data", o->params.data_dir, "MNIST-format data directory")->capture_default_str();
  sub.add_option("--out", o->params.out_dir, "directory for the outputs")->capture_default_str();
  sub.add_flag("--quick", o->params.quick, "reduced run (subsets, fewer points): about half a minute on 2 cores");
  sub.add_option("--epochs", o->params.epochs, "training epochs (0 = default for the model and mode)")
      ->check(kCount);
  sub.add_option("--prune", o->params.prune,
                 "pruned fraction for the pruned rows (0 = the default, 0.9; the unpruned rows are always made too)")
      ->check(kPruneFraction);
  sub.add_option("--retrain-epochs", o->params.retrain_epochs,
                 "epochs retraining the pruned net's survivors before the pruned rows (-1 = default: 2, --quick 1; "
                 "0 = none)")
      ->capture_default_str();
  sub.add_option("--max-accuracy-loss", o->params.max_accuracy_loss,
                 "accuracy budget in points, on validation images held out of the training set")
      ->capture_default_str();
  sub.add_option("--seed", o->params.seed, "random seed")->capture_default_str()->check(kSeed);
  sub.add_flag("--no-plot", o->no_plot, "skip the matplotlib RD plot");
  add_common_options(sub, o->common);
  sub.callback([o] { run(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(demo, "demo", "train, Hessian, prune, quantize, code and fine-tune a built-in net: the paper's Table 1",
                    5, setup_demo);
}  // namespace nq::cli
