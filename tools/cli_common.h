// Options and output helpers shared by the subcommands: backend, threads, tables, JSON files.
#pragma once

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nq::cli {

struct CommonOptions {
  std::string backend = "auto";
  int threads = 0;  // 0 = all cores
  bool quiet = false;
};

// --backend auto|cpu|cuda, --threads T, --quiet. Call apply_common_options() first thing in the callback.
void add_common_options(CLI::App& sub, CommonOptions& opts, bool with_backend = true);
void apply_common_options(const CommonOptions& opts);

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

std::string format_double(double v, int precision = 4);  // %.{p}g, "nan"/"inf" spelled out
// Writes JSON atomically ("-" = stdout), pretty-printed with 2 spaces.
void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace nq::cli
