// safetensors: round trips of every dtype, byte-exact layout, numpy/struct interop both ways, and one crafted
// file per validation rule of the reference implementation.
#include <cmath>
#include <cstring>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io_test_util.h"
#include "netquant/io.h"

namespace nq {
namespace {

using test::expect_error;

Tensor random_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::mt19937& rng) {
  Tensor t(name, dtype, std::move(shape));
  auto* p = static_cast<uint8_t*>(t.mutable_data());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(rng());
  if (dtype == DType::kBool)
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
  return t;
}

TensorSet sample_set(std::mt19937& rng) {
  TensorSet s;
  const DType all[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI8,
                       DType::kU8,  DType::kI16, DType::kI32,  DType::kI64, DType::kBool};
  const std::vector<std::vector<int64_t>> shapes = {{3, 5, 7}, {17}, {}, {0, 4}, {1, 33}, {2, 1, 3}};
  int i = 0;
  for (DType d : all)
    for (const auto& sh : shapes) s.add(random_tensor("z" + std::to_string(99 - i++) + "." + dtype_name(d), d, sh, rng));
  s.metadata()["format"] = "pt";
  s.metadata()["note"] = "ünïcode \"quoted\"";
  return s;
}

void expect_same(const TensorSet& a, const TensorSet& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].name());
    EXPECT_EQ(a[i].name(), b[i].name());  // insertion order survives
    EXPECT_EQ(a[i].dtype(), b[i].dtype());
    EXPECT_EQ(a[i].shape(), b[i].shape());
    ASSERT_EQ(a[i].nbytes(), b[i].nbytes());
    if (a[i].nbytes()) {
      EXPECT_EQ(std::memcmp(a[i].data(), b[i].data(), a[i].nbytes()), 0);  // f16/bf16 bit-exact
    }
  }
  EXPECT_EQ(a.metadata(), b.metadata());
}

TEST(Safetensors, RoundTripEveryDtypeInMemoryAndFile) {
  std::mt19937 rng(42);
  const TensorSet s = sample_set(rng);
  const std::string bytes = serialize_safetensors(s);
  expect_same(s, parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem", nullptr));
  test::TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_safetensors(path, s);
  EXPECT_EQ(test::read_bytes(path), bytes);
  expect_same(s, read_safetensors(path));
  expect_same(s, read_tensors(path));
  // The header is padded to a multiple of 8 so the data (and every tensor with it) stays aligned.
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8 + n - 1] == ' ' || bytes[8 + n - 1] == '}', true);
  // The index agrees with the data: each entry's bytes are exactly the tensor's bytes.
  auto index = read_safetensors_entries(path);
  ASSERT_EQ(index.size(), s.size());
  uint64_t expect_begin = 8 + n;
  for (size_t i = 0; i < index.size(); ++i) {
    EXPECT_EQ(index[i].name, s[i].name());
    EXPECT_EQ(index[i].file, path);
    EXPECT_EQ(index[i].begin, expect_begin);
    EXPECT_EQ(index[i].end - index[i].begin, s[i].nbytes());
    EXPECT_EQ(bytes.compare(index[i].begin, s[i].nbytes(), static_cast<const char*>(s[i].data()), s[i].nbytes()), 0);
    expect_begin = index[i].end;
  }
  EXPECT_EQ(expect_begin, bytes.size());
}

// The streaming writer: the header from a layout, the data from tensors written one at a time (here other bits
// than the layout's, as a pruned model is written against its input). Oracle: serialize_safetensors of the
// tensors written. Any mismatch with the layout, and a commit before the last tensor, are errors that leave no
// file behind.
TEST(Safetensors, StreamingWriterFollowsItsLayout) {
  std::mt19937 rng(77);
  const TensorSet layout = sample_set(rng);
  TensorSet written;
  written.metadata() = layout.metadata();
  for (const Tensor& t : layout) written.add(random_tensor(t.name(), t.dtype(), t.shape(), rng));
  test::TempDir dir;
  const std::string path = dir.file("s.safetensors");
  {
    SafetensorsWriter w(path, layout);
    for (const Tensor& t : written) w.write(t);
    w.commit();
  }
  EXPECT_EQ(test::read_bytes(path), serialize_safetensors(written));
  expect_same(written, read_safetensors(path));

  const std::string bad = dir.file("bad.safetensors");
  auto attempt = [&](const std::function<void(SafetensorsWriter&)>& f, std::initializer_list<std::string> words) {
    expect_error(
        [&] {
          SafetensorsWriter w(bad, layout);
          f(w);
        },
        ErrorCode::kInvalidArgument, words);
    EXPECT_FALSE(std::ifstream(bad).good()) << "a failed write left " << bad;
  };
  attempt([&](SafetensorsWriter& w) { w.write(written[1]); }, {written[1].name(), layout[0].name()});
  attempt([&](SafetensorsWriter& w) { w.write(Tensor(layout[0].name(), DType::kF64, layout[0].shape())); }, {"F64"});
  attempt([&](SafetensorsWriter& w) { w.write(Tensor(layout[0].name(), layout[0].dtype(), {2, 2})); }, {"[2, 2]"});
  attempt(
      [&](SafetensorsWriter& w) {
        w.write(written[0]);
        w.commit();
      },
      {"1 of the layout's " + std::to_string(layout.size())});
  attempt(
      [&](SafetensorsWriter& w) {
        for (const Tensor& t : written) w.write(t);
        w.write(written[0]);
      },
      {"after the layout's last"});
}

TEST(Safetensors, ExactBytesOfASmallFile) {
  TensorSet s;
  s.add(Tensor::from_f32("b", {2}, {1.0f, -2.0f}));
  s.add(Tensor("a", DType::kU8, {1}));
  std::string header = R"({"b":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},"a":{"data_offsets":[8,9],"dtype":"U8","shape":[1]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string expected(8, '\0');
  expected[0] = static_cast<char>(header.size());
  expected += header;
  expected += std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0\x00", 9);
  EXPECT_EQ(serialize_safetensors(s), expected);
}

TEST(Safetensors, MappedViewsOutliveTheSet) {
  std::mt19937 rng(3);
  TensorSet s;
  s.add(random_tensor("w", DType::kF32, {129, 3}, rng));
  test::TempDir dir;
  write_safetensors(dir.file("v.safetensors"), s);
  Tensor kept;
  {
    TensorSet r = read_safetensors(dir.file("v.safetensors"));
    kept = r[0];
  }
  ASSERT_EQ(std::memcmp(kept.data(), s[0].data(), s[0].nbytes()), 0);
  // Writing through a view copies first: the file stays untouched.
  kept.mutable_data_as<float>()[0] = 123.0f;
  EXPECT_EQ(read_safetensors(dir.file("v.safetensors"))[0].data_as<float>()[0], s[0].data_as<float>()[0]);
}

// A file from a header text and a data blob, with the length prefix computed here.
std::string st_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(&out[0], &n, 8);
  return out + header + data;
}

// The tensors view into the bytes: a copy owned by the keepalive outlives the caller's temporary.
TensorSet parse(const std::string& bytes) {
  auto owned = std::make_shared<const std::string>(bytes);
  return parse_safetensors(reinterpret_cast<const uint8_t*>(owned->data()), owned->size(), "bad.safetensors", owned);
}

void expect_bad(const std::string& bytes, std::initializer_list<std::string> needles,
                ErrorCode code = ErrorCode::kBadFile) {
  expect_error([&] { parse(bytes); }, code, needles);
}

TEST(Safetensors, UnalignedDataIsCopiedNotMisread) {
  // No padding: the F32 data starts at an odd offset (writers other than the reference do this).
  const std::string header = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  ASSERT_NE(header.size() % 4, 0u);
  const float v[3] = {1.5f, -0.25f, 3e38f};
  TensorSet s = parse(st_file(header, std::string(reinterpret_cast<const char*>(v), 12)));
  const auto got = s[0].to_f32();
  EXPECT_EQ(got, std::vector<float>(v, v + 3));
}

TEST(SafetensorsRules, FileAndHeaderLength) {
  expect_bad("", {"bad.safetensors", "0 bytes, too short"});
  expect_bad(std::string(7, '\0'), {"7 bytes, too short"});
  std::string big(16, '\0');
  const uint64_t n = 100'000'001;
  std::memcpy(&big[0], &n, 8);
  expect_bad(big, {"header length 100000001 exceeds the limit of 100000000"});
  expect_bad(st_file("{}", "").substr(0, 9), {"header length 2 runs past the end of the file (9 bytes)"});
}

TEST(SafetensorsRules, HeaderText) {
  expect_bad(st_file("{\"a\xff\":1}", ""), {"not valid UTF-8"});
  expect_bad(st_file("{\"\xed\xa0\x80\":1}", ""), {"not valid UTF-8"});  // UTF-16 surrogate
  expect_bad(st_file("{\"a\":", ""), {"not valid JSON"});
  expect_bad(st_file("[]", ""), {"must be a JSON object, got array"});
  expect_bad(st_file(std::string(100, '[') + std::string(100, ']'), ""), {"deeper than 64"});
  expect_bad(st_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "xy"),
             {"duplicate key 'a'"});
  // The reference reader refuses a byte-order mark and NUL padding (nlohmann alone would skip the one and stop at
  // the other), and so must a model reader that claims its rules.
  const std::string entry = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  expect_bad(st_file("\xEF\xBB\xBF" + entry, "x"), {"byte-order mark"});
  expect_bad(st_file(entry + std::string(3, '\0'), "x"), {"NUL byte at offset " + std::to_string(entry.size())});
  expect_bad(st_file(entry + std::string(1, '\0'), "x"), {"NUL byte at offset " + std::to_string(entry.size())});
  EXPECT_EQ(parse(st_file(entry + "   ", "x")).size(), 1u);  // space padding, as the reference writes
}

TEST(SafetensorsRules, EntryFields) {
  expect_bad(st_file(R"({"w":[1]})", ""), {"tensor 'w'", "must be a JSON object"});
  expect_bad(st_file(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", "x"), {"tensor 'w'", "'dtype'"});
  expect_bad(st_file(R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", "x"),
             {"tensor 'w'", "unknown dtype 'Q7'"});
  expect_bad(st_file(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "x"),
             {"tensor 'w'", "F8_E4M3", "not supported"}, ErrorCode::kUnsupported);
  expect_bad(st_file(R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", "x"), {"tensor 'w'", "'shape'"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"),
             {"tensor 'w'", "non-negative integers"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "x"),
             {"tensor 'w'", "non-negative integers"});
  // 2^63 fits JSON's unsigned integers but not a dimension (int64): refused here, not wrapped to a negative size.
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[9223372036854775808,0],"data_offsets":[0,0]}})", ""),
             {"tensor 'w'", "non-negative integers"});
  // "-0" is 0 to nlohmann but a sign to the reference reader (serde's usize), which refuses it: so do we.
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}})", ""),
             {"tensor 'w'", "non-negative integers"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[-0,1]}})", "x"),
             {"tensor 'w'", "'data_offsets' must be [begin, end]"});
  expect_bad(st_file(R"({"w":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,1]}})", "x"),
             {"tensor 'w'", "overflows"});
  expect_bad(st_file(R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,1]}})", "x"),
             {"tensor 'w'", "overflows"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"),
             {"tensor 'w'", "'data_offsets' must be [begin, end]"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,"1"]}})", "x"),
             {"tensor 'w'", "'data_offsets' must be [begin, end]"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}})", "x"),
             {"tensor 'w'", "end before they begin"});
}

TEST(SafetensorsRules, OffsetsTileTheBuffer) {
  expect_bad(st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", std::string(12, 'x')),
             {"tensor 'w'", "needs 8 bytes but data_offsets [0, 12] hold 12"});
  expect_bad(st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(7, 'x')),
             {"tensor 'w'", "run past the end of the file (7 data bytes"});
  expect_bad(st_file(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", std::string(3, 'x')),
             {"tensor 'w' is first", "starts at data offset 1, not 0"});
  expect_bad(st_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})",
                     std::string(5, 'x')),
             {"tensor 'b'", "previous tensor 'a' ends at 2", "gap"});
  expect_bad(st_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                     std::string(3, 'x')),
             {"tensor 'b'", "overlapping"});
  expect_bad(st_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", std::string(5, 'x')),
             {"3 unaccounted trailing bytes"});
  expect_bad(st_file(R"({})", "x"), {"1 unaccounted trailing bytes"});
  // Offsets listed out of order are fine as long as they tile the buffer; the result is in file order.
  TensorSet s = parse(st_file(R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "xyz"));
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name(), "a");
  EXPECT_EQ(s[1].data_as<uint8_t>()[0], 'z');
}

TEST(SafetensorsRules, Metadata) {
  expect_bad(st_file(R"({"__metadata__":[1]})", ""), {"__metadata__ must be an object of strings"});
  expect_bad(st_file(R"({"__metadata__":{"k":3}})", ""), {"__metadata__ value of 'k' must be a string"});
  TensorSet s = parse(st_file(R"({"__metadata__":{"k":"v"}})", ""));
  EXPECT_EQ(s.metadata().at("k"), "v");
  EXPECT_TRUE(s.empty());
}

TEST(SafetensorsRules, EntriesApplyTheSameRules) {
  test::TempDir dir;
  test::write_bytes(dir.file("b.safetensors"),
                    st_file(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", std::string(5, 'x')));
  expect_error([&] { read_safetensors_entries(dir.file("b.safetensors")); }, ErrorCode::kBadFile,
               {"b.safetensors", "trailing bytes"});
  expect_error([&] { read_safetensors(dir.file("b.safetensors")); }, ErrorCode::kBadFile, {"b.safetensors"});
  expect_error([&] { read_safetensors(dir.file("missing.safetensors")); }, ErrorCode::kIo, {"missing.safetensors"});
}

TEST(Safetensors, WriterRejectsUnwritableNames) {
  TensorSet s;
  s.add(Tensor("__metadata__", DType::kF32, {1}));
  expect_error([&] { serialize_safetensors(s); }, ErrorCode::kInvalidArgument, {"__metadata__"});
  TensorSet u;
  u.add(Tensor("bad\xff", DType::kF32, {1}));
  expect_error([&] { serialize_safetensors(u); }, ErrorCode::kInvalidArgument, {"not valid UTF-8"});
}

// ---- interop with an independent implementation (Python struct + json + numpy) -------------------------

const std::string kPyCommon = std::string(test::kPyValues) + R"PY(
import json, struct, sys
NP = {'F32': np.float32, 'F64': np.float64, 'F16': np.float16, 'I8': np.int8, 'U8': np.uint8, 'I16': np.int16,
      'I32': np.int32, 'I64': np.int64, 'BOOL': np.bool_, 'BF16': np.uint16}
)PY";

TEST(SafetensorsInterop, PythonWrittenFileReadsInCpp) {
  NQ_REQUIRE_NUMPY();
  test::TempDir dir;
  const std::string script = dir.file("w.py");
  test::write_bytes(script, kPyCommon + R"PY(
rng = np.random.default_rng(5)
ts = [('conv.weight', 'F32', rng.standard_normal((3, 5, 7)).astype(np.float32)),
      ('half', 'F16', (rng.standard_normal(17) * 1e3).astype(np.float16)),
      ('brain', 'BF16', (rng.standard_normal((2, 9)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)),
      ('scalar', 'F64', np.array(np.pi)),
      ('empty', 'F32', np.zeros((0, 4), np.float32)),
      ('ids', 'I64', rng.integers(-2**62, 2**62, 11)),
      ('mask', 'BOOL', rng.integers(0, 2, 6).astype(np.bool_)),
      ('bytes', 'U8', rng.integers(0, 256, 13).astype(np.uint8))]
header, off, blob = {'__metadata__': {'format': 'pt', 'who': 'python'}}, 0, b''
for name, dt, a in ts:
    b = np.ascontiguousarray(a).tobytes()
    header[name] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
    off += len(b); blob += b
h = json.dumps(header).encode()
h += b' ' * ((8 - len(h) % 8) % 8)
open(sys.argv[0].replace('w.py', 'py.safetensors'), 'wb').write(struct.pack('<Q', len(h)) + h + blob)
print(json.dumps({n: {'dtype': dt, 'shape': list(a.shape), 'values': values(a, dt)} for n, dt, a in ts}))
)PY");
  std::string out;
  ASSERT_EQ(test::run_python(script, &out), 0) << out;
  const auto expected = nlohmann::json::parse(out);
  const TensorSet s = read_safetensors(dir.file("py.safetensors"));
  ASSERT_EQ(s.size(), expected.size());
  EXPECT_EQ(s.metadata().at("who"), "python");
  for (const auto& [name, e] : expected.items()) {
    SCOPED_TRACE(name);
    const Tensor& t = s.at(name);
    EXPECT_EQ(dtype_name(t.dtype()), e["dtype"].get<std::string>());
    EXPECT_EQ(t.shape(), e["shape"].get<std::vector<int64_t>>());
    test::expect_values(t, e["values"]);
  }
}

TEST(SafetensorsInterop, CppWrittenFileParsesInPython) {
  NQ_REQUIRE_NUMPY();
  std::mt19937 rng(11);
  TensorSet s = sample_set(rng);
  test::TempDir dir;
  write_safetensors(dir.file("cpp.safetensors"), s);
  const std::string script = dir.file("r.py");
  test::write_bytes(script, kPyCommon + R"PY(
raw = open(sys.argv[0].replace('r.py', 'cpp.safetensors'), 'rb').read()
n, = struct.unpack('<Q', raw[:8])
assert n % 8 == 0, 'header not padded to 8 bytes'
header = json.loads(raw[8:8 + n].decode('utf-8'))
data = raw[8 + n:]
meta = header.pop('__metadata__')
order = sorted(header, key=lambda k: header[k]['data_offsets'])
end = 0
out = {'__order__': order, '__metadata__': meta}
for name in order:
    e = header[name]
    b, f = e['data_offsets']
    assert b == end, (name, b, end)
    end = f
    a = np.frombuffer(data[b:f], dtype=NP[e['dtype']]).reshape(e['shape'])
    out[name] = {'dtype': e['dtype'], 'shape': list(a.shape), 'values': values(a, e['dtype'])}
assert end == len(data), 'trailing bytes'
print(json.dumps(out))
)PY");
  std::string out;
  ASSERT_EQ(test::run_python(script, &out), 0) << out;
  const auto got = nlohmann::json::parse(out);
  std::vector<std::string> order;
  for (const Tensor& t : s) order.push_back(t.name());
  // Zero-byte tensors share offsets with their neighbours, so compare the order of the non-empty ones.
  std::vector<std::string> py_order = got["__order__"].get<std::vector<std::string>>(), mine, theirs;
  for (const auto& n : order) if (s.at(n).nbytes()) mine.push_back(n);
  for (const auto& n : py_order) if (s.at(n).nbytes()) theirs.push_back(n);
  EXPECT_EQ(mine, theirs);
  EXPECT_EQ(got["__metadata__"]["note"].get<std::string>(), s.metadata().at("note"));
  for (const Tensor& t : s) {
    SCOPED_TRACE(t.name());
    const auto& e = got.at(t.name());
    EXPECT_EQ(e["dtype"].get<std::string>(), dtype_name(t.dtype()));
    EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), t.shape());
    test::expect_values(t, e["values"]);
  }
}

}  // namespace
}  // namespace nq
