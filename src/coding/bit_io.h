// MSB-first bit writer/reader with a 64-bit buffer; the reader never touches a byte past the end of its input.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "netquant/error.h"

namespace nq::coding {

// Bits are packed most-significant first so a canonical code's prefix is the top of the buffer: one shift
// and one table look-up decode a symbol.
class BitWriter {
 public:
  // `expected_bits` sizes the buffer once; the writer still grows it if more is written.
  explicit BitWriter(uint64_t expected_bits = 0) { buf_.resize(static_cast<size_t>(expected_bits / 8) + 16); }

  // Appends the low `len` bits of `code` (len <= 32).
  inline void put(uint32_t code, int len) {
    acc_ = (acc_ << len) | code;
    nbits_ += len;
    if (nbits_ >= 32) flush32();
  }

  // Raw access for the hot encode loop (huffman.cpp): the caller keeps acc/nbits in registers.
  inline void flush32() {
    nbits_ -= 32;
    if (pos_ + 4 > buf_.size()) buf_.resize(buf_.size() * 2 + 16);
    const uint32_t v = static_cast<uint32_t>(acc_ >> nbits_);
    uint8_t* p = buf_.data() + pos_;
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
    pos_ += 4;
  }

  // Stores the pending whole bytes (not the last partial one).
  void drain_bytes() {
    while (nbits_ >= 8) {
      nbits_ -= 8;
      push_byte(static_cast<uint8_t>(acc_ >> nbits_));
    }
  }
  // Makes room for `extra` more bytes past the write position (the hot loop stores 8 bytes at a time).
  // Grows geometrically, so reserving chunk by chunk stays linear.
  void reserve_bytes(size_t extra) {
    if (buf_.size() < pos_ + extra) buf_.resize(std::max(pos_ + extra, buf_.size() + buf_.size() / 2));
  }

  uint64_t bit_count() const { return static_cast<uint64_t>(pos_) * 8 + static_cast<uint64_t>(nbits_); }

  // Pads the last byte with zero bits and returns the bytes (ceil(bit_count / 8) of them).
  std::vector<uint8_t> finish() {
    drain_bytes();
    if (nbits_ > 0) {
      push_byte(static_cast<uint8_t>(acc_ << (8 - nbits_)));
      nbits_ = 0;
    }
    buf_.resize(pos_);
    return std::move(buf_);
  }

  // Hot-loop state (see huffman_encode).
  uint64_t acc_ = 0;
  int nbits_ = 0;
  size_t pos_ = 0;
  std::vector<uint8_t> buf_;

 private:
  void push_byte(uint8_t b) {
    if (pos_ + 1 > buf_.size()) buf_.resize(buf_.size() * 2 + 16);
    buf_[pos_++] = b;
  }
};

// Reads `bit_limit` bits of `data`. Past the end it shifts in zero bits without reading memory; overrun()
// tells whether more bits were consumed than exist, and callers turn that into a kBadFile error.
class BitReader {
 public:
  BitReader(const uint8_t* data, size_t size, uint64_t bit_limit)
      : data_(data), size_(size), bit_limit_(bit_limit) {
    NQ_ASSERT(bit_limit <= static_cast<uint64_t>(size) * 8);
    refill();
  }

  // Guarantees at least 56 valid (or zero-padded) bits in the buffer.
  inline void refill() {
    if (pos_ + 8 <= size_) {
      uint64_t v;
      std::memcpy(&v, data_ + pos_, 8);
      v = __builtin_bswap64(v);
      buf_ |= v >> avail_;
      const int bytes = (63 - avail_) >> 3;
      pos_ += static_cast<size_t>(bytes);
      avail_ += bytes * 8;
    } else {
      while (avail_ <= 56) {
        const uint64_t b = pos_ < size_ ? data_[pos_] : 0;
        buf_ |= b << (56 - avail_);
        avail_ += 8;
        ++pos_;  // may run past size_: counts the virtual zero bytes for overrun()
      }
    }
  }

  inline uint64_t peek64() const { return buf_; }
  inline void consume(int n) {
    buf_ <<= n;
    avail_ -= n;
  }
  // Reads n <= 32 bits (refills itself; for the slow paths: headers, code-length tables).
  inline uint32_t get(int n) {
    if (n == 0) return 0;
    if (avail_ < n) refill();
    const uint32_t v = static_cast<uint32_t>(buf_ >> (64 - n));
    consume(n);
    return v;
  }
  int avail() const { return avail_; }

  uint64_t consumed_bits() const { return static_cast<uint64_t>(pos_) * 8 - static_cast<uint64_t>(avail_); }
  bool overrun() const { return consumed_bits() > bit_limit_; }
  uint64_t bit_limit() const { return bit_limit_; }

 private:
  const uint8_t* data_;
  size_t size_;
  uint64_t bit_limit_;
  size_t pos_ = 0;
  uint64_t buf_ = 0;
  int avail_ = 0;
};

}  // namespace nq::coding
