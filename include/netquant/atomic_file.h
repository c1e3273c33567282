// Output files are written to a temporary beside the target and renamed at the end: a failed run leaves
// nothing behind and a half-written file never replaces a good one. A run ended by SIGINT, SIGTERM or SIGHUP
// removes its open temporaries too (the handler is installed only where the signal's disposition is the
// default); SIGKILL cannot be caught.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace nq {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // opens "<dir>/.<name>.tmp-<pid>-<n>"; throws kIo
  ~AtomicFile();                           // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);  // throws kIo (disk full, ...)
  void write(const std::string& s) { write(s.data(), s.size()); }
  // Overwrites bytes already written, from `offset` (a header filled in once the body is known); throws kIo.
  void write_at(uint64_t offset, const void* data, size_t size);
  uint64_t bytes_written() const { return written_; }
  void commit();                              // flush, close, rename over the target; throws kIo
  const std::string& path() const { return path_; }
  // What is written so far, flushed to the temporary, whose path this is: an AtomicFile that is never committed is
  // a scratch file another process can read, removed on every way out (signals included). flush throws kIo.
  void flush();
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
  int slot_ = -1;  // registration for removal on a terminating signal
};

// Removes the temporary of every AtomicFile still open, as SIGINT, SIGTERM, SIGHUP and exit() do before the
// process ends: for a program's own std::terminate handler. Async-signal-safe.
void remove_open_temporaries();

// Refuses (kInvalidArgument) an output path that names one of the inputs (same file after resolving links).
void check_output_not_input(const std::string& output, const std::vector<std::string>& inputs);

// Whole-file helpers for small files.
void write_file_atomic(const std::string& path, const std::string& contents);
std::string read_file(const std::string& path);  // throws kIo naming the path

}  // namespace nq
