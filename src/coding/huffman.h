// Canonical, length-limited Huffman codes: optimal lengths by package-merge, table-driven decoding,
// and the compact code-length table stored in .nq files.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "coding/bit_io.h"

namespace nq::coding {

// Lengths are limited to 15 bits (a 2^15-entry worst case keeps the decoder's tables small); an alphabet
// with more than 2^15 used symbols cannot fit in 15 bits and gets the smallest limit that fits, 16.
constexpr int kDefaultCodeLimit = 15;
constexpr int kMaxCodeLength = 16;          // the format never carries longer codes
constexpr uint32_t kMaxAlphabet = 1u << 16; // symbols 0 .. 65535
constexpr int kPrimaryBits = 11;            // decoder's first-level table (codes up to 11 bits: one look-up)

// Optimal code lengths for `counts` under `limit` (package-merge, Larmore & Hirschberg 1990).
// Unused symbols (count 0) get length 0. One used symbol gets length 1 (the only incomplete code: its
// single codeword is '0'). limit = 0 means kDefaultCodeLimit, raised to 16 when more than 2^15 symbols are used.
std::vector<uint8_t> huffman_code_lengths(const std::vector<uint64_t>& counts, int limit = 0);

// Σ count·length: the bits a stream coded with `lengths` will take.
uint64_t huffman_stream_bits(const std::vector<uint64_t>& counts, const std::vector<uint8_t>& lengths);

// Checks that `lengths` form a usable prefix code: every length <= 16, Kraft sum exactly 1, except the
// one-symbol code (a single length-1 entry) and the empty code (all zero). Returns "" or the problem.
std::string check_code_lengths(const std::vector<uint8_t>& lengths);

// Canonical codewords: shorter codes first, ties by symbol value (DEFLATE's rule).
std::vector<uint32_t> canonical_codes(const std::vector<uint8_t>& lengths);

class HuffmanEncoder {
 public:
  explicit HuffmanEncoder(const std::vector<uint8_t>& lengths);
  // Appends the codes of n symbols. Every symbol must have a non-zero length (an internal invariant: the
  // writer builds the code from these very symbols).
  template <class Sym>
  void encode(const Sym* symbols, size_t n, BitWriter& out) const;
  uint32_t alphabet_size() const { return static_cast<uint32_t>(table_.size()); }
  // (length << 16) | codeword per symbol (0: no code) — what the GPU packer (huffman_pack.h) takes.
  const std::vector<uint32_t>& table() const { return table_; }

 private:
  std::vector<uint32_t> table_;  // (length << 16) | code
  int max_len_ = 0;
};

class HuffmanDecoder {
 public:
  // Validates the lengths first (check_code_lengths); a bad table is a kBadFile error naming `what`.
  HuffmanDecoder(const std::vector<uint8_t>& lengths, const std::string& what);
  // Decodes n symbols into out. Throws kBadFile naming `what` when the stream is truncated (needs more
  // bits than the reader's limit) or holds a codeword the code does not have.
  template <class Sym>
  void decode(BitReader& in, Sym* out, size_t n) const;
  // One symbol (slow path for short streams such as gap codes).
  uint32_t decode_one(BitReader& in) const;
  // One codeword as (symbol << 16) | length, consumed; 0 (nothing consumed) for a codeword the code does not
  // have. For callers that track positions themselves (the parallel decoder's synchronisation).
  uint32_t next_entry(BitReader& in) const;
  // Decodes codewords while `in` has consumed fewer than `stop` bits, appending their symbols to `out`: it stops at
  // the first codeword boundary at or past `stop`. Returns false, before it, on a codeword the code does not have.
  // Never throws on the stream's content (a speculative start may land anywhere).
  template <class Sym>
  bool decode_until(BitReader& in, uint64_t stop, std::vector<Sym>& out) const;
  bool empty() const { return max_len_ == 0; }
  // The greatest common divisor of the code's lengths (0 for the empty code): every codeword boundary of a stream
  // is a multiple of it.
  int length_gcd() const { return length_gcd_; }

 private:
  uint32_t decode_long(uint64_t window) const;
  [[noreturn]] void fail_invalid() const;

  std::string what_;
  int max_len_ = 0;
  int length_gcd_ = 0;
  int primary_bits_ = 0;
  std::vector<uint32_t> primary_;    // (symbol << 16) | length; 0x20 = longer code or invalid (slow path)
  uint32_t first_code_[kMaxCodeLength + 2] = {};  // canonical first code of each length
  uint32_t limit_[kMaxCodeLength + 2] = {};       // left-justified (16-bit) end of each length's range
  uint32_t offset_[kMaxCodeLength + 2] = {};      // index of each length's first symbol in sorted_
  std::vector<uint32_t> sorted_;                  // symbols in canonical order
};

// The code-length table as stored: 3 bits W-1 (W = bits of the largest length, 1..5), then one entry per
// symbol: the length in W bits; a zero length is followed by an order-0 Exp-Golomb count r-1 of a run of
// r zero lengths (including itself). Byte-aligned at the end. The alphabet size is written by the caller.
void write_code_lengths(const std::vector<uint8_t>& lengths, BitWriter& out);
uint64_t code_lengths_bits(const std::vector<uint8_t>& lengths);  // bits write_code_lengths adds (unpadded)
// Reads `alphabet` lengths; kBadFile naming `what` on overrun or a run past the alphabet.
std::vector<uint8_t> read_code_lengths(BitReader& in, uint32_t alphabet, const std::string& what);

// ---- implementation of the hot loops ----------------------------------------------------------------------

template <class Sym>
void HuffmanEncoder::encode(const Sym* symbols, size_t n, BitWriter& out) const {
  // Bits accumulate in a 64-bit register; every three codes (<= 48 bits) the whole bytes are stored with one
  // unaligned 8-byte big-endian write, leaving < 8 bits behind. A symbol without a code emits nothing; the
  // writer cross-checks the bit count against Σ count·length, so such misuse cannot go unnoticed.
  const uint32_t* table = table_.data();
  const size_t alphabet = table_.size();
  // Narrow symbols whose every value is inside the table need no range check.
  const bool checked = sizeof(Sym) > 2 || (static_cast<uint64_t>(1) << (8 * sizeof(Sym))) > alphabet;
  auto code_of = [&](size_t s) -> uint32_t {
    if (checked) NQ_ASSERT_MSG(s < alphabet, "symbol " << s << " outside the alphabet of " << alphabet);
    return table[s];
  };
  // Flush the writer's partial state to whole bytes first.
  out.drain_bytes();  // leaves < 8 pending bits
  uint64_t acc = out.acc_;
  int nbits = out.nbits_;
  size_t pos = out.pos_;
  // Invariant: nbits < 32 at the loop head; the live bits are the low `nbits` of acc.
  uint8_t* buf = nullptr;
  auto store = [&] {
    const uint64_t v = __builtin_bswap64((acc << 1) << (63 - nbits));  // nbits may be 0: no shift by 64
    std::memcpy(buf + pos, &v, 8);
    pos += static_cast<size_t>(nbits >> 3);
    nbits &= 7;
  };
  // Room is made chunk by chunk for the longest possible codes (a writer sized for the stream, as the .nq
  // writer does, never grows; nothing is zero-filled beyond what the codes can reach).
  constexpr size_t kChunk = size_t{1} << 14;
  for (size_t c = 0; c < n; c += kChunk) {
    const size_t end = std::min(n, c + kChunk);
    out.pos_ = pos;
    out.reserve_bytes((end - c) * static_cast<size_t>(max_len_) / 8 + 16);
    buf = out.buf_.data();
    size_t i = c;
    for (; i + 3 <= end; i += 3) {
      const uint32_t e0 = code_of(static_cast<size_t>(symbols[i]));
      const uint32_t e1 = code_of(static_cast<size_t>(symbols[i + 1]));
      const uint32_t e2 = code_of(static_cast<size_t>(symbols[i + 2]));
      acc = (acc << (e0 >> 16)) | (e0 & 0xffffu);
      acc = (acc << (e1 >> 16)) | (e1 & 0xffffu);
      acc = (acc << (e2 >> 16)) | (e2 & 0xffffu);
      nbits += static_cast<int>((e0 >> 16) + (e1 >> 16) + (e2 >> 16));
      store();
    }
    for (; i < end; ++i) {
      const uint32_t e = code_of(static_cast<size_t>(symbols[i]));
      acc = (acc << (e >> 16)) | (e & 0xffffu);
      nbits += static_cast<int>(e >> 16);
      store();
    }
  }
  out.acc_ = acc;
  out.nbits_ = nbits;
  out.pos_ = pos;
}

template <class Sym>
void HuffmanDecoder::decode(BitReader& in, Sym* out, size_t n) const {
  if (n == 0) return;
  NQ_CHECK(max_len_ > 0, ErrorCode::kBadFile, what_ << ": " << n << " symbols to decode with an empty code");
  // A stream of n symbols needs at least n bits: refuse early (the caller allocated n anyway, but this also
  // bounds the zero-padding loop below on hostile counts).
  NQ_CHECK(n <= in.bit_limit(), ErrorCode::kBadFile,
           what_ << ": truncated stream (" << n << " symbols in " << in.bit_limit() << " bits)");
  const uint32_t* primary = primary_.data();
  const int shift = 64 - primary_bits_;
  size_t i = 0;
  // Each refill leaves >= 56 bits: three codes of <= 16 bits.
  for (; i + 3 <= n; i += 3) {
    in.refill();
    for (int k = 0; k < 3; ++k) {
      const uint64_t window = in.peek64();
      uint32_t e = primary[window >> shift];
      if (__builtin_expect((e & 0x20u) != 0, 0)) {  // a longer code, or no code at all
        e = decode_long(window);
        if (e == 0) fail_invalid();
      }
      out[i + k] = static_cast<Sym>(e >> 16);
      in.consume(static_cast<int>(e & 0x1fu));
    }
  }
  for (; i < n; ++i) out[i] = static_cast<Sym>(decode_one(in));
  NQ_CHECK(!in.overrun(), ErrorCode::kBadFile,
           what_ << ": truncated stream (needs more than its " << in.bit_limit() << " bits)");
}

template <class Sym>
bool HuffmanDecoder::decode_until(BitReader& in, uint64_t stop, std::vector<Sym>& out) const {
  if (max_len_ == 0) return in.consumed_bits() >= stop;
  // The reader and the output position are locals: stores of byte-wide symbols may alias anything reachable
  // through a pointer, which would reload the reader's state after every symbol.
  BitReader r = in;
  const uint32_t* primary = primary_.data();
  const int shift = 64 - primary_bits_;
  size_t count = out.size();
  Sym* dst = out.data();
  size_t room = out.size();
  bool ok = true;
  auto one = [&]() -> bool {
    const uint64_t window = r.peek64();
    uint32_t e = primary[window >> shift];
    if (__builtin_expect((e & 0x20u) != 0, 0)) {
      e = decode_long(window);
      if (e == 0) return false;
    }
    dst[count++] = static_cast<Sym>(e >> 16);
    r.consume(static_cast<int>(e & 0x1fu));
    return true;
  };
  for (;;) {
    r.refill();
    const uint64_t at = r.consumed_bits();
    if (at >= stop) break;
    if (room < count + 3) {
      out.resize(std::max({count + 3, out.capacity(), 2 * room}));
      dst = out.data();
      room = out.size();
    }
    // Three codewords (<= 48 bits) fit the refilled window; all of them start before `stop` when the first
    // starts more than 32 bits before it.
    if (stop - at > 2 * kMaxCodeLength) {
      if (!one() || !one() || !one()) {
        ok = false;
        break;
      }
    } else if (!one()) {
      ok = false;
      break;
    }
  }
  out.resize(count);
  in = r;
  return ok;
}

}  // namespace nq::coding
