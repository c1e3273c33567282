// `netquant wetrain`: quantized-forward training of a built-in network with weighted-entropy weights and log-domain
// activations (Park, Ahn & Yoo, CVPR 2017), or the uniform baseline at the same bits.
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

struct WetrainOptions {
  CommonOptions common;
  std::string model = "lenet5", weights, data = default_data_dir(), output, report;
  std::string weight_method = "wentropy", activation = "wentropy";
  QuantTrainParams params;
};

void run(WetrainOptions& o) {
  apply_common_options(o.common);
  NQ_CHECK(o.common.backend != "cuda", ErrorCode::kUnsupported,
           "wetrain runs on the CPU backend only (its activation quantizer works on host memory)");
  NQ_CHECK(o.output.empty() || has_extension(o.output, ".nq"), ErrorCode::kInvalidArgument,
           "-o must name a .nq file, got '" << o.output << "'");
  check_outputs({{"-o", o.output}, {"--report", o.report}}, {o.weights});
  check_text_output({"--report", o.report});
  QuantTrainParams& p = o.params;
  p.weight_method = parse_method(o.weight_method);
  p.activation = parse_activation_quant(o.activation);
  p.progress = !o.common.quiet;
  Model model = build_model(o.model);
  load_network_weights(model, o.weights);
  const Dataset train = load_mnist(o.data, true);
  const Dataset test = load_mnist(o.data, false);
  QuantTrainResult r = quantized_train(model, train, test, p);
  if (!o.output.empty()) write_nq_file(o.output, r.weights);

  Table t({"model", "test accuracy %"});
  t.add_row({"float", format_double(100 * r.float_accuracy, 4)});
  const std::string tag = o.weight_method + " w" + std::to_string(p.weight_bits) + " / " + o.activation + " a" +
                          std::to_string(p.activation_bits);
  t.add_row({tag + ", before training", format_double(100 * r.accuracy_before, 4)});
  t.add_row({tag + ", after " + std::to_string(p.epochs) + " epoch(s)", format_double(100 * r.accuracy_after, 4)});
  {
    std::ostream& out = human_output(o.report);
    out << t.to_string();
    for (size_t i = 0; i < r.activation_quantizers.size(); ++i)
      out << "ReLU " << i << " activations: " << r.activation_quantizers[i] << "\n";
    out << "trained in " << format_double(r.seconds, 3) << " s\n";
  }
  if (!o.report.empty())
    write_json(o.report, {{"model", o.model},
                          {"weight_method", o.weight_method},
                          {"weight_bits", p.weight_bits},
                          {"activation", o.activation},
                          {"activation_bits", p.activation_bits},
                          {"epochs", p.epochs},
                          {"lr", p.lr},
                          {"train_subset", p.train_subset},
                          {"test_subset", p.test_subset},
                          {"float_accuracy", r.float_accuracy},
                          {"accuracy_before", r.accuracy_before},
                          {"accuracy_after", r.accuracy_after},
                          {"activation_quantizers", r.activation_quantizers},
                          {"epoch_loss", r.epoch_loss},
                          {"seconds", r.seconds}});
}

void setup_wetrain(CLI::App& sub) {
  auto o = std::make_shared<WetrainOptions>();
  sub.add_option("--model", o->model, "lenet5 | lenet300 | a JSON layer list (file.json)")
      ->capture_default_str();
  sub.add_option("--weights", o->weights, "trained float weights (.safetensors or .npy; or a .nq file, dequantized)")->required()
      ->check(CLI::ExistingFile);
  sub.add_option("--data", o->data, "MNIST-format data directory")->capture_default_str();
  sub.add_option("-o,--output", o->output, "final quantized weights (.nq), optional");
  sub.add_option("--report", o->report, "JSON report (\"-\" = stdout)");
  sub.add_option("--weight-quant", o->weight_method, "wentropy (Park et al.) | int (uniform baseline)")
      ->check(CLI::IsMember({"wentropy", "int"}))->capture_default_str();
  sub.add_option("--weight-bits", o->params.weight_bits, "weight bits (wentropy: 2^b levels; int: symmetric b-bit grid)")
      ->capture_default_str();
  sub.add_option("--act-quant", o->activation, "wentropy (log-domain levels) | linear (uniform grid) | none")
      ->check(CLI::IsMember({"wentropy", "linear", "none"}))->capture_default_str();
  sub.add_option("--act-bits", o->params.activation_bits, "activation bits (2^b levels including 0)")->capture_default_str();
  sub.add_option("--epochs", o->params.epochs, "training epochs")->capture_default_str()->check(kCount);
  sub.add_option("--batch", o->params.batch, "images per step")->capture_default_str()->check(kPositive);
  sub.add_option("--lr", o->params.lr, "Adam learning rate (full-precision weights)")
      ->capture_default_str()
      ->check(kPositive);
  add_image_count(sub, "--train-subset", o->params.train_subset, "first N training images (0 = all)");
  add_image_count(sub, "--test-subset", o->params.test_subset, "first N test images (0 = all)");
  sub.add_option("--calibration", o->params.calibration_samples, "images for fitting the activation quantizers")
      ->capture_default_str();
  sub.add_option("--requantize-every", o->params.requantize_every, "re-quantize the weights every N steps")
      ->capture_default_str();
  sub.add_option("--seed", o->params.seed, "shuffle seed")->capture_default_str()->check(kSeed);
  add_common_options(sub, o->common);
  sub.callback([o] { run(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(wetrain, "wetrain",
                    "quantized-forward training: weighted-entropy weights + log-domain activations (Park et al.)", 58,
                    setup_wetrain);
}  // namespace nq::cli
