// The `.nq` half of `netquant inspect`, implemented beside the coding code's CLI (tools/inspect_nq.cpp).
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

namespace nq::cli {

// Describes a compressed .nq file: with `json`, fills *out and prints nothing; otherwise prints a summary and
// a per-tensor table on `os`. Returns whether every checksum matched (the caller fails the run after showing
// what is stored when one does not). Throws nq::Error (kBadFile for malformed files).
// `before` is printed just before the summary (a separating blank line), so that a file that cannot be read prints
// nothing.
bool inspect_nq(const std::string& path, bool json, nlohmann::json* out, std::ostream& os, const char* before = "");

}  // namespace nq::cli
