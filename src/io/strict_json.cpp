// Strict JSON parsing for file headers and indexes (see strict_json.h).
#include "io/strict_json.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "io/mapped_file.h"
#include "netquant/error.h"

namespace nq::io {

namespace {

constexpr int kMaxJsonDepth = 64;  // a safetensors header nests 3 deep, an index 2; deeper is hostile

// Deepest nesting of [ and { outside strings; stops counting once past the limit (so a hostile file costs one
// linear scan, never a deep recursion in the parser or in the destructor of what it built).
int json_depth(const char* s, size_t n) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > kMaxJsonDepth) break;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

StrictJson parse_strict_json(const char* text, size_t n, const std::string& what) {
  using Json = nlohmann::json;
  NQ_CHECK(is_valid_utf8(text, n), ErrorCode::kBadFile, what << " is not valid UTF-8");
  // nlohmann's parser skips a leading byte-order mark and ends its input at a NUL byte, so NUL padding after the
  // object would pass; the reference safetensors reader and Python's json refuse both.
  NQ_CHECK(!(n >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
             static_cast<unsigned char>(text[2]) == 0xBF),
           ErrorCode::kBadFile, what << " starts with a UTF-8 byte-order mark (not allowed in JSON here)");
  const char* nul = static_cast<const char*>(std::memchr(text, '\0', n));
  NQ_CHECK(nul == nullptr, ErrorCode::kBadFile,
           what << " holds a NUL byte at offset " << (nul - text) << " (pad with spaces, not NUL)");
  NQ_CHECK(json_depth(text, n) <= kMaxJsonDepth, ErrorCode::kBadFile,
           what << " nests JSON deeper than " << kMaxJsonDepth << " levels");

  StrictJson out;
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto on_event = [&](int /*depth*/, Json::parse_event_t ev, Json& parsed) {
    using E = Json::parse_event_t;
    if (ev == E::object_start) {
      open_objects.emplace_back();
    } else if (ev == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == E::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
      if (open_objects.size() == 1) out.top_level_keys.push_back(key);
    }
    return true;
  };
  out.root = Json::parse(text, text + n, on_event, /*allow_exceptions=*/false);
  if (out.root.is_discarded()) {
    std::string why;
    try {  // parse again only to get nlohmann's description of where it failed
      Json probe = Json::parse(text, text + n);
      (void)probe;
    } catch (const nlohmann::json::exception& e) {
      why = e.what();
    }
    NQ_FAIL(ErrorCode::kBadFile, what << " is not valid JSON: " << why);
  }
  NQ_CHECK(duplicate.empty(), ErrorCode::kBadFile, what << " has duplicate key '" << duplicate << "'");
  return out;
}

}  // namespace nq::io
