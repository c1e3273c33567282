// `netquant hessian`: per-parameter importance of a built-in network (OBD Hessian diagonal, empirical Fisher
// or exact Gauss-Newton diagonal) on training images, saved with the weights' names and shapes.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/io.h"
#include "netquant/nn.h"

namespace nq::cli {
namespace {

struct HessianOptions {
  CommonOptions common;
  std::string model, weights, data = default_data_dir(), output, method = "obd";
  int64_t samples = 1000, batch = 250;
};

void run_hessian(const HessianOptions& o) {
  apply_common_options(o.common);
  check_outputs({{"-o", o.output}}, {o.weights});
  Model model = build_model(o.model);
  check_tensor_output({"-o", o.output}, static_cast<int64_t>(model.weights().size()));
  load_network_weights(model, o.weights);
  const Dataset data = load_mnist(o.data, true);
  HessianParams p;
  p.method = parse_hessian_method(o.method);
  p.samples = o.samples;
  p.batch = o.batch;
  p.backend = resolve_backend(parse_backend(o.common.backend));
  const auto t0 = std::chrono::steady_clock::now();
  const TensorSet h = hessian_diagonal(model, data, p);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_tensors(o.output, h);
  Table t({"tensor", "shape", "mean h", "max h", "zeros"});
  for (const Tensor& x : h) {
    const std::vector<double> v = x.to_f64();
    double sum = 0, mx = 0;
    int64_t zeros = 0;
    for (double e : v) sum += e, mx = std::max(mx, e), zeros += e == 0;
    t.add_row({x.name(), shape_to_string(x.shape()), format_double(sum / double(v.size())), format_double(mx),
               std::to_string(zeros)});
  }
  std::cout << t.to_string();
  std::cerr << "wrote " << o.output << ": " << o.method << " diagonal over " << h.metadata().at("netquant.samples")
            << " training images in " << format_double(secs, 3) << " s\n";
}

void setup_hessian(CLI::App& sub) {
  auto o = std::make_shared<HessianOptions>();
  sub.add_option("--model", o->model, "lenet300 | lenet5 | a JSON layer list (file.json)")->required();
  sub.add_option("--weights", o->weights, "trained weights (.safetensors or .npy; or a .nq file, dequantized)")->required();
  sub.add_option("--data", o->data, "directory with the IDX files (the training split is used)")
      ->capture_default_str();
  sub.add_option("-o,--output", o->output, "importance to write (.safetensors; same names/shapes as weights)")
      ->required();
  sub.add_option("--method", o->method,
                 "obd (Becker-LeCun recursion, ~1 backward), fisher (mean squared per-sample gradient), "
                 "ggn (exact Gauss-Newton diagonal, ~classes backwards)")
      ->check(CLI::IsMember({"obd", "fisher", "ggn"}))
      ->capture_default_str();
  add_image_count(sub, "--samples", o->samples, "first N training images (0 = all)");
  sub.add_option("--batch", o->batch, "images per pass")->capture_default_str()->check(kPositive);
  add_common_options(sub, o->common);
  sub.callback([o] { run_hessian(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(hessian, "hessian", "per-parameter Hessian diagonal / Fisher importance of a built-in network",
                    42, setup_hessian);
}  // namespace nq::cli
