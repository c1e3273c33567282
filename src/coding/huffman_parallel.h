// Coding and decoding one Huffman stream on several threads, with the bits of the serial coder.
//
// Encoding: each chunk of symbols is coded on its own, shifted to the bit offset its predecessors' code lengths
// put it at, and the chunks' bytes are joined (the byte two chunks share takes both halves).
//
// Decoding needs no help from the format: each thread starts at a bit
// position of its own, speculatively, and the parses are joined where they meet.
//
// A prefix code resynchronises: a parse started at an arbitrary bit soon reaches a codeword boundary of the true
// parse, and from there both are the same. So the stream is cut into segments at multiples of the code's length
// gcd (every boundary is one), each segment is decoded on the threads from its own start until the first boundary
// at or past the next segment's start, and then, in order, the true parse entering each segment is walked in step
// with that segment's speculative one until their positions meet. Usually that takes a few codewords; if they never
// meet inside the segment (a code whose parses stay out of phase), the true parse decodes the segment itself. The
// result is the serial parse, symbol for symbol, for any thread count and segment size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "coding/huffman.h"

namespace nq::coding {

// Streams shorter than this are decoded by the calling thread alone.
constexpr uint64_t kParallelDecodeMinBits = uint64_t{1} << 20;

// The stream HuffmanEncoder::encode makes of symbols[0, n), as ⌈bits/8⌉ bytes zero-padded (`bits` = its length:
// Σ the symbols' code lengths), coded in chunks on the threads; on the calling thread alone inside a parallel
// region or for short inputs. `chunk_symbols` is a test's handle (0 = chosen from the threads).
template <class Sym>
std::vector<uint8_t> encode_stream_parallel(const HuffmanEncoder& code, const Sym* symbols, size_t n, uint64_t bits,
                                            size_t chunk_symbols = 0);

// Whether a stream of `bits` bits is worth splitting: long enough, more than one thread, not inside a parallel
// region (where the caller's own threads are already busy).
bool parallel_decode_pays(uint64_t bits);

// Decodes the whole stream (`bits` bits of `data`, `bytes` = ⌈bits/8⌉) as codewords that end exactly at bit `bits`.
// `place(total)` is called once with the number of symbols and returns where to write them (nullptr refuses, so a
// caller accepting none returns some other pointer);
// returns true when the symbols were written. Returns false without throwing when the stream is not such a
// sequence (a codeword the code lacks, a last codeword running past `bits`) or `place` refused: the caller then runs
// its serial decoder, which raises the exact error. `segment_bits` (a test's handle; 0 = chosen from the threads)
// sets the segments' length. Runs on the calling thread alone inside a parallel region.
template <class Sym>
bool decode_stream_parallel(const HuffmanDecoder& code, const uint8_t* data, size_t bytes, uint64_t bits,
                            const std::function<Sym*(size_t)>& place, uint64_t segment_bits = 0);

}  // namespace nq::coding
