// Temporary-then-rename output files and input/output aliasing checks.
#include "netquant/atomic_file.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <new>
#include <sstream>

#include "netquant/error.h"

namespace nq {

namespace {
std::atomic<unsigned> g_temp_counter{0};

// Temporaries still open, so that a run ended by SIGINT / SIGTERM / SIGHUP (Ctrl-C, `kill`, mpirun ending a
// failed job) removes them too: fixed slots the handler can read without allocating (unlink is
// async-signal-safe). A slot is published by setting `used` after its path is written.
constexpr int kSlots = 64;
constexpr size_t kMaxPath = 4096;
struct TempSlot {
  std::atomic<int> used{0};
  char path[kMaxPath];
};
TempSlot g_slots[kSlots];
std::once_flag g_handlers_once;
struct sigaction g_previous[3];
constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};

void unlink_open_temporaries() {  // async-signal-safe
  for (TempSlot& slot : g_slots)
    if (slot.used.load(std::memory_order_acquire)) ::unlink(slot.path);
}

extern "C" void remove_temporaries_and_reraise(int sig) {
  unlink_open_temporaries();
  for (int i = 0; i < 3; ++i)
    if (kSignals[i] == sig) ::sigaction(sig, &g_previous[i], nullptr);
  ::raise(sig);  // the previous disposition (default: terminate) runs when the handler returns
}

// Installs the handler for signals whose disposition is still the default (an embedding program's own
// handlers, e.g. Python's SIGINT, are left alone).
void install_handlers() {
  // exit() from inside a library (libgomp's fatal errors call it) runs no destructor: remove them then too. A
  // normal end has none open.
  std::atexit(unlink_open_temporaries);
  for (int i = 0; i < 3; ++i) {
    struct sigaction old {};
    if (::sigaction(kSignals[i], nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = remove_temporaries_and_reraise;
    sigemptyset(&sa.sa_mask);
    g_previous[i] = old;
    ::sigaction(kSignals[i], &sa, nullptr);
  }
}

int register_temporary(const std::string& path) {
  std::call_once(g_handlers_once, install_handlers);
  if (path.size() >= kMaxPath) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    // Claim with 2 ("being written"), then publish as 1 once the path is in place.
    if (g_slots[i].used.compare_exchange_strong(expected, 2)) {
      std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
      g_slots[i].used.store(1, std::memory_order_release);
      return i;
    }
  }
  return -1;  // more than kSlots open at once: that one is cleaned up by the destructor only
}

void unregister_temporary(int slot) {
  if (slot >= 0) g_slots[slot].used.store(0, std::memory_order_release);
}

std::string temp_name_for(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::ostringstream os;
  os << dir << "." << base << ".tmp-" << ::getpid() << "-" << g_temp_counter++;
  return os.str();
}
}  // namespace

void remove_open_temporaries() { unlink_open_temporaries(); }

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  NQ_CHECK(!path_.empty(), ErrorCode::kInvalidArgument, "empty output path");
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    NQ_CHECK(!S_ISDIR(st.st_mode), ErrorCode::kIo, path_ << ": is a directory");
  }
  temp_path_ = temp_name_for(path_);
  slot_ = register_temporary(temp_path_);
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (file_ == nullptr) {
    const int err = errno;
    unregister_temporary(slot_);
    NQ_FAIL(ErrorCode::kIo, path_ << ": cannot create output file: " << std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!committed_) std::remove(temp_path_.c_str());
  unregister_temporary(slot_);
}

void AtomicFile::write(const void* data, size_t size) {
  NQ_ASSERT(file_ != nullptr && !committed_);
  if (size == 0) return;
  NQ_CHECK(std::fwrite(data, 1, size, file_) == size, ErrorCode::kIo,
           path_ << ": write failed: " << std::strerror(errno));
  written_ += size;
}

void AtomicFile::write_at(uint64_t offset, const void* data, size_t size) {
  NQ_ASSERT(file_ != nullptr && !committed_ && offset + size <= written_);
  if (size == 0) return;
  const bool ok = fseeko(file_, static_cast<off_t>(offset), SEEK_SET) == 0 && std::fwrite(data, 1, size, file_) == size &&
                  fseeko(file_, 0, SEEK_END) == 0;
  NQ_CHECK(ok, ErrorCode::kIo, path_ << ": write failed: " << std::strerror(errno));
}

void AtomicFile::flush() {
  NQ_ASSERT(file_ != nullptr && !committed_);
  NQ_CHECK(std::fflush(file_) == 0, ErrorCode::kIo, path_ << ": write failed: " << std::strerror(errno));
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
  unregister_temporary(slot_);
  slot_ = -1;
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
  // Read in blocks into a string that grows, not `stream << in.rdbuf()`: that insertion swallows a failure to
  // grow its buffer (it only sets failbit), so out of memory would hand back the first megabytes as the file.
  std::string bytes;
  try {
    char block[1 << 16];
    while (in) {
      in.read(block, sizeof block);
      bytes.append(block, static_cast<size_t>(in.gcount()));
    }
  } catch (const std::bad_alloc&) {
    NQ_FAIL(ErrorCode::kOutOfMemory, path << ": out of memory after reading " << bytes.size() << " bytes of it");
  }
  NQ_CHECK(!in.bad(), ErrorCode::kIo, path << ": read failed");
  return bytes;
}

}  // namespace nq
