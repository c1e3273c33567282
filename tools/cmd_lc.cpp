// `netquant lc`: learning-compression quantization of a built-in network (Carreira-Perpiñán & Idelbayev 2017).
#include <cmath>
#include <iostream>
#include <memory>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/lc.h"
#include "netquant/pipeline.h"

namespace nq::cli {
namespace {

struct LcOptions {
  CommonOptions common;
  std::string model = "lenet300", weights, data = default_data_dir(), output, log, importance;
  std::string c_step = "kmeans", scope = "tensor", transform = "none";
  int k = 0, bits = 0;
  double lambda = 0;
  bool quantize_biases = false;
  LcParams params;
};

nlohmann::json step_json(const LcStepStats& s) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"step", s.step},
          {"mu", s.mu},
          {"lr", s.lr},
          {"violation", s.violation},
          {"relative_violation", s.relative_violation},
          {"penalty", s.penalty},
          {"train_loss", num(s.train_loss)},
          {"test_loss", num(s.test_loss)},
          {"test_accuracy", num(s.test_accuracy)},
          {"test_accuracy_w", num(s.test_accuracy_w)},
          {"codebook", s.codebook},
          {"seconds", s.seconds}};
}

std::string codebook_text(const std::vector<float>& c) {
  std::string out = "[";
  for (size_t i = 0; i < c.size() && i < 4; ++i) out += (i ? " " : "") + format_double(c[i], 4);
  if (c.size() > 4) out += " ... (" + std::to_string(c.size()) + ")";
  return out + "]";
}

void run(LcOptions& o) {
  apply_common_options(o.common);
  check_outputs({{"-o", o.output}, {"--log", o.log}}, {o.weights, o.importance});
  check_text_output({"--log", o.log});
  NQ_CHECK(has_extension(o.output, ".nq"), ErrorCode::kInvalidArgument,
           "-o must name a .nq file, got '" << o.output << "'");
  LcParams& p = o.params;
  p.backend = resolve_backend(parse_backend(o.common.backend));
  ModelQuantizeParams& c = p.compress;
  c.quant.method = parse_method(o.c_step);
  NQ_CHECK(c.quant.method != Method::kWentropy && c.quant.method != Method::kUniform && c.quant.method != Method::kExact,
           ErrorCode::kInvalidArgument, "--c-step must be kmeans, hw-kmeans, binary, ternary, pow2, int or ecsq");
  NQ_CHECK(!(o.k > 0 && o.bits > 0), ErrorCode::kInvalidArgument, "give --k or --bits, not both");
  NQ_CHECK(o.k >= 0 && o.bits >= 0 && o.bits <= 16, ErrorCode::kInvalidArgument, "--k must be >= 1, --bits in 1..16");
  c.quant.k = o.bits > 0 ? (1 << o.bits) : (o.k > 0 ? o.k : 2);
  if (c.quant.method == Method::kInt) c.quant.int_bits = o.bits > 0 ? o.bits : (o.k > 0 ? o.k : 2);
  if (c.quant.method == Method::kPow2 && o.k > 0) c.quant.pow2_levels = o.k;
  check_nq_levels(o.output, c.quant, o.bits > 0 ? "--bits" : "--k");
  c.quant.lambda = o.lambda;
  c.quant.backend = p.backend;
  c.scope = parse_scope(o.scope);
  c.skip_1d = !o.quantize_biases;
  c.importance_transform = parse_importance_transform(o.transform);
  check_transform_needs_importance(o.transform, o.importance);
  NQ_CHECK(o.lambda == 0 || c.quant.method == Method::kEcsq, ErrorCode::kInvalidArgument,
           "--lambda applies to --c-step ecsq only (got " << o.c_step << ")");

  Model model = build_model(o.model);
  load_network_weights(model, o.weights);
  TensorSet importance;
  if (!o.importance.empty()) importance = read_importance(o.importance, model.weights(), c);
  const Dataset train = load_mnist(o.data, true);
  const Dataset test = load_mnist(o.data, false);

  nlohmann::json log_steps = nlohmann::json::array();
  p.on_step = [&](const LcStepStats& s) {
    log_steps.push_back(step_json(s));
    if (o.common.quiet) return;
    // The direct compression has no L step: no training loss and no float weights of its own to test ("-").
    char loss[32] = "-", acc_w[32] = "-", line[256];
    if (std::isfinite(s.train_loss)) std::snprintf(loss, sizeof loss, "%.4g", s.train_loss);
    if (std::isfinite(s.test_accuracy_w)) std::snprintf(acc_w, sizeof acc_w, "%.2f%%", 100 * s.test_accuracy_w);
    std::snprintf(line, sizeof line,
                  "%-6s mu %-9.3g lr %-8.3g |w-D(T)| %-9.4g loss %-8s acc(D(T)) %6.2f%% acc(w) %7s  ",
                  s.step < 0 ? "direct" : ("step " + std::to_string(s.step)).c_str(), s.mu, s.lr, s.violation, loss,
                  100 * s.test_accuracy, acc_w);
    human_output(o.log) << line << codebook_text(s.codebook) << " " << format_double(s.seconds, 3) << " s" << std::endl;
  };
  LcResult r = lc_compress(model, train, &test, o.importance.empty() ? nullptr : &importance, p);
  write_nq_file(o.output, r.compressed);

  const LcStepStats& first = r.history.front();
  const LcStepStats& last = r.history.back();
  Table t({"", "test accuracy %", "test loss", "ratio (Huffman)"});
  account_coding(r.direct);
  t.add_row({"direct compression", format_double(100 * first.test_accuracy, 4), format_double(first.test_loss, 4),
             format_double(r.direct.total.ratio_huffman, 4)});
  t.add_row({"LC", format_double(100 * last.test_accuracy, 4), format_double(last.test_loss, 4),
             format_double(r.compressed.total.ratio_huffman, 4)});
  human_output(o.log) << t.to_string() << "LC: " << p.steps << " steps in " << format_double(r.seconds, 3) << " s -> "
              << o.output << "\n";
  if (!o.log.empty()) {
    nlohmann::json j = {{"model", o.model},
                        {"weights", o.weights},
                        {"c_step", o.c_step},
                        {"k", c.quant.k},
                        {"scope", o.scope},
                        {"include", c.include_regex},
                        {"exclude", c.exclude_regex},
                        {"mu0", p.mu0},
                        {"mu_factor", p.mu_factor},
                        {"steps", p.steps},
                        {"epochs_per_step", p.epochs_per_step},
                        {"lr", p.lr},
                        {"train_subset", p.train_subset},
                        {"direct_test_accuracy", first.test_accuracy},
                        {"lc_test_accuracy", last.test_accuracy},
                        {"seconds", r.seconds},
                        {"history", log_steps}};
    write_json(o.log, j);
  }
}

void setup_lc(CLI::App& sub) {
  auto o = std::make_shared<LcOptions>();
  sub.add_option("--model", o->model, "lenet300 | lenet5 | a JSON layer list (file.json)")
      ->capture_default_str();
  sub.add_option("--weights", o->weights, "trained weights (.safetensors or .npy; or a .nq file, dequantized)")->required()->check(CLI::ExistingFile);
  sub.add_option("--data", o->data, "MNIST-format data directory")->capture_default_str();
  sub.add_option("-o,--output", o->output, "compressed model (.nq)")->required();
  sub.add_option("--log", o->log, "per-step log as JSON (\"-\" = stdout)");
  sub.add_option("--c-step", o->c_step, "C-step quantizer: kmeans | hw-kmeans | binary | ternary | pow2 | int | ecsq")
      ->capture_default_str();
  sub.add_option("--k", o->k, "levels (kmeans/ecsq k; int: bits; pow2: exponents per sign; default 2)")
      ->check(kPositive);
  sub.add_option("--bits", o->bits, "levels as bits: k = 2^bits")->check(kPositive);
  sub.add_option("--lambda", o->lambda, "ecsq: weight of the entropy");
  sub.add_option("--scope", o->scope, "global | tensor | row | group:G")->capture_default_str();
  sub.add_option("--importance", o->importance, "per-weight importance for a weighted C step");
  sub.add_option("--importance-transform", o->transform, "none | sqrt | normalize")->capture_default_str();
  sub.add_flag("--quantize-biases", o->quantize_biases, "quantize the biases too (default: kept in float, as [LC])");
  add_name_filters(sub, o->params.compress.include_regex, o->params.compress.exclude_regex);
  sub.add_option("--mu0", o->params.mu0, "initial penalty μ0")->capture_default_str();
  sub.add_option("--mu-factor", o->params.mu_factor, "a >= 1: μ_t = μ0·a^t")->capture_default_str();
  sub.add_option("--steps", o->params.steps, "LC iterations T")->capture_default_str();
  sub.add_option("--epochs-per-step", o->params.epochs_per_step, "L-step epochs E")->capture_default_str();
  sub.add_option("--lr", o->params.lr, "L-step learning rate (Nesterov SGD; clipped to <= 1/μ)")
      ->capture_default_str()
      ->check(kPositive);
  sub.add_option("--lr-decay", o->params.lr_decay, "lr factor per L-step epoch")->capture_default_str();
  sub.add_option("--momentum", o->params.momentum, "Nesterov momentum")->capture_default_str();
  sub.add_option("--batch", o->params.batch, "images per SGD step")->capture_default_str()->check(kPositive);
  add_image_count(sub, "--train-subset", o->params.train_subset, "first N training images (0 = all)");
  add_image_count(sub, "--test-subset", o->params.test_subset, "first N test images for the per-step log (0 = all)");
  sub.add_option("--seed", o->params.seed, "shuffle seed")->capture_default_str()->check(kSeed);
  add_common_options(sub, o->common);
  sub.callback([o] {
    o->params.progress = !o->common.quiet;
    run(*o);
  });
}

}  // namespace
NQ_REGISTER_COMMAND(lc, "lc", "learning-compression (LC) quantization of a built-in network (augmented Lagrangian)", 57,
                    setup_lc);
}  // namespace nq::cli
