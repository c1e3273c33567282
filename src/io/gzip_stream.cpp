// Bounded streaming gunzip: inflates only as many bytes as the caller asks for, so a header that announces
// N bytes never causes more than N bytes of output to be produced (zip-bomb safe).
#include "io/gzip_stream.h"

#include <algorithm>
#include <climits>

#include "netquant/error.h"

namespace nq::io {

GzipStream::GzipStream(const uint8_t* data, size_t size, std::string source)
    : data_(data), size_(size), source_(std::move(source)) {
  NQ_CHECK(is_gzip(data, size), ErrorCode::kBadFile, source_ << ": not a gzip stream (missing 1f 8b magic)");
  // 16 + MAX_WBITS: gzip wrapper only (zlib or raw deflate would be a different format).
  const int rc = inflateInit2(&zs_, 16 + MAX_WBITS);
  NQ_CHECK(rc == Z_OK, ErrorCode::kOutOfMemory, source_ << ": cannot initialize zlib (" << rc << ")");
}

GzipStream::~GzipStream() { inflateEnd(&zs_); }

void GzipStream::feed_input() {
  if (zs_.avail_in != 0 || consumed_ >= size_) return;
  // avail_in is 32-bit: feed huge inputs in chunks.
  const size_t chunk = std::min<size_t>(size_ - consumed_, UINT_MAX);
  zs_.next_in = const_cast<Bytef*>(data_ + consumed_);
  zs_.avail_in = static_cast<uInt>(chunk);
  consumed_ += chunk;
}

size_t GzipStream::read(uint8_t* dst, size_t n) {
  size_t produced = 0;
  while (produced < n && !finished_) {
    feed_input();
    const size_t want = std::min<size_t>(n - produced, UINT_MAX);
    zs_.next_out = dst + produced;
    zs_.avail_out = static_cast<uInt>(want);
    const uInt in_before = zs_.avail_in;
    const int rc = inflate(&zs_, Z_NO_FLUSH);
    const size_t got = want - zs_.avail_out;
    produced += got;
    total_out_ += got;
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (as `gzip -c a b` writes); anything else after the end is garbage.
      feed_input();
      if (zs_.avail_in == 0) {
        finished_ = true;
        break;
      }
      NQ_CHECK(is_gzip(zs_.next_in, zs_.avail_in), ErrorCode::kBadFile,
               source_ << ": " << zs_.avail_in << " bytes of trailing garbage after the gzip stream");
      NQ_CHECK(inflateReset(&zs_) == Z_OK, ErrorCode::kBadFile, source_ << ": cannot restart gzip member");
      continue;
    }
    if (rc == Z_BUF_ERROR) {
      // No progress possible: either the output is full (loop ends) or the input ran out mid-stream.
      if (zs_.avail_out != 0 && zs_.avail_in == 0 && consumed_ >= size_) {
        NQ_FAIL(ErrorCode::kBadFile, source_ << ": truncated gzip stream (input ends after "
                                             << total_out_ << " decompressed bytes)");
      }
      if (got == 0 && in_before == zs_.avail_in && zs_.avail_out != 0) {
        NQ_FAIL(ErrorCode::kBadFile, source_ << ": gzip stream makes no progress");
      }
      continue;
    }
    NQ_CHECK(rc == Z_OK, ErrorCode::kBadFile,
             source_ << ": corrupt gzip stream (" << (zs_.msg ? zs_.msg : "zlib error " + std::to_string(rc))
                     << ")");
    if (zs_.avail_in == 0 && consumed_ >= size_ && zs_.avail_out != 0) {
      // zlib returned OK with output room left and no input: the stream was cut short.
      NQ_FAIL(ErrorCode::kBadFile,
              source_ << ": truncated gzip stream (input ends after " << total_out_ << " decompressed bytes)");
    }
  }
  return produced;
}

bool GzipStream::at_end() {
  if (finished_) return true;
  uint8_t probe;
  return read(&probe, 1) == 0;
}

}  // namespace nq::io
