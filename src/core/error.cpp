// Error codes, their names and CLI exit statuses.
#include "netquant/error.h"

namespace nq {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kBadFile: return "bad_file";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kShapeMismatch: return "shape_mismatch";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kOutOfMemory: return "out_of_memory";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

int exit_status_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kBadFile:
    case ErrorCode::kIo:
    case ErrorCode::kShapeMismatch:
      return 2;
    case ErrorCode::kUnsupported:
    case ErrorCode::kUnavailable:
    case ErrorCode::kOutOfMemory:
      return 3;
    case ErrorCode::kInternal:
      return 1;
  }
  return 1;
}

void throw_error(ErrorCode code, const std::string& message) { throw Error(code, message); }

void throw_internal(const char* file, int line, const char* condition, const std::string& message) {
  std::ostringstream os;
  os << "internal error (please report): " << file << ":" << line << ": assertion '" << condition << "' failed";
  if (!message.empty()) os << ": " << message;
  throw Error(ErrorCode::kInternal, os.str());
}

}  // namespace nq
