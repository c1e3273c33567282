// Positions of the kept (unpruned) weights as Huffman-coded gaps with a filler symbol (Deep Compression).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "coding/bit_io.h"
#include "coding/huffman.h"

namespace nq::coding {

// Gap symbols for a field of `width` bits: values 0 .. 2^width - 2 mean "skip that many pruned weights, then
// one kept weight"; the filler 2^width - 1 means "skip 2^width - 1 pruned weights, no kept weight". The
// run of pruned weights after the last kept one is coded too, ended by an ordinary symbol that lands
// exactly one past the end: so every position is accounted for by the stream (a reader can bound a
// tensor's size by its bits before allocating).
constexpr int kMinGapWidth = 1;
constexpr int kMaxGapWidth = 16;

struct GapPlan {
  int width = 0;
  std::vector<uint8_t> lengths;  // 2^width code lengths
  uint64_t stream_bits = 0;      // coded gap symbols
  uint64_t table_bits = 0;       // code_lengths_bits(lengths)
};

// Tries widths 1..16 (up to the first that needs no filler: wider ones cannot be smaller) and keeps the one with the
// fewest bits in total (stream + stored table + the width byte); ties go to the smaller width. A weight is pruned
// where its index is `pruned_index`.
// Index is any stored width of an IndexArray (uint8_t, uint16_t, int32_t) with its pruned mark.
// These passes split the tensor into fixed chunks on the threads (on the calling thread alone inside a parallel
// region); runs that span chunks are measured from each chunk's preceding kept weight.
//
// Where each chunk starts (KeptLayout) is one pass over the indices: a caller running several of these passes on
// one tensor makes it once (kept_layout) and hands it to each; without it each pass makes its own.
struct KeptLayout {
  std::vector<int64_t> prev_kept;     // per chunk: the last kept weight before it (-1: none); then the last of all
  std::vector<uint64_t> kept_before;  // per chunk: the kept weights before it; then the kept total
};
template <class Index>
KeptLayout kept_layout(const Index* indices, size_t n, Index pruned_index);
template <class Index>
GapPlan plan_gaps(const Index* indices, size_t n, Index pruned_index, const KeptLayout* layout = nullptr);
// The gap stream of `indices` coded with the plan: ⌈plan.stream_bits / 8⌉ bytes (encode_stream_parallel).
template <class Index>
std::vector<uint8_t> encode_gaps(const Index* indices, size_t n, Index pruned_index, const GapPlan& plan,
                                 const KeptLayout* layout = nullptr);
// The kept weights' indices in order.
template <class Index>
std::vector<Index> gather_kept(const Index* indices, size_t n, Index pruned_index, const KeptLayout* layout = nullptr);

// What decode_gaps does for a stream of `bits` bits (`bytes` = ⌈bits/8⌉) when kept > 0, on the threads: out[p] =
// kept_values[i] for the i-th kept weight's position p (the rest of `out` is left alone). The stream is decoded by
// decode_stream_parallel, then its symbols are walked in chunks from prefix sums of their advances. Returns false,
// having written nothing, when the stream is not exactly a gap stream of (numel, kept) — the caller then runs
// decode_gaps, which raises the exact error — or when it is too short to split (parallel_decode_pays).
// `segment_bits` and `walk_symbols` are a test's handles on the decoder's segments and the walk's chunks (0: chosen
// here; a test setting them also skips the length check).
template <class Index>
bool scatter_kept_parallel(const HuffmanDecoder& code, const uint8_t* data, size_t bytes, uint64_t bits, int width,
                           uint64_t numel, uint64_t kept, const Index* kept_values, Index* out,
                           uint64_t segment_bits = 0, size_t walk_symbols = 0);

// Decodes the gap stream of a tensor with `numel` weights of which `kept` are kept, calling on_kept(position)
// for each kept weight in increasing order. kBadFile naming `what` on any inconsistency.
template <class OnKept>
void decode_gaps(BitReader& in, const HuffmanDecoder& code, int width, uint64_t numel, uint64_t kept,
                 const std::string& what, OnKept&& on_kept) {
  const uint64_t filler = (uint64_t{1} << width) - 1;
  uint64_t pos = 0, found = 0;
  for (;;) {
    const uint64_t s = code.decode_one(in);
    NQ_CHECK(!in.overrun(), ErrorCode::kBadFile, what << ": truncated position stream");
    if (s == filler) {
      pos += filler;
      NQ_CHECK(pos <= numel, ErrorCode::kBadFile, what << ": position stream runs past " << numel << " weights");
      continue;
    }
    pos += s;
    if (found == kept) {
      NQ_CHECK(pos == numel, ErrorCode::kBadFile,
               what << ": position stream ends at " << pos << ", not at the tensor's " << numel << " weights");
      return;
    }
    NQ_CHECK(pos < numel, ErrorCode::kBadFile, what << ": position stream runs past " << numel << " weights");
    on_kept(pos);
    ++found;
    ++pos;
  }
}

}  // namespace nq::coding
