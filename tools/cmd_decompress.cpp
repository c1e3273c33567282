// `netquant decompress IN.nq -o OUT.safetensors [--dtype f32|f16|bf16] [--codes]`: streams dequantized weights
// out, or each quantized tensor's codes and codebook table (the codes layout, for lookup-table kernels).
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
  bool codes = false;
};

void setup_decompress(CLI::App& sub) {
  auto o = std::make_shared<DecompressOptions>();
  add_common_options(sub, o->common, false);
  sub.add_option("input", o->input, "compressed model (.nq)")->required()->check(CLI::ExistingFile);
  sub.add_option("-o,--output", o->output, "output safetensors file (written atomically)")->required();
  sub.add_option("--dtype", o->dtype,
                 "output dtype for the weights (with --codes: for the codebook tables; tensors kept in float are "
                 "converted too): f32, f16, bf16 (default: the original dtypes)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  sub.add_flag("--codes", o->codes,
               "write each quantized tensor W as W.codes (each weight's column in its codebook row: uint8 up to 256 "
               "columns, else int16 or int32) and W.codebook ([problems, columns]) instead of its values: "
               "W[i] = W.codebook[i / problem_size][W.codes[i]]; the metadata gives W.problem_size and "
               "W.pruned_code (README \"netquant decompress\")");
  sub.callback([o] {
    apply_common_options(o->common);
    check_outputs({{"-o", o->output}}, {o->input});
    std::optional<DType> dtype;
    if (o->dtype == "f32") dtype = DType::kF32;
    if (o->dtype == "f16") dtype = DType::kF16;
    if (o->dtype == "bf16") dtype = DType::kBF16;
    decompress_nq_file(o->input, o->output, dtype, o->codes ? DecompressLayout::kCodes : DecompressLayout::kValues);
    std::cerr << "wrote " << o->output << "\n";  // the result line, also with --quiet
  });
}

}  // namespace
NQ_REGISTER_COMMAND(decompress, "decompress",
                    "decode a .nq file into dequantized safetensors weights (or codes and codebooks)", 30,
                    setup_decompress);
}  // namespace nq::cli
