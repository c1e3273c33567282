// libFuzzer target: the rANS table reader and section decoder (src/coding/rans.h) on arbitrary bytes. What parses
// must decode only symbols the table has, and re-encode to the same chunks: a section that decodes ending in the
// coder's start states is the encoder's own output for what it decoded (rANS coding is a bijection there).
#include <cstddef>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "coding/byte_stream.h"
#include "coding/rans.h"
#include "netquant/error.h"

namespace {

struct Head {
  uint64_t chunk_symbols = 0;
  std::vector<uint64_t> chunk_bytes;
  size_t bytes = 0;  // of the head itself
};

// The head of a section rans_check_section accepted (so every read is in bounds).
Head read_head(const uint8_t* data, size_t size, uint64_t n) {
  nq::coding::ByteReader r(data, size, "fuzz head");
  Head h;
  h.chunk_symbols = r.varint("chunk size");
  const uint64_t chunks = n / h.chunk_symbols + (n % h.chunk_symbols != 0);
  for (uint64_t c = 0; c < chunks; ++c) h.chunk_bytes.push_back(r.varint("chunk bytes"));
  h.bytes = size - r.remaining();
  return h;
}

}  // namespace

// Input: bytes 0-1 the alphabet (LE, mod 65537), bytes 2-4 the symbol count (LE, 24 bits), then a rANS table and a
// section as the .nq payload stores them (the section is the rest of the input).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nq::coding;
  if (size < 5) return 0;
  const uint32_t alphabet = (static_cast<uint32_t>(data[0]) | (static_cast<uint32_t>(data[1]) << 8)) % (kRansMaxAlphabet + 1);
  const uint64_t count = static_cast<uint64_t>(data[2]) | (static_cast<uint64_t>(data[3]) << 8) |
                         (static_cast<uint64_t>(data[4]) << 16);
  data += 5;
  size -= 5;
  try {
    ByteReader r(data, size, "fuzz table");
    const RansTable table = rans_read_table(r, alphabet, "fuzz table");
    const uint8_t* section = r.cursor();
    const size_t section_size = r.remaining();
    rans_check_section(section, section_size, count, "fuzz section");  // bounds count before the allocation below
    std::vector<uint16_t> out(static_cast<size_t>(count));
    omp_set_num_threads(2);
    rans_decode(table, section, section_size, out.data(), count, "fuzz section");
    for (uint16_t s : out)
      if (s >= alphabet || table.freq[s] == 0) __builtin_trap();  // a symbol the table does not have
    // Re-encoding gives the same chunk size, chunk lengths and chunk bytes (the head's varints may be non-minimal).
    const Head in = read_head(section, section_size, count);
    const std::vector<uint8_t> again = rans_encode(table, out.data(), count, in.chunk_symbols);
    const Head re = read_head(again.data(), again.size(), count);
    if (re.chunk_bytes != in.chunk_bytes) __builtin_trap();
    const size_t body = again.size() - re.bytes;
    if (body != section_size - in.bytes) __builtin_trap();
    for (size_t i = 0; i < body; ++i)
      if (again[re.bytes + i] != section[in.bytes + i]) __builtin_trap();
  } catch (const nq::Error& e) {
    // Hostile bytes must be reported as a bad file; any other code (an internal assert) is a bug.
    if (e.code() != nq::ErrorCode::kBadFile) __builtin_trap();
  }
  return 0;
}
