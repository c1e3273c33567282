// Shared CLI helpers.
#include "cli_common.h"
#include "command_registry.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <system_error>

#include "core/string_util.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/nn.h"
#include "netquant/progress.h"
#include "quant/quantizers.h"
#include "quant/tensor_selector.h"

namespace nq::cli {


void add_common_options(CLI::App& sub, CommonOptions& opts, bool with_backend) {
  if (with_backend)
    sub.add_option("--backend", opts.backend, "compute backend: auto (CUDA when a GPU answers), cpu, cuda")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
  sub.add_option("--threads", opts.threads, "CPU threads (0 = all cores; at most 4 per core or 256, whichever is more)")
      ->capture_default_str();
  sub.add_flag("-q,--quiet", opts.quiet, "no progress bar, notes or per-epoch/step lines (results still print)");
}

namespace {

// A number passing `ok`, else "must be <rule>, got ..." (or "must be a number").
template <class Ok>
CLI::Validator number_where(Ok ok, const char* rule) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0') return "must be a number, got '" + text + "'";
        if (!ok(v)) return std::string("must be ") + rule + ", got " + text;
        return std::string();
      },
      rule);
}

// A whole number of decimal digits within [0, max]. CLI11 2.1's own conversion wraps "-1" into an unsigned option
// and saturates a number past 64 bits at the type's maximum, silently: a seed of -1 or 1e20 would run as 2^64 - 1.
CLI::Validator whole_number_upto(uint64_t max, const std::string& help) {
  const std::string rule = "a whole number from 0 to " + std::to_string(max);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        uint64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [stop, error] = std::from_chars(text.data(), end, v);
        if (text.empty() || stop != end || error != std::errc() || v > max)
          return "must be " + rule + ", got '" + text + "'";
        return std::string();
      },
      help);
}

}  // namespace

const CLI::Validator kCount = whole_number_upto(static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), ">= 0");
const CLI::Validator kSeed = whole_number_upto(std::numeric_limits<uint64_t>::max(), "");

const CLI::Validator kPositive = number_where([](double v) { return v > 0; }, "> 0");
const CLI::Validator kNonNegative = number_where([](double v) { return v >= 0 && std::isfinite(v); }, ">= 0");

// [0, 1): pruning everything would leave nothing to quantize (quantize_model refuses 1 as well).
const CLI::Validator kFraction = number_where([](double v) { return v >= 0 && v < 1; }, "in [0, 1)");
const CLI::Validator kPruneFraction = kFraction;

void read_integers_in_decimal(CLI::App& app) {
  // A transform (it runs before the option's other checks): an optional sign, then decimal digits, leading zeros
  // dropped; CLI11 converts the result. No description, so --help is unchanged.
  const CLI::Validator decimal(
      [](std::string& text) -> std::string {
        const size_t digits = !text.empty() && (text[0] == '-' || text[0] == '+') ? 1 : 0;
        if (text.size() == digits || text.find_first_not_of("0123456789", digits) != std::string::npos)
          return "must be a whole number in decimal digits, got '" + text + "'";
        const size_t first = text.find_first_not_of('0', digits);
        text = text.substr(0, digits) + (first == std::string::npos ? "0" : text.substr(first));
        return std::string();
      },
      "");
  for (CLI::Option* opt : app.get_options()) {
    const std::string type = opt->get_type_name();
    const std::string base = type.substr(0, type.find(':'));
    if (base == "INT" || base == "UINT" || base == "N") opt->transform(decimal);
  }
  for (CLI::App* sub : app.get_subcommands({})) read_integers_in_decimal(*sub);
}

CLI::Option* add_image_count(CLI::App& sub, const std::string& name, int64_t& count, const std::string& help) {
  return sub.add_option(name, count, help)->capture_default_str()->check(kCount);
}

std::string name_list(const std::vector<std::string>& names, size_t most) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < most; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > most) out += " and " + std::to_string(names.size() - most) + " more";
  return out;
}

void check_outputs(const std::vector<OutputArg>& outputs, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::pair<const OutputArg*, fs::path>> seen;
  // A sharded checkpoint's index stands for its shards too: writing over any of them overwrites an input.
  std::vector<std::string> input_files;
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    try {
      for (std::string& file : tensor_input_files(in)) input_files.push_back(std::move(file));
    } catch (const Error&) {
      input_files.push_back(in);  // unreadable: the command's own read reports it, naming the problem
    }
  }
  for (const OutputArg& out : outputs) {
    if (out.path.empty() || out.path == "-") continue;
    check_output_not_input(out.path, input_files);
    std::error_code ec;
    // Resolves the parts that exist (symbolic links, "..") and normalises the rest, so two spellings of one
    // file compare equal before either exists.
    fs::path resolved = fs::weakly_canonical(fs::absolute(out.path, ec), ec);
    if (ec) resolved = fs::absolute(out.path).lexically_normal();
    NQ_CHECK(!fs::is_directory(resolved, ec), ErrorCode::kInvalidArgument,
             out.option << " " << out.path << ": is a directory");
    const fs::path dir = resolved.parent_path();
    NQ_CHECK(fs::is_directory(dir, ec), ErrorCode::kInvalidArgument,
             out.option << " " << out.path << ": "
                        << (fs::exists(dir, ec) ? "'" + dir.string() + "' is not a directory"
                                                : "directory '" + dir.string() + "' does not exist"));
    for (const auto& [other, other_path] : seen) {
      NQ_CHECK(resolved != other_path && !fs::equivalent(resolved, other_path, ec), ErrorCode::kInvalidArgument,
               out.option << " " << out.path << " and " << other->option << " " << other->path
                          << " name the same file; give each output its own path");
    }
    seen.emplace_back(&out, resolved);
  }
}

void check_tensor_output(const OutputArg& out, int64_t tensors) {
  if (out.path.empty()) return;
  const bool npy = has_extension(out.path, ".npy");
  NQ_CHECK(has_extension(out.path, ".safetensors") || npy, ErrorCode::kInvalidArgument,
           out.option << " " << out.path << ": writes .safetensors (or .npy for one tensor); name the file so");
  NQ_CHECK(!npy || tensors < 0 || tensors == 1, ErrorCode::kInvalidArgument,
           out.option << " " << out.path << ": a .npy file holds one tensor and this writes " << tensors
                      << "; name a .safetensors file");
}

void check_text_output(const OutputArg& out) {
  if (out.path.empty() || out.path == "-") return;
  NQ_CHECK(!named_like_model_or_data(out.path), ErrorCode::kInvalidArgument,
           out.option << " " << out.path << ": writes text, and the name is a model's or a data set's; name it "
                                            "for what it holds (.csv, .json)");
}

void check_transform_needs_importance(const std::string& transform, const std::string& importance) {
  NQ_CHECK(transform == "none" || !importance.empty(), ErrorCode::kInvalidArgument,
           "--importance-transform " << transform << " transforms --importance; give that file too");
}

void check_nq_levels(const std::string& output, const QuantizeParams& q, const char* option, const char* alternative) {
  if (!has_extension(output, ".nq")) return;
  const int64_t levels = q.method == Method::kInt    ? (q.int_bits <= 16 ? (int64_t{1} << q.int_bits) - 1 : 0)
                         : q.method == Method::kPow2 ? 0
                                                     : int64_t{q.k};
  NQ_CHECK(levels <= kNqMaxLevels, ErrorCode::kInvalidArgument,
           "-o " << output << ": a .nq codebook holds at most " << kNqMaxLevels << " levels, and " << option
                 << " asks for " << levels << "; lower it" << alternative);
}

void load_network_weights(Model& model, const std::string& path) {
  if (has_extension(path, ".nq"))
    load_weights(model, read_nq_file(path).dequantize(), path);
  else
    load_weights(model, path);
}

TensorSet read_importance(const std::string& path, const TensorSet& model, const ModelQuantizeParams& params) {
  TensorSet imp = read_tensors(path);
  if (has_extension(path, ".npy") && imp.size() == 1 && model.size() == 1 && imp[0].name() != model[0].name()) {
    Tensor t = imp[0];
    t.set_name(model[0].name());
    TensorSet renamed;
    renamed.add(std::move(t));
    imp = std::move(renamed);
  }
  // quantize_model's own checks, made here so that the message names the file; only of the tensors it quantizes,
  // so an importance need not hold the ones a filter leaves in float.
  const quant::TensorSelector select(params);
  for (const Tensor& t : model) {
    if (!select.quantizes(t.name(), t.dtype(), t.shape())) continue;
    const Tensor* h = imp.find(t.name());
    quant::check_importance_layout(t.name(), t.shape(), h ? &h->shape() : nullptr, h ? h->dtype() : DType::kF32,
                                   "--importance " + path);
  }
  // Tensors the model lacks are never read: most likely a file of another model (or one with extra state). Said,
  // since the names are meant to match.
  std::vector<std::string> extra;
  for (const Tensor& h : imp)
    if (!model.find(h.name())) extra.push_back(h.name());
  if (!extra.empty() && notes_enabled())
    std::cerr << "note: --importance " << path << ": " << extra.size() << " of its " << imp.size()
              << " tensors are not in the model and are ignored (" << name_list(extra) << ")\n";
  return imp;
}

void add_name_filters(CLI::App& sub, std::string& include, std::string& exclude, const std::string& verb) {
  sub.add_option("--include", include,
                 "only " + verb + " the tensors whose name matches this regex (RE2 syntax), found anywhere in the "
                 "name as grep finds it (^...$: the whole name); the others are left as they are")
      ->type_name("REGEX");
  sub.add_option("--exclude", exclude,
                 "do not " + verb + " the tensors whose name matches this regex (RE2 syntax; anywhere in the name), "
                 "e.g. --exclude 'embed|lm_head|norm'; they are left as they are and need no --importance entry")
      ->type_name("REGEX");
}

void add_batch_weights(CLI::App& sub, int64_t& batch_weights, bool for_prune) {
  sub.add_option("--batch-weights", batch_weights,
                 for_prune ? "select over the whole model at once when about N weights cover it, else tensor by "
                             "tensor, so a model larger than memory streams through; 0 = automatic from the available "
                             "memory. The output is the same for any N"
                           : "row, group and tensor scopes: convert and quantize about N weights at a time (whole "
                             "tensors), so a model larger than memory streams through; 0 = automatic from the "
                             "available memory. The output is the same for any N")
      ->type_name("N")
      ->check(kCount)
      ->capture_default_str();
}

std::ostream& human_output(const std::string& document_path) { return document_path == "-" ? std::cerr : std::cout; }

namespace {
bool g_notes = true;  // --quiet turns the notes off with the progress bars
}  // namespace

void apply_common_options(const CommonOptions& opts) {
  set_num_threads(opts.threads);
  if (opts.quiet) set_progress_enabled(false);
  g_notes = !opts.quiet;
}

bool notes_enabled() { return g_notes; }

std::string Table::to_string() const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  std::ostringstream os;
  auto emit = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < r.size() ? r[i] : std::string();
      const std::string pad(width[i] - cell.size(), ' ');
      if (i) os << "  ";
      os << (i == 0 ? cell + pad : pad + cell);
    }
    os << "\n";
  };
  emit(header_);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  os << std::string(total > 2 ? total - 2 : 0, '-') << "\n";
  for (const auto& r : rows_) emit(r);
  return os.str();
}

std::string format_double(double v, int precision) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

void write_json(const std::string& path, const nlohmann::json& j) {
  const std::string text = j.dump(2) + "\n";
  if (path == "-") {
    std::cout << text;
    return;
  }
  write_file_atomic(path, text);
}

}  // namespace nq::cli
