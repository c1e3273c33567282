// Little-endian byte writer and bounds-checked reader (fixed-width fields, LEB128 varints) for the .nq file.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "netquant/error.h"

namespace nq::coding {

class ByteWriter {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v) { fixed(v, 2); }
  void u32(uint32_t v) { fixed(v, 4); }
  void u64(uint64_t v) { fixed(v, 8); }
  void f32(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    u32(u);
  }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      bytes_.push_back(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    bytes_.push_back(static_cast<uint8_t>(v));
  }
  void raw(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + n);
  }
  size_t size() const { return bytes_.size(); }
  void reserve(size_t n) { bytes_.reserve(n); }  // room for what is known to come: no regrowth copies
  std::vector<uint8_t>& bytes() { return bytes_; }
  void patch_u32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
  }
  void patch_u64(size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
  }

 private:
  void fixed(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> bytes_;
};

inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Every read checks the remaining length first; failures are kBadFile errors that name `what` (the file and
// the part being parsed) and the offset.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string what, uint64_t base_offset = 0)
      : data_(data), size_(size), what_(std::move(what)), base_(base_offset) {}

  uint8_t u8() { return static_cast<uint8_t>(fixed(1, "u8")); }
  uint16_t u16() { return static_cast<uint16_t>(fixed(2, "u16")); }
  uint32_t u32() { return static_cast<uint32_t>(fixed(4, "u32")); }
  uint64_t u64() { return fixed(8, "u64"); }
  float f32() {
    const uint32_t u = u32();
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  uint64_t varint(const char* field) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1, field);
      const uint8_t b = data_[pos_++];
      // The 10th byte may only carry the top bit of a 64-bit value; anything else overflows.
      NQ_CHECK(shift < 63 || (b & 0xfe) == 0, ErrorCode::kBadFile, where() << ": varint " << field << " overflows");
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    NQ_FAIL(ErrorCode::kBadFile, where() << ": varint " << field << " too long");
  }
  const uint8_t* take(uint64_t n, const char* field) {
    need(n, field);
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  void skip(uint64_t n, const char* field) { take(n, field); }
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* cursor() const { return data_ + pos_; }
  const std::string& what() const { return what_; }
  std::string where() const { return what_ + " (offset " + std::to_string(base_ + pos_) + ")"; }

  void need(uint64_t n, const char* field) const {
    NQ_CHECK(n <= size_ - pos_, ErrorCode::kBadFile,
             where() << ": truncated: " << field << " needs " << n << " bytes, " << (size_ - pos_) << " left");
  }

 private:
  uint64_t fixed(int n, const char* field) {
    need(static_cast<uint64_t>(n), field);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(data_[pos_ + static_cast<size_t>(i)]) << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  const uint8_t* data_;
  size_t size_;
  std::string what_;
  uint64_t base_;
  size_t pos_ = 0;
};

}  // namespace nq::coding
