// mmap-backed input files: large models are read lazily by the OS instead of copied into the heap.
#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/mapped_pages.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"

namespace nq::io {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  std::shared_ptr<MappedFile> m(new MappedFile());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  NQ_CHECK(fd >= 0, ErrorCode::kIo, path << ": cannot open: " << std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    NQ_FAIL(ErrorCode::kIo, path << ": cannot stat: " << std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    NQ_FAIL(ErrorCode::kIo, path << ": is a directory");
  }
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    // No address space for it (`ulimit -v`): reading the bytes instead would need as much.
    NQ_CHECK(p != MAP_FAILED || err != ENOMEM, ErrorCode::kOutOfMemory,
             path << ": out of memory to map its " << st.st_size << " bytes");
    if (p != MAP_FAILED) {
      m->map_ = p;
      m->data_ = static_cast<const uint8_t*>(p);
      m->size_ = static_cast<size_t>(st.st_size);
      register_readonly_mapping(m->map_, m->size_);
      return m;
    }
  } else {
    ::close(fd);
  }
  // Empty files, pipes and file systems without mmap (ENODEV): read the bytes instead.
  m->fallback_ = read_file(path);
  m->data_ = reinterpret_cast<const uint8_t*>(m->fallback_.data());
  m->size_ = m->fallback_.size();
  return m;
}

MappedFile::~MappedFile() {
  if (!map_) return;
  unregister_readonly_mapping(map_);
  ::munmap(map_, size_);
}

bool is_valid_utf8(const char* str, size_t n) {
  const auto* s = reinterpret_cast<const unsigned char*>(str);
  size_t i = 0;
  while (i < n) {
    const unsigned c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace nq::io
