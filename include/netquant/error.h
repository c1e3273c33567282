// Error model: nq::Error carries a stable ErrorCode and a message naming the file, tensor and problem.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace nq {

// Stable codes: values never change meaning once released (the CLI maps them to exit codes).
enum class ErrorCode : int {
  kInvalidArgument = 1,  // bad option value or API argument
  kBadFile = 2,          // malformed, truncated or hostile input file
  kIo = 3,               // cannot open/read/write/rename a file
  kShapeMismatch = 4,    // model vs importance (or similar) disagree
  kUnsupported = 5,      // valid but not supported (dtype, format feature)
  kUnavailable = 6,      // resource not present (e.g. --backend cuda without a GPU)
  kOutOfMemory = 7,      // allocation refused
  kInternal = 8,         // broken invariant: a bug in netquant
};

const char* error_code_name(ErrorCode code);

// CLI exit status for an error: 2 bad input/usage, 3 unsupported/unavailable/out of memory, 1 internal.
int exit_status_for(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] void throw_error(ErrorCode code, const std::string& message);
[[noreturn]] void throw_internal(const char* file, int line, const char* condition, const std::string& message);

}  // namespace nq

// User-facing check: `NQ_CHECK(n > 0, nq::ErrorCode::kInvalidArgument, "k must be positive, got " << k);`
#define NQ_CHECK(cond, code, msg_stream)                 \
  do {                                                   \
    if (!(cond)) {                                       \
      std::ostringstream nq_check_os_;                   \
      nq_check_os_ << msg_stream;                        \
      ::nq::throw_error((code), nq_check_os_.str());     \
    }                                                    \
  } while (0)

// Unconditional user error with a streamed message.
#define NQ_FAIL(code, msg_stream) NQ_CHECK(false, code, msg_stream)

// Internal invariant: a failure is a netquant bug (exit 1), reported with file and line.
#define NQ_ASSERT(cond)                                                        \
  do {                                                                         \
    if (!(cond)) ::nq::throw_internal(__FILE__, __LINE__, #cond, std::string()); \
  } while (0)
#define NQ_ASSERT_MSG(cond, msg_stream)                                   \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::ostringstream nq_assert_os_;                                   \
      nq_assert_os_ << msg_stream;                                        \
      ::nq::throw_internal(__FILE__, __LINE__, #cond, nq_assert_os_.str()); \
    }                                                                     \
  } while (0)
