// `netquant decompress IN.nq -o OUT.safetensors [--dtype f32|f16|bf16]`: streams dequantized weights out.
#include <iostream>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/coding.h"
#include "netquant/error.h"

namespace nq::cli {
namespace {

struct DecompressOptions {
  CommonOptions common;
  std::string input;
  std::string output;
  std::string dtype;  // empty: each tensor's original dtype
};

void setup_decompress(CLI::App& sub) {
  auto o = std::make_shared<DecompressOptions>();
  add_common_options(sub, o->common, false);
  sub.add_option("input", o->input, "compressed model (.nq)")->required()->check(CLI::ExistingFile);
  sub.add_option("-o,--output", o->output, "output safetensors file (written atomically)")->required();
  sub.add_option("--dtype", o->dtype, "output dtype for the weights: f32, f16, bf16 (default: the original dtypes)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  sub.callback([o] {
    apply_common_options(o->common);
    check_outputs({{"-o", o->output}}, {o->input});
    std::optional<DType> dtype;
    if (o->dtype == "f32") dtype = DType::kF32;
    if (o->dtype == "f16") dtype = DType::kF16;
    if (o->dtype == "bf16") dtype = DType::kBF16;
    decompress_nq_file(o->input, o->output, dtype);
    if (!o->common.quiet) std::cerr << "wrote " << o->output << "\n";
  });
}

}  // namespace
NQ_REGISTER_COMMAND(decompress, "decompress", "decode a .nq file into dequantized safetensors weights", 30,
                    setup_decompress);
}  // namespace nq::cli
