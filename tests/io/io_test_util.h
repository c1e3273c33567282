// Helpers for the I/O tests: temporary directories, raw file bytes, gzip, Python/numpy oracles, error checks.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>

#include "netquant/error.h"
#include "netquant/tensor.h"

namespace nq::test {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/nq_io_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// gzip with zlib's own deflate (the same container `gzip` writes).
inline std::string gzip_compress(const std::string& raw, int level = 6) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(&out[0]);
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Runs `fn`, expecting nq::Error with `code` and a message containing every one of `needles`.
inline void expect_error(const std::function<void()>& fn, ErrorCode code, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected nq::Error " << error_code_name(code) << ", nothing thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << "message: " << e.what();
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "message lacks '" << n << "': " << e.what();
  }
}

inline std::string python_path() { return NQ_TEST_PYTHON; }

// True when the test Python imports numpy (the interop oracle); tests GTEST_SKIP otherwise.
inline bool python_has_numpy() {
  static const int ok = [] {
    if (python_path().empty()) return 0;
    const std::string cmd = "'" + python_path() + "' -c 'import numpy' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0 ? 1 : 0;
  }();
  return ok == 1;
}

// Runs a Python script file with the test interpreter; returns its exit status and captures stdout (stderr is
// appended only on failure, so warnings never corrupt the JSON a script prints).
inline int run_python(const std::string& script_path, std::string* output) {
  const std::string err_path = script_path + ".stderr";
  const std::string cmd = "'" + python_path() + "' '" + script_path + "' 2>'" + err_path + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int status = ::pclose(p);
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (rc != 0) *output += read_bytes(err_path);
  return rc;
}

// Python side of the value comparison: floats as JSON numbers ('nan'/'inf'/'-inf' strings when not finite),
// integer and bool dtypes as exact integers. Paste into scripts that print tensors for expect_values().
inline const char* kPyValues = R"PY(
import math
import numpy as np
def values(a, dt):
    a = np.ravel(a)
    if dt == 'BF16':  # bf16 is the top half of a float32
        a = (a.astype(np.uint32) << 16).view(np.float32)
    if a.dtype.kind in 'iub':
        return a.astype(np.int64).ravel().tolist()
    return [x if math.isfinite(x) else repr(x) for x in a.astype(np.float64).ravel().tolist()]
)PY";

// Compares a tensor's values with the list kPyValues' values() printed: exactly, element by element.
inline void expect_values(const Tensor& t, const nlohmann::json& vals) {
  ASSERT_EQ(static_cast<int64_t>(vals.size()), t.numel()) << t.name();
  if (!dtype_is_float(t.dtype())) {
    std::vector<int64_t> mine(static_cast<size_t>(t.numel()));
    const auto* p = static_cast<const uint8_t*>(t.data());
    for (size_t i = 0; i < mine.size(); ++i) {
      switch (t.dtype()) {
        case DType::kI8: mine[i] = static_cast<int8_t>(p[i]); break;
        case DType::kU8: case DType::kBool: mine[i] = p[i]; break;
        case DType::kI16: { int16_t v; std::memcpy(&v, p + 2 * i, 2); mine[i] = v; break; }
        case DType::kI32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); mine[i] = v; break; }
        default: std::memcpy(&mine[i], p + 8 * i, 8); break;
      }
    }
    for (size_t i = 0; i < mine.size(); ++i) ASSERT_EQ(vals[i].get<int64_t>(), mine[i]) << t.name() << "[" << i << "]";
    return;
  }
  const auto want = t.to_f64();
  for (size_t i = 0; i < want.size(); ++i) {
    if (vals[i].is_string()) {
      const std::string s = vals[i].get<std::string>();
      const std::string mine = std::isnan(want[i]) ? "nan" : want[i] > 0 ? "inf" : "-inf";
      ASSERT_TRUE(!std::isfinite(want[i]) && s == mine) << t.name() << "[" << i << "]: " << s << " vs " << want[i];
    } else {
      ASSERT_EQ(vals[i].get<double>(), want[i]) << t.name() << "[" << i << "]";
    }
  }
}

#define NQ_REQUIRE_NUMPY()                                                                          \
  do {                                                                                              \
    if (!::nq::test::python_has_numpy())                                                            \
      GTEST_SKIP() << "interop oracle unavailable: '" << ::nq::test::python_path()                  \
                   << "' cannot import numpy (apt-get install python3-numpy)";                      \
  } while (0)

}  // namespace nq::test
