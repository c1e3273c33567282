// Speculative segments joined where the parses meet (see huffman_parallel.h).
#include "coding/huffman_parallel.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/iteration_errors.h"

namespace nq::coding {

namespace {

// A reader positioned at an absolute bit of the stream.
struct Cursor {
  Cursor(const uint8_t* data, size_t bytes, uint64_t bits, uint64_t start)
      : in(data + start / 8, bytes - static_cast<size_t>(start / 8), bits - start / 8 * 8), base(start / 8 * 8) {
    in.get(static_cast<int>(start % 8));
  }
  uint64_t pos() const { return base + in.consumed_bits(); }
  BitReader in;
  uint64_t base;
};

template <class Sym>
struct Segment {
  uint64_t start = 0, stop = 0;  // the speculative parse begins at `start` and ends at its first boundary >= stop
  std::vector<Sym> spec;         // its symbols
  uint64_t exit = 0;             // that boundary
  bool alive = true;             // false: it met a codeword the code lacks (and `spec` ends before it)
  std::vector<Sym> head;         // the true parse's symbols in this segment before the join (all of them if none)
  size_t join = 0;               // spec[join..] are the true parse's symbols after the join
  bool joined = false;
};

// Walks the true parse from `entry` in step with the segment's speculative one until their positions meet or the
// true parse leaves the segment. Returns the true parse's exit, or ~0 when it meets a codeword the code lacks.
template <class Sym>
uint64_t join_segment(const HuffmanDecoder& code, const uint8_t* data, size_t bytes, uint64_t bits, uint64_t entry,
                      Segment<Sym>& seg) {
  constexpr uint64_t kBad = ~uint64_t{0};
  if (entry >= seg.stop) return entry;  // the previous segment's last codeword covers this one
  if (entry == seg.start) {
    seg.joined = true;
    seg.join = 0;
    return seg.exit;
  }
  Cursor truth(data, bytes, bits, entry), guess(data, bytes, bits, seg.start);
  size_t guessed = 0;
  for (;;) {
    const uint64_t at = truth.pos();
    if (at >= seg.stop) return at;  // no join: `head` is the whole segment
    const uint64_t other = guessed < seg.spec.size() ? guess.pos() : kBad;  // the guess ran out only where it died
    if (at == other) {
      seg.joined = true;
      seg.join = guessed;
      return seg.exit;
    }
    if (at < other) {
      const uint32_t e = code.next_entry(truth.in);
      if (e == 0) return kBad;
      seg.head.push_back(static_cast<Sym>(e >> 16));
    } else {
      const uint32_t e = code.next_entry(guess.in);
      NQ_ASSERT(e != 0);  // the speculative pass decoded this very codeword
      ++guessed;
    }
  }
}

}  // namespace

template <class Sym>
std::vector<uint8_t> encode_stream_parallel(const HuffmanEncoder& code, const Sym* symbols, size_t n, uint64_t bits,
                                            size_t chunk_symbols) {
  const size_t threads = omp_in_parallel() ? 1 : static_cast<size_t>(std::max(1, omp_get_max_threads()));
  if (chunk_symbols == 0) {
    const size_t chunks = threads == 1 ? 1 : std::clamp<size_t>(n >> 18, 1, 4 * threads);
    chunk_symbols = (n + chunks - 1) / chunks;
  }
  chunk_symbols = std::max<size_t>(chunk_symbols, 1);
  const size_t chunks = n == 0 ? 0 : (n + chunk_symbols - 1) / chunk_symbols;
  if (chunks <= 1) {
    BitWriter w(bits);
    code.encode(symbols, n, w);
    NQ_ASSERT(w.bit_count() == bits);
    return w.finish();
  }
  // Each chunk coded on its own from bit 0, then put at its offset (the bits of the chunks before it), shifted by
  // the offset's bits within a byte. A chunk's first and last bytes may be shared with its neighbours: the threads
  // write the bytes only they touch, and the shared ones are joined afterwards (the coder pads with zero bits, so
  // OR joins them).
  std::vector<std::vector<uint8_t>> parts(chunks);
  std::vector<uint64_t> offset(chunks + 1, 0);
  IterationErrors errors;
#pragma omp parallel for schedule(dynamic)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    errors.run(static_cast<size_t>(c), [&] {
      const size_t j = static_cast<size_t>(c);
      const size_t a = j * chunk_symbols, b = std::min(n, a + chunk_symbols);
      BitWriter w(bits / n * (b - a) + (b - a) / 4 + 64);  // about the chunk's share: the writer grows if short
      code.encode(symbols + a, b - a, w);
      offset[j + 1] = w.bit_count();
      parts[j] = w.finish();
    });
  }
  errors.rethrow_first();
  for (size_t c = 0; c < chunks; ++c) offset[c + 1] += offset[c];
  NQ_ASSERT_MSG(offset[chunks] == bits, "stream of " << offset[chunks] << " bits, " << bits << " expected");
  std::vector<uint8_t> out(static_cast<size_t>((bits + 7) / 8));
  std::vector<uint8_t> first_byte(chunks, 0), last_byte(chunks, 0);
#pragma omp parallel for schedule(dynamic)
  for (int64_t c = 0; c < static_cast<int64_t>(chunks); ++c) {
    const size_t j = static_cast<size_t>(c);
    const std::vector<uint8_t>& part = parts[j];
    if (part.empty()) continue;
    const unsigned shift = static_cast<unsigned>(offset[j] % 8);
    const size_t at = static_cast<size_t>(offset[j] / 8), len = static_cast<size_t>((offset[j + 1] + 7) / 8) - at;
    // Byte i of the chunk's span: the low bits of part[i - 1] and the high bits of part[i].
    auto span_byte = [&](size_t i) -> uint8_t {
      const unsigned hi = i < part.size() ? part[i] : 0u, lo = i > 0 ? part[i - 1] : 0u;
      return static_cast<uint8_t>((hi >> shift) | (lo << (8 - shift)));
    };
    first_byte[j] = span_byte(0);
    last_byte[j] = span_byte(len - 1);
    if (shift == 0) {
      if (len > 2) std::memcpy(out.data() + at + 1, part.data() + 1, len - 2);
    } else {
      for (size_t i = 1; i + 1 < len; ++i)
        out[at + i] = static_cast<uint8_t>((part[i] >> shift) | (part[i - 1] << (8 - shift)));
    }
    std::vector<uint8_t>().swap(parts[j]);
  }
  for (size_t j = 0; j < chunks; ++j) {  // the first and last bytes of every span: zero, then joined
    if (offset[j + 1] == offset[j]) continue;
    out[static_cast<size_t>(offset[j] / 8)] = 0;
    out[static_cast<size_t>((offset[j + 1] + 7) / 8) - 1] = 0;
  }
  for (size_t j = 0; j < chunks; ++j) {
    if (offset[j + 1] == offset[j]) continue;
    const size_t at = static_cast<size_t>(offset[j] / 8), end = static_cast<size_t>((offset[j + 1] + 7) / 8);
    out[at] |= first_byte[j];
    if (end - 1 > at) out[end - 1] |= last_byte[j];
  }
  return out;
}

template std::vector<uint8_t> encode_stream_parallel(const HuffmanEncoder&, const uint8_t*, size_t, uint64_t, size_t);
template std::vector<uint8_t> encode_stream_parallel(const HuffmanEncoder&, const uint16_t*, size_t, uint64_t, size_t);
template std::vector<uint8_t> encode_stream_parallel(const HuffmanEncoder&, const int32_t*, size_t, uint64_t, size_t);
template std::vector<uint8_t> encode_stream_parallel(const HuffmanEncoder&, const uint32_t*, size_t, uint64_t, size_t);

bool parallel_decode_pays(uint64_t bits) {
  return bits >= kParallelDecodeMinBits && !omp_in_parallel() && omp_get_max_threads() > 1;
}

template <class Sym>
bool decode_stream_parallel(const HuffmanDecoder& code, const uint8_t* data, size_t bytes, uint64_t bits,
                            const std::function<Sym*(size_t)>& place, uint64_t segment_bits) {
  NQ_ASSERT(bits <= static_cast<uint64_t>(bytes) * 8);
  if (code.empty()) return bits == 0 && place(0) != nullptr;
  const uint64_t g = static_cast<uint64_t>(code.length_gcd());
  if (segment_bits == 0) {
    const uint64_t threads = omp_in_parallel() ? 1 : static_cast<uint64_t>(std::max(1, omp_get_max_threads()));
    const uint64_t segments = std::clamp<uint64_t>(bits >> 18, 1, 4 * threads);
    segment_bits = (bits + segments - 1) / segments;
  }
  segment_bits = std::max<uint64_t>((segment_bits + g - 1) / g * g, g);  // every start a multiple of the gcd
  const size_t count = bits == 0 ? 0 : static_cast<size_t>((bits + segment_bits - 1) / segment_bits);
  std::vector<Segment<Sym>> segs(count);
  for (size_t j = 0; j < count; ++j) {
    segs[j].start = j * segment_bits;
    segs[j].stop = std::min(bits, (j + 1) * segment_bits);
  }

  // Speculative parses, each segment on its own.
  IterationErrors errors;
#pragma omp parallel for schedule(dynamic) if (count > 1)
  for (int64_t j = 0; j < static_cast<int64_t>(count); ++j) {
    errors.run(static_cast<size_t>(j), [&] {
      Segment<Sym>& seg = segs[static_cast<size_t>(j)];
      Cursor c(data, bytes, bits, seg.start);
      seg.alive = code.decode_until(c.in, seg.stop - c.base, seg.spec);  // the reader counts from its base
      seg.exit = c.pos();
    });
  }
  errors.rethrow_first();

  // Join them in order: the true parse enters segment j where it left segment j - 1.
  uint64_t entry = 0;
  size_t total = 0;
  for (auto& seg : segs) {
    entry = join_segment(code, data, bytes, bits, entry, seg);
    if (entry == ~uint64_t{0}) return false;    // the true parse meets a codeword the code lacks
    if (seg.joined && !seg.alive) return false;  // ... after the join (found here early; the next walk would too)
    total += seg.head.size() + (seg.joined ? seg.spec.size() - seg.join : 0);
  }
  if (entry != bits) return false;  // the last codeword runs past the stream
  Sym* out = place(total);
  if (!out) return false;

  // The true symbols to their places.
  std::vector<size_t> offset(count + 1, 0);
  for (size_t j = 0; j < count; ++j)
    offset[j + 1] = offset[j] + segs[j].head.size() + (segs[j].joined ? segs[j].spec.size() - segs[j].join : 0);
#pragma omp parallel for schedule(dynamic) if (count > 1)
  for (int64_t j = 0; j < static_cast<int64_t>(count); ++j) {
    Segment<Sym>& seg = segs[static_cast<size_t>(j)];
    Sym* dst = out + offset[static_cast<size_t>(j)];
    if (!seg.head.empty()) std::memcpy(dst, seg.head.data(), seg.head.size() * sizeof(Sym));
    if (seg.joined && seg.join < seg.spec.size())
      std::memcpy(dst + seg.head.size(), seg.spec.data() + seg.join, (seg.spec.size() - seg.join) * sizeof(Sym));
    std::vector<Sym>().swap(seg.spec);
  }
  return true;
}

template bool decode_stream_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t,
                                     const std::function<uint8_t*(size_t)>&, uint64_t);
template bool decode_stream_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t,
                                     const std::function<uint16_t*(size_t)>&, uint64_t);
template bool decode_stream_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t,
                                     const std::function<int32_t*(size_t)>&, uint64_t);
template bool decode_stream_parallel(const HuffmanDecoder&, const uint8_t*, size_t, uint64_t,
                                     const std::function<uint32_t*(size_t)>&, uint64_t);

}  // namespace nq::coding
