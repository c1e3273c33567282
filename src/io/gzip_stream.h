// Bounded streaming gunzip over an in-memory buffer (zlib): callers pull exactly the bytes they expect.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace nq::io {

// True when the buffer starts with the gzip magic 1f 8b (detected by content, never by extension).
inline bool is_gzip(const uint8_t* data, size_t size) { return size >= 2 && data[0] == 0x1f && data[1] == 0x8b; }

// deflate cannot expand more than ~1032:1 (258-byte matches coded in 2 bits); a header claiming more than
// this for its compressed size is lying, so parsers refuse it before allocating (zip-bomb guard).
constexpr uint64_t kMaxDeflateRatio = 1032;

class GzipStream {
 public:
  // `source` names the input in error messages. Throws kBadFile when the stream does not start as gzip.
  GzipStream(const uint8_t* data, size_t size, std::string source);
  ~GzipStream();
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  // Inflates up to `n` bytes into `dst`; returns fewer only at the end of the (last) gzip member.
  // Corrupt or truncated streams throw kBadFile naming the source.
  size_t read(uint8_t* dst, size_t n);
  // True when no further decompressed byte exists (used to reject data beyond what a header announced).
  bool at_end();
  uint64_t total_out() const { return total_out_; }

 private:
  void feed_input();

  z_stream zs_{};
  const uint8_t* data_;
  size_t size_;
  size_t consumed_ = 0;  // input bytes handed to zlib so far
  std::string source_;
  bool finished_ = false;
  uint64_t total_out_ = 0;
};

}  // namespace nq::io
