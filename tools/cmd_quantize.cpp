// `netquant quantize`: quantize a model (optionally importance-weighted), write the dequantized weights or a .nq
// file, print a summary table and optionally a JSON report.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "cli_common.h"
#include "command_registry.h"
#include "netquant/atomic_file.h"
#include "netquant/coding.h"
#include "netquant/distributed.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/progress.h"
#include "netquant/quantize.h"
#include "quant/shared_lambda_search.h"
#include "quant/tensor_selector.h"

namespace nq::cli {
namespace {

struct QuantizeOptions {
  std::string model, output, importance, report;
  std::string transform = "none", method = "hw-kmeans", scope = "global", init = "linear";
  std::string include, exclude;  // name filters (ModelQuantizeParams::include_regex / exclude_regex)
  std::string rate_allocation;  // "" = per-problem, unless a file budget asks for one lambda
  std::string coder = "auto";   // IndexCoder of a .nq output
  int k = -1, bits = -1, max_iter = 100;  // -1: not given
  double lambda = 0, target_bits = 0, target_ratio = 0, prune = 0, step = 0;
  uint64_t target_size = 0;  // bytes of the .nq file (0 = none)
  double target_file_ratio = 0;
  uint64_t seed = 1234;
  bool skip_1d = false, sharded = false;
  int64_t batch_weights = 0;
  CommonOptions common;
};

nlohmann::json stats_json(const QuantStats& s, bool total) {
  nlohmann::json j = {{"params", s.params},
                      {"clusters", s.clusters},
                      {"hw_distortion", s.hw_distortion},
                      {"mse", s.mse},
                      {"entropy_bits_per_weight", s.entropy_bits_per_weight},
                      {"fixed_bits_per_weight", s.fixed_bits_per_weight},
                      {"ratio_fixed", s.ratio_fixed},
                      {"ratio_entropy", s.ratio_entropy},
                      {"lambda", s.lambda},
                      {"seconds", s.seconds},
                      {"huffman_bits_per_weight", s.huffman_bits_per_weight},
                      {"ratio_huffman", s.ratio_huffman},
                      {"ratio_file", s.ratio_file}};
  if (!total) {
    j["pruned"] = s.pruned;
    j["iterations"] = s.iterations;
    j["converged"] = s.converged;
  }
  return j;
}

std::string method_help() {
  std::ostringstream os;
  os << "quantization method:";
  for (const auto& t : method_table()) os << "\n  " << t.name << ": " << t.summary;
  return os.str();
}

void run_quantize(const QuantizeOptions& o) {
  apply_common_options(o.common);
  NQ_CHECK(has_extension(o.output, ".safetensors") || has_extension(o.output, ".nq") ||
               has_extension(o.output, ".npy"),
           ErrorCode::kInvalidArgument, "-o " << o.output << ": the output must end in .safetensors, .npy or .nq");
  std::vector<std::string> inputs{o.model};
  if (!o.importance.empty()) inputs.push_back(o.importance);
  check_outputs({{"-o", o.output}, {"--report", o.report}}, inputs);
  check_text_output({"--report", o.report});

  ModelQuantizeParams p;
  p.quant.method = parse_method(o.method);
  const MethodTraits& traits = method_traits(p.quant.method);
  NQ_CHECK(!(o.k >= 0 && o.bits >= 0), ErrorCode::kInvalidArgument, "give --k or --bits, not both");
  NQ_CHECK(o.k == -1 || o.k >= 1, ErrorCode::kInvalidArgument, "--k must be >= 1, got " << o.k);
  NQ_CHECK(o.bits == -1 || (o.bits >= 1 && o.bits <= 24), ErrorCode::kInvalidArgument,
           "--bits must be in 1..24, got " << o.bits);
  const int k = o.bits > 0 ? (1 << o.bits) : (o.k > 0 ? o.k : 16);
  p.quant.k = k;
  if (p.quant.method == Method::kInt) p.quant.int_bits = o.bits > 0 ? o.bits : (o.k > 0 ? o.k : 4);
  // Checked before the work, not when the file is written: a codebook beyond what .nq holds (or .safetensors).
  check_nq_levels(o.output, p.quant, o.bits > 0 ? "--bits" : "--k", ", or write .safetensors");
  if (p.quant.method == Method::kPow2 && o.k > 0) p.quant.pow2_levels = o.k;
  NQ_CHECK(o.lambda == 0 || traits.has_lambda, ErrorCode::kInvalidArgument,
           "--lambda applies to ecsq only (method " << traits.name << ")");
  NQ_CHECK((o.target_bits == 0 && o.target_ratio == 0) || traits.supports_target, ErrorCode::kInvalidArgument,
           "--target-bits/--target-ratio apply to ecsq and uniform only (method " << traits.name << ")");
  // CLI11 clamps a size beyond uint64 to its largest value; no file is near 2^63 bytes either.
  NQ_CHECK(o.target_size < (uint64_t{1} << 63), ErrorCode::kInvalidArgument,
           "--target-size is out of range (at most 2^63 - 1 bytes)");
  const bool file_budget = o.target_size > 0 || o.target_file_ratio > 0;
  const IndexCoder coder = parse_index_coder(o.coder);
  NQ_CHECK((o.lambda > 0) + (o.target_bits > 0) + (o.target_ratio > 0) + (o.target_size > 0) +
                   (o.target_file_ratio > 0) <=
               1,
           ErrorCode::kInvalidArgument,
           "give one of --lambda, --target-bits, --target-ratio, --target-size, --target-file-ratio");
  p.quant.lambda = o.lambda;
  p.quant.target_bits = o.target_bits;
  p.quant.target_ratio = o.target_ratio;
  p.quant.step = o.step;
  p.quant.init = parse_init(o.init);
  p.quant.max_iter = o.max_iter;
  p.quant.seed = o.seed;
  p.quant.backend = parse_backend(o.common.backend);
  p.scope = parse_scope(o.scope);
  p.prune = o.prune;
  p.importance_transform = parse_importance_transform(o.transform);
  check_transform_needs_importance(o.transform, o.importance);
  NQ_CHECK(o.step == 0 || p.quant.method == Method::kUniform, ErrorCode::kInvalidArgument,
           "--step applies to uniform only (method " << traits.name << ")");
  NQ_CHECK(o.step == 0 || (o.target_bits == 0 && o.target_ratio == 0), ErrorCode::kInvalidArgument,
           "give --step or a target rate, not both (a target searches the step)");
  NQ_CHECK(o.step == 0 || (o.k == -1 && o.bits == -1), ErrorCode::kInvalidArgument,
           "give --step or " << (o.bits > 0 ? "--bits" : "--k") << ", not both (the step sets uniform's levels)");
  p.skip_1d = o.skip_1d;
  p.include_regex = o.include;
  p.exclude_regex = o.exclude;
  p.batch_weights = o.batch_weights;
  NQ_CHECK(!file_budget || o.rate_allocation.empty() || o.rate_allocation == "shared-lambda",
           ErrorCode::kInvalidArgument,
           "--target-size/--target-file-ratio meet the budget with one lambda for every codebook (shared-lambda); "
           "--rate-allocation " << o.rate_allocation << " cannot apply");
  NQ_CHECK(!file_budget || !o.sharded, ErrorCode::kUnsupported,
           "--target-size/--target-file-ratio do not run --sharded (the search makes whole models one after another)");
  p.rate_allocation = parse_rate_allocation(o.rate_allocation.empty() ? "per-problem" : o.rate_allocation);
  // Before any input is read.
  if (file_budget)
    check_file_size_target(p);
  else
    quant::check_rate_allocation(p);
  const quant::TensorSelector select(p);  // an invalid pattern fails here, before any input is read

  if (!o.sharded && process_group().size > 1) {
    // Without --sharded every rank would repeat the whole job and race to write the same file.
    if (!process_group().is_root()) return;
    NQ_FAIL(ErrorCode::kInvalidArgument, "quantize runs on " << process_group().size
                                                            << " MPI ranks: add --sharded to split the work "
                                                               "(or run it without mpirun/srun)");
  }
  QuantizedModel q;
  uint64_t budget_bytes = 0;  // the file budget, when one was given
  ShardedQuantizeInfo shard_info;
  std::map<std::string, std::string> metadata;
  if (o.sharded) {
    NQ_CHECK(is_safetensors_model(o.model) && (o.importance.empty() || is_safetensors_model(o.importance)),
             ErrorCode::kInvalidArgument,
             "--sharded reads safetensors inputs (.safetensors files or sharded checkpoints, by byte range)");
    // One progress per job: rank 0's (its share stands for the whole, as the ranks split the work evenly).
    if (!process_group().is_root()) set_progress_enabled(false);
    q = quantize_model_sharded(o.model, o.importance, p, &shard_info);
    if (!process_group().is_root()) return;  // rank 0 writes and reports
    NQ_CHECK(!q.tensors.empty(), ErrorCode::kInvalidArgument, o.model << ": the model has no tensors");
    // The input's __metadata__, as the in-process run keeps it (the header alone: the tensors are mapped, not read).
    metadata = read_safetensors_model(o.model).metadata();
  } else {
    const TensorSet model = read_tensors(o.model);
    NQ_CHECK(!model.empty(), ErrorCode::kInvalidArgument, o.model << ": the model has no tensors");
    std::unique_ptr<TensorSet> imp;
    if (!o.importance.empty()) imp = std::make_unique<TensorSet>(read_importance(o.importance, model, p));
    if (file_budget) {
      budget_bytes = o.target_size > 0 ? o.target_size : file_bytes_for_ratio(model, o.target_file_ratio);
      q = quantize_model_to_file_size(model, imp.get(), p, budget_bytes, coder);
    } else {
      q = quantize_model(model, imp.get(), p);
    }
    metadata = model.metadata();
  }
  q.index_coder = coder;
  if (has_extension(o.output, ".nq")) {
    write_nq_file(o.output, q);
  } else {
    account_coding(q);
    TensorSet deq = q.dequantize();
    deq.metadata() = metadata;
    // Which quantizer made these values: `finetune` records it when it turns them back into an assignment.
    deq.metadata()["netquant.quantize.method"] = method_traits(q.method).name;
    write_tensors(o.output, deq);
  }

  Table table({"tensor", "params", "pruned", "levels", "hw-distortion", "mse", "entropy", "ratio(fixed)",
               "ratio(huffman)"});
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : q.tensors) {
    if (!t.quantized) {
      table.add_row({t.name, std::to_string(t.stats.params), "-", "raw", "-", "-", "-", "-", "-"});  // kept as stored
      continue;
    }
    const QuantStats& s = t.stats;
    table.add_row({t.name, std::to_string(s.params), std::to_string(s.pruned), std::to_string(s.clusters),
                   format_double(s.hw_distortion), format_double(s.mse), format_double(s.entropy_bits_per_weight),
                   format_double(s.ratio_fixed), format_double(s.ratio_huffman)});
    nlohmann::json j = stats_json(s, false);
    j["name"] = t.name;
    j["shape"] = t.shape;
    tensors.push_back(j);
  }
  const QuantStats& s = q.total;
  table.add_row({"total", std::to_string(s.params), std::to_string(s.pruned), std::to_string(s.clusters),
                 format_double(s.hw_distortion), format_double(s.mse), format_double(s.entropy_bits_per_weight),
                 format_double(s.ratio_fixed), format_double(s.ratio_huffman)});
  std::ostream& out = human_output(o.report);
  out << "method " << traits.name << ", scope " << scope_to_string(p.scope)
      << (select.filtered() ? ", " + select.describe() : std::string()) << ", backend "
      << backend_name(q.backend) << (s.lambda > 0 ? ", lambda " + format_double(s.lambda, 6) : std::string()) << ", "
      << format_double(s.seconds, 3) << " s\n"
      << table.to_string();
  const ShardedQuantizeInfo& si = shard_info;
  const double pass_seconds = si.compute_seconds + si.communication_seconds;
  if (o.sharded)
    out << "sharded over " << si.ranks << (si.ranks == 1 ? " rank" : " ranks") << ": " << si.passes
        << " passes; rank 0: load " << format_double(si.load_seconds, 3) << " s, compute "
        << format_double(si.compute_seconds, 3) << " s, communication " << format_double(si.communication_seconds, 3)
        << " s (" << format_double(pass_seconds > 0 ? 100.0 * si.communication_seconds / pass_seconds : 0.0, 3)
        << "%); slowest rank compute " << format_double(si.max_compute_seconds, 3) << " s\n";
  if (o.sharded && si.ranks_labelled_on_host > 0)
    std::cerr << "note: " << si.ranks_labelled_on_host << " of " << si.ranks
              << " ranks made their final labels on the host (their shard did not fit the GPU's memory); the sorts "
                 "and sums ran on the GPU\n";
  // What the .nq file costs, all of it, in the coder asked for (account_coding's ratio_file; written or not).
  // A model of empty tensors has no ratio (no weights): its .nq's bytes are those on disk, or unknown here.
  const bool nq_output = has_extension(o.output, ".nq");
  const bool has_ratio = s.params > 0 && s.ratio_file > 0;
  const std::string nq_bytes =
      has_ratio ? format_double(std::round(4.0 * static_cast<double>(s.params) / s.ratio_file), 15)
      : nq_output ? std::to_string(std::filesystem::file_size(o.output))
                  : std::string("-");
  if (file_budget)  // a .nq output's own line below says what it takes
    out << "file budget " << budget_bytes << " bytes"
        << (nq_output ? std::string() : ": the .nq takes " + nq_bytes + " bytes (ratio_file " +
                                            format_double(s.ratio_file, 4) + ")")
        << "\n";
  out << "wrote " << o.output;
  if (nq_output && has_ratio)
    out << ": " << nq_bytes << " bytes, " << format_double(32.0 / s.ratio_file, 4) << " bits/weight, ratio "
        << format_double(s.ratio_file, 4) << "x vs float32 (--coder " << index_coder_name(coder) << ")";
  else if (nq_output)
    out << ": " << nq_bytes << " bytes, no weights (--coder " << index_coder_name(coder) << ")";
  out << "\n";
  // Rows of a 1-D tensor are single values: each is stored exactly as its own 32-bit level, no smaller than the
  // float it replaces. Said once, naming the tensors (only those quantized: a filter may have kept the rest), since
  // biases usually are the 1-D ones and --skip-1d / --exclude keep them in float.
  bool noted = false;
  if (p.scope.kind == ScopeKind::kRow && !o.common.quiet) {
    std::vector<std::string> single;
    for (const auto& t : q.tensors)
      if (t.quantized && t.shape.size() == 1 && t.stats.params > 1) single.push_back(t.name);
    if (!single.empty()) {
      std::cerr << "note: --scope row gives the values of 1-D tensors rows of one value each, stored as a 32-bit "
                   "level per value (no compression): "
                << name_list(single)
                << ". --skip-1d (or --exclude) keeps them in float; --scope tensor or group:G compresses them.\n";
      noted = true;
    }
  }
  // A model with no floating-point weights (integer tensors only, or only empty ones) is copied as stored.
  const bool any_quantized =
      std::any_of(q.tensors.begin(), q.tensors.end(), [](const QuantizedTensor& t) { return t.quantized; });
  if (!any_quantized && !o.common.quiet) {
    std::cerr << "note: no tensor was quantized: every tensor is kept as stored (only floating-point tensors with "
                 "weights are quantized)\n";
    noted = true;
  }
  // Any other way to make the coded model larger than the float32 weights (tiny groups, a huge k): say so.
  if (!noted && !o.common.quiet && s.ratio_file > 0 && s.ratio_file < 1)
    std::cerr << "note: coded as .nq the model takes more than its float32 size (ratio_file "
              << format_double(s.ratio_file, 3)
              << "): the codebooks cost more than the indices save; a coarser --scope or a smaller --k "
                 "compresses it\n";
  // An iterative method that ran out of --max-iter returns its last iterate: usable, but not the fixed point the
  // tolerance asks for. Say so, naming the tensors (the report's per-tensor "converged" says it too).
  if (!o.common.quiet) {
    std::vector<std::string> open;
    for (const auto& t : q.tensors)
      if (t.quantized && !t.stats.converged) open.push_back(t.name);
    if (!open.empty()) {
      std::cerr << "note: the iterations stopped at --max-iter " << p.quant.max_iter << " before converging"
                << (p.scope.kind != ScopeKind::kGlobal ? " (" + name_list(open) + ")" : std::string())
                << "; a larger --max-iter reaches the fixed point\n";
    }
  }
  // A target beyond the method's range gives its nearest end (λ = 0 or the finest step, or the coarsest), and
  // small rows or groups reach rates only in steps: usable, but not the rate asked for. Said, with the rate
  // reached per kept weight of the quantized tensors (as the target counts; tensors kept in float aside).
  double quantized_params = 0, quantized_kept = 0;
  for (const auto& t : q.tensors) {
    if (!t.quantized) continue;
    quantized_params += static_cast<double>(t.stats.params);
    quantized_kept += static_cast<double>(t.stats.params - t.stats.pruned);
  }
  if (!o.common.quiet && (o.target_bits > 0 || o.target_ratio > 0) && quantized_kept > 0) {
    const double target = o.target_bits > 0 ? o.target_bits : 32.0 / o.target_ratio;
    const double reached = s.entropy_bits_per_weight * quantized_params / quantized_kept;
    if (std::fabs(reached - target) > 0.05 * target)  // the search lands within 0.5% where it can
      std::cerr << "note: the target of " << format_double(target, 4) << " bits per kept weight was not met: the "
                << "nearest rate " << traits.name << " reached is " << format_double(reached, 4)
                << " bits (the target is beyond its range, or the rate moves in steps at this scope)\n";
  }
  if (!o.report.empty()) {
    nlohmann::json report = {
        {"method", traits.name},
        {"scope", scope_to_string(p.scope)},
        {"backend", backend_name(q.backend)},
        {"params",
         {{"k", k}, {"lambda", o.lambda}, {"target_bits", o.target_bits}, {"target_ratio", o.target_ratio},
          {"prune", o.prune}, {"init", o.init}, {"max_iter", o.max_iter}, {"seed", o.seed},
          {"importance", o.importance}, {"importance_transform", o.transform}, {"skip_1d", o.skip_1d},
          {"include", o.include}, {"exclude", o.exclude}, {"batch_weights", o.batch_weights},
          {"rate_allocation", file_budget ? "shared-lambda" : rate_allocation_name(p.rate_allocation)},
          {"target_size", o.target_size}, {"target_file_ratio", o.target_file_ratio},
          {"file_budget_bytes", budget_bytes}, {"coder", index_coder_name(coder)}}},
        {"waves", q.waves},
        {"total", stats_json(s, true)},
        {"tensors", tensors}};
    if (o.sharded)
      report["sharded"] = {{"ranks", si.ranks},
                           {"passes", si.passes},
                           {"load_seconds", si.load_seconds},
                           {"compute_seconds", si.compute_seconds},
                           {"communication_seconds", si.communication_seconds},
                           {"max_compute_seconds", si.max_compute_seconds},
                           {"ranks_labelled_on_host", si.ranks_labelled_on_host}};
    write_json(o.report, report);
  }
}

void setup_quantize(CLI::App& sub) {
  auto o = std::make_shared<QuantizeOptions>();
  sub.add_option("MODEL", o->model,
                 "model weights: .safetensors, a sharded checkpoint's *.index.json or its directory, or .npy")
      ->required();
  sub.add_option("-o,--output", o->output, "output: .safetensors (dequantized weights) or .nq (compressed)")
      ->required();
  sub.add_option("--importance", o->importance, "per-weight importance (same tensor names and shapes)");
  sub.add_option("--importance-transform", o->transform, "none, sqrt (e.g. Adam's v) or normalize (mean 1/tensor)")
      ->capture_default_str();
  std::vector<std::string> names;
  for (const auto& t : method_table()) names.push_back(t.name);
  sub.add_option("--method", o->method, method_help())->check(CLI::IsMember(names))->capture_default_str();
  sub.add_option("--k", o->k,
                 "levels, default 16 (ecsq: initial k_max; int: the grid's bits, default 4; pow2: exponents per "
                 "sign, default 8)")
      ->check(kPositive);
  sub.add_option("--bits", o->bits, "levels as bits: k = 2^bits (int: the grid's bits, as --k)")
      ->check(kPositive);
  sub.add_option("--lambda", o->lambda, "ecsq: weight of the entropy in J = D + lambda*H");
  sub.add_option("--target-bits", o->target_bits,
                 "ecsq/uniform: search lambda/step for this entropy (bits per kept weight)")
      ->check(kPositive);
  sub.add_option("--target-ratio", o->target_ratio,
                 "ecsq/uniform: the same for an entropy of 32/X bits per kept weight")
      ->check(kPositive);
  sub.add_option("--target-size", o->target_size,
                 "ecsq: search one lambda for every codebook so that the .nq file takes at most SIZE bytes "
                 "(the largest file within it): 30000, 30kb (= 30000), 30kib (= 30720), 2mb")
      ->transform(CLI::AsSizeValue(true))
      ->check(kPositive)
      ->type_name("SIZE");
  sub.add_option("--target-file-ratio", o->target_file_ratio,
                 "ecsq: the same budget as float32 bytes / file bytes >= X (ratio_file)")
      ->check(kPositive);
  sub.add_option("--coder", o->coder,
                 ".nq index streams: auto (per tensor, Huffman or rANS, whichever is smaller; a file with rANS is "
                 ".nq version 2), huffman (version 1, readable by every netquant) or rans")
      ->check(CLI::IsMember({"auto", "huffman", "rans"}))
      ->capture_default_str();
  sub.add_option("--rate-allocation", o->rate_allocation,
                 "with a target and several codebooks (tensor, row, group scopes): per-problem (each reaches the "
                 "target itself) or shared-lambda (ecsq: one lambda for all, searched so the model reaches the "
                 "target; its bits go where they lower the weighted distortion most). Default per-problem; "
                 "--target-size and --target-file-ratio are always shared-lambda")
      ->check(CLI::IsMember({"per-problem", "shared-lambda"}));
  sub.add_option("--step", o->step,
                 "uniform: cell width (default: k cells cover max|w| of the weights with importance > 0)");
  sub.add_option("--scope", o->scope, "global | tensor | row | group:G")->capture_default_str();
  sub.add_option("--prune", o->prune, "fraction of weights (smallest h*w^2) set to exactly 0 first")
      ->capture_default_str()
      ->check(kPruneFraction);
  sub.add_option("--init", o->init, kInitHelp)->capture_default_str();
  sub.add_option("--max-iter", o->max_iter, "Lloyd / ECSQ iterations")->capture_default_str();
  sub.add_option("--seed", o->seed, "seed for kmeans++")->capture_default_str()->check(kSeed);
  sub.add_flag("--skip-1d", o->skip_1d, "leave 1-D tensors (biases) in float");
  add_name_filters(sub, o->include, o->exclude);
  add_batch_weights(sub, o->batch_weights);
  sub.add_flag("--sharded", o->sharded,
               "each MPI rank reads (by byte range, from the file or a checkpoint's shards) and quantizes only its "
               "run of the weights (global scope; kmeans, hw-kmeans, ecsq; init linear); the output is the same for "
               "any number of ranks, one included");
  sub.add_option("--report", o->report, "write a JSON report (\"-\" = stdout)");
  add_common_options(sub, o->common);
  sub.callback([o] { run_quantize(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(quantize, "quantize", "quantize a model's weights (k-means, exact, uniform, ECSQ, fixed codebooks)",
                    20, setup_quantize);
}  // namespace nq::cli
