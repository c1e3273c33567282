// rANS for index streams (rans.h): frequency tables, the section's layout, the chunk coder on the threads.
#include "coding/rans.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <tuple>

#include "core/iteration_errors.h"
#include "core/parallel_for.h"
#include "core/target_clones.h"

namespace nq::coding {

namespace {

// Frequencies summing to 2^scale for the counted symbols (each ≥ 1), or empty when more symbols are counted than
// the scale has slots, minimising the ideal length Σ c·log2(2^scale/f). Start from the proportional share rounded
// down (at least 1); add (or remove) single units where they gain most (lose least) until the sum is right; then
// move single units from the symbol that loses least to the one that gains most while that shortens the code. Each
// term is convex in f, so a table no single move improves is optimal (a separable convex problem over the
// integers). Ties go to the lower symbol, so the table is a function of the counts.
std::vector<uint32_t> normalized_frequencies(const std::vector<uint64_t>& counts, uint64_t total, int scale) {
  const uint64_t slots = uint64_t{1} << scale;
  uint64_t used = 0;
  for (uint64_t c : counts) used += c > 0;
  if (used > slots) return {};
  std::vector<uint32_t> freq(counts.size(), 0);
  uint64_t sum = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    const auto share = static_cast<uint64_t>(static_cast<unsigned __int128>(counts[s]) * slots / total);
    freq[s] = static_cast<uint32_t>(std::max<uint64_t>(1, share));
    sum += freq[s];
  }
  // Heaps of candidate moves, stale once the symbol's frequency has changed since (checked when they surface).
  struct Move {
    double bits;  // bits saved by the move (a loss is negative)
    int64_t neg_symbol;
    uint32_t freq;  // the symbol's frequency when this was pushed
    bool operator<(const Move& o) const { return std::tie(bits, neg_symbol) < std::tie(o.bits, o.neg_symbol); }
  };
  std::priority_queue<Move> add, remove;  // the best first
  auto push = [&](size_t s) {
    const double c = static_cast<double>(counts[s]), f = freq[s];
    add.push({c * std::log2((f + 1) / f), -static_cast<int64_t>(s), freq[s]});
    if (freq[s] > 1) remove.push({c * std::log2((f - 1) / f), -static_cast<int64_t>(s), freq[s]});
  };
  auto top = [&](std::priority_queue<Move>& heap) -> const Move* {
    while (!heap.empty() && freq[static_cast<size_t>(-heap.top().neg_symbol)] != heap.top().freq) heap.pop();
    return heap.empty() ? nullptr : &heap.top();
  };
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) push(s);
  for (;;) {
    const Move* a = top(add);
    const Move* r = top(remove);
    if (sum != slots) {  // one unit where it helps most (or hurts least)
      const auto s = static_cast<size_t>(-(sum < slots ? a : r)->neg_symbol);
      if (sum < slots) {
        ++freq[s];
        ++sum;
      } else {
        --freq[s];
        --sum;
      }
      push(s);
      continue;
    }
    // A unit from r's symbol to a's, while it saves more than rounding could fake. The same symbol can never gain
    // more than it loses (convexity), so then no pair can.
    if (!a || !r || a->neg_symbol == r->neg_symbol || a->bits + r->bits <= 1e-9 * a->bits) break;
    const auto to = static_cast<size_t>(-a->neg_symbol), from = static_cast<size_t>(-r->neg_symbol);
    ++freq[to];
    --freq[from];
    push(to);
    push(from);
  }
  return freq;
}

double ideal_stream_bits(const std::vector<uint64_t>& counts, const std::vector<uint32_t>& freq, int scale) {
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) bits += static_cast<double>(counts[s]) * (scale - std::log2(static_cast<double>(freq[s])));
  return bits;
}

// What the byte-wise coder may spend beyond the ideal length: coding x as ⌊x/f⌋·2^scale + (x mod f) + start is at
// most x·2^scale/f + 2^scale − f, and x ≥ 2^(31 − scale)·f after renormalising, so a symbol costs at most
// log2(1 + (2^scale − f)/2^23) bits more than log2(2^scale/f). At scale 16 that reaches 2^-7 bits a symbol, a
// visible share of a rate of 0.3 bits; smaller scales make it vanish (and their decode tables fit the L1 cache).
double coder_slack_bits(const std::vector<uint64_t>& counts, const std::vector<uint32_t>& freq, int scale) {
  const double slots = std::ldexp(1.0, scale);
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) bits += static_cast<double>(counts[s]) * std::log2(1 + (slots - freq[s]) / kRansLow);
  return bits;
}

void fill_starts(RansTable& table) {
  table.start.assign(table.freq.size(), 0);
  uint32_t at = 0;
  for (size_t s = 0; s < table.freq.size(); ++s) {
    table.start[s] = at;
    at += table.freq[s];
  }
}

// A symbol's encoding step without a division: x → ⌊x/f⌋·2^scale + (x mod f) + start equals
// x + bias + q·(2^scale − f) with q = ⌊x/f⌋, and q is a multiply-high by a rounded-up reciprocal and a shift, exact
// for every x < 2^31 (Alverson's integer division by constants; f = 1 takes the all-ones reciprocal and folds the
// −1 it makes into the bias). x_max bounds the state before the step (renormalise below it).
struct EncodeSymbol {
  uint64_t x_max = 0;
  uint32_t reciprocal = 0;
  uint32_t shift = 0;
  uint32_t bias = 0;
  uint32_t complement = 0;
};

std::vector<EncodeSymbol> encode_symbols(const RansTable& table) {
  const int scale = table.scale_bits;
  std::vector<EncodeSymbol> out(table.freq.size());
  for (size_t s = 0; s < table.freq.size(); ++s) {
    const uint32_t f = table.freq[s];
    if (f == 0) continue;  // never coded (x_max 0 would make the encoder emit forever: it asserts instead)
    EncodeSymbol& e = out[s];
    e.x_max = ((uint64_t{kRansLow} >> scale) << 8) * f;
    e.complement = (uint32_t{1} << scale) - f;
    if (f == 1) {
      e.reciprocal = ~0u;
      e.shift = 0;
      e.bias = table.start[s] + (uint32_t{1} << scale) - 1;
    } else {
      uint32_t bits = 0;
      while ((uint64_t{1} << bits) < f) ++bits;  // ⌈log2 f⌉
      e.reciprocal = static_cast<uint32_t>(((uint64_t{1} << (bits + 31)) + f - 1) / f);
      e.shift = bits - 1;
      e.bias = table.start[s];
    }
  }
  return out;
}

// One chunk, coded backwards into the end of `buf` (room for the worst case: a symbol of frequency 1 at scale 16
// emits two bytes). Symbol i of the chunk goes through state i mod kRansStates; the bytes form one stack, so the
// decoder, going forwards, reads each byte where the encoder, going backwards, wrote it. Returns where the chunk's
// bytes begin: the states (state 0 first), then the renormalisation bytes.
// Tables coding at least this many bits per symbol take the grouped loops below (measured crossover: bench_huffman
// BM_Rans*, bench/RESULTS.md "Index coding").
constexpr double kGroupedFromBits = 0.5;

// The table's own rate, Σ p·log2(1/p) with p = f/2^scale: what it codes the symbols it was made for at.
bool codes_grouped(const RansTable& table) {
  const double slots = std::ldexp(1.0, table.scale_bits);
  double bits = 0;
  for (uint32_t f : table.freq)
    if (f) bits += f / slots * std::log2(slots / f);
  return bits >= kGroupedFromBits;
}

// How many bytes a state at x emits before coding a symbol of bound x_max: x ≥ x_max·2^8k for k = 0, 1. Never more
// than two: x < 2^31 and x_max ≥ 2^(31 − scale) ≥ 2^15.
inline uint32_t encode_byte_count(uint32_t x, uint64_t x_max) {
  return static_cast<uint32_t>(x >= x_max) + static_cast<uint32_t>(x >= (x_max << 8));
}

// The coding step once the state is below x_max.
inline uint32_t encode_step(uint32_t x, const EncodeSymbol& e) {
  const auto q = static_cast<uint32_t>((static_cast<uint64_t>(x) * e.reciprocal) >> 32) >> e.shift;
  return x + e.bias + q * e.complement;
}

// One chunk, coded backwards into the end of `buf` (room for the worst case: a symbol of frequency 1 at scale 16
// emits two bytes). Symbol i of the chunk goes through state i mod kRansStates; the bytes form one stack, so the
// decoder, going forwards, reads each byte where the encoder, going backwards, wrote it. Returns where the chunk's
// bytes begin: the states (state 0 first), then the renormalisation bytes.
//
// A whole group of kRansStates symbols (i = 4g + 3 down to 4g) takes its states' byte counts first, then each
// state's place in the stack from their running sum: the states' chains no longer wait on one another through the
// stack pointer. Each state stores its two low bytes unconditionally in processing order, so a state that emits
// fewer is overwritten by the next one's; what lands below the group's last byte is overwritten by the next group
// or by the states at the end (16 bytes; the worst case leaves room for them below).
//
// Below kGroupedFromBits per symbol a state emits a byte so rarely that the one-symbol loop's branch is nearly
// always predicted, and the group's unconditional stores cost more than it saves: such tables (`grouped` false)
// take the one-symbol loop throughout. Both loops write the same bytes.
//
// Cloned for x86-64-v3, as decode_groups.
template <class Sym>
NQ_TARGET_CLONES_V3 uint8_t* encode_chunk(const std::vector<EncodeSymbol>& symbols_table, const Sym* symbols,
                                       uint64_t count, uint8_t* buf_end, bool grouped) {
  static_assert(kRansStates == 4, "the grouped step below is written for four states");
  uint32_t x[kRansStates];
  std::fill_n(x, kRansStates, kRansLow);
  uint8_t* p = buf_end;
  const EncodeSymbol* table = symbols_table.data();
  uint64_t i = count;
  const uint64_t grouped_end = grouped ? count / kRansStates * kRansStates : 0;
  while (i > grouped_end) {  // the last, partial group (or every symbol), one symbol at a time
    --i;
    uint32_t& xs = x[i % kRansStates];
    const EncodeSymbol& e = table[static_cast<size_t>(symbols[i])];
    NQ_ASSERT(e.x_max != 0);  // a symbol the table was not made for
    while (xs >= e.x_max) {
      *--p = static_cast<uint8_t>(xs);
      xs >>= 8;
    }
    xs = encode_step(xs, e);
  }
  while (i > 0) {
    i -= kRansStates;
    const EncodeSymbol* e[kRansStates];
    uint32_t emit[kRansStates];
    for (int k = 0; k < kRansStates; ++k) {
      e[k] = &table[static_cast<size_t>(symbols[i + k])];
      NQ_ASSERT(e[k]->x_max != 0);
      emit[k] = encode_byte_count(x[k], e[k]->x_max);
    }
    // Processing order is state 3 first (the highest index): its bytes lie highest in the stack.
    uint32_t below = 0;
    for (int k = kRansStates; k-- > 0;) {
      uint8_t* at = p - below;
      at[-1] = static_cast<uint8_t>(x[k]);
      at[-2] = static_cast<uint8_t>(x[k] >> 8);
      below += emit[k];
      x[k] = encode_step(x[k] >> (8 * emit[k]), *e[k]);
    }
    p -= below;
  }
  for (int k = kRansStates; k-- > 0;) {
    p -= 4;
    for (int b = 0; b < 4; ++b) p[b] = static_cast<uint8_t>(x[k] >> (8 * b));
  }
  return p;
}

// The decoder's grouped loop over one chunk's symbols i.. (up to b1), while 8 bytes remain before `end` (a group
// reads at most that many): every state steps, then counts the bytes it takes, and reads them where the running
// count puts it in the stream. So the states' chains meet only in that sum, not through a pointer each one moves in
// turn. Returns where it stopped; x and p are left for the one-symbol loop. Cloned for x86-64-v3, whose BMI2 shifts
// by a register are one micro-op (the baseline's take up to three): 3–5% faster on the Xeon VM, and encode_chunk
// 11–12%. Not for v4: GCC vectorises encode_chunk's groups with AVX-512 there, at half the speed.
template <class Sym>
NQ_TARGET_CLONES_V3 uint64_t decode_groups(const uint32_t* step_of_slot, const uint16_t* symbol_of_slot, int scale,
                                        uint32_t* x, const uint8_t*& p, const uint8_t* end, Sym* out, uint64_t i,
                                        uint64_t b1) {
  const uint32_t mask = (uint32_t{1} << scale) - 1;
  for (; i + kRansStates <= b1 && end - p >= 2 * kRansStates; i += kRansStates) {
    uint32_t take[kRansStates];
    for (int k = 0; k < kRansStates; ++k) {
      const uint32_t slot = x[k] & mask, step = step_of_slot[slot];
      out[i + k] = static_cast<Sym>(symbol_of_slot[slot]);
      x[k] = ((step >> 16) + 1) * (x[k] >> scale) + (step & 0xffff);
      take[k] = static_cast<uint32_t>(x[k] < kRansLow) + static_cast<uint32_t>(x[k] < (kRansLow >> 8));
    }
    uint32_t at = 0;
    for (int k = 0; k < kRansStates; ++k) {
      const uint32_t two = static_cast<uint32_t>(p[at]) << 8 | p[at + 1];
      x[k] = (x[k] << (8 * take[k])) | (two >> (8 * (2 - take[k])));
      at += take[k];
    }
    p += at;
  }
  return i;
}

// Sections this short are coded on the calling thread: the threads' start-up costs more than the chunks.
constexpr uint64_t kRansParallelMinSymbols = uint64_t{1} << 19;
int64_t serial_chunks(uint64_t n, uint64_t chunks) {
  return n < kRansParallelMinSymbols ? static_cast<int64_t>(chunks) : 1;
}

struct ChunkSpan {
  size_t offset = 0, size = 0;  // within the section
};

struct ChunkLayout {
  uint64_t chunk_symbols = 1;
  std::vector<ChunkSpan> spans;
};

// Parses the section's head: chunk_symbols, the chunk sizes; checks they tile the rest exactly.
ChunkLayout parse_chunks(const uint8_t* data, size_t size, uint64_t n, const std::string& what) {
  ByteReader r(data, size, what + " index stream");
  const uint64_t chunk_symbols = r.varint("rANS chunk size");
  NQ_CHECK(chunk_symbols >= 1 && chunk_symbols <= kRansMaxChunkSymbols, ErrorCode::kBadFile,
           what << ": rANS chunks of " << chunk_symbols << " symbols (1 to " << kRansMaxChunkSymbols << " allowed)");
  const uint64_t chunks = rans_chunk_count(n, chunk_symbols);
  // Each chunk takes a size byte and its states: bound the count before reserving.
  NQ_CHECK(chunks <= r.remaining() / (1 + kRansMinChunkBytes), ErrorCode::kBadFile,
           what << ": " << n << " weights need " << chunks << " rANS chunks, more than " << r.remaining()
                << " bytes can hold");
  ChunkLayout layout;
  layout.chunk_symbols = chunk_symbols;
  auto& spans = layout.spans;
  spans.resize(static_cast<size_t>(chunks));
  uint64_t total = 0;
  for (auto& span : spans) {
    const uint64_t bytes = r.varint("rANS chunk bytes");
    NQ_CHECK(bytes >= kRansMinChunkBytes && bytes <= r.remaining(), ErrorCode::kBadFile,
             what << ": rANS chunk of " << bytes << " bytes");
    span.size = static_cast<size_t>(bytes);
    total += bytes;
  }
  NQ_CHECK(total == r.remaining(), ErrorCode::kBadFile,
           what << ": rANS chunks take " << total << " bytes of the " << r.remaining() << " left in the stream");
  size_t at = size - r.remaining();
  for (auto& span : spans) {
    span.offset = at;
    at += span.size;
  }
  return layout;
}

}  // namespace

uint64_t rans_table_bytes(const RansTable& table) {
  uint64_t bytes = 1;  // scale_bits
  for (uint32_t f : table.freq) bytes += varint_size(f);
  return bytes;
}

uint64_t rans_chunk_count(uint64_t n, uint64_t chunk_symbols) {
  return n / chunk_symbols + (n % chunk_symbols != 0);
}

RansTable rans_table_for(const std::vector<uint64_t>& counts) {
  NQ_ASSERT(counts.size() <= (size_t{1} << 16));
  uint64_t total = 0, used = 0;
  for (uint64_t c : counts) {
    total += c;
    used += c > 0;
  }
  NQ_ASSERT(used > 0);
  int min_scale = 1;
  while ((uint64_t{1} << min_scale) < used) ++min_scale;
  RansTable best;
  double best_bits = 0;
  for (int scale = min_scale; scale <= kRansMaxScaleBits; ++scale) {
    RansTable t;
    t.scale_bits = scale;
    t.freq = normalized_frequencies(counts, total, scale);
    const double bits = ideal_stream_bits(counts, t.freq, scale) + coder_slack_bits(counts, t.freq, scale) +
                        8.0 * static_cast<double>(rans_table_bytes(t));
    if (best.freq.empty() || bits < best_bits) {
      best = std::move(t);
      best_bits = bits;
    }
  }
  fill_starts(best);
  return best;
}

uint64_t rans_estimated_section_bytes(const RansTable& table, const std::vector<uint64_t>& counts,
                                      uint64_t chunk_symbols) {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  const uint64_t chunks = rans_chunk_count(n, chunk_symbols);
  const auto stream = static_cast<uint64_t>(std::ceil(ideal_stream_bits(counts, table.freq, table.scale_bits) / 8));
  const uint64_t per_chunk = chunks ? stream / chunks + kRansMinChunkBytes : 0;
  const uint64_t section = varint_size(chunk_symbols) + chunks * varint_size(per_chunk) + stream +
                           chunks * kRansMinChunkBytes;
  return rans_table_bytes(table) + varint_size(section) + section;
}

void rans_write_table(ByteWriter& w, const RansTable& table) {
  w.u8(static_cast<uint8_t>(table.scale_bits));
  for (uint32_t f : table.freq) w.varint(f);
}

RansTable rans_read_table(ByteReader& r, uint32_t alphabet, const std::string& what) {
  NQ_CHECK(alphabet <= kRansMaxAlphabet, ErrorCode::kBadFile, what << ": rANS table of " << alphabet << " symbols");
  RansTable t;
  t.scale_bits = r.u8();
  NQ_CHECK(t.scale_bits >= 1 && t.scale_bits <= kRansMaxScaleBits, ErrorCode::kBadFile,
           what << ": rANS scale of " << t.scale_bits << " bits (1 to " << kRansMaxScaleBits << " allowed)");
  const uint64_t slots = uint64_t{1} << t.scale_bits;
  NQ_CHECK(alphabet <= r.remaining(), ErrorCode::kBadFile, what << ": truncated rANS table");  // a byte per symbol
  t.freq.resize(alphabet);
  uint64_t sum = 0;
  for (auto& f : t.freq) {
    const uint64_t v = r.varint("rANS frequency");
    NQ_CHECK(v <= slots - sum, ErrorCode::kBadFile,
             what << ": rANS frequencies sum past 2^" << t.scale_bits);
    f = static_cast<uint32_t>(v);
    sum += v;
  }
  NQ_CHECK(sum == slots, ErrorCode::kBadFile,
           what << ": rANS frequencies sum to " << sum << ", not 2^" << t.scale_bits);
  fill_starts(t);
  return t;
}

template <class Sym>
std::vector<uint8_t> rans_encode(const RansTable& table, const Sym* symbols, uint64_t n, uint64_t chunk_symbols) {
  NQ_ASSERT(chunk_symbols >= 1 && chunk_symbols <= kRansMaxChunkSymbols);
  const uint64_t chunks = rans_chunk_count(n, chunk_symbols);
  const std::vector<EncodeSymbol> enc = encode_symbols(table);
  const bool grouped = codes_grouped(table);
  std::vector<std::vector<uint8_t>> coded(static_cast<size_t>(chunks));
  parallel_for(static_cast<int64_t>(chunks), serial_chunks(n, chunks), [&](int64_t c) {
    const uint64_t b = static_cast<uint64_t>(c) * chunk_symbols, count = std::min(n, b + chunk_symbols) - b;
    // Each thread codes into its own scratch, kept from chunk to chunk and call to call (at most 2 bytes a symbol
    // of the largest chunk, 2 MiB), then copies out the bytes it used: a fresh worst-case buffer per chunk cost
    // its page faults and a move of the bytes to its front.
    thread_local std::vector<uint8_t> scratch;
    const size_t room = static_cast<size_t>(2 * count + kRansMinChunkBytes);
    if (scratch.size() < room) scratch.resize(room);
    uint8_t* end = scratch.data() + room;
    const uint8_t* begin = encode_chunk(enc, symbols + b, count, end, grouped);
    coded[static_cast<size_t>(c)].assign(begin, static_cast<const uint8_t*>(end));
  });
  ByteWriter w;
  size_t total = 10 * (coded.size() + 1);  // the varints, at their longest
  for (const auto& chunk : coded) total += chunk.size();
  w.reserve(total);
  w.varint(chunk_symbols);
  for (const auto& chunk : coded) w.varint(chunk.size());
  for (const auto& chunk : coded) w.raw(chunk.data(), chunk.size());
  return std::move(w.bytes());
}

void rans_check_section(const uint8_t* data, size_t size, uint64_t n, const std::string& what) {
  parse_chunks(data, size, n, what);
}

template <class Sym>
void rans_decode(const RansTable& table, const uint8_t* data, size_t size, Sym* out, uint64_t n,
                 const std::string& what) {
  const ChunkLayout layout = parse_chunks(data, size, n, what);
  const std::vector<ChunkSpan>& spans = layout.spans;
  const uint64_t chunk_symbols = layout.chunk_symbols;
  // slot → symbol, for the 2^scale slots.
  const int scale = table.scale_bits;
  const uint32_t mask = (uint32_t{1} << scale) - 1;
  // Per slot: its symbol, and the step's constants packed in one word ((freq − 1) << 16 | slot − start), so the
  // state's chain of dependent loads is one table read.
  std::vector<uint16_t> symbol_of_slot(size_t{1} << scale);
  std::vector<uint32_t> step_of_slot(size_t{1} << scale);
  for (size_t s = 0; s < table.freq.size(); ++s)
    for (uint32_t k = 0; k < table.freq[s]; ++k) {
      symbol_of_slot[table.start[s] + k] = static_cast<uint16_t>(s);
      step_of_slot[table.start[s] + k] = (table.freq[s] - 1) << 16 | k;
    }
  const bool grouped = codes_grouped(table);
  IterationErrors errors;
  parallel_for(static_cast<int64_t>(spans.size()), serial_chunks(n, spans.size()), [&](int64_t c) {
    errors.run(static_cast<size_t>(c), [&] {
      const uint8_t* p = data + spans[static_cast<size_t>(c)].offset;
      const uint8_t* end = p + spans[static_cast<size_t>(c)].size;
      uint32_t x[kRansStates];
      for (uint32_t& xs : x) {
        xs = 0;
        for (int b = 0; b < 4; ++b) xs |= static_cast<uint32_t>(p[b]) << (8 * b);
        p += 4;
        NQ_CHECK(xs >= kRansLow && xs < (kRansLow << 8), ErrorCode::kBadFile,
                 what << ": rANS chunk " << c << " starts in state " << xs);
      }
      // One symbol through state k. x < 2^31 always (the start is checked, renormalising keeps it), so
      // freq·(x >> scale) + slot − start < 2^31. Renormalising reads at most two bytes (x ≥ 2^(31 − scale) before,
      // scale ≤ 16); away from the chunk's end both are read without branches (how many bytes a symbol takes is as
      // random as the symbol), the last bytes through the checked loop.
      auto decode_one = [&](uint32_t& xs, Sym* dst) {
        const uint32_t slot = xs & mask, step = step_of_slot[slot];
        *dst = static_cast<Sym>(symbol_of_slot[slot]);
        xs = ((step >> 16) + 1) * (xs >> scale) + (step & 0xffff);
        if (end - p >= 2) {
          const uint32_t one = xs < kRansLow;
          xs = one ? (xs << 8) | p[0] : xs;
          p += one;
          const uint32_t two = xs < kRansLow;
          xs = two ? (xs << 8) | p[0] : xs;
          p += two;
        } else {
          while (xs < kRansLow) {
            NQ_CHECK(p < end, ErrorCode::kBadFile, what << ": rANS chunk " << c << " ends early");
            xs = (xs << 8) | *p++;
          }
        }
      };
      const uint64_t b0 = static_cast<uint64_t>(c) * chunk_symbols, b1 = std::min(n, b0 + chunk_symbols);
      uint64_t i = b0;
      if (grouped) i = decode_groups(step_of_slot.data(), symbol_of_slot.data(), scale, x, p, end, out, i, b1);
      for (; i + kRansStates <= b1; i += kRansStates)  // the chunk's last bytes, or low rates (encode_chunk)
        for (int k = 0; k < kRansStates; ++k) decode_one(x[k], out + i + k);
      for (int k = 0; i < b1; ++i, ++k) decode_one(x[k], out + i);
      bool at_start = p == end;
      for (uint32_t xs : x) at_start = at_start && xs == kRansLow;
      NQ_CHECK(at_start, ErrorCode::kBadFile,
               what << ": rANS chunk " << c << " does not end where it was coded (corrupt stream)");
    });
  });
  errors.rethrow_first();
}

#define NQ_RANS_INSTANTIATE(Sym)                                                                               \
  template std::vector<uint8_t> rans_encode<Sym>(const RansTable&, const Sym*, uint64_t, uint64_t);          \
  template void rans_decode<Sym>(const RansTable&, const uint8_t*, size_t, Sym*, uint64_t, const std::string&);
NQ_RANS_INSTANTIATE(uint8_t)
NQ_RANS_INSTANTIATE(uint16_t)
NQ_RANS_INSTANTIATE(int32_t)
#undef NQ_RANS_INSTANTIATE

}  // namespace nq::coding
