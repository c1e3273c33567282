// `netquant prune MODEL -o OUT --prune S [--importance H] [--skip-1d] [--include R] [--exclude R]`: the model with
// exactly the weights `quantize --prune S` (with the same tensor selection) would prune set to 0, every other value
// and every dtype as they were. It is the start of retraining a pruned net outside netquant (hold its zeros at 0,
// e.g. by masking their gradients; `train --prune` does this for the built-in nets), after which
// `quantize --prune S` prunes the same weights again.
#include <iostream>

#include "cli_common.h"
#include "core/mapped_pages.h"
#include "core/string_util.h"
#include "command_registry.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/quantize.h"
#include "quant/tensor_selector.h"

namespace nq::cli {
namespace {

struct PruneOptions {
  CommonOptions common;
  std::string model, output, importance, transform = "none", include, exclude;
  double prune = 0;
  bool skip_1d = false;
  int64_t batch_weights = 0;
};

void run_prune(const PruneOptions& o) {
  apply_common_options(o.common);
  check_outputs({{"-o", o.output}}, {o.model, o.importance});
  const TensorSet model = read_tensors(o.model);
  NQ_CHECK(!model.empty(), ErrorCode::kInvalidArgument, o.model << ": the model has no tensors");
  check_tensor_output({"-o", o.output}, static_cast<int64_t>(model.size()));
  ModelQuantizeParams p;
  p.prune = o.prune;
  p.skip_1d = o.skip_1d;
  p.include_regex = o.include;
  p.exclude_regex = o.exclude;
  p.batch_weights = o.batch_weights;
  p.importance_transform = parse_importance_transform(o.transform);
  check_transform_needs_importance(o.transform, o.importance);
  p.quant.backend = parse_backend(o.common.backend);
  const TensorSet importance = o.importance.empty() ? TensorSet() : read_importance(o.importance, model, p);
  const TensorSet* imp = o.importance.empty() ? nullptr : &importance;
  if (has_extension(o.output, ".safetensors")) {
    // Streamed: each tensor is written as it is made and its input pages given back, so a model larger than
    // memory is pruned in about one tensor's memory.
    SafetensorsWriter out(o.output, model);
    prune_model_each(model, imp, p, [&](Tensor t) {
      out.write(t);
      const Tensor& input = model.at(t.name());  // `t` is this view, or a copy of it in memory
      release_mapped_pages(input.data(), input.nbytes());
    });
    out.commit();
  } else {
    write_tensors(o.output, prune_model(model, imp, p));
  }
  {  // the result line, also with --quiet
    int64_t quantized = 0;
    const quant::TensorSelector select(p);
    for (const Tensor& t : model)
      if (select.quantizes(t.name(), t.dtype(), t.shape())) quantized += t.numel();
    const auto count = static_cast<int64_t>(o.prune * static_cast<double>(quantized));
    std::cerr << "wrote " << o.output << ": " << count << " of " << quantized << " weights set to 0 (smallest "
              << (o.importance.empty() ? "w²" : "h·w²") << ")\n";
  }
}

void setup_prune(CLI::App& sub) {
  auto o = std::make_shared<PruneOptions>();
  sub.add_option("MODEL", o->model,
                 "model weights: .safetensors, a sharded checkpoint's *.index.json or its directory, or .npy")
      ->required();
  sub.add_option("-o,--output", o->output, "the pruned weights (.safetensors or .npy; written atomically)")->required();
  sub.add_option("--prune", o->prune, "fraction of the weights (smallest h·w²) set to exactly 0")
      ->required()
      ->check(kPruneFraction);
  sub.add_option("--importance", o->importance, "per-weight importance h (same tensor names and shapes); default 1");
  sub.add_option("--importance-transform", o->transform, "none, sqrt (e.g. Adam's v) or normalize (mean 1/tensor)")
      ->capture_default_str();
  sub.add_flag("--skip-1d", o->skip_1d, "leave 1-D tensors (biases) unpruned, as quantize --skip-1d keeps them");
  add_name_filters(sub, o->include, o->exclude, "prune");
  add_batch_weights(sub, o->batch_weights, /*for_prune=*/true);
  add_common_options(sub, o->common);
  sub.callback([o] { run_prune(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(prune, "prune", "set the weights quantize --prune would prune to 0 (for retraining a pruned net)",
                    25, setup_prune);
}  // namespace nq::cli
