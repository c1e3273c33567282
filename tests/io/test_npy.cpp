// .npy: round trips of every numpy dtype, the exact header numpy writes, numpy interop both ways (v1/v2/v3,
// 0-d, empty), Fortran-ordered and big-endian files read as numpy reads them (numpy's values are the oracle),
// unsupported contents (pickles, complex, records) and malformed files.
#include <cstring>
#include <nlohmann/json.hpp>

#include "io_test_util.h"
#include "netquant/io.h"

namespace nq {
namespace {

using test::expect_error;

const DType kNpyDtypes[] = {DType::kF32, DType::kF64, DType::kF16, DType::kU8,  DType::kI8,
                            DType::kI16, DType::kI32, DType::kI64, DType::kBool};

Tensor random_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::mt19937& rng) {
  Tensor t(name, dtype, std::move(shape));
  auto* p = static_cast<uint8_t*>(t.mutable_data());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(rng()) & (dtype == DType::kBool ? 1 : 0xff);
  return t;
}

Tensor parse(const std::string& bytes, const std::string& source = "bad.npy") {
  return parse_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), source);
}

TEST(Npy, RoundTripEveryDtypeAndShape) {
  std::mt19937 rng(9);
  test::TempDir dir;
  for (DType d : kNpyDtypes) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{}, {17}, {3, 5, 7}, {0, 4}, {1, 1, 1, 65}}) {
      SCOPED_TRACE(std::string(dtype_name(d)) + " " + shape_to_string(shape));
      Tensor t = random_tensor("arr", d, shape, rng);
      const std::string bytes = serialize_npy(t);
      // numpy's layout: header (magic .. '\n') padded so the data starts on a 64-byte boundary.
      const size_t data_at = bytes.size() - t.nbytes();
      EXPECT_EQ(data_at % 64, 0u);
      EXPECT_EQ(bytes[data_at - 1], '\n');
      for (Tensor back : {parse(bytes, "x/arr.npy"), [&] {
                            write_npy(dir.file("arr.npy"), t);
                            return read_npy(dir.file("arr.npy"));
                          }()}) {
        EXPECT_EQ(back.name(), "arr");
        EXPECT_EQ(back.dtype(), d);
        EXPECT_EQ(back.shape(), shape);
        ASSERT_EQ(back.nbytes(), t.nbytes());
        if (t.nbytes()) {
          EXPECT_EQ(std::memcmp(back.data(), t.data(), t.nbytes()), 0);
        }
      }
    }
  }
}

TEST(Npy, ExactHeaderBytes) {
  Tensor t = Tensor::from_f32("w", {2, 3}, {1, 2, 3, 4, 5, 6});
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  ASSERT_EQ(dict.size(), 59u);  // 10 + 60 + '\n' > 64: numpy pads to the next multiple, 128
  dict.append(128 - 10 - dict.size() - 1, ' ');
  const std::string expected = std::string("\x93NUMPY\x01\x00", 8) + std::string(1, char(128 - 10)) + '\0' + dict + "\n";
  const std::string bytes = serialize_npy(t);
  EXPECT_EQ(bytes.substr(0, 128), expected);
  EXPECT_EQ(bytes.size(), 128u + 24u);
  EXPECT_NE(serialize_npy(Tensor::from_f32("v", {5}, {1, 2, 3, 4, 5})).find("'shape': (5,), }"), std::string::npos);
  EXPECT_NE(serialize_npy(Tensor::from_f32("s", {}, {7})).find("'shape': (), }"), std::string::npos);
}

TEST(Npy, WideShapesSwitchToVersion2) {
  // 30000 dims of size 1: a v1 header (u16 length) cannot hold the shape tuple.
  std::vector<int64_t> shape(30000, 1);
  shape[17] = 3;
  Tensor t = Tensor::from_f32("w", shape, {1.5f, -2.5f, 3.5f});
  const std::string bytes = serialize_npy(t);
  EXPECT_EQ(bytes[6], 2);
  Tensor back = parse(bytes);
  EXPECT_EQ(back.shape(), shape);
  EXPECT_EQ(back.to_f32(), (std::vector<float>{1.5f, -2.5f, 3.5f}));
}

TEST(Npy, Bf16HasNoNumpyDtype) {
  Tensor t("b", DType::kBF16, {2});
  expect_error([&] { serialize_npy(t); }, ErrorCode::kUnsupported, {"tensor 'b'", "BF16"});
}

std::string npy_with_header(const std::string& dict, const std::string& data, int major = 1) {
  std::string out = std::string("\x93NUMPY", 6) + char(major) + '\0';
  if (major == 1) {
    out += char(dict.size() & 0xff);
    out += char(dict.size() >> 8);
  } else {
    for (int i = 0; i < 4; ++i) out += char((dict.size() >> (8 * i)) & 0xff);
  }
  return out + dict + data;
}

void expect_bad(const std::string& bytes, std::initializer_list<std::string> needles,
                ErrorCode code = ErrorCode::kBadFile) {
  expect_error([&] { parse(bytes); }, code, needles);
}

TEST(Npy, MalformedFiles) {
  const std::string f4x2(8, '\x01');
  expect_bad("", {"bad.npy", "not a .npy file"});
  expect_bad("\x93NUMPZ\x01\x00\x00\x00", {"not a .npy file"});
  expect_bad(std::string("\x93NUMPY\x01", 7), {"not a .npy file"});
  expect_bad(npy_with_header("{}", "", 4), {"version 4.0"}, ErrorCode::kUnsupported);
  {  // version 3.0 reads its header length as 4 bytes, as 2.0 does: a header past 65,535 bytes parses
    std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}";
    dict += std::string(70000 - dict.size() - 1, ' ') + "\n";
    EXPECT_EQ(parse(npy_with_header(dict, f4x2, 3)).shape(), (std::vector<int64_t>{2}));
  }
  {  // a minor version other than 0 (numpy refuses 1.1 too)
    std::string minor = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", f4x2);
    minor[7] = 1;
    expect_bad(minor, {"version 1.1"}, ErrorCode::kUnsupported);
  }
  expect_bad(std::string("\x93NUMPY\x02\x00\x05", 9), {"truncated inside its header length"});
  expect_bad(npy_with_header("{'descr': '<f4'", "").substr(0, 14), {"header length 15 runs past the end"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False}", f4x2), {"lacks the 'shape' key"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", f4x2),
             {"keys other than"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}", f4x2),
             {"duplicate key 'shape'"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", f4x2), {"malformed .npy header"});
  expect_bad(npy_with_header("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", f4x2), {"malformed .npy header"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", f4x2), {"'fortran_order'"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", f4x2), {"must be a tuple"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", f4x2), {"non-negative"});
  // (2) is the int 2 in Python, not a tuple (np.load refuses it); (False) is False, which np.load reads.
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", f4x2), {"must be a tuple"});
  EXPECT_EQ(parse(npy_with_header("{'descr': '<f4', 'fortran_order': (False), 'shape': ((2),)}", f4x2)).shape(),
            (std::vector<int64_t>{2}));
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", f4x2),
             {"integer too large"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", f4x2),
             {"overflows"});
  expect_bad(npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}", f4x2),
             {"overflows"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", f4x2),
             {"data truncated", "[3]", "needs 12 bytes, file has 8"});
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", f4x2),
             {"4 trailing bytes", "[1]"});
  // No byte-order character, '=' and '|' mean the native order, as numpy reads them (np.dtype('|f4') is '<f4').
  const std::vector<float> want = parse(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                                                        f4x2)).to_f32();
  for (const char* descr : {"f4", "|f4", "=f4"})
    EXPECT_EQ(parse(npy_with_header(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2,)}",
                                    f4x2)).to_f32(),
              want)
        << descr;
  expect_bad(npy_with_header("{'descr': '', 'fortran_order': False, 'shape': (2,)}", f4x2), {"malformed .npy descr"});
  expect_bad(npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", f4x2), {"pickle"},
             ErrorCode::kUnsupported);
  expect_bad(npy_with_header("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", f4x2), {"'<c8'"},
             ErrorCode::kUnsupported);
  expect_bad(npy_with_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", f4x2),
             {"structured"}, ErrorCode::kUnsupported);
  expect_bad(npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': " + std::string(50, '(') + "}", f4x2),
             {"nesting too deep"});
  // Python 2 long suffixes, double quotes and odd spacing are still a valid header.
  Tensor t = parse(npy_with_header("{ \"descr\":'<i4' ,'shape':(2L,), 'fortran_order':False }\n", f4x2));
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{2}));
  EXPECT_EQ(t.data_as<int32_t>()[1], 0x01010101);
}

// ---- interop with numpy ------------------------------------------------------------------------------

TEST(NpyInterop, NumpyWrittenFilesReadInCpp) {
  NQ_REQUIRE_NUMPY();
  test::TempDir dir;
  const std::string script = dir.file("w.py");
  test::write_bytes(script, std::string(test::kPyValues) + R"PY(
import json, os, sys
d = os.path.dirname(sys.argv[0])
rng = np.random.default_rng(17)
arrs = {'f4': rng.standard_normal((3, 5, 7)).astype('<f4'), 'f8_0d': np.array(-np.e), 'f2': (rng.standard_normal(17) * 100).astype('<f2'),
        'u1': rng.integers(0, 256, (4, 9)).astype('|u1'), 'i1': rng.integers(-128, 128, 31).astype('|i1'),
        'i2': rng.integers(-2**15, 2**15, (2, 2, 3)).astype('<i2'), 'i4': rng.integers(-2**31, 2**31, 33).astype('<i4'),
        'i8': rng.integers(-2**62, 2**62, 5).astype('<i8'), 'b1': rng.integers(0, 2, (3, 3)).astype('|b1'),
        'empty': np.zeros((0, 4), '<f4'), 'specials': np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], '<f4')}
out = {}
for name, a in arrs.items():
    np.save(os.path.join(d, name + '.npy'), a)
    out[name] = {'shape': list(a.shape), 'values': values(a, '')}
for v in [(2, 0), (3, 0)]:
    name = 'v%d' % v[0]
    with open(os.path.join(d, name + '.npy'), 'wb') as f:
        np.lib.format.write_array(f, arrs['f4'], version=v)
    out[name] = out['f4']
# Fortran order (a transposed array saved as it is) and big-endian data: read in C order, native, as numpy loads
# them. Awkward shapes: 3-D, a dimension of 1 between wide ones, a row vector, 0-d, empty.
odd = {'fortran_f4': np.asfortranarray(arrs['f4']), 'fortran_t': rng.standard_normal((6, 11)).astype('<f4').T,
       'fortran_i2': np.asfortranarray(arrs['i2']), 'fortran_u1': np.asfortranarray(arrs['u1']),
       'fortran_gap': np.asfortranarray(rng.standard_normal((4, 1, 3)).astype('<f8')),
       'fortran_row': np.asfortranarray(rng.standard_normal((1, 9)).astype('<f4')),
       'fortran_empty': np.asfortranarray(np.zeros((3, 0, 2), '<f4')),
       'big_f4': arrs['f4'].astype('>f4'), 'big_f8': arrs['f8_0d'].astype('>f8'), 'big_f2': arrs['f2'].astype('>f2'),
       'big_i8': arrs['i8'].astype('>i8'), 'big_i2': arrs['i2'].astype('>i2'), 'big_i4': arrs['i4'].astype('>i4'),
       'big_fortran_f8': np.asfortranarray(rng.standard_normal((5, 3, 2)).astype('>f8'))}
for name, a in odd.items():
    np.save(os.path.join(d, name + '.npy'), a)
    c = np.array(a, order='C').astype(a.dtype.newbyteorder('='))  # (ascontiguousarray makes 0-d 1-d)
    out[name] = {'shape': list(c.shape), 'values': values(c, '')}
assert np.load(os.path.join(d, 'fortran_t.npy')).flags['F_CONTIGUOUS']
np.save(os.path.join(d, 'objects.npy'), np.array([{'a': 1}], dtype=object), allow_pickle=True)
print(json.dumps(out))
)PY");
  std::string out;
  ASSERT_EQ(test::run_python(script, &out), 0) << out;
  const auto expected = nlohmann::json::parse(out);
  for (const auto& [name, e] : expected.items()) {
    SCOPED_TRACE(name);
    Tensor t = read_npy(dir.file(name + ".npy"));
    EXPECT_EQ(t.name(), name);
    EXPECT_EQ(t.shape(), e["shape"].get<std::vector<int64_t>>());
    test::expect_values(t, e["values"]);
  }
  EXPECT_EQ(read_npy(dir.file("f2.npy")).dtype(), DType::kF16);
  EXPECT_EQ(read_npy(dir.file("b1.npy")).dtype(), DType::kBool);
  EXPECT_EQ(read_npy(dir.file("big_f2.npy")).dtype(), DType::kF16);
  EXPECT_EQ(read_npy(dir.file("fortran_u1.npy")).dtype(), DType::kU8);
  expect_error([&] { read_npy(dir.file("objects.npy")); }, ErrorCode::kUnsupported, {"objects.npy", "pickle"});
}

TEST(NpyInterop, CppWrittenFilesLoadInNumpy) {
  NQ_REQUIRE_NUMPY();
  std::mt19937 rng(23);
  test::TempDir dir;
  std::vector<Tensor> written;
  const std::vector<std::vector<int64_t>> shapes = {{}, {13}, {3, 1, 5}, {0, 2}};
  int i = 0;
  for (DType d : kNpyDtypes) {
    for (const auto& sh : shapes) {
      Tensor t = random_tensor("t" + std::to_string(i++), d, sh, rng);
      write_npy(dir.file(t.name() + ".npy"), t);
      written.push_back(t);
    }
  }
  const std::string script = dir.file("r.py");
  test::write_bytes(script, std::string(test::kPyValues) + R"PY(
import glob, json, os, sys
DT = {'float32': 'F32', 'float64': 'F64', 'float16': 'F16', 'uint8': 'U8', 'int8': 'I8', 'int16': 'I16',
      'int32': 'I32', 'int64': 'I64', 'bool': 'BOOL'}
out = {}
for p in glob.glob(os.path.join(os.path.dirname(sys.argv[0]), 't*.npy')):
    a = np.load(p, allow_pickle=False)
    assert a.flags['C_CONTIGUOUS']
    out[os.path.basename(p)[:-4]] = {'dtype': DT[str(a.dtype)], 'shape': list(a.shape), 'values': values(a, '')}
print(json.dumps(out))
)PY");
  std::string out;
  ASSERT_EQ(test::run_python(script, &out), 0) << out;
  const auto got = nlohmann::json::parse(out);
  ASSERT_EQ(got.size(), written.size());
  for (const Tensor& t : written) {
    SCOPED_TRACE(t.name());
    const auto& e = got.at(t.name());
    EXPECT_EQ(e["dtype"].get<std::string>(), dtype_name(t.dtype()));
    EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), t.shape());
    test::expect_values(t, e["values"]);
  }
}

// ---- dispatch by extension ----------------------------------------------------------------------------

TEST(TensorFiles, DispatchByExtension) {
  test::TempDir dir;
  TensorSet two;
  two.add(Tensor::from_f32("a", {2}, {1, 2}));
  two.add(Tensor::from_f32("b", {1}, {3}));
  write_tensors(dir.file("two.safetensors"), two);
  EXPECT_EQ(read_tensors(dir.file("two.safetensors")).size(), 2u);
  expect_error([&] { write_tensors(dir.file("two.npy"), two); }, ErrorCode::kInvalidArgument, {"exactly one tensor"});
  TensorSet one;
  one.add(Tensor::from_f32("whatever", {3}, {1, 2, 3}));
  write_tensors(dir.file("layer.npy"), one);
  TensorSet back = read_tensors(dir.file("layer.npy"));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].name(), "layer");  // named after the file stem
  EXPECT_EQ(back[0].to_f32(), (std::vector<float>{1, 2, 3}));
  test::write_bytes(dir.file("x-ubyte"), std::string("\0\0\x08\x01\0\0\0\x02\x07\x09", 10));
  EXPECT_EQ(read_tensors(dir.file("x-ubyte"))[0].numel(), 2);
  test::write_bytes(dir.file("model.bin"), "not a tensor file");
  expect_error([&] { read_tensors(dir.file("model.bin")); }, ErrorCode::kUnsupported, {"model.bin", "unknown file type"});
  // A name that is not there is reported as missing, whatever its extension.
  expect_error([&] { read_tensors(dir.file("absent.bin")); }, ErrorCode::kIo, {"absent.bin", "cannot open"});
  expect_error([&] { write_tensors(dir.file("model.pt"), one); }, ErrorCode::kUnsupported, {"model.pt"});
  EXPECT_FALSE(std::ifstream(dir.file("model.pt")).good());
}

}  // namespace
}  // namespace nq
