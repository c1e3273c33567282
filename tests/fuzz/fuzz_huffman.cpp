// libFuzzer target: the Huffman decoder on arbitrary bytes (stored code-length table, then a coded stream), and the
// parallel decoder (speculative segments of a size taken from the input) against the serial one on the same bits.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "coding/bit_io.h"
#include "coding/huffman.h"
#include "coding/huffman_parallel.h"
#include "netquant/error.h"

// Input: byte 0-1 alphabet size (LE, mod 65537), byte 2-3 symbol count (LE), then a code-length table and
// the stream, as the .nq payload stores them.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nq::coding;
  if (size < 4) return 0;
  const uint32_t alphabet = (static_cast<uint32_t>(data[0]) | (static_cast<uint32_t>(data[1]) << 8)) % (kMaxAlphabet + 1);
  const size_t count = static_cast<size_t>(data[2]) | (static_cast<size_t>(data[3]) << 8);
  data += 4;
  size -= 4;
  try {
    BitReader table(data, size, 8 * static_cast<uint64_t>(size));
    const auto lengths = read_code_lengths(table, alphabet, "fuzz table");
    const size_t used = static_cast<size_t>((table.consumed_bits() + 7) / 8);
    const HuffmanDecoder dec(lengths, "fuzz stream");
    BitReader stream(data + used, size - used, 8 * static_cast<uint64_t>(size - used));
    // The parallel decoder over the whole rest of the input: it must accept exactly when the serial parse of all
    // of it ends on its last bit without a codeword the code lacks, and then give the same symbols.
    {
      const uint64_t bits = 8 * static_cast<uint64_t>(size - used);
      std::vector<uint32_t> serial;
      BitReader whole(data + used, size - used, bits);
      const bool serial_ok = dec.decode_until(whole, bits, serial) && whole.consumed_bits() == bits;
      std::vector<uint32_t> parallel;
      uint32_t none = 0;  // where an empty result goes (place refuses with nullptr)
      omp_set_num_threads(2);
      const bool parallel_ok = decode_stream_parallel<uint32_t>(
          dec, data + used, size - used, bits,
          [&](size_t total) {
            parallel.resize(total);
            return total ? parallel.data() : &none;
          },
          1 + count % 61);
      if (parallel_ok != serial_ok || (serial_ok && parallel != serial)) __builtin_trap();
    }
    std::vector<uint32_t> out(count);
    dec.decode(stream, out.data(), out.size());
    for (uint32_t s : out)
      if (s >= alphabet || lengths[s] == 0) __builtin_trap();  // decoded a symbol the code does not have
    // Round trip: re-encoding the decoded symbols reproduces the consumed bits.
    if (!out.empty()) {
      HuffmanEncoder enc(lengths);
      BitWriter w;
      enc.encode(out.data(), out.size(), w);
      if (w.bit_count() != stream.consumed_bits()) __builtin_trap();
    }
  } catch (const nq::Error& e) {
    // Hostile bytes must be reported as a bad file; any other code (an internal assert, the writer refusing
    // what the reader accepted) is a bug.
    if (e.code() != nq::ErrorCode::kBadFile) __builtin_trap();
  }
  return 0;
}
