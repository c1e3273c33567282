// Read-only memory maps of input files, shared so tensors viewing into a map keep it alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace nq::io {

class MappedFile {
 public:
  // Maps a regular file (falls back to reading it for non-mappable files); throws kIo naming the path.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* map_ = nullptr;       // munmap target when mapped
  std::string fallback_;      // owned bytes when not mapped (empty files, pipes)
};

// Checks that `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool is_valid_utf8(const char* s, size_t n);

}  // namespace nq::io
