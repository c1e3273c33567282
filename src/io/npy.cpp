// NumPy .npy files: v1.0-v3.0 headers parsed as the Python dict literal they are (descr, fortran_order,
// shape), data of exactly the announced size (Fortran-ordered or big-endian data is read into a C-ordered native
// copy); the writer writes C order, little-endian, and pads headers to 64 bytes as numpy does.
#include <cctype>
#include <cstring>
#include <limits>
#include <map>

#include "io/byte_order.h"
#include "io/mapped_file.h"
#include "netquant/atomic_file.h"
#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // numpy's ARRAY_ALIGN

struct NpyType {
  const char* code;  // without the byte-order character
  DType dtype;
};
constexpr NpyType kNpyTypes[] = {{"f4", DType::kF32}, {"f8", DType::kF64}, {"f2", DType::kF16},
                                 {"u1", DType::kU8},  {"i1", DType::kI8},  {"i2", DType::kI16},
                                 {"i4", DType::kI32}, {"i8", DType::kI64}, {"b1", DType::kBool}};

// One value of the header dict: only the literal kinds a .npy header can contain.
struct PyValue {
  enum Kind { kString, kBool, kNone, kInt, kTuple, kList } kind = kNone;
  std::string str;
  bool boolean = false;
  uint64_t integer = 0;
  bool negative = false;
  std::vector<PyValue> items;
};

// Recursive-descent parser for the Python literal subset numpy writes; every read is bounds-checked and
// nesting is capped so hostile headers cannot recurse deeply.
class PyLiteralParser {
 public:
  PyLiteralParser(const std::string& text, const std::string& source) : s_(text), src_(source) {}

  std::map<std::string, PyValue> parse_dict() {
    skip_ws();
    expect('{');
    std::map<std::string, PyValue> out;
    skip_ws();
    while (peek() != '}') {
      PyValue key = parse_value(0);
      if (key.kind != PyValue::kString) fail("dict keys must be strings");
      skip_ws();
      expect(':');
      PyValue v = parse_value(0);
      if (!out.emplace(key.str, std::move(v)).second) fail("duplicate key '" + key.str + "'");
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the dict");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    NQ_FAIL(ErrorCode::kBadFile, src_ << ": malformed .npy header (" << why << " at character " << pos_ << ")");
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool take_word(const char* w) {
    const size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) != 0) return false;
    pos_ += n;
    return true;
  }

  PyValue parse_value(int depth) {
    if (depth > 8) fail("nesting too deep");
    skip_ws();
    PyValue v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = PyValue::kString;
      ++pos_;
      while (peek() != c) {
        if (pos_ >= s_.size()) fail("unterminated string");
        if (s_[pos_] == '\\') ++pos_;  // keep the escaped character literally
        if (pos_ >= s_.size()) fail("unterminated string");
        v.str += s_[pos_++];
      }
      ++pos_;
    } else if (c == '(' || c == '[') {
      v.kind = c == '(' ? PyValue::kTuple : PyValue::kList;
      const char close = c == '(' ? ')' : ']';
      ++pos_;
      skip_ws();
      bool comma = false;
      while (peek() != close) {
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        comma = peek() == ',';
        if (comma) {
          ++pos_;
          skip_ws();
        } else if (peek() != close) {
          fail(std::string("expected ',' or '") + close + "'");
        }
      }
      ++pos_;
      // Python's (x) is x itself, not a tuple: only (x,) is (np.load refuses 'shape': (24)).
      if (c == '(' && v.items.size() == 1 && !comma) {
        PyValue inner = std::move(v.items[0]);
        v = std::move(inner);
      }
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      v.kind = PyValue::kInt;
      if (c == '-') {
        v.negative = true;
        ++pos_;
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a digit");
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const uint64_t d = static_cast<uint64_t>(s_[pos_++] - '0');
        if (v.integer > (std::numeric_limits<uint64_t>::max() - d) / 10) fail("integer too large");
        v.integer = v.integer * 10 + d;
      }
      if (peek() == 'L') ++pos_;  // Python 2 long suffix in old files
    } else if (take_word("True")) {
      v.kind = PyValue::kBool;
      v.boolean = true;
    } else if (take_word("False")) {
      v.kind = PyValue::kBool;
    } else if (take_word("None")) {
      v.kind = PyValue::kNone;
    } else {
      fail("unexpected character");
    }
    return v;
  }

  const std::string& s_;
  const std::string& src_;
  size_t pos_ = 0;
};

// A descr's element type and whether its bytes are big-endian ('>'; such data is byte-swapped when read).
struct NpyElement {
  DType dtype;
  bool big_endian;
};

NpyElement npy_dtype(const PyValue& descr, const std::string& src) {
  NQ_CHECK(descr.kind == PyValue::kString, ErrorCode::kUnsupported,
           src << ": structured .npy dtypes (record arrays) are not supported");
  const std::string& d = descr.str;
  NQ_CHECK(d.find('O') == std::string::npos, ErrorCode::kUnsupported,
           src << ": .npy holds Python objects (dtype '" << d << "', a pickle); netquant never unpickles");
  NQ_CHECK(!d.empty(), ErrorCode::kBadFile, src << ": malformed .npy descr '" << d << "'");
  // As numpy reads them: no byte-order character, '=' and '|' (not applicable) all mean the native order.
  const bool has_order = d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=';
  const char order = has_order ? d[0] : '=';
  const std::string code = has_order ? d.substr(1) : d;
  for (const auto& t : kNpyTypes) {
    if (code != t.code) continue;
    const bool one_byte = dtype_size(t.dtype) == 1;
    NQ_ASSERT(io::host_is_little_endian());
    return {t.dtype, !one_byte && order == '>'};
  }
  NQ_FAIL(ErrorCode::kUnsupported, src << ": .npy dtype '" << d
                                       << "' is not supported (netquant reads <f4 <f8 <f2 |u1 |i1 <i2 <i4 <i8 |b1)");
}

std::string stem_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = base.find_last_of('.');
  if (dot != std::string::npos && dot > 0) base.resize(dot);
  return base;
}

// Fortran order (first index fastest) to C order (last index fastest), numel elements of `size` bytes: `in` holds
// the Fortran layout of `shape`, `out` receives the C layout. An odometer over the C index keeps the Fortran offset.
void fortran_to_c_order(const uint8_t* in, uint8_t* out, const std::vector<int64_t>& shape, uint64_t numel,
                        size_t size) {
  const size_t ndim = shape.size();
  if (numel == 0 || ndim == 0) return;
  std::vector<uint64_t> stride(ndim);  // element stride of each index in the Fortran layout
  uint64_t run = 1;
  for (size_t k = 0; k < ndim; ++k) stride[k] = run, run *= static_cast<uint64_t>(shape[k]);
  std::vector<int64_t> index(ndim, 0);
  uint64_t from = 0;
  for (uint64_t i = 0; i < numel; ++i) {
    std::memcpy(out + i * size, in + from * size, size);
    for (size_t k = ndim; k-- > 0;) {  // next C index: the last dimension turns fastest
      from += stride[k];
      if (++index[k] < shape[k]) break;
      from -= stride[k] * static_cast<uint64_t>(shape[k]);
      index[k] = 0;
    }
  }
}

Tensor parse_npy_impl(const uint8_t* data, size_t size, const std::string& src,
                      const std::shared_ptr<const void>& keepalive) {
  NQ_CHECK(size >= kMagicLen + 2 && std::memcmp(data, kMagic, kMagicLen) == 0, ErrorCode::kBadFile,
           src << ": not a .npy file (missing \\x93NUMPY magic)");
  const int major = data[6], minor = data[7];
  NQ_CHECK((major == 1 || major == 2 || major == 3) && minor == 0, ErrorCode::kUnsupported,
           src << ": .npy format version " << major << "." << minor << " is not supported (1.0, 2.0, 3.0 are)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  NQ_CHECK(size >= 8 + len_bytes, ErrorCode::kBadFile, src << ": .npy file truncated inside its header length");
  const uint64_t hlen = major == 1 ? io::load_le16(data + 8) : io::load_le32(data + 8);
  const uint64_t data_offset = 8 + len_bytes + hlen;
  NQ_CHECK(data_offset <= size, ErrorCode::kBadFile,
           src << ": .npy header length " << hlen << " runs past the end of the file (" << size << " bytes)");
  const std::string header(reinterpret_cast<const char*>(data + 8 + len_bytes), hlen);
  if (major == 3) {
    NQ_CHECK(io::is_valid_utf8(header.data(), header.size()), ErrorCode::kBadFile,
             src << ": .npy v3 header is not valid UTF-8");
  }
  auto dict = PyLiteralParser(header, src).parse_dict();
  for (const char* key : {"descr", "fortran_order", "shape"})
    NQ_CHECK(dict.count(key), ErrorCode::kBadFile, src << ": .npy header lacks the '" << key << "' key");
  NQ_CHECK(dict.size() == 3, ErrorCode::kBadFile,
           src << ": .npy header has keys other than 'descr', 'fortran_order' and 'shape'");
  const NpyElement element = npy_dtype(dict["descr"], src);
  const DType dtype = element.dtype;
  const PyValue& fortran = dict["fortran_order"];
  NQ_CHECK(fortran.kind == PyValue::kBool, ErrorCode::kBadFile, src << ": .npy 'fortran_order' must be True or False");
  const PyValue& shape_v = dict["shape"];
  NQ_CHECK(shape_v.kind == PyValue::kTuple, ErrorCode::kBadFile, src << ": .npy 'shape' must be a tuple");
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  for (const auto& d : shape_v.items) {
    NQ_CHECK(d.kind == PyValue::kInt && !d.negative &&
                 d.integer <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
             ErrorCode::kBadFile, src << ": .npy 'shape' must hold non-negative integers");
    shape.push_back(static_cast<int64_t>(d.integer));
    NQ_CHECK(io::checked_mul(numel, d.integer, &numel), ErrorCode::kBadFile,
             src << ": .npy shape " << shape_to_string(shape) << " overflows");
  }
  uint64_t nbytes = 0;
  NQ_CHECK(io::checked_mul(numel, dtype_size(dtype), &nbytes) &&
               numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
           ErrorCode::kBadFile, src << ": .npy shape " << shape_to_string(shape) << " overflows");
  const uint64_t have = size - data_offset;
  NQ_CHECK(have >= nbytes, ErrorCode::kBadFile,
           src << ": .npy data truncated: shape " << shape_to_string(shape) << " needs " << nbytes
               << " bytes, file has " << have);
  NQ_CHECK(have == nbytes, ErrorCode::kBadFile,
           src << ": " << (have - nbytes) << " trailing bytes after the .npy data of shape "
               << shape_to_string(shape));
  const uint8_t* p = data + data_offset;
  // Fortran order (np.save of a transposed array) and big-endian data are read into a C-ordered, native copy.
  // With at most one dimension above 1 both orders are one layout, so only the bytes may need swapping.
  int64_t wide_dims = 0;
  for (int64_t d : shape) wide_dims += d > 1 ? 1 : 0;
  const bool transpose = fortran.boolean && wide_dims > 1;
  if (keepalive && !transpose && !element.big_endian && reinterpret_cast<uintptr_t>(p) % dtype_size(dtype) == 0) {
    Tensor view = Tensor::view(stem_of(src), dtype, shape, p, keepalive);
    view.set_source(src);
    return view;
  }
  Tensor t(stem_of(src), dtype, shape);
  auto* out = static_cast<uint8_t*>(t.mutable_data());
  if (nbytes && transpose) fortran_to_c_order(p, out, shape, numel, dtype_size(dtype));
  else if (nbytes) std::memcpy(out, p, nbytes);
  if (element.big_endian) io::swap_element_bytes(out, nbytes, dtype_size(dtype));
  t.set_source(src);
  return t;
}

// path: the file being written, for the message (empty: an in-memory serialization).
const char* npy_descr(DType dtype, const std::string& name, const std::string& path) {
  switch (dtype) {
    case DType::kF32: return "<f4";
    case DType::kF64: return "<f8";
    case DType::kF16: return "<f2";
    case DType::kU8: return "|u1";
    case DType::kI8: return "|i1";
    case DType::kI16: return "<i2";
    case DType::kI32: return "<i4";
    case DType::kI64: return "<i8";
    case DType::kBool: return "|b1";
    case DType::kBF16: break;
  }
  NQ_FAIL(ErrorCode::kUnsupported, (path.empty() ? "" : path + ": ")
                                      << "tensor '" << name << "': numpy has no " << dtype_name(dtype)
                                      << " dtype; write it to .safetensors or convert it to F32 first");
}

// Magic, version, length and the padded dict: everything before the data.
std::string npy_header(const Tensor& t, const std::string& path) {
  NQ_ASSERT(io::host_is_little_endian());
  std::string dict = std::string("{'descr': '") + npy_descr(t.dtype(), t.name(), path) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.ndim(); ++i) dict += std::to_string(t.shape()[i]) + (t.ndim() == 1 || i + 1 < t.ndim() ? "," : "") + (i + 1 < t.ndim() ? " " : "");
  dict += "), }";
  // numpy pads with spaces and ends with '\n' so the data starts on a 64-byte boundary.
  for (int major : {1, 2}) {
    const size_t prefix = kMagicLen + 2 + (major == 1 ? 2 : 4);
    const size_t total = (prefix + dict.size() + 1 + kAlign - 1) / kAlign * kAlign;
    const size_t hlen = total - prefix;
    if (major == 1 && hlen > 0xffff) continue;
    std::string out(kMagic, kMagicLen);
    out += static_cast<char>(major);
    out += '\0';
    uint8_t len[4];
    io::store_le32(len, static_cast<uint32_t>(hlen));
    out.append(reinterpret_cast<const char*>(len), major == 1 ? 2 : 4);
    out += dict;
    out.append(hlen - dict.size() - 1, ' ');
    out += '\n';
    return out;
  }
  NQ_FAIL(ErrorCode::kInvalidArgument, "tensor '" << t.name() << "': .npy header too large");
}

}  // namespace

Tensor parse_npy(const uint8_t* data, size_t size, const std::string& source) {
  return parse_npy_impl(data, size, source, nullptr);
}

Tensor read_npy(const std::string& path) {
  auto map = io::MappedFile::open(path);
  return parse_npy_impl(map->data(), map->size(), path, map);
}

std::string serialize_npy(const Tensor& tensor) {
  std::string out = npy_header(tensor, "");
  out.append(static_cast<const char*>(tensor.data()), tensor.nbytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  const std::string header = npy_header(tensor, path);
  AtomicFile f(path);
  f.write(header);
  f.write(tensor.data(), tensor.nbytes());
  f.commit();
}

}  // namespace nq
