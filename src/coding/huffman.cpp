// Package-merge code lengths, canonical codes, decoder tables and the stored code-length table.
#include "coding/huffman.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <sstream>

namespace nq::coding {

std::vector<uint8_t> huffman_code_lengths(const std::vector<uint64_t>& counts, int limit) {
  NQ_ASSERT_MSG(counts.size() <= kMaxAlphabet, "alphabet of " << counts.size() << " symbols");
  std::vector<uint8_t> lengths(counts.size(), 0);
  // Leaves sorted by (count, symbol): the tie order is fixed so the code is deterministic.
  std::vector<std::pair<uint64_t, uint32_t>> leaves;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s] > 0) leaves.emplace_back(counts[s], static_cast<uint32_t>(s));
  const size_t m = leaves.size();
  if (m == 0) return lengths;
  if (m == 1) {
    lengths[leaves[0].second] = 1;
    return lengths;
  }
  std::sort(leaves.begin(), leaves.end());
  if (limit == 0) limit = m > (size_t{1} << kDefaultCodeLimit) ? kMaxCodeLength : kDefaultCodeLimit;
  NQ_ASSERT_MSG(limit >= 1 && limit <= kMaxCodeLength && (size_t{1} << limit) >= m,
                m << " symbols cannot have codes of at most " << limit << " bits");

  // Package-merge: the list of level `limit-1` (deepest) holds the leaves; each shallower level merges the
  // leaves with the pairwise packages of the level below. Only the first 2m-2 items of any list can be
  // selected, so lists are truncated there. is_package[level][t] remembers what item t was.
  const size_t cap = 2 * m - 2;
  std::vector<std::vector<uint8_t>> is_package(static_cast<size_t>(limit));
  std::vector<uint64_t> prev(m), cur;
  for (size_t i = 0; i < m; ++i) prev[i] = leaves[i].first;
  is_package[static_cast<size_t>(limit - 1)].assign(m, 0);
  cur.reserve(cap);
  for (int level = limit - 2; level >= 0; --level) {
    auto& flags = is_package[static_cast<size_t>(level)];
    flags.clear();
    flags.reserve(cap);
    cur.clear();
    const size_t packages = prev.size() / 2;
    size_t i = 0, j = 0;
    while (cur.size() < cap && (i < m || j < packages)) {
      const uint64_t pw = j < packages ? prev[2 * j] + prev[2 * j + 1] : std::numeric_limits<uint64_t>::max();
      if (i < m && leaves[i].first <= pw) {
        cur.push_back(leaves[i++].first);
        flags.push_back(0);
      } else {
        cur.push_back(pw);
        flags.push_back(1);
        ++j;
      }
    }
    std::swap(prev, cur);
  }
  // Select the first 2m-2 items of the top list; each selected leaf adds one bit to its symbol, each
  // selected package selects two items of the level below. Leaves are selected as a prefix of the sorted
  // leaves at every level.
  size_t take = cap;
  for (int level = 0; level < limit && take > 0; ++level) {
    const auto& flags = is_package[static_cast<size_t>(level)];
    NQ_ASSERT(take <= flags.size());
    size_t leaves_taken = 0, packages_taken = 0;
    for (size_t t = 0; t < take; ++t) (flags[t] ? packages_taken : leaves_taken)++;
    for (size_t s = 0; s < leaves_taken; ++s) ++lengths[leaves[s].second];
    take = 2 * packages_taken;
  }
  NQ_ASSERT(take == 0);
  return lengths;
}

uint64_t huffman_stream_bits(const std::vector<uint64_t>& counts, const std::vector<uint8_t>& lengths) {
  NQ_ASSERT(counts.size() == lengths.size());
  uint64_t bits = 0;
  for (size_t s = 0; s < counts.size(); ++s) bits += counts[s] * lengths[s];
  return bits;
}

std::string check_code_lengths(const std::vector<uint8_t>& lengths) {
  if (lengths.size() > kMaxAlphabet) return "alphabet of " + std::to_string(lengths.size()) + " symbols";
  uint64_t kraft = 0;  // Σ 2^(16-L): exactly 2^16 for a complete code
  size_t used = 0;
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int len = lengths[s];
    if (len == 0) continue;
    if (len > kMaxCodeLength) {
      std::ostringstream os;
      os << "code length " << len << " of symbol " << s << " exceeds " << kMaxCodeLength;
      return os.str();
    }
    kraft += uint64_t{1} << (kMaxCodeLength - len);
    ++used;
  }
  if (used == 0) return "";
  if (used == 1) {
    return kraft == (uint64_t{1} << (kMaxCodeLength - 1)) ? "" : "a one-symbol code must have length 1";
  }
  if (kraft > (uint64_t{1} << kMaxCodeLength)) return "over-subscribed code lengths (Kraft sum > 1)";
  if (kraft < (uint64_t{1} << kMaxCodeLength)) return "incomplete code lengths (Kraft sum < 1)";
  return "";
}

std::vector<uint32_t> canonical_codes(const std::vector<uint8_t>& lengths) {
  uint32_t count[kMaxCodeLength + 1] = {};
  for (uint8_t len : lengths) {
    NQ_ASSERT(len <= kMaxCodeLength);
    if (len) ++count[len];
  }
  uint32_t next[kMaxCodeLength + 2] = {};
  uint32_t code = 0;
  for (int len = 1; len <= kMaxCodeLength; ++len) {
    code = (code + count[len - 1]) << 1;
    if (len == 1) code = 0;
    next[len] = code;
  }
  std::vector<uint32_t> codes(lengths.size(), 0);
  for (size_t s = 0; s < lengths.size(); ++s)
    if (lengths[s]) codes[s] = next[lengths[s]]++;
  return codes;
}

HuffmanEncoder::HuffmanEncoder(const std::vector<uint8_t>& lengths) {
  NQ_ASSERT_MSG(check_code_lengths(lengths).empty(), check_code_lengths(lengths));
  const auto codes = canonical_codes(lengths);
  table_.assign(lengths.size(), 0);
  for (size_t s = 0; s < lengths.size(); ++s)
    if (lengths[s]) table_[s] = (static_cast<uint32_t>(lengths[s]) << 16) | codes[s];
  for (const uint8_t len : lengths) max_len_ = std::max(max_len_, static_cast<int>(len));
}

HuffmanDecoder::HuffmanDecoder(const std::vector<uint8_t>& lengths, const std::string& what) : what_(what) {
  const std::string problem = check_code_lengths(lengths);
  NQ_CHECK(problem.empty(), ErrorCode::kBadFile, what << ": " << problem);
  uint32_t count[kMaxCodeLength + 2] = {};
  for (uint8_t len : lengths) {
    if (len) ++count[len];
    max_len_ = std::max<int>(max_len_, len);
  }
  if (max_len_ == 0) return;
  for (int len = 1; len <= kMaxCodeLength; ++len)
    if (count[len]) length_gcd_ = std::gcd(length_gcd_, len);
  primary_bits_ = std::min(max_len_, kPrimaryBits);
  const auto codes = canonical_codes(lengths);
  // Canonical order: by length, then symbol.
  uint32_t code = 0, index = 0;
  for (int len = 1; len <= kMaxCodeLength; ++len) {
    code = len == 1 ? 0 : (code + count[len - 1]) << 1;
    first_code_[len] = code;
    offset_[len] = index;
    index += count[len];
    limit_[len] = (code + count[len]) << (kMaxCodeLength - len);
  }
  sorted_.assign(index, 0);
  std::vector<uint32_t> fill(kMaxCodeLength + 2, 0);
  for (size_t s = 0; s < lengths.size(); ++s)
    if (lengths[s]) sorted_[offset_[lengths[s]] + fill[lengths[s]]++] = static_cast<uint32_t>(s);

  // Entries no code reaches (only the one-symbol code has them) take the slow path, which rejects them.
  primary_.assign(size_t{1} << primary_bits_, 0x20u);
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int len = lengths[s];
    if (len == 0) continue;
    if (len <= primary_bits_) {
      const uint32_t first = codes[s] << (primary_bits_ - len);
      const uint32_t n = 1u << (primary_bits_ - len);
      const uint32_t entry = (static_cast<uint32_t>(s) << 16) | static_cast<uint32_t>(len);
      for (uint32_t k = 0; k < n; ++k) primary_[first + k] = entry;
    } else {
      primary_[codes[s] >> (len - primary_bits_)] = 0x20u;  // resolved by decode_long
    }
  }
}

uint32_t HuffmanDecoder::decode_long(uint64_t window) const {
  const uint32_t v = static_cast<uint32_t>(window >> (64 - kMaxCodeLength));
  for (int len = primary_bits_ + 1; len <= max_len_; ++len) {
    if (v < limit_[len]) {
      const uint32_t sym = sorted_[offset_[len] + ((v >> (kMaxCodeLength - len)) - first_code_[len])];
      return (sym << 16) | static_cast<uint32_t>(len);
    }
  }
  return 0;
}

void HuffmanDecoder::fail_invalid() const {
  NQ_FAIL(ErrorCode::kBadFile, what_ << ": invalid codeword in the stream");
}

uint32_t HuffmanDecoder::decode_one(BitReader& in) const {
  NQ_CHECK(max_len_ > 0, ErrorCode::kBadFile, what_ << ": symbol to decode with an empty code");
  if (in.avail() < kMaxCodeLength) in.refill();
  const uint64_t window = in.peek64();
  uint32_t e = primary_[window >> (64 - primary_bits_)];
  if (e & 0x20u) {
    e = decode_long(window);
    if (e == 0) fail_invalid();
  }
  in.consume(static_cast<int>(e & 0x1fu));
  return e >> 16;
}

uint32_t HuffmanDecoder::next_entry(BitReader& in) const {
  if (max_len_ == 0) return 0;
  if (in.avail() < kMaxCodeLength) in.refill();
  const uint64_t window = in.peek64();
  uint32_t e = primary_[window >> (64 - primary_bits_)];
  if (e & 0x20u) e = decode_long(window);
  if (e) in.consume(static_cast<int>(e & 0x1fu));
  return e;
}

// ---- stored code-length table -------------------------------------------------------------------------------

namespace {
int bit_width(uint32_t v) {
  int w = 0;
  while (v) {
    ++w;
    v >>= 1;
  }
  return w;
}
void put_exp_golomb(uint32_t x, BitWriter& out) {
  const uint32_t v = x + 1;
  const int nb = bit_width(v);
  if (nb > 1) out.put(0, nb - 1);
  out.put(v, nb);
}
uint64_t exp_golomb_bits(uint32_t x) { return 2 * static_cast<uint64_t>(bit_width(x + 1)) - 1; }
int length_field_width(const std::vector<uint8_t>& lengths) {
  uint8_t max_len = 0;
  for (uint8_t l : lengths) max_len = std::max(max_len, l);
  return std::max(1, bit_width(max_len));
}
}  // namespace

template <class Visit>
static void walk_code_lengths(const std::vector<uint8_t>& lengths, Visit&& visit) {
  for (size_t i = 0; i < lengths.size();) {
    if (lengths[i]) {
      visit(lengths[i], 0u);
      ++i;
      continue;
    }
    size_t r = 1;
    while (i + r < lengths.size() && lengths[i + r] == 0) ++r;
    visit(uint8_t{0}, static_cast<uint32_t>(r));
    i += r;
  }
}

void write_code_lengths(const std::vector<uint8_t>& lengths, BitWriter& out) {
  const int w = length_field_width(lengths);
  out.put(static_cast<uint32_t>(w - 1), 3);
  walk_code_lengths(lengths, [&](uint8_t len, uint32_t run) {
    out.put(len, w);
    if (len == 0) put_exp_golomb(run - 1, out);
  });
}

uint64_t code_lengths_bits(const std::vector<uint8_t>& lengths) {
  const int w = length_field_width(lengths);
  uint64_t bits = 3;
  walk_code_lengths(lengths, [&](uint8_t len, uint32_t run) {
    bits += static_cast<uint64_t>(w);
    if (len == 0) bits += exp_golomb_bits(run - 1);
  });
  return bits;
}

std::vector<uint8_t> read_code_lengths(BitReader& in, uint32_t alphabet, const std::string& what) {
  NQ_CHECK(alphabet <= kMaxAlphabet, ErrorCode::kBadFile,
           what << ": alphabet of " << alphabet << " symbols exceeds " << kMaxAlphabet);
  std::vector<uint8_t> lengths(alphabet, 0);
  const int w = static_cast<int>(in.get(3)) + 1;
  NQ_CHECK(w <= 5, ErrorCode::kBadFile, what << ": code-length field of " << w << " bits (at most 5)");
  for (uint32_t i = 0; i < alphabet;) {
    NQ_CHECK(!in.overrun(), ErrorCode::kBadFile, what << ": truncated code-length table");
    const uint32_t len = in.get(w);
    if (len > 0) {
      NQ_CHECK(len <= static_cast<uint32_t>(kMaxCodeLength), ErrorCode::kBadFile,
               what << ": code length " << len << " exceeds " << kMaxCodeLength);
      lengths[i++] = static_cast<uint8_t>(len);
      continue;
    }
    int zeros = 0;
    while (in.get(1) == 0) {
      NQ_CHECK(++zeros <= 16 && !in.overrun(), ErrorCode::kBadFile, what << ": bad zero-run in code-length table");
    }
    const uint32_t v = (zeros ? in.get(zeros) : 0) | (1u << zeros);
    const uint32_t run = v;  // v = (r - 1) + 1
    NQ_CHECK(run <= alphabet - i, ErrorCode::kBadFile,
             what << ": zero-run of " << run << " past the alphabet of " << alphabet);
    i += run;
  }
  NQ_CHECK(!in.overrun(), ErrorCode::kBadFile, what << ": truncated code-length table");
  return lengths;
}

}  // namespace nq::coding
