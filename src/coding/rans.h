// Static range asymmetric numeral systems (rANS, Duda 2013; the byte-wise form of Giesen's ryg_rans) for a
// tensor's index stream: one frequency table per tensor, the symbols cut into chunks that code and decode
// independently (on the threads). Huffman spends at least one bit per weight; at the low rates entropy-constrained
// quantization reaches (well under a bit of entropy per weight) rANS codes within a fraction of a percent of the
// entropy of the table's probabilities.
//
// A chunk interleaves kRansStates = 4 states (symbol i of the chunk goes through state i mod 4), so that a decoder
// overlaps four chains of dependent table reads. Its bytes: the encoder's final 32-bit states (state 0 first, each
// little-endian), then the renormalisation bytes in the order the decoder reads them. A state lives in [L, 256·L),
// L = 2^23; the encoder starts every state at L, so a decoder that ends anywhere else, or with bytes left, has read a
// corrupt chunk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coding/byte_stream.h"
#include "netquant/error.h"

namespace nq::coding {

constexpr int kRansMaxScaleBits = 16;                    // frequencies sum to 2^scale_bits, 1 ≤ scale_bits ≤ 16
constexpr uint32_t kRansLow = 1u << 23;                  // L: the state's lower bound
constexpr uint64_t kRansChunkSymbols = uint64_t{1} << 18;  // what the writer uses
constexpr uint64_t kRansMaxChunkSymbols = uint64_t{1} << 20;  // what a reader accepts (bounds symbols per byte)
constexpr int kRansStates = 4;                          // interleaved states per chunk (symbol i: state i mod 4)
constexpr uint64_t kRansMinChunkBytes = 4 * kRansStates;  // the final states
constexpr uint32_t kRansMaxAlphabet = 1u << 16;          // symbols are decoded as uint16_t

struct RansTable {
  int scale_bits = 0;
  std::vector<uint32_t> freq;   // per symbol; Σ = 2^scale_bits; 0 for a symbol that never occurs
  std::vector<uint32_t> start;  // Σ of the frequencies before each symbol
};

// The frequencies for `counts` (every counted symbol ≥ 1) at each scale from the smallest that fits the counted
// symbols to kRansMaxScaleBits, keeping the one whose section (table + stream at its ideal length + the coder's
// worst-case slack, which grows with the scale) is smallest. Within a
// scale the frequencies minimise the stream's ideal length Σ count·log2(2^scale / freq) exactly. Needs at least one counted symbol and at most 2^16 symbols.
RansTable rans_table_for(const std::vector<uint64_t>& counts);

// Estimated bytes of the section rans_write_section writes for `counts` with `table` and the given chunk size:
// the table, the chunk sizes and the streams at their ideal length (each chunk's stream is within a few bytes of
// it, plus its 4-byte state).
uint64_t rans_estimated_section_bytes(const RansTable& table, const std::vector<uint64_t>& counts,
                                      uint64_t chunk_symbols);

// What rans_write_table writes, in bytes.
uint64_t rans_table_bytes(const RansTable& table);
// Chunks of a section of n symbols: ⌈n / chunk_symbols⌉, without forming n + chunk_symbols − 1 (which wraps for a
// hostile n near 2^64, to a count of 0 that every section would pass).
uint64_t rans_chunk_count(uint64_t n, uint64_t chunk_symbols);

// The table's bytes: scale_bits, then each symbol's frequency as a varint (alphabet symbols in all).
void rans_write_table(ByteWriter& w, const RansTable& table);
// Reads and validates a table of `alphabet` symbols (sum exactly 2^scale_bits, 1 ≤ scale_bits ≤ 16).
RansTable rans_read_table(ByteReader& r, uint32_t alphabet, const std::string& what);

// Codes n symbols (each < table.freq.size() with a non-zero frequency) in chunks of chunk_symbols on the threads:
// [varint chunk_symbols][varint bytes of each chunk][the chunks' bytes]. Sym: uint8_t, uint16_t or int32_t.
template <class Sym>
std::vector<uint8_t> rans_encode(const RansTable& table, const Sym* symbols, uint64_t n, uint64_t chunk_symbols);

// Decodes n symbols from a section rans_encode wrote, which must fill `data` exactly; every malformation (a chunk
// size past the data, a chunk that ends early, leaves bytes or ends in another state) is a kBadFile error naming
// `what`. Before n is trusted for an allocation, rans_check_section bounds it by the section's bytes.
template <class Sym>
void rans_decode(const RansTable& table, const uint8_t* data, size_t size, Sym* out, uint64_t n,
                 const std::string& what);

// Bounds-checks the chunk layout of a section of `size` bytes for n symbols (each chunk holds at least its states,
// so n ≤ size·kRansMaxChunkSymbols/17), without decoding it.
void rans_check_section(const uint8_t* data, size_t size, uint64_t n, const std::string& what);

}  // namespace nq::coding
