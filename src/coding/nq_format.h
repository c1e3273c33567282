// The .nq file, versions 1 and 2: constants, the parsed directory, and the pieces the writer, reader, inspector and
// streaming decompressor share. The byte-level specification is in the README ("The .nq file").
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "netquant/coding.h"
#include "netquant/quantize.h"

namespace nq::coding {

constexpr uint8_t kNqMagic[8] = {0x89, 'N', 'Q', 'Z', '\r', '\n', 0x1a, '\n'};
constexpr uint8_t kNqEndMagic[4] = {'N', 'Q', 'Z', 'E'};
constexpr uint16_t kNqVersionHuffman = 1;  // every index stream Huffman-coded
constexpr uint16_t kNqVersionMax = 2;      // + a coder byte per quantized tensor: Huffman or rANS (rans.h)
constexpr uint8_t kIndexCoderHuffman = 0;
constexpr uint8_t kIndexCoderRans = 1;
constexpr uint16_t kNqFlagSharedTable = 1;  // global scope: one Huffman table for every tensor's indices
constexpr size_t kNqHeaderSize = 48;
constexpr size_t kNqTrailerSize = 8;        // CRC32 of everything before it + end magic
constexpr uint32_t kNqMaxNdim = 32;
constexpr uint64_t kNqMaxNameBytes = 65535;
constexpr uint8_t kStorageQuantized = 0;
constexpr uint8_t kStorageRaw = 1;

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n);  // zlib's CRC-32, crc = 0 to start

// Fuzzing builds (clang's FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION convention) parse past checksum
// mismatches, so mutated inputs reach the structure checks behind them; every other build rejects them.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool kEnforceCrc = false;
#else
constexpr bool kEnforceCrc = true;
#endif

struct NqRecord {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t numel = 0;
  bool quantized = true;
  uint64_t problem_size = 0;
  uint64_t num_problems = 0;
  uint64_t pruned = 0;
  uint64_t payload_offset = 0;
  uint64_t payload_length = 0;
  uint32_t payload_crc = 0;
  uint64_t record_bytes = 0;  // bytes of this record in the directory
};

struct NqDirectory {
  std::string source;  // file name for messages
  uint16_t version = 0;
  uint16_t flags = 0;
  Method method = Method::kHwKmeans;
  Scope scope;
  uint64_t dir_end = 0;  // first payload byte
  uint64_t file_size = 0;
  bool shared_table = false;
  std::vector<float> global_codebook;         // global scope
  std::vector<uint8_t> shared_lengths;        // with kNqFlagSharedTable
  uint64_t global_section_bits = 0;           // bytes·8 of the global codebook + shared table section
  uint32_t header_crc = 0;                    // stored
  uint32_t header_crc_computed = 0;
  uint32_t prefix_crc = 0;                    // CRC32 of bytes [0, dir_end): the whole-file CRC continues it
  std::vector<NqRecord> records;
};

// Random access to the file's bytes (a file read with pread, or memory).
class NqSource {
 public:
  virtual ~NqSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at offset (the caller has bounded offset + n by size()).
  virtual void read(uint64_t offset, size_t n, uint8_t* dst) const = 0;
  const std::string& name() const { return name_; }

 protected:
  std::string name_;
};
std::unique_ptr<NqSource> open_nq_file_source(const std::string& path);  // kIo if it cannot be opened
std::unique_ptr<NqSource> memory_nq_source(const uint8_t* data, size_t size, const std::string& name);

// Reads and validates the header, global section and directory (bounded by the real file size). A header
// CRC mismatch is a kBadFile error unless `tolerate_crc` (inspection), which only records it.
NqDirectory read_nq_directory(const NqSource& src, bool tolerate_crc = false);

// Reads a record's payload bytes and checks its CRC (kBadFile on mismatch unless crc_ok is given).
std::vector<uint8_t> read_nq_payload(const NqSource& src, const NqDirectory& dir, const NqRecord& rec,
                                     bool* crc_ok = nullptr);

struct PayloadLayout {
  bool rans = false;           // the index stream's coder (version 2)
  uint64_t index_bits = 0;
  uint64_t table_bits = 0;     // stored code-length tables (index + gap), bits incl. byte padding
  uint64_t codebook_bits = 0;
  uint64_t position_bits = 0;
  int gap_width = 0;
  int max_k = 0;
};

// Decodes one payload into a QuantizedTensor. Non-global scopes append the tensor's codebooks to
// `codebooks` (first_codebook = where they start); global scope refers to codebook 0. With decode = false
// only the structure is parsed (for inspection) and the tensor holds no data. `elements_left` is the
// remaining NqLimits budget, decremented by this tensor's weights.
QuantizedTensor decode_nq_payload(const NqDirectory& dir, const NqRecord& rec, const std::vector<uint8_t>& payload,
                                  std::vector<std::vector<float>>& codebooks, PayloadLayout* layout, bool decode,
                                  uint64_t* elements_left);

// ---- writer side -------------------------------------------------------------------------------------------
struct TensorEncoding {
  uint64_t index_bits = 0;         // the Huffman stream's bits (the paper's figure, whichever coder the file uses)
  uint64_t index_table_bits = 0;   // stored code-length table (0 when the shared table is used)
  uint64_t index_table_paper = 0;  // Σ_j b_j of the table this tensor uses (the paper's "+1" term)
  uint64_t codebook_bits = 0;      // k·32 for each codebook this tensor uses (global: the shared one)
  uint64_t position_bits = 0;      // gap stream
  uint64_t gap_table_bits = 0;
  uint64_t gap_table_paper = 0;
  uint64_t payload_bytes = 0;
  uint64_t record_bytes = 0;
  bool quantized = true;
  int64_t params = 0;
};
// The file is [header | payloads | trailer]. encode_nq makes the payloads one tensor at a time and hands each
// to the sink as soon as it is made; the header (whose directory holds the payloads' offsets, sizes and CRCs)
// and the trailer (the whole file's CRC) come back in the ModelEncoding when all are done. The header's size is
// known first (header_space), so a file sink can leave room for it and write it last.
class NqByteSink {
 public:
  virtual ~NqByteSink() = default;
  virtual void header_space(uint64_t bytes) = 0;
  virtual void payload(const uint8_t* data, size_t size) = 0;
};
struct ModelEncoding {
  std::vector<uint8_t> header;            // bytes [0, header.size())
  std::array<uint8_t, 8> trailer{};       // bytes [file_size - 8, file_size)
  uint64_t file_size = 0;
  std::vector<TensorEncoding> tensors;
  bool shared_table = false;
  uint64_t shared_table_paper = 0;  // Σ_j b_j of the shared table
  uint64_t global_codebook_bits = 0;
};
// Without a sink only the sizes and statistics are made (account_coding).
ModelEncoding encode_nq(const QuantizedModel& model, NqByteSink* sink = nullptr);

// The trailer: checks the end magic, returns the stored whole-file CRC (of bytes [0, size - 8)).
uint32_t read_nq_trailer(const NqSource& src, const NqDirectory& dir);

// Dequantizes one decoded tensor exactly as QuantizedModel::dequantize does: the codebook value as float32
// (pruned: +0.0f), converted to `dtype` (round to nearest even for f16/bf16, exact for f64). Tensors kept in
// float are converted from their stored dtype.
Tensor dequantize_tensor(const QuantizedTensor& t, const std::vector<std::vector<float>>& codebooks, DType dtype);

// Fills the coding fields of the stats from an encoding (account_coding and the reader share this).
void fill_coding_stats(QuantizedModel& model, const ModelEncoding& enc);

}  // namespace nq::coding
