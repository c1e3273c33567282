// Parses .nq files: sources (file or memory), header/directory validation, payload decoding, inspection.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <unordered_set>

#include "coding/bit_io.h"
#include "coding/byte_stream.h"
#include "coding/huffman.h"
#include "coding/huffman_parallel.h"
#include "coding/nq_format.h"
#include "coding/positions.h"
#include "coding/rans.h"
#include "core/index_scan.h"
#include "core/parallel_for.h"
#include "io/mapped_file.h"
#include "netquant/error.h"

namespace nq::coding {

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n) {
  // zlib takes uInt lengths: feed large buffers in pieces.
  uLong c = crc;
  while (n > 0) {
    const uInt piece = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = ::crc32(c, data, piece);
    data += piece;
    n -= piece;
  }
  return static_cast<uint32_t>(c);
}

namespace {

class FileSource : public NqSource {
 public:
  explicit FileSource(const std::string& path) {
    name_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    NQ_CHECK(fd_ >= 0, ErrorCode::kIo, path << ": cannot open: " << std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      NQ_FAIL(ErrorCode::kIo, path << ": not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, size_t n, uint8_t* dst) const override {
    NQ_ASSERT(offset <= size_ && n <= size_ - offset);
    while (n > 0) {
      const ssize_t r = ::pread(fd_, dst, n, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      NQ_CHECK(r > 0, ErrorCode::kIo, name_ << ": read failed at offset " << offset << ": "
                                            << (r < 0 ? std::strerror(errno) : "file shrank"));
      dst += r;
      n -= static_cast<size_t>(r);
      offset += static_cast<uint64_t>(r);
    }
  }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

class MemorySource : public NqSource {
 public:
  MemorySource(const uint8_t* data, size_t size, const std::string& name) : data_(data), size_(size) {
    name_ = name;
  }
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, size_t n, uint8_t* dst) const override {
    NQ_ASSERT(offset <= size_ && n <= size_ - offset);
    if (n) std::memcpy(dst, data_ + offset, n);
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    NQ_CHECK(d >= 0, ErrorCode::kBadFile, what << ": negative dimension");
    const auto ud = static_cast<uint64_t>(d);
    NQ_CHECK(ud == 0 || n <= (uint64_t{1} << 62) / ud, ErrorCode::kBadFile,
             what << ": shape " << shape_to_string(shape) << " overflows");
    n *= ud;
  }
  return n;
}

}  // namespace

std::unique_ptr<NqSource> open_nq_file_source(const std::string& path) { return std::make_unique<FileSource>(path); }
std::unique_ptr<NqSource> memory_nq_source(const uint8_t* data, size_t size, const std::string& name) {
  return std::make_unique<MemorySource>(data, size, name);
}

NqDirectory read_nq_directory(const NqSource& src, bool tolerate_crc) {
  NqDirectory dir;
  dir.source = src.name();
  const std::string& f = dir.source;
  const uint64_t size = src.size();
  NQ_CHECK(size >= kNqHeaderSize + 4 + kNqTrailerSize, ErrorCode::kBadFile,
           f << ": not a .nq file (only " << size << " bytes)");
  uint8_t head[kNqHeaderSize];
  src.read(0, kNqHeaderSize, head);
  NQ_CHECK(std::memcmp(head, kNqMagic, sizeof kNqMagic) == 0, ErrorCode::kBadFile, f << ": not a .nq file (bad magic)");
  ByteReader hr(head + 8, kNqHeaderSize - 8, f + " header", 8);
  dir.version = hr.u16();
  NQ_CHECK(dir.version >= kNqVersionHuffman && dir.version <= kNqVersionMax, ErrorCode::kBadFile,
           f << ": .nq format version " << dir.version << " is not supported (this build reads versions "
             << kNqVersionHuffman << " to " << kNqVersionMax << ")");
  dir.flags = hr.u16();
  NQ_CHECK((dir.flags & ~kNqFlagSharedTable) == 0, ErrorCode::kBadFile, f << ": unknown flags 0x" << std::hex << dir.flags);
  const uint8_t method = hr.u8();
  NQ_CHECK(method < method_table().size(), ErrorCode::kBadFile, f << ": unknown method " << int(method));
  dir.method = static_cast<Method>(method);
  const uint8_t scope = hr.u8();
  NQ_CHECK(scope <= static_cast<uint8_t>(ScopeKind::kGroup), ErrorCode::kBadFile, f << ": unknown scope " << int(scope));
  dir.scope.kind = static_cast<ScopeKind>(scope);
  NQ_CHECK(hr.u16() == 0, ErrorCode::kBadFile, f << ": reserved header field is not zero");
  const uint64_t group = hr.u64();
  const bool group_ok =
      dir.scope.kind == ScopeKind::kGroup ? group > 0 && group < static_cast<uint64_t>(kMaxGroupSize) : group == 0;
  NQ_CHECK(group_ok, ErrorCode::kBadFile, f << ": bad group size " << group);
  dir.scope.group = static_cast<int64_t>(group);
  const uint32_t count = hr.u32();
  NQ_CHECK(hr.u32() == 0, ErrorCode::kBadFile, f << ": reserved header field is not zero");
  dir.dir_end = hr.u64();
  dir.file_size = hr.u64();
  NQ_CHECK(dir.file_size == size, ErrorCode::kBadFile,
           f << ": truncated or padded: header says " << dir.file_size << " bytes, the file has " << size);
  NQ_CHECK(dir.dir_end >= kNqHeaderSize + 4 && dir.dir_end <= size - kNqTrailerSize, ErrorCode::kBadFile,
           f << ": directory end " << dir.dir_end << " outside the file");
  // Every record takes at least 22 bytes: refuse counts the directory cannot hold before reserving.
  NQ_CHECK(count <= (dir.dir_end - kNqHeaderSize) / 22, ErrorCode::kBadFile,
           f << ": " << count << " tensors cannot fit in a " << dir.dir_end << "-byte directory");

  std::vector<uint8_t> bytes(static_cast<size_t>(dir.dir_end));
  src.read(0, bytes.size(), bytes.data());
  dir.header_crc = static_cast<uint32_t>(bytes[bytes.size() - 4]) | (static_cast<uint32_t>(bytes[bytes.size() - 3]) << 8) |
                   (static_cast<uint32_t>(bytes[bytes.size() - 2]) << 16) |
                   (static_cast<uint32_t>(bytes[bytes.size() - 1]) << 24);
  dir.header_crc_computed = crc32_update(0, bytes.data(), bytes.size() - 4);
  dir.prefix_crc = crc32_update(dir.header_crc_computed, bytes.data() + bytes.size() - 4, 4);
  NQ_CHECK(tolerate_crc || !kEnforceCrc || dir.header_crc == dir.header_crc_computed, ErrorCode::kBadFile,
           f << ": header checksum mismatch (corrupt file)");

  ByteReader r(bytes.data() + kNqHeaderSize, bytes.size() - kNqHeaderSize - 4, f + " directory", kNqHeaderSize);
  dir.shared_table = (dir.flags & kNqFlagSharedTable) != 0;
  NQ_CHECK(!dir.shared_table || dir.scope.kind == ScopeKind::kGlobal, ErrorCode::kBadFile,
           f << ": shared Huffman table flag outside global scope");
  if (dir.scope.kind == ScopeKind::kGlobal) {
    const size_t start = r.pos();
    const uint64_t k = r.varint("global codebook size");
    NQ_CHECK(k <= kMaxAlphabet, ErrorCode::kBadFile, r.where() << ": global codebook of " << k << " levels");
    r.need(4 * k, "global codebook");
    dir.global_codebook.resize(static_cast<size_t>(k));
    for (auto& v : dir.global_codebook) v = r.f32();
    if (dir.shared_table) {
      const uint64_t alpha = r.varint("shared table alphabet");
      NQ_CHECK(alpha == k, ErrorCode::kBadFile,
               r.where() << ": shared table of " << alpha << " symbols for a codebook of " << k);
      BitReader br(r.cursor(), r.remaining(), 8 * static_cast<uint64_t>(r.remaining()));
      dir.shared_lengths = read_code_lengths(br, static_cast<uint32_t>(alpha), f + ": shared Huffman table");
      r.skip((br.consumed_bits() + 7) / 8, "shared Huffman table");
    }
    dir.global_section_bits = 8 * (r.pos() - start);
  }
  uint64_t expect_offset = dir.dir_end;
  dir.records.reserve(count);
  std::unordered_set<std::string> names;
  for (uint32_t i = 0; i < count; ++i) {
    NqRecord rec;
    const size_t start = r.pos();
    const uint64_t name_len = r.varint("tensor name length");
    NQ_CHECK(name_len <= kNqMaxNameBytes, ErrorCode::kBadFile, r.where() << ": tensor name of " << name_len << " bytes");
    const uint8_t* name = r.take(name_len, "tensor name");
    rec.name.assign(reinterpret_cast<const char*>(name), static_cast<size_t>(name_len));
    // Names go into safetensors and JSON headers, which hold UTF-8 only (the writer refuses anything else).
    NQ_CHECK(io::is_valid_utf8(rec.name.data(), rec.name.size()), ErrorCode::kBadFile,
             r.where() << ": tensor name of " << name_len << " bytes is not valid UTF-8");
    const std::string what = f + ": tensor '" + rec.name + "'";
    // A model is a map from names: a second tensor of one name would make every reader choose one.
    NQ_CHECK(names.insert(rec.name).second, ErrorCode::kBadFile, what << " appears twice in the directory");
    const uint8_t dtype = r.u8();
    NQ_CHECK(dtype <= static_cast<uint8_t>(DType::kBool), ErrorCode::kBadFile, what << ": unknown dtype " << int(dtype));
    rec.dtype = static_cast<DType>(dtype);
    const uint8_t storage = r.u8();
    NQ_CHECK(storage == kStorageQuantized || storage == kStorageRaw, ErrorCode::kBadFile,
             what << ": unknown storage " << int(storage));
    rec.quantized = storage == kStorageQuantized;
    NQ_CHECK(!rec.quantized || dtype_is_float(rec.dtype), ErrorCode::kBadFile,
             what << ": quantized tensor with non-float dtype " << dtype_name(rec.dtype));
    const uint8_t ndim = r.u8();
    NQ_CHECK(ndim <= kNqMaxNdim, ErrorCode::kBadFile, what << ": " << int(ndim) << " dimensions");
    for (uint8_t d = 0; d < ndim; ++d) {
      const uint64_t dim = r.varint("dimension");
      NQ_CHECK(dim < (uint64_t{1} << 62), ErrorCode::kBadFile, what << ": dimension " << dim << " too large");
      rec.shape.push_back(static_cast<int64_t>(dim));
    }
    rec.numel = checked_numel(rec.shape, what);
    if (rec.quantized) {
      rec.problem_size = r.varint("problem size");
      NQ_CHECK(rec.problem_size < (uint64_t{1} << 62), ErrorCode::kBadFile,
               what << ": problem size " << rec.problem_size << " too large");
      rec.num_problems = r.varint("problem count");
      rec.pruned = r.varint("pruned count");
      NQ_CHECK(rec.pruned <= rec.numel, ErrorCode::kBadFile,
               what << ": " << rec.pruned << " pruned of " << rec.numel << " weights");
      if (rec.numel > 0) {
        // Exactly ceil(numel / problem_size) problems (a group may be larger than the tensor).
        NQ_CHECK(rec.problem_size > 0 && rec.num_problems == (rec.numel - 1) / rec.problem_size + 1,
                 ErrorCode::kBadFile,
                 what << ": " << rec.num_problems << " codebook problems of " << rec.problem_size << " do not cover "
                      << rec.numel << " weights");
        NQ_CHECK(dir.scope.kind != ScopeKind::kGlobal || rec.num_problems == 1, ErrorCode::kBadFile,
                 what << ": global scope with " << rec.num_problems << " codebook problems");
      }
    }
    rec.payload_offset = r.u64();
    rec.payload_length = r.u64();
    rec.payload_crc = r.u32();
    // Payloads are contiguous, in directory order, between the directory and the trailer.
    NQ_CHECK(rec.payload_offset == expect_offset, ErrorCode::kBadFile,
             what << ": payload offset " << rec.payload_offset << ", expected " << expect_offset);
    NQ_CHECK(rec.payload_length <= size - kNqTrailerSize - rec.payload_offset, ErrorCode::kBadFile,
             what << ": payload of " << rec.payload_length << " bytes at " << rec.payload_offset << " runs past the end");
    if (!rec.quantized) {
      const uint64_t esize = dtype_size(rec.dtype);
      NQ_CHECK(rec.payload_length % esize == 0 && rec.payload_length / esize == rec.numel, ErrorCode::kBadFile,
               what << ": " << rec.payload_length << " bytes of " << dtype_name(rec.dtype) << " for shape "
                    << shape_to_string(rec.shape));
    }
    expect_offset += rec.payload_length;
    rec.record_bytes = r.pos() - start;
    dir.records.push_back(std::move(rec));
  }
  NQ_CHECK(r.remaining() == 0, ErrorCode::kBadFile, r.where() << ": " << r.remaining() << " stray bytes after the directory");
  NQ_CHECK(expect_offset == size - kNqTrailerSize, ErrorCode::kBadFile,
           f << ": payloads end at " << expect_offset << ", the trailer starts at " << size - kNqTrailerSize);
  return dir;
}

std::vector<uint8_t> read_nq_payload(const NqSource& src, const NqDirectory& dir, const NqRecord& rec, bool* crc_ok) {
  NQ_ASSERT(rec.payload_offset + rec.payload_length <= src.size());
  std::vector<uint8_t> bytes(static_cast<size_t>(rec.payload_length));
  src.read(rec.payload_offset, bytes.size(), bytes.data());
  const bool ok = crc32_update(0, bytes.data(), bytes.size()) == rec.payload_crc || (!crc_ok && !kEnforceCrc);
  if (crc_ok)
    *crc_ok = ok;
  else
    NQ_CHECK(ok, ErrorCode::kBadFile, dir.source << ": tensor '" << rec.name << "': payload checksum mismatch");
  return bytes;
}

QuantizedTensor decode_nq_payload(const NqDirectory& dir, const NqRecord& rec, const std::vector<uint8_t>& payload,
                                  std::vector<std::vector<float>>& codebooks, PayloadLayout* layout, bool decode,
                                  uint64_t* elements_left) {
  const std::string what = dir.source + ": tensor '" + rec.name + "'";
  PayloadLayout lay;
  QuantizedTensor t;
  t.name = rec.name;
  t.dtype = rec.dtype;
  t.shape = rec.shape;
  t.quantized = rec.quantized;
  if (decode && elements_left) {
    NQ_CHECK(rec.numel <= *elements_left, ErrorCode::kBadFile,
             what << ": " << rec.numel << " weights exceed the reader's limit");
    *elements_left -= rec.numel;
  }
  if (!rec.quantized) {
    if (decode) {
      t.original = Tensor(rec.name, rec.dtype, rec.shape);
      if (!payload.empty()) std::memcpy(t.original.mutable_data(), payload.data(), payload.size());
    }
    if (layout) *layout = lay;
    return t;
  }
  t.problem_size = static_cast<int64_t>(rec.problem_size);
  t.num_problems = static_cast<int64_t>(rec.num_problems);
  ByteReader r(payload.data(), payload.size(), what + " payload", rec.payload_offset);
  const bool global = dir.scope.kind == ScopeKind::kGlobal;
  // Codebooks.
  const uint64_t ncb = r.varint("codebook count");
  std::vector<uint32_t> ks;
  if (global) {
    NQ_CHECK(ncb == 0, ErrorCode::kBadFile, what << ": own codebooks in global scope");
    t.first_codebook = 0;
    lay.max_k = static_cast<int>(dir.global_codebook.size());
    ks.push_back(static_cast<uint32_t>(dir.global_codebook.size()));
  } else {
    NQ_CHECK(ncb == rec.num_problems, ErrorCode::kBadFile,
             what << ": " << ncb << " codebooks for " << rec.num_problems << " problems");
    // Each codebook takes at least one byte: bound the count before reserving.
    NQ_CHECK(ncb <= r.remaining(), ErrorCode::kBadFile, what << ": truncated codebooks");
    t.first_codebook = static_cast<int64_t>(codebooks.size());
    ks.reserve(static_cast<size_t>(ncb));
    for (uint64_t c = 0; c < ncb; ++c) {
      const uint64_t k = r.varint("codebook size");
      NQ_CHECK(k <= kMaxAlphabet, ErrorCode::kBadFile, what << ": codebook of " << k << " levels");
      r.need(4 * k, "codebook");
      std::vector<float> cb(static_cast<size_t>(k));
      for (auto& v : cb) v = r.f32();
      ks.push_back(static_cast<uint32_t>(k));
      lay.max_k = std::max<int>(lay.max_k, static_cast<int>(k));
      lay.codebook_bits += 32 * k;
      if (decode) codebooks.push_back(std::move(cb));
    }
  }
  // Index code: Huffman (a shared or own table), or, in version 2, rANS.
  const uint64_t kept = rec.numel - rec.pruned;
  if (dir.version >= kNqVersionMax) {
    const uint8_t coder = r.u8();
    NQ_CHECK(coder == kIndexCoderHuffman || coder == kIndexCoderRans, ErrorCode::kBadFile,
             what << ": unknown index coder " << int(coder));
    lay.rans = coder == kIndexCoderRans;
  }
  // A table of the tensor's own (either coder) covers exactly the largest codebook's levels.
  auto own_alphabet = [&](const char* table) {
    const uint64_t alpha = r.varint("index alphabet");
    NQ_CHECK(alpha == static_cast<uint64_t>(lay.max_k), ErrorCode::kBadFile,
             what << ": " << table << " of " << alpha << " symbols for codebooks of at most " << lay.max_k);
    return static_cast<uint32_t>(alpha);
  };
  RansTable rans_table;
  std::vector<uint8_t> lengths;
  const uint8_t* index_data = nullptr;
  size_t index_bytes = 0;
  if (lay.rans) {
    const uint32_t alpha = own_alphabet("rANS table");
    const size_t table_at = r.remaining();
    rans_table = rans_read_table(r, alpha, what);
    lay.table_bits += 8 * (table_at - r.remaining());
    const uint64_t bytes = r.varint("index stream bytes");
    NQ_CHECK(bytes <= r.remaining(), ErrorCode::kBadFile,
             what << ": index stream of " << bytes << " bytes runs past the payload");
    index_data = r.cursor();
    index_bytes = static_cast<size_t>(bytes);
    r.skip(index_bytes, "index stream");
    // Bounds the kept count by the stream's bytes before anything is allocated.
    rans_check_section(index_data, index_bytes, kept, what);
    lay.index_bits = 8 * bytes;
  } else if (dir.shared_table) {
    lengths = dir.shared_lengths;
  } else {
    const uint32_t alpha = own_alphabet("index table");
    BitReader br(r.cursor(), r.remaining(), 8 * static_cast<uint64_t>(r.remaining()));
    lengths = read_code_lengths(br, alpha, what + " index table");
    const uint64_t nbytes = (br.consumed_bits() + 7) / 8;
    r.skip(nbytes, "index table");
    lay.table_bits += 8 * nbytes;
  }
  std::unique_ptr<HuffmanDecoder> index_code;
  if (!lay.rans) {
    lay.index_bits = r.varint("index stream bits");
    NQ_CHECK(lay.index_bits <= 8 * static_cast<uint64_t>(r.remaining()), ErrorCode::kBadFile,
             what << ": index stream of " << lay.index_bits << " bits runs past the payload");
    // Every code is at least one bit long: the kept count is bounded by the stream before anything is allocated.
    NQ_CHECK(kept <= lay.index_bits, ErrorCode::kBadFile,
             what << ": " << kept << " kept weights cannot fit in " << lay.index_bits << " bits");
    // With no kept weight nothing is decoded below, so an index stream there would be bits left unused.
    NQ_CHECK(kept > 0 || lay.index_bits == 0, ErrorCode::kBadFile,
             what << ": index stream has " << lay.index_bits << " unused bits (no weight is kept)");
    index_data = r.cursor();
    index_bytes = static_cast<size_t>((lay.index_bits + 7) / 8);
    r.skip(index_bytes, "index stream");
    if (kept > 0 || decode) index_code = std::make_unique<HuffmanDecoder>(lengths, what + " index code");
  }

  // Positions.
  int width = 0;
  std::vector<uint8_t> gap_lengths;
  const uint8_t* gap_data = nullptr;
  uint64_t gap_bits = 0;
  if (rec.pruned > 0) {
    width = r.u8();
    NQ_CHECK(width >= kMinGapWidth && width <= kMaxGapWidth, ErrorCode::kBadFile, what << ": gap width " << width);
    BitReader br(r.cursor(), r.remaining(), 8 * static_cast<uint64_t>(r.remaining()));
    gap_lengths = read_code_lengths(br, 1u << width, what + " gap table");
    const uint64_t nbytes = (br.consumed_bits() + 7) / 8;
    r.skip(nbytes, "gap table");
    lay.table_bits += 8 * nbytes + 8;
    gap_bits = r.varint("position stream bits");
    NQ_CHECK(gap_bits <= 8 * static_cast<uint64_t>(r.remaining()), ErrorCode::kBadFile,
             what << ": position stream of " << gap_bits << " bits runs past the payload");
    // A gap symbol (>= 1 bit) moves at most 2^width - 1 positions, plus one per kept weight.
    const uint64_t max_span = (kept + 1) + gap_bits * ((uint64_t{1} << width) - 1);
    NQ_CHECK(rec.numel <= max_span, ErrorCode::kBadFile,
             what << ": " << rec.numel << " weights cannot be described by " << gap_bits << " position bits");
    gap_data = r.cursor();
    r.skip((gap_bits + 7) / 8, "position stream");
    lay.position_bits = gap_bits;
    lay.gap_width = width;
  }
  NQ_CHECK(r.remaining() == 0, ErrorCode::kBadFile, what << ": " << r.remaining() << " stray bytes in the payload");
  if (layout) *layout = lay;
  if (!decode) return t;

  t.indices.assign(static_cast<size_t>(rec.numel), kPrunedIndex);
  if (kept > 0) {
    // Symbols are below the index alphabet, which is at most the largest codebook (checked above): the indices
    // are made that wide, so a symbol is never read back as the narrow widths' pruned pattern.
    t.indices.hold_index(std::max(0, lay.max_k - 1));
    BitReader in(index_data, index_bytes, lay.index_bits);
    // A long stream is decoded on the threads (huffman_parallel.h); when that finds the stream malformed, the
    // serial decoder below runs and raises the exact error. rANS chunks decode on the threads and check themselves.
    uint64_t index_consumed = 0;  // bits of the stream the decoded indices took
    auto decode_indices = [&](auto* dst, size_t n) {
      using Sym = std::remove_pointer_t<decltype(dst)>;
      if (lay.rans) {
        rans_decode<Sym>(rans_table, index_data, index_bytes, dst, n, what);
        index_consumed = lay.index_bits;
        return;
      }
      if (parallel_decode_pays(lay.index_bits) &&
          decode_stream_parallel<Sym>(*index_code, index_data, index_bytes, lay.index_bits,
                                      [&](size_t total) { return total == n ? dst : nullptr; })) {
        index_consumed = lay.index_bits;
        return;
      }
      index_code->decode(in, dst, n);
      index_consumed = in.consumed_bits();
    };
    if (rec.pruned == 0) {
      t.indices.visit_mutable([&](auto* data, auto) { decode_indices(data, t.indices.size()); });
    } else {
      // The kept indices at the array's own width, then put at their positions.
      const HuffmanDecoder gap_code(gap_lengths, what + " gap code");
      const size_t gap_bytes = static_cast<size_t>((gap_bits + 7) / 8);
      t.indices.visit_mutable([&](auto* data, auto) {
        using Index = std::remove_pointer_t<decltype(data)>;
        std::vector<Index> kept_idx(static_cast<size_t>(kept));
        decode_indices(kept_idx.data(), kept_idx.size());
        if (scatter_kept_parallel(gap_code, gap_data, gap_bytes, gap_bits, width, rec.numel, kept, kept_idx.data(),
                                  data))
          return;
        BitReader gin(gap_data, gap_bytes, gap_bits);
        size_t next = 0;
        decode_gaps(gin, gap_code, width, rec.numel, kept, what,
                    [&](uint64_t pos) { data[static_cast<size_t>(pos)] = kept_idx[next++]; });
        NQ_CHECK(gin.consumed_bits() == gap_bits, ErrorCode::kBadFile,
                 what << ": position stream has " << gap_bits - gin.consumed_bits() << " unused bits");
      });
    }
    NQ_CHECK(index_consumed == lay.index_bits, ErrorCode::kBadFile,
             what << ": index stream has " << lay.index_bits - index_consumed << " unused bits");
  } else if (rec.pruned > 0) {
    const HuffmanDecoder gap_code(gap_lengths, what + " gap code");
    BitReader gin(gap_data, static_cast<size_t>((gap_bits + 7) / 8), gap_bits);
    decode_gaps(gin, gap_code, width, rec.numel, 0, what, [](uint64_t) {});
    NQ_CHECK(gin.consumed_bits() == gap_bits, ErrorCode::kBadFile,
             what << ": position stream has " << gap_bits - gin.consumed_bits() << " unused bits");
  }
  // Row/group scopes: codebooks may differ in size, so each index is checked against its own.
  const bool uniform_k = std::all_of(ks.begin(), ks.end(), [&](uint32_t k) { return k == ks[0]; });
  if (!global && kept > 0 && !uniform_k) {
    // Per problem on the threads, the largest index that is not the pruned mark (a vectorised scan); then the first
    // offending problem, if any, is walked to name its first offender.
    const size_t ps = static_cast<size_t>(rec.problem_size), n = t.indices.size();
    t.indices.visit([&](const auto* data, auto mark) {
      std::vector<size_t> offender(ks.size());  // per problem: its first offender, or its end
      parallel_for(static_cast<int64_t>(ks.size()), 1, [&](int64_t c) {
        const size_t begin = static_cast<size_t>(c) * ps, end = std::min(n, begin + ps);
        offender[static_cast<size_t>(c)] = first_index_outside(data, begin, end, mark, ks[static_cast<size_t>(c)]);
      });
      for (size_t c = 0; c < ks.size(); ++c) {
        const size_t i = offender[c];
        NQ_CHECK(i == std::min(n, (c + 1) * ps), ErrorCode::kBadFile,
                 what << ": index " << static_cast<int64_t>(data[i]) << " at weight " << i << " outside its codebook of "
                      << ks[c]);
      }
    });
  }
  return t;
}

}  // namespace nq::coding
