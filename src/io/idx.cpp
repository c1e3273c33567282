// IDX files (the MNIST format): magic 00 00 <type> <ndim>, ndim big-endian u32 dims, big-endian data;
// plain or gzip-compressed (detected by the 1f 8b magic), bounded against truncation and zip bombs.
#include <cstring>
#include <limits>
#include <vector>

#include "io/byte_order.h"
#include "io/gzip_stream.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {

namespace {

// Pulls bytes either from a plain buffer or from a gzip stream, with the same bounds checks.
class IdxSource {
 public:
  IdxSource(const uint8_t* data, size_t size, const std::string& source) : data_(data), size_(size) {
    if (io::is_gzip(data, size)) gz_ = std::make_unique<io::GzipStream>(data, size, source);
  }
  bool compressed() const { return gz_ != nullptr; }
  // Bytes still available in a plain buffer (unknown for gzip).
  size_t plain_remaining() const { return size_ - pos_; }
  size_t read(uint8_t* dst, size_t n) {
    if (gz_) return gz_->read(dst, n);
    const size_t k = std::min(n, size_ - pos_);
    if (k) std::memcpy(dst, data_ + pos_, k);
    pos_ += k;
    return k;
  }
  bool at_end() { return gz_ ? gz_->at_end() : pos_ == size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::unique_ptr<io::GzipStream> gz_;
};

struct IdxType {
  uint8_t code;
  DType dtype;
  const char* name;
};
constexpr IdxType kIdxTypes[] = {
    {0x08, DType::kU8, "u8"},   {0x09, DType::kI8, "i8"},   {0x0B, DType::kI16, "i16"},
    {0x0C, DType::kI32, "i32"}, {0x0D, DType::kF32, "f32"}, {0x0E, DType::kF64, "f64"},
};

// The tensor name for an IDX file: its base name without .gz (e.g. "train-images-idx3-ubyte").
std::string idx_tensor_name(const std::string& source) {
  std::string base = source.substr(source.find_last_of('/') == std::string::npos ? 0 : source.find_last_of('/') + 1);
  if (base.size() > 3 && base.compare(base.size() - 3, 3, ".gz") == 0) base.resize(base.size() - 3);
  return base.empty() ? std::string("idx") : base;
}

}  // namespace

Tensor parse_idx(const uint8_t* data, size_t size, const std::string& source) {
  IdxSource in(data, size, source);
  const char* what = in.compressed() ? " (gzip)" : "";
  uint8_t magic[4];
  NQ_CHECK(in.read(magic, 4) == 4, ErrorCode::kBadFile, source << ": IDX file too short for its 4-byte magic" << what);
  NQ_CHECK(magic[0] == 0 && magic[1] == 0, ErrorCode::kBadFile,
           source << ": not an IDX file (magic must start with 00 00, got " << std::hex << int(magic[0]) << " "
                  << int(magic[1]) << ")");
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes)
    if (t.code == magic[2]) type = &t;
  NQ_CHECK(type != nullptr, ErrorCode::kBadFile,
           source << ": unknown IDX element type 0x" << std::hex << int(magic[2])
                  << " (expected 08 u8, 09 i8, 0B i16, 0C i32, 0D f32 or 0E f64)");
  const int ndim = magic[3];
  std::vector<uint8_t> dim_bytes(static_cast<size_t>(ndim) * 4);
  NQ_CHECK(in.read(dim_bytes.data(), dim_bytes.size()) == dim_bytes.size(), ErrorCode::kBadFile,
           source << ": IDX header truncated: " << ndim << " dimensions announced" << what);
  std::vector<int64_t> shape(ndim);
  uint64_t numel = 1;
  for (int i = 0; i < ndim; ++i) {
    shape[i] = io::load_be32(&dim_bytes[4 * i]);
    NQ_CHECK(io::checked_mul(numel, static_cast<uint64_t>(shape[i]), &numel), ErrorCode::kBadFile,
             source << ": IDX dimensions " << shape_to_string(shape) << " overflow");
  }
  const size_t esize = dtype_size(type->dtype);
  uint64_t nbytes = 0;
  NQ_CHECK(io::checked_mul(numel, esize, &nbytes) && nbytes <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 2),
           ErrorCode::kBadFile, source << ": IDX dimensions " << shape_to_string(shape) << " overflow");
  // Bound the allocation by what the input can possibly hold before allocating anything.
  if (in.compressed()) {
    NQ_CHECK(nbytes / io::kMaxDeflateRatio <= size, ErrorCode::kBadFile,
             source << ": IDX header announces " << nbytes << " data bytes, more than a " << size
                    << "-byte gzip stream can hold (corrupt header or zip bomb)");
  } else {
    NQ_CHECK(nbytes <= in.plain_remaining(), ErrorCode::kBadFile,
             source << ": IDX data truncated: shape " << shape_to_string(shape) << " of " << type->name << " needs "
                    << nbytes << " bytes, file has " << in.plain_remaining());
    NQ_CHECK(nbytes == in.plain_remaining(), ErrorCode::kBadFile,
             source << ": " << (in.plain_remaining() - nbytes) << " trailing bytes after the IDX data of shape "
                    << shape_to_string(shape));
  }
  Tensor t(idx_tensor_name(source), type->dtype, shape);
  uint8_t* dst = static_cast<uint8_t*>(t.mutable_data());
  const size_t got = in.read(dst, nbytes);
  NQ_CHECK(got == nbytes, ErrorCode::kBadFile,
           source << ": IDX data truncated: shape " << shape_to_string(shape) << " of " << type->name << " needs "
                  << nbytes << " bytes, got " << got << what);
  NQ_CHECK(in.at_end(), ErrorCode::kBadFile,
           source << ": trailing data after the IDX data of shape " << shape_to_string(shape) << what);
  // IDX stores big-endian; swap to host order in place.
  if (esize > 1 && io::host_is_little_endian()) io::swap_element_bytes(dst, nbytes, esize);
  return t;
}

Tensor read_idx(const std::string& path) {
  const std::string bytes = read_file(path);
  return parse_idx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

}  // namespace nq
