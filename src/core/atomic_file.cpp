// Temporary-then-rename output files and input/output aliasing checks.
#include "netquant/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "netquant/error.h"

namespace nq {

namespace {
std::atomic<unsigned> g_temp_counter{0};

std::string temp_name_for(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::ostringstream os;
  os << dir << "." << base << ".tmp-" << ::getpid() << "-" << g_temp_counter++;
  return os.str();
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  NQ_CHECK(!path_.empty(), ErrorCode::kInvalidArgument, "empty output path");
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    NQ_CHECK(!S_ISDIR(st.st_mode), ErrorCode::kIo, path_ << ": is a directory");
  }
  temp_path_ = temp_name_for(path_);
  file_ = std::fopen(temp_path_.c_str(), "wb");
  NQ_CHECK(file_ != nullptr, ErrorCode::kIo, path_ << ": cannot create output file: " << std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!committed_) std::remove(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  NQ_ASSERT(file_ != nullptr && !committed_);
  if (size == 0) return;
  NQ_CHECK(std::fwrite(data, 1, size, file_) == size, ErrorCode::kIo,
           path_ << ": write failed: " << std::strerror(errno));
  written_ += size;
}

void AtomicFile::commit() {
  NQ_ASSERT(file_ != nullptr && !committed_);
  const bool flushed = std::fflush(file_) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  NQ_CHECK(flushed && closed, ErrorCode::kIo, path_ << ": write failed: " << std::strerror(errno));
  NQ_CHECK(std::rename(temp_path_.c_str(), path_.c_str()) == 0, ErrorCode::kIo,
           path_ << ": cannot rename temporary file into place: " << std::strerror(errno));
  committed_ = true;
}

void check_output_not_input(const std::string& output, const std::vector<std::string>& inputs) {
  struct stat out_st {};
  if (::stat(output.c_str(), &out_st) != 0) return;  // output does not exist yet: cannot alias
  for (const auto& in : inputs) {
    struct stat in_st {};
    if (::stat(in.c_str(), &in_st) == 0 && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
      NQ_FAIL(ErrorCode::kInvalidArgument,
              "output '" << output << "' is the input file '" << in << "'; refusing to overwrite an input");
    }
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NQ_CHECK(in.good(), ErrorCode::kIo, path << ": cannot open: " << std::strerror(errno));
  std::ostringstream os;
  os << in.rdbuf();
  NQ_CHECK(!in.bad(), ErrorCode::kIo, path << ": read failed");
  return os.str();
}

}  // namespace nq
