// safetensors: reader enforcing the reference implementation's validation rules (header size, JSON object,
// dtypes, shapes, contiguous offsets covering the whole buffer, no duplicates), and a writer matching its layout.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/byte_order.h"
#include "io/mapped_file.h"
#include "io/sharded_checkpoint.h"
#include "io/strict_json.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {

namespace {

// std::map-backed: ordered_json's linear lookups would make a hostile 100 MB header quadratic. File order
// comes from the offsets; JSON key order (recorded while parsing) only breaks ties between empty tensors.
using Json = nlohmann::json;

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // the reference's MAX_HEADER_SIZE
// dtypes the format defines that netquant cannot hold: a valid file, but kUnsupported rather than kBadFile.
const char* const kForeignDtypes[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
                                      "U16",     "U32",     "U64",     "C64"};

struct Header {
  std::vector<SafetensorsEntry> entries;  // sorted by offset (file order)
  std::map<std::string, std::string> metadata;
};

const char* json_type(const Json& j) { return j.type_name(); }

// A JSON value that must be a non-negative integer fitting int64 (shape dims, offsets). Written without a sign:
// nlohmann reads "-0" as a signed 0, which the reference reader (serde's usize) refuses, and so do we.
bool as_u63(const Json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

Header parse_header(const uint8_t* bytes, uint64_t n, uint64_t file_size, const std::string& src) {
  io::StrictJson parsed =
      io::parse_strict_json(reinterpret_cast<const char*>(bytes), n, src + ": safetensors header");
  const Json& root = parsed.root;
  const std::vector<std::string>& key_order = parsed.top_level_keys;
  NQ_CHECK(root.is_object(), ErrorCode::kBadFile,
           src << ": safetensors header must be a JSON object, got " << json_type(root));

  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file_size - data_start;
  Header h;
  for (const std::string& name : key_order) {
    const Json& info = root.at(name);
    if (name == "__metadata__") {
      if (info.is_null()) continue;
      NQ_CHECK(info.is_object(), ErrorCode::kBadFile,
               src << ": __metadata__ must be an object of strings, got " << json_type(info));
      for (const auto& [k, v] : info.items()) {
        NQ_CHECK(v.is_string(), ErrorCode::kBadFile,
                 src << ": __metadata__ value of '" << k << "' must be a string, got " << json_type(v));
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = src + ": tensor '" + name + "'";
    NQ_CHECK(info.is_object(), ErrorCode::kBadFile, where << ": entry must be a JSON object, got " << json_type(info));
    const auto dt = info.find("dtype");
    NQ_CHECK(dt != info.end() && dt->is_string(), ErrorCode::kBadFile, where << ": missing or non-string 'dtype'");
    const std::string dname = dt->get<std::string>();
    const auto dtype = dtype_from_name(dname);
    if (!dtype) {
      const bool foreign = std::any_of(std::begin(kForeignDtypes), std::end(kForeignDtypes),
                                       [&](const char* f) { return dname == f; });
      NQ_CHECK(!foreign, ErrorCode::kUnsupported,
               where << ": dtype " << dname
                     << " is not supported (netquant reads F32 F16 BF16 F64 I8 U8 I16 I32 I64 BOOL)");
      NQ_FAIL(ErrorCode::kBadFile, where << ": unknown dtype '" << dname << "'");
    }
    const auto sh = info.find("shape");
    NQ_CHECK(sh != info.end() && sh->is_array(), ErrorCode::kBadFile, where << ": missing or non-array 'shape'");
    SafetensorsEntry e{name, *dtype, {}, 0, 0, src};
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      uint64_t dim;
      NQ_CHECK(as_u63(d, &dim), ErrorCode::kBadFile,
               where << ": shape entries must be non-negative integers, got "
                     << (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() == 0 ? "-0" : d.dump()));
      e.shape.push_back(static_cast<int64_t>(dim));
      NQ_CHECK(io::checked_mul(numel, dim, &numel), ErrorCode::kBadFile,
               where << ": shape " << shape_to_string(e.shape) << " overflows");
    }
    const auto off = info.find("data_offsets");
    uint64_t begin = 0, end = 0;
    NQ_CHECK(off != info.end() && off->is_array() && off->size() == 2 && as_u63((*off)[0], &begin) &&
                 as_u63((*off)[1], &end),
             ErrorCode::kBadFile, where << ": 'data_offsets' must be [begin, end] of non-negative integers");
    NQ_CHECK(begin <= end, ErrorCode::kBadFile,
             where << ": data_offsets [" << begin << ", " << end << "] end before they begin");
    uint64_t nbytes = 0;
    NQ_CHECK(io::checked_mul(numel, dtype_size(*dtype), &nbytes) &&
                 numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
             ErrorCode::kBadFile, where << ": shape " << shape_to_string(e.shape) << " overflows");
    NQ_CHECK(nbytes == end - begin, ErrorCode::kBadFile,
             where << ": shape " << shape_to_string(e.shape) << " of " << dname << " needs " << nbytes
                   << " bytes but data_offsets [" << begin << ", " << end << "] hold " << (end - begin));
    NQ_CHECK(end <= data_size, ErrorCode::kBadFile,
             where << ": data_offsets [" << begin << ", " << end << "] run past the end of the file ("
                   << data_size << " data bytes after the header)");
    e.begin = data_start + begin;
    e.end = data_start + end;
    h.entries.push_back(std::move(e));
  }

  // Tensors must tile the data buffer exactly: sorted, no gaps, no overlaps, nothing after the last.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = data_start;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : h.entries) {
    if (e.begin != expected) {
      if (prev == nullptr)
        NQ_FAIL(ErrorCode::kBadFile, src << ": tensor '" << e.name << "' is first in the file but starts at data offset "
                                         << (e.begin - data_start) << ", not 0");
      NQ_FAIL(ErrorCode::kBadFile,
              src << ": tensor '" << e.name << "' starts at data offset " << (e.begin - data_start)
                  << " but the previous tensor '" << prev->name << "' ends at " << (expected - data_start)
                  << (e.begin < expected ? " (overlapping tensors)" : " (gap between tensors)"));
    }
    expected = e.end;
    prev = &e;
  }
  NQ_CHECK(expected == file_size, ErrorCode::kBadFile,
           src << ": tensor data ends at data offset " << (expected - data_start) << " but the file holds "
               << data_size << " data bytes (" << (file_size - expected) << " unaccounted trailing bytes)");
  return h;
}

// Checks the 8-byte length prefix against the limit and the file size; returns the header length.
uint64_t check_prefix(const uint8_t* first8, uint64_t file_size, const std::string& src) {
  NQ_CHECK(file_size >= 8, ErrorCode::kBadFile,
           src << ": file is " << file_size << " bytes, too short for the 8-byte safetensors header length");
  const uint64_t n = io::load_le64(first8);
  NQ_CHECK(n <= kMaxHeaderSize, ErrorCode::kBadFile,
           src << ": safetensors header length " << n << " exceeds the limit of " << kMaxHeaderSize << " bytes");
  NQ_CHECK(n <= file_size - 8, ErrorCode::kBadFile,
           src << ": safetensors header length " << n << " runs past the end of the file (" << file_size << " bytes)");
  return n;
}

void check_writable_name(const std::string& s, const char* what) {
  NQ_CHECK(io::is_valid_utf8(s.data(), s.size()), ErrorCode::kInvalidArgument,
           "safetensors " << what << " '" << s << "' is not valid UTF-8");
}

std::string build_header(const TensorSet& tensors) {
  std::vector<SafetensorsLayout> layout;
  layout.reserve(tensors.size());
  for (const Tensor& t : tensors) layout.push_back({t.name(), t.dtype(), t.shape()});
  return safetensors_header(layout, tensors.metadata());
}

}  // namespace

// The JSON header in insertion order, padded with spaces so the data starts 8-byte aligned (as the reference
// writer does). Assembled entry by entry: nlohmann's ordered_json would be quadratic in the tensor count.
std::string safetensors_header(const std::vector<SafetensorsLayout>& layout,
                               const std::map<std::string, std::string>& metadata) {
  NQ_ASSERT_MSG(io::host_is_little_endian(), "safetensors writer needs a little-endian host");
  std::string text = "{";
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) {
      check_writable_name(k, "metadata key");
      check_writable_name(v, "metadata value");
      meta[k] = v;
    }
    text += "\"__metadata__\":" + meta.dump();
  }
  uint64_t offset = 0;
  for (const SafetensorsLayout& t : layout) {
    check_writable_name(t.name, "tensor name");
    NQ_CHECK(t.name != "__metadata__", ErrorCode::kInvalidArgument,
             "a tensor cannot be named '__metadata__' in safetensors");
    const uint64_t end = offset + static_cast<uint64_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
    const Json entry = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    if (text.size() > 1) text += ",";
    text += Json(t.name).dump() + ":" + entry.dump();
    offset = end;
  }
  text += "}";
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

TensorSet parse_safetensors(const uint8_t* data, size_t size, const std::string& source,
                            std::shared_ptr<const void> keepalive) {
  const uint64_t n = check_prefix(data, size, source);
  Header h = parse_header(data + 8, n, size, source);
  TensorSet out;
  for (auto& e : h.entries) {
    const uint8_t* p = data + e.begin;
    const size_t align = dtype_size(e.dtype);
    Tensor t;
    if (reinterpret_cast<uintptr_t>(p) % align == 0) {
      t = Tensor::view(e.name, e.dtype, e.shape, p, keepalive);
    } else {
      // Writers other than the reference may leave data unaligned; typed access needs an aligned copy.
      t = Tensor(e.name, e.dtype, e.shape);
      if (t.nbytes()) std::memcpy(t.mutable_data(), p, t.nbytes());
    }
    t.set_source(source);
    out.add(std::move(t));
  }
  out.metadata() = std::move(h.metadata);
  return out;
}

TensorSet read_safetensors(const std::string& path) {
  auto map = io::MappedFile::open(path);
  return parse_safetensors(map->data(), map->size(), path, map);
}

std::vector<SafetensorsEntry> read_safetensors_entries(const std::string& given) {
  const std::string path = resolve_tensor_path(given);
  if (is_checkpoint_index_name(path)) return read_sharded_safetensors_entries(path);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  NQ_CHECK(in.good(), ErrorCode::kIo, path << ": cannot open");
  const auto end_pos = in.tellg();
  NQ_CHECK(end_pos >= 0, ErrorCode::kIo, path << ": cannot determine the file size");
  const uint64_t file_size = static_cast<uint64_t>(end_pos);
  uint8_t prefix[8] = {};
  in.seekg(0);
  if (file_size >= 8) in.read(reinterpret_cast<char*>(prefix), 8);
  const uint64_t n = check_prefix(prefix, file_size, path);
  std::string header(n, '\0');
  in.read(&header[0], static_cast<std::streamsize>(n));
  NQ_CHECK(in.good() || n == 0, ErrorCode::kIo, path << ": cannot read the safetensors header");
  return parse_header(reinterpret_cast<const uint8_t*>(header.data()), n, file_size, path).entries;
}

Tensor read_safetensors_range(const SafetensorsEntry& entry, int64_t first, int64_t count) {
  const std::string& path = entry.file;
  const uint64_t esize = dtype_size(entry.dtype);
  const int64_t numel = shape_numel(entry.shape);
  NQ_CHECK(first >= 0 && count >= 0 && first <= numel && count <= numel - first, ErrorCode::kInvalidArgument,
           path << ": tensor '" << entry.name << "': elements [" << first << ", " << first + count
                << ") are outside its " << numel << " elements");
  NQ_CHECK(entry.begin + static_cast<uint64_t>(numel) * esize == entry.end, ErrorCode::kBadFile,
           path << ": tensor '" << entry.name << "': byte range does not match its shape");
  Tensor t(entry.name, entry.dtype, {count});
  if (count == 0) return t;
  std::ifstream in(path, std::ios::binary);
  NQ_CHECK(in.good(), ErrorCode::kIo, path << ": cannot open");
  in.seekg(static_cast<std::streamoff>(entry.begin + static_cast<uint64_t>(first) * esize));
  in.read(static_cast<char*>(t.mutable_data()), static_cast<std::streamsize>(static_cast<uint64_t>(count) * esize));
  NQ_CHECK(in.good(), ErrorCode::kIo,
           path << ": tensor '" << entry.name << "': cannot read elements [" << first << ", " << first + count
                << ") (file truncated or changed since its header was read?)");
  return t;
}

std::string serialize_safetensors(const TensorSet& tensors) {
  const std::string header = build_header(tensors);
  std::string out(8, '\0');
  io::store_le64(reinterpret_cast<uint8_t*>(&out[0]), header.size());
  out += header;
  for (const Tensor& t : tensors) out.append(static_cast<const char*>(t.data()), t.nbytes());
  return out;
}

struct SafetensorsWriter::State {
  explicit State(const std::string& path) : file(path) {}
  AtomicFile file;
  struct Expected {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  std::vector<Expected> expected;
  size_t next = 0;
};

SafetensorsWriter::SafetensorsWriter(const std::string& path, const TensorSet& layout) {
  const std::string header = build_header(layout);  // checks every name before a file is made
  state_ = std::make_unique<State>(path);
  for (const Tensor& t : layout) state_->expected.push_back({t.name(), t.dtype(), t.shape()});
  uint8_t prefix[8];
  io::store_le64(prefix, header.size());
  state_->file.write(prefix, 8);
  state_->file.write(header);
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::write(const Tensor& t) {
  State& s = *state_;
  NQ_CHECK(s.next < s.expected.size(), ErrorCode::kInvalidArgument,
           s.file.path() << ": tensor '" << t.name() << "' written after the layout's last");
  const State::Expected& e = s.expected[s.next];
  NQ_CHECK(t.name() == e.name && t.dtype() == e.dtype && t.shape() == e.shape, ErrorCode::kInvalidArgument,
           s.file.path() << ": tensor '" << t.name() << "' " << dtype_name(t.dtype()) << shape_to_string(t.shape())
                         << " written where the layout has '" << e.name << "' " << dtype_name(e.dtype)
                         << shape_to_string(e.shape));
  s.file.write(t.data(), t.nbytes());
  ++s.next;
}

void SafetensorsWriter::commit() {
  State& s = *state_;
  NQ_CHECK(s.next == s.expected.size(), ErrorCode::kInvalidArgument,
           s.file.path() << ": " << s.next << " of the layout's " << s.expected.size() << " tensors written");
  s.file.commit();
}

void write_safetensors(const std::string& path, const TensorSet& tensors) {
  SafetensorsWriter w(path, tensors);
  for (const Tensor& t : tensors) w.write(t);
  w.commit();
}

}  // namespace nq
