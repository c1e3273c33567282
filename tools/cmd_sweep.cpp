// `netquant sweep`: rate–distortion curve of one model over λ (ECSQ) or k / bits, optionally with task accuracy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/nn.h"
#include "netquant/pipeline.h"
#include "netquant/sweep.h"
#include "quant/tensor_selector.h"
#include "rd_plot.h"

namespace nq::cli {
namespace {

nlohmann::json sweep_to_json(const std::vector<SweepPoint>& points) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& p : points) {
    const auto& s = p.stats;
    nlohmann::json r = {{"index", p.index}, {"method", p.method}, {"scope", p.scope}, {"include", p.include},
                        {"exclude", p.exclude}, {"knob_name", p.knob_name},
                        {"knob", p.knob}, {"lambda", s.lambda}, {"params", s.params}, {"pruned", s.pruned},
                        {"clusters", s.clusters}, {"hw_distortion", s.hw_distortion}, {"mse", s.mse},
                        {"entropy_bits_per_weight", s.entropy_bits_per_weight},
                        {"huffman_bits_per_weight", s.huffman_bits_per_weight},
                        {"fixed_bits_per_weight", s.fixed_bits_per_weight}, {"ratio_fixed", s.ratio_fixed},
                        {"ratio_entropy", s.ratio_entropy}, {"ratio_huffman", s.ratio_huffman},
                        {"ratio_file", s.ratio_file}, {"seconds", s.seconds},
                        {"duplicate", p.duplicate_of_previous}};
    if (!std::isnan(p.metrics.accuracy)) r["accuracy"] = p.metrics.accuracy, r["loss"] = p.metrics.loss;
    if (!std::isnan(p.metrics.accuracy_finetuned))
      r["accuracy_finetuned"] = p.metrics.accuracy_finetuned, r["loss_finetuned"] = p.metrics.loss_finetuned;
    if (!std::isnan(p.metrics.accuracy_validation)) r["accuracy_validation"] = p.metrics.accuracy_validation;
    if (!std::isnan(p.metrics.accuracy_finetuned_validation))
      r["accuracy_finetuned_validation"] = p.metrics.accuracy_finetuned_validation;
    rows.push_back(r);
  }
  return nlohmann::json{{"points", rows}};
}

// A point's knob as the table, the target's line and the notes write it ("k=4", "lambda=1e-05"); binary and
// ternary have none ("").
std::string knob_label(const SweepPoint& p, int digits) {
  return p.knob_name == "fixed" ? std::string() : p.knob_name + "=" + format_double(p.knob, digits);
}

// How best_point_for_target chose, for the line that names the point.
std::string chosen_by(double TaskMetrics::*criterion) {
  if (criterion == &TaskMetrics::accuracy_finetuned_validation)
    return ", chosen by validation accuracy after fine-tuning";
  if (criterion == &TaskMetrics::accuracy_validation) return ", chosen by validation accuracy";
  if (criterion == &TaskMetrics::accuracy_finetuned) return ", chosen by test accuracy after fine-tuning";
  if (criterion == &TaskMetrics::accuracy) return ", chosen by test accuracy";
  return ", chosen by the lowest distortion";
}

struct SweepOptions {
  CommonOptions common;
  std::string model, importance, transform = "none", methods = "ecsq", lambdas, bits, ks, scope = "global";
  std::string output, json, plot, eval_model, data = default_data_dir(), init = "linear";
  std::string include, exclude;  // name filters (ModelQuantizeParams::include_regex / exclude_regex)
  std::string coder = "auto";    // the .nq coding ratio_file counts
  double prune = 0, target_bits = 0, target_ratio = 0;
  int k = 32, max_iter = 100, finetune = 0;
  uint64_t seed = 1234;
  bool skip_1d = false;
  int64_t batch_weights = 0;
  int64_t validation = 0;  // --validation: training images held out for choosing points
};

std::vector<std::string> split_methods(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string m = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!m.empty()) out.push_back(m);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  NQ_CHECK(!out.empty(), ErrorCode::kInvalidArgument, "--method: empty list");
  return out;
}

// The settings every point shares (the method and its knob come per point).
ModelQuantizeParams base_params(const SweepOptions& o) {
  ModelQuantizeParams base;
  base.scope = parse_scope(o.scope);
  base.prune = o.prune;
  base.skip_1d = o.skip_1d;
  base.include_regex = o.include;
  base.exclude_regex = o.exclude;
  base.batch_weights = o.batch_weights;
  base.importance_transform = parse_importance_transform(o.transform);
  base.quant.init = parse_init(o.init);
  base.quant.max_iter = o.max_iter;
  base.quant.seed = o.seed;
  base.quant.k = o.k;
  base.quant.backend = parse_backend(o.common.backend);
  return base;
}

// Expands the options into the list of rate points, method by method.
std::vector<SweepPointSpec> build_specs(const SweepOptions& o, const TensorSet& model, const TensorSet* imp) {
  const ModelQuantizeParams base = base_params(o);
  std::vector<SweepPointSpec> specs;
  for (const auto& name : split_methods(o.methods)) {
    ModelQuantizeParams p = base;
    p.quant.method = parse_method(name);
    const MethodTraits& traits = method_traits(p.quant.method);
    if (traits.has_lambda) {
      std::vector<double> lambdas;
      if (!o.lambdas.empty()) {
        lambdas = parse_lambda_list(o.lambdas);
      } else {
        const auto range = auto_lambda_range(model, imp, p);
        lambdas = log_space(range.first, range.second, 16);
      }
      for (double l : lambdas) {
        p.quant.lambda = l;
        specs.push_back({p, "lambda", l});
      }
    } else if (p.quant.method == Method::kInt) {  // its knob is the grid's bits: --bits, else --k (as quantize)
      for (int b : parse_int_list(!o.bits.empty() ? o.bits : !o.ks.empty() ? o.ks : "2:8")) {
        NQ_CHECK(b >= 1 && b <= 24, ErrorCode::kInvalidArgument, "int: " << b << " grid bits is outside 1..24");
        p.quant.int_bits = b;
        specs.push_back({p, "bits", static_cast<double>(b)});
      }
    } else if (traits.takes_k) {
      std::vector<int> ks;
      if (!o.ks.empty()) {
        ks = parse_int_list(o.ks);
      } else if (p.quant.method == Method::kPow2 && o.bits.empty()) {
        ks = parse_int_list("1:8");  // pow2's knob is exponents per sign (at most 32): 2^b would leave it at once
      } else {
        for (int b : parse_int_list(o.bits.empty() ? "1:8" : o.bits)) {
          NQ_CHECK(b >= 1 && b <= 16, ErrorCode::kInvalidArgument, "--bits: " << b << " is outside 1..16");
          ks.push_back(1 << b);
        }
      }
      for (int k : ks) {
        NQ_CHECK(k >= 1, ErrorCode::kInvalidArgument, "--k: " << k << " must be >= 1");
        p.quant.k = k;
        if (p.quant.method == Method::kPow2) p.quant.pow2_levels = k;  // pow2's --k: exponents per sign (as quantize)
        specs.push_back({p, "k", static_cast<double>(k)});
      }
    } else {
      specs.push_back({p, "fixed", 0.0});  // binary / ternary: one point
    }
  }
  return specs;
}

void run(const SweepOptions& o) {
  apply_common_options(o.common);
  std::vector<std::string> inputs = {o.model};
  if (!o.importance.empty()) inputs.push_back(o.importance);
  check_outputs({{"-o", o.output}, {"--json", o.json}, {"--plot", o.plot}}, inputs);
  check_text_output({"-o", o.output});
  check_text_output({"--json", o.json});
  NQ_CHECK(!(o.output == "-" && o.json == "-"), ErrorCode::kInvalidArgument,
           "-o - and --json - would both write to stdout; give one of them a file");

  check_transform_needs_importance(o.transform, o.importance);
  const TensorSet model = read_tensors(o.model);
  // Every point would refuse an invalid pattern or an empty selection: refuse it once, before any point runs.
  quant::TensorSelector(base_params(o)).choose(model);
  TensorSet importance;
  if (!o.importance.empty()) importance = read_importance(o.importance, model, base_params(o));
  const TensorSet* imp = o.importance.empty() ? nullptr : &importance;

  auto specs = build_specs(o, model, imp);
  for (auto& spec : specs) spec.coder = parse_index_coder(o.coder);
  // A knob no curve sweeps would be ignored without a word.
  const bool some_lambda =
      std::any_of(specs.begin(), specs.end(), [](const auto& s) { return s.knob_name == "lambda"; });
  NQ_CHECK(o.lambdas.empty() || some_lambda, ErrorCode::kInvalidArgument,
           "--lambdas applies to ecsq, which --method " << o.methods << " does not include");
  const bool some_k = std::any_of(specs.begin(), specs.end(),
                                  [](const auto& s) { return s.knob_name == "k" || s.knob_name == "bits"; });
  NQ_CHECK((o.ks.empty() && o.bits.empty()) || some_k, ErrorCode::kInvalidArgument,
           (o.ks.empty() ? "--bits" : "--k") << " sets the points of k-methods and int, which --method " << o.methods
                                             << " does not include"
                                             << (some_lambda ? " (ECSQ's initial centers: --k-max)" : ""));
  NQ_CHECK(!(o.target_bits > 0 && o.target_ratio > 0), ErrorCode::kInvalidArgument,
           "give one of --target-bits and --target-ratio");
  SweepEvaluator evaluate;
  if (!o.eval_model.empty()) {
    BuiltinEvalOptions eo;
    eo.model = o.eval_model;
    eo.data_dir = o.data;
    eo.finetune_epochs = o.finetune;
    eo.validation_images = o.validation;
    eo.seed = o.seed;
    eo.backend = parse_backend(o.common.backend);
    {  // before any point: the weights must be the network's (else every point would fail the same way)
      Model net = build_model(o.eval_model);
      try {
        net.set_weights(model);
      } catch (const Error& e) {
        throw Error(e.code(), o.model + ": " + e.what() + " (--eval-model " + o.eval_model + ")");
      }
    }
    evaluate = make_builtin_evaluator(eo);
  }
  const auto points = run_sweep_distributed(model, imp, specs, evaluate);
  if (points.empty()) return;  // non-root MPI rank: rank 0 writes the outputs
  // A target no point meets fails the run before anything is written.
  const bool targeted = o.target_bits > 0 || o.target_ratio > 0;
  const int best = targeted ? best_point_for_target(points, o.target_bits, o.target_ratio) : -1;
  NQ_CHECK(!targeted || best >= 0, ErrorCode::kInvalidArgument,
           "no sweep point meets the target (widen --lambdas / --k or relax the target); nothing written");

  const std::string csv = sweep_to_csv(points);
  // The plot comes first (the step most likely to fail: an external Python), from a scratch copy of the CSV that
  // every way out removes, so a plot that fails leaves nothing written. Its PNG is written atomically by the
  // script; should a later output then fail, the PNG goes too.
  if (!o.plot.empty()) {
    AtomicFile plot_csv(o.plot + ".csv");  // never committed: its temporary is the scratch copy
    plot_csv.write(csv);
    plot_csv.flush();
    plot_rd_curve(plot_csv.temp_path(), o.plot, "netquant sweep: " + o.model);
  }
  try {
    if (o.output == "-") std::cout << csv;
    else write_file_atomic(o.output, csv);
    if (!o.json.empty()) write_json(o.json, sweep_to_json(points));
  } catch (...) {
    if (!o.plot.empty()) std::remove(o.plot.c_str());
    throw;
  }

  const bool evaluated = !o.eval_model.empty();
  const bool validated = evaluated && o.validation > 0;
  const bool tuned = evaluated && o.finetune > 0;
  std::vector<std::string> header = {"method", "knob", "clusters"};
  if (!evaluated) header.push_back("entropy");
  for (const char* h : {"bits/w", "ratio", "hw_dist"}) header.push_back(h);
  if (validated) header.push_back("val acc");
  if (evaluated) header.push_back("test acc");
  if (validated && tuned) header.push_back("val acc (ft)");
  if (tuned) header.push_back("test acc (ft)");
  Table table(header);
  auto pct = [](double v) { return format_double(100 * v, 4); };
  for (const auto& p : points) {
    if (p.duplicate_of_previous) continue;
    const std::string knob = knob_label(p, 3);
    std::vector<std::string> row = {p.method, knob.empty() ? "-" : knob, std::to_string(p.stats.clusters)};
    if (!evaluated) row.push_back(format_double(p.stats.entropy_bits_per_weight, 3));
    row.push_back(format_double(p.stats.huffman_bits_per_weight, 3));
    row.push_back(format_double(p.stats.ratio_huffman, 4));
    row.push_back(format_double(p.stats.hw_distortion, 3));
    if (validated) row.push_back(pct(p.metrics.accuracy_validation));
    if (evaluated) row.push_back(pct(p.metrics.accuracy));
    if (validated && tuned) row.push_back(pct(p.metrics.accuracy_finetuned_validation));
    if (tuned) row.push_back(pct(p.metrics.accuracy_finetuned));
    table.add_row(row);
  }
  // With a document on stdout (the CSV or the JSON) the human lines go to stderr.
  std::ostream& out = human_output(o.json == "-" ? o.json : o.output);
  out << table.to_string();
  if (targeted) {
    const auto& p = points[static_cast<size_t>(best)];
    const std::string knob = knob_label(p, 6);
    out << "best point for the target: index " << p.index << " (" << p.method << (knob.empty() ? "" : ", " + knob)
        << "): "
        << p.stats.huffman_bits_per_weight << " bits/weight, ratio " << p.stats.ratio_huffman
        << chosen_by(target_criterion(points, o.target_bits, o.target_ratio)) << "\n";
    // Choosing on the test set makes its accuracy an optimistic estimate of the chosen point's.
    if (evaluated && !validated && !o.common.quiet)
      std::cerr << "note: the point was chosen on the test images, so its test accuracy flatters it; --validation N "
                   "chooses on the last N training images instead (a model that did not train on them: "
                   "netquant train --validation N)\n";
  }
  // Points whose iterations stopped at --max-iter before converging: usable, but not the fixed points the
  // tolerance asks for (quantize says the same of its tensors).
  if (!o.common.quiet) {
    std::vector<std::string> open;
    for (const auto& p : points) {
      if (p.stats.converged) continue;
      const std::string knob = knob_label(p, 3);
      open.push_back(knob.empty() ? p.method : p.method + " " + knob);
    }
    if (!open.empty()) {
      std::cerr << "note: " << open.size() << " of " << points.size() << " points stopped at --max-iter " << o.max_iter
                << " before converging (" << name_list(open) << "); a larger --max-iter reaches their fixed points\n";
    }
  }
}

void setup_sweep(CLI::App& sub) {
  auto o = std::make_shared<SweepOptions>();
  sub.add_option("model", o->model,
                 "model weights: .safetensors, a sharded checkpoint's *.index.json or its directory, or .npy")
      ->required()
      ->check(CLI::ExistingPath);
  sub.add_option("-o,--output", o->output, "sweep table as CSV ('-' = stdout)")->required();
  sub.add_option("--importance", o->importance, "per-weight importance (Hessian diagonal, Fisher, Adam v)");
  sub.add_option("--importance-transform", o->transform, "none | sqrt (for Adam's v) | normalize")->capture_default_str();
  sub.add_option("--method", o->methods, "method or comma list (one curve each): ecsq, uniform, hw-kmeans, ...")
      ->capture_default_str();
  sub.add_option("--lambdas", o->lambdas, "ECSQ λ: LO:HI:N log-spaced, or a comma list (default: automatic range)");
  sub.add_option("--bits", o->bits,
                 "k = 2^b per point for k-methods (int: grid bits): list '1,2,4' or range '1:8' (the default; "
                 "pow2's default is --k 1:8 exponents per sign)");
  sub.add_option("--k", o->ks,
                 "k per point: list '2,4,8' or range '2:16' (overrides --bits; int: grid bits when no --bits)");
  sub.add_option("--k-max", o->k, "ECSQ initial centers")->capture_default_str();
  sub.add_option("--scope", o->scope, "global | tensor | row | group:G")->capture_default_str();
  sub.add_option("--prune", o->prune, "fraction of weights pruned to exactly 0 before quantizing")
      ->check(kPruneFraction);
  sub.add_option("--init", o->init, kInitHelp)->capture_default_str();
  sub.add_option("--max-iter", o->max_iter, "iterations per point")->capture_default_str();
  sub.add_option("--seed", o->seed, "random seed")->capture_default_str()->check(kSeed);
  sub.add_option("--coder", o->coder, "the .nq index coding ratio_file counts: auto, huffman or rans (as quantize)")
      ->check(CLI::IsMember({"auto", "huffman", "rans"}))
      ->capture_default_str();
  sub.add_flag("--skip-1d", o->skip_1d, "leave 1-D tensors (biases) in float");
  add_name_filters(sub, o->include, o->exclude);
  add_batch_weights(sub, o->batch_weights);
  CLI::Option* eval_model =
      sub.add_option("--eval-model", o->eval_model,
                     "evaluate every point with this network: lenet300 | lenet5 | a JSON layer list (file.json)");
  sub.add_option("--data", o->data, "MNIST-format data directory for --eval-model")->capture_default_str();
  sub.add_option("--finetune", o->finetune, "fine-tune the shared values for E epochs at every point (with --eval-model)")
      ->check(kCount)
      ->needs(eval_model);
  sub.add_option("--validation", o->validation,
                 "hold out the last N training images: every point gets its accuracy there, --target-* choose by "
                 "it and --finetune trains on the images before them (the model must not have trained on them: "
                 "netquant train --validation N)")
      ->check(kCount)
      ->needs(eval_model);
  sub.add_option("--target-bits", o->target_bits, "report the best point with Huffman bits/weight <= R")
      ->check(kPositive);
  sub.add_option("--target-ratio", o->target_ratio, "report the best point with compression ratio >= X")
      ->check(kPositive);
  sub.add_option("--json", o->json, "also write the points as JSON");
  sub.add_option("--plot", o->plot, "RD plot (PNG, matplotlib)");
  add_common_options(sub, o->common);
  sub.callback([o] { run(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(sweep, "sweep", "rate-distortion sweep over λ, k or bits (optionally with task accuracy)", 50,
                    setup_sweep);
}  // namespace nq::cli
