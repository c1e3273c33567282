// Options and output helpers shared by the subcommands: backend, threads, tables, JSON files.
#pragma once

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "core/string_util.h"  // ends_with: the CLI picks formats by extension
#include "netquant/nn.h"
#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace nq::cli {

struct CommonOptions {
  std::string backend = "auto";
  int threads = 0;  // 0 = all cores
  bool quiet = false;
};

// --backend auto|cpu|cuda, --threads T, --quiet. Call apply_common_options() first thing in the callback.
void add_common_options(CLI::App& sub, CommonOptions& opts, bool with_backend = true);
void apply_common_options(const CommonOptions& opts);
// Whether "note:" lines may print (not with --quiet).
bool notes_enabled();

// Fixed-width text table: columns right-aligned except the first.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string to_string() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};


// Option checks with plain messages ("--k: must be > 0, got -1"); CLI11's own ranges print DBL_MAX in full.
// A negative count or size must not pass as the "unset" or "all" value it happens to share a sign with.
extern const CLI::Validator kPositive;
// A finite number >= 0 (learning rates, where 0 is the default's "unset" or simply no step).
extern const CLI::Validator kNonNegative;
// A count or size held in an int64_t option ("first N images", --batch-weights): a whole number in [0, 2^63).
extern const CLI::Validator kCount;
// --seed (a uint64_t): a whole number in [0, 2^64).
extern const CLI::Validator kSeed;
// --prune: a fraction in [0, 1), the same rule for every command that prunes.
extern const CLI::Validator kPruneFraction;
// A fraction in [0, 1) of anything else (a momentum).
extern const CLI::Validator kFraction;
// Every integer option of `app` and its subcommands (type INT, UINT, or N) reads decimal digits only. CLI11 2.1
// converts integers with strtoll's base 0, so "--k 016" ran with 14 clusters and "--epochs 010" ran 8 epochs:
// leading zeros are now dropped ("016" is 16) and "0x10", "0o10" or "1e3" are refused. main() calls it once
// after every command has set up its options.
void read_integers_in_decimal(CLI::App& app);
// An option counting images, "first N ... (0 = all)": its default shown, a negative count refused.
CLI::Option* add_image_count(CLI::App& sub, const std::string& name, int64_t& count, const std::string& help);

// Names for a note on stderr: the first `most` joined by ", ", then " and N more".
std::string name_list(const std::vector<std::string>& names, size_t most = 4);

// --include / --exclude REGEX (ModelQuantizeParams::include_regex / exclude_regex: the tensors to quantize by
// name), one help text for every command; `verb` says what being selected means there ("quantize", "prune").
void add_name_filters(CLI::App& sub, std::string& include, std::string& exclude, const std::string& verb = "quantize");
// --batch-weights N (ModelQuantizeParams::batch_weights); for_prune gives the help text of `prune`.
void add_batch_weights(CLI::App& sub, int64_t& batch_weights, bool for_prune = false);

// --init's help, shared by quantize and sweep.
constexpr const char* kInitHelp =
    "linear (evenly from the least to the greatest value of positive importance) | kmeans++ | quantile; ecsq "
    "starts at the HW k-means answer from these centres";

// One output file of a command: the option that names it and its path ("" = not asked for, "-" = stdout).
struct OutputArg {
  const char* option;
  std::string path;
};
// Checks a command's outputs before any work: none is one of `inputs`, no two are the same file, none is a
// directory, and each one's directory exists. A run with several outputs then cannot write the first and fail on
// a later one for a reason known at the start, and one output never overwrites another (exit 2 otherwise).
void check_outputs(const std::vector<OutputArg>& outputs, const std::vector<std::string>& inputs);
// Checks, before the work, that a tensor output (`write_tensors`) names a type it can hold: .safetensors, or .npy
// for a single tensor (`tensors` = how many will be written, −1 when not yet known). Exit 2 otherwise.
void check_tensor_output(const OutputArg& output, int64_t tensors);
// Checks that a text output (a CSV or JSON report) is not named like a model or data file (.safetensors, .nq,
// .npy, IDX), which a slip of the keyboard would otherwise overwrite with text (exit 2).
void check_text_output(const OutputArg& output);
// --importance-transform acts on --importance: without one it would be ignored without a word (exit 2).
void check_transform_needs_importance(const std::string& transform, const std::string& importance);

// Checks, before the work, that a .nq output can hold the codebooks `q` asks for (at most kNqMaxLevels levels);
// `option` is how the user asked ("--k" or "--bits"); `alternative` ends the advice (", or write .safetensors").
// int's own range (≤ 16 bits) and pow2's are the methods' checks, which name themselves.
void check_nq_levels(const std::string& output, const QuantizeParams& q, const char* option,
                     const char* alternative = "");

// Reads the importance for `model` from `path`. A .npy file's one tensor is named after its file, so model.npy and
// model_h.npy would never pair: a one-tensor .npy importance of a one-tensor model takes the model's tensor name.
// Every tensor `params` quantizes (quant::TensorSelector: float, 1-D ones only without skip_1d, the name filters)
// needs an entry of its shape in a float dtype; an error names the file and the tensor.
TensorSet read_importance(const std::string& path, const TensorSet& model,
                          const ModelQuantizeParams& params = ModelQuantizeParams());

// Weights for a built-in network (eval, hessian, lc, wetrain, train --init): what nn::load_weights reads
// (.safetensors, .npy), or a .nq file's dequantized weights (what `decompress` would write).
void load_network_weights(Model& model, const std::string& path);

// Where the human-readable lines go: stdout, or stderr when a JSON (or CSV) output is "-", so that stdout holds
// only that document.
std::ostream& human_output(const std::string& document_path);

std::string format_double(double v, int precision = 4);  // %.{p}g, "nan"/"inf" spelled out
// Writes JSON atomically ("-" = stdout), pretty-printed with 2 spaces.
void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace nq::cli
