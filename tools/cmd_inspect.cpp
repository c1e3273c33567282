// `netquant inspect FILE...`: per-tensor dtype, shape and value statistics of safetensors / .npy / IDX files
// (and .nq files, via inspect_nq), as a table or JSON.
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>

#include "cli_common.h"
#include "core/mapped_pages.h"
#include "command_registry.h"
#include "inspect_nq.h"
#include "io/sharded_checkpoint.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"
#include "netquant/io.h"

namespace nq::cli {
namespace {

struct TensorStats {
  int64_t finite = 0, nonfinite = 0, zeros = 0;
  double min = std::numeric_limits<double>::quiet_NaN(), max = min, mean = min, std = min;
};

// Two passes in fp64 (mean, then squared deviations) so the std stays accurate when |mean| >> std; NaN/Inf are
// counted, not averaged. Element by element: a billion-weight tensor needs no converted copy.
template <class Load>
TensorStats stats_of(int64_t n, Load load) {
  TensorStats s;
  double sum = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int64_t i = 0; i < n; ++i) {
    const double v = load(i);
    if (v == 0) ++s.zeros;
    if (!std::isfinite(v)) {
      ++s.nonfinite;
      continue;
    }
    ++s.finite;
    sum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (s.finite == 0) return s;
  s.min = lo;
  s.max = hi;
  s.mean = sum / static_cast<double>(s.finite);
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = load(i);
    if (std::isfinite(v)) ss += (v - s.mean) * (v - s.mean);
  }
  s.std = std::sqrt(ss / static_cast<double>(s.finite));  // population std, as numpy's default
  return s;
}

TensorStats tensor_stats(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data());
  const int64_t n = t.numel();
  auto typed = [&](auto tag) {
    using T = decltype(tag);
    return stats_of(n, [p](int64_t i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      return static_cast<double>(v);
    });
  };
  switch (t.dtype()) {
    case DType::kF32: return typed(float{});
    case DType::kF64: return typed(double{});
    case DType::kF16: return stats_of(n, [p](int64_t i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return static_cast<double>(f16_to_f32(h)); });
    case DType::kBF16: return stats_of(n, [p](int64_t i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return static_cast<double>(bf16_to_f32(h)); });
    case DType::kI8: return typed(int8_t{});
    case DType::kU8: return typed(uint8_t{});
    case DType::kBool: return stats_of(n, [p](int64_t i) { return p[i] != 0 ? 1.0 : 0.0; });  // numpy's bool
    case DType::kI16: return typed(int16_t{});
    case DType::kI32: return typed(int32_t{});
    case DType::kI64: return typed(int64_t{});
  }
  NQ_ASSERT_MSG(false, "unhandled dtype");
}

std::string format_of(const std::string& given) {
  const std::string path = resolve_tensor_path(given);
  if (has_extension(path, ".safetensors")) return "safetensors";
  if (is_checkpoint_index_name(path)) return "safetensors-sharded";
  if (has_extension(path, ".npy")) return "npy";
  return "idx";
}

nlohmann::json json_number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

struct Options {
  std::vector<std::string> files;
  bool json = false;
  std::string json_out;
  CommonOptions common;
};

// One model/data file, read: prints its table (unless JSON only) and returns its JSON description.
nlohmann::json inspect_tensor_file(const std::string& path, const TensorSet& set, bool print, std::ostream& os) {
  nlohmann::json j = {{"path", path}, {"format", format_of(path)}, {"metadata", set.metadata()}};
  j["tensors"] = nlohmann::json::array();
  Table table({"tensor", "dtype", "shape", "count", "min", "max", "mean", "std", "zeros"});
  int64_t total = 0, total_zeros = 0, total_nonfinite = 0;
  uint64_t total_bytes = 0;
  for (const Tensor& t : set) {
    const TensorStats s = tensor_stats(t);
    release_mapped_pages(t.data(), t.nbytes());  // one tensor resident at a time, however large the file
    total += t.numel();
    total_zeros += s.zeros;
    total_nonfinite += s.nonfinite;
    total_bytes += t.nbytes();
    const double zero_frac = t.numel() ? static_cast<double>(s.zeros) / static_cast<double>(t.numel()) : 0.0;
    j["tensors"].push_back({{"name", t.name()}, {"dtype", dtype_name(t.dtype())}, {"shape", t.shape()},
                            {"count", t.numel()}, {"bytes", t.nbytes()}, {"min", json_number(s.min)},
                            {"max", json_number(s.max)}, {"mean", json_number(s.mean)}, {"std", json_number(s.std)},
                            {"zero_fraction", zero_frac}, {"nonfinite", s.nonfinite}});
    std::string zeros = format_double(zero_frac * 100, 3) + "%";
    if (s.nonfinite) zeros += " (" + std::to_string(s.nonfinite) + " nan/inf)";
    table.add_row({t.name(), dtype_name(t.dtype()), shape_to_string(t.shape()), std::to_string(t.numel()),
                   format_double(s.min), format_double(s.max), format_double(s.mean), format_double(s.std), zeros});
  }
  const double total_zero_frac = total ? static_cast<double>(total_zeros) / static_cast<double>(total) : 0.0;
  j["total"] = {{"tensors", set.size()}, {"count", total}, {"bytes", total_bytes},
                {"zero_fraction", total_zero_frac}, {"nonfinite", total_nonfinite}};
  if (print) {
    table.add_row({"total (" + std::to_string(set.size()) + " tensors)", "", "", std::to_string(total), "", "", "", "",
                   format_double(total_zero_frac * 100, 3) + "%"});
    os << path << ": " << format_of(path) << ", " << set.size() << " tensors, " << total << " values, "
              << total_bytes << " bytes\n";
    for (const auto& [k, v] : set.metadata()) os << "  metadata " << k << " = " << v << "\n";
    os << table.to_string();
  }
  return j;
}

void run_inspect(const Options& o) {
  apply_common_options(o.common);
  check_outputs({{"--json-out", o.json_out}}, o.files);
  NQ_CHECK(!(o.json && o.json_out == "-"), ErrorCode::kInvalidArgument,
           "--json and --json-out - both print the JSON on stdout: give one");
  const bool print = !o.json;
  std::ostream& os = human_output(o.json_out);  // stderr when the JSON goes to stdout (--json-out -)
  nlohmann::json files = nlohmann::json::array();
  std::string corrupt;  // the first .nq whose checksums do not match
  // A file that cannot be read is reported and the rest are still shown (`inspect *.safetensors` over a folder
  // with one bad shard); the run then fails with the first such error's exit status.
  std::optional<Error> first_error;
  size_t unreadable = 0;
  for (size_t i = 0; i < o.files.size(); ++i) {
    const std::string& path = o.files[i];
    try {
      if (has_extension(path, ".nq")) {
        nlohmann::json j;
        bool ok = true;
        // A blank line before each file after the first shown, printed once the file has been read.
        if (print) ok = inspect_nq(path, false, nullptr, os, i > unreadable ? "\n" : "");
        if (o.json || !o.json_out.empty()) ok = inspect_nq(path, true, &j, os);
        if (!ok && corrupt.empty()) corrupt = path;
        files.push_back(std::move(j));
      } else {
        const TensorSet set = read_tensors(path);
        if (print && i > unreadable) os << "\n";
        files.push_back(inspect_tensor_file(path, set, print, os));
      }
    } catch (const Error& e) {
      if (o.files.size() == 1) throw;  // the one file's error is the run's
      os.flush();
      std::cerr << "error: " << e.what() << "\n";
      files.push_back({{"path", path}, {"error", e.what()}});
      if (!first_error) first_error = e;
      ++unreadable;
    }
  }
  const nlohmann::json doc = {{"files", files}};
  if (o.json) write_json("-", doc);
  // What is stored is shown above, but a bad or corrupt file fails the run (and --json-out is not written).
  if (first_error) {
    NQ_FAIL(first_error->code(), unreadable << " of " << o.files.size()
                                            << " files could not be read (each error is shown above)");
  }
  NQ_CHECK(corrupt.empty(), ErrorCode::kBadFile,
           corrupt << ": checksums do not match: the file is corrupt (decompress refuses it)");
  if (!o.json_out.empty()) write_json(o.json_out, doc);
}

void setup_inspect(CLI::App& sub) {
  auto o = std::make_shared<Options>();
  sub.add_option("files", o->files,
                 "safetensors (a file, a sharded checkpoint's *.index.json or a model directory), .npy, IDX "
                 "(*-ubyte[.gz]) or .nq files")
      ->required();
  sub.add_flag("--json", o->json, "print JSON on stdout instead of the tables");
  sub.add_option("--json-out", o->json_out, "also write the JSON to this file (atomically)");
  add_common_options(sub, o->common, false);
  sub.footer(
      "Per tensor: dtype, shape, count, min/max/mean/std (float64, NaN/Inf excluded and counted) and the\n"
      "fraction of exact zeros. JSON: {\"files\": [{\"path\", \"format\", \"metadata\", \"tensors\": [{\"name\", \"dtype\",\n"
      "\"shape\", \"count\", \"bytes\", \"min\", \"max\", \"mean\", \"std\", \"zero_fraction\", \"nonfinite\"}], \"total\"}]};\n"
      "statistics with no finite value are null. .nq files are described by the coding layer.");
  sub.callback([o] { run_inspect(*o); });
}

}  // namespace
NQ_REGISTER_COMMAND(inspect, "inspect", "show tensors, dtypes, shapes and value statistics of model/data files", 10,
                    setup_inspect);
}  // namespace nq::cli
