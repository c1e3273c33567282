// libFuzzer target for the safetensors parser (header JSON, offsets, dtypes): nq::Error is the only acceptable failure.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "netquant/error.h"
#include "netquant/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    nq::TensorSet s = nq::parse_safetensors(data, size, "fuzz.safetensors", nullptr);
    // Touch every byte of every tensor: a view pointing outside the input is caught by ASan here.
    uint64_t sum = 0;
    for (const nq::Tensor& t : s) {
      const auto* p = static_cast<const uint8_t*>(t.data());
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    }
    volatile uint64_t sink = sum;
    (void)sink;
    // Round trip: what parses must serialize and parse back to the same tensors.
    const std::string again = nq::serialize_safetensors(s);
    nq::TensorSet r = nq::parse_safetensors(reinterpret_cast<const uint8_t*>(again.data()), again.size(), "again", nullptr);
    if (r.size() != s.size() || r.metadata() != s.metadata()) std::abort();
    for (size_t i = 0; i < s.size(); ++i)
      if (r[i].name() != s[i].name() || r[i].shape() != s[i].shape() || r[i].nbytes() != s[i].nbytes() ||
          (s[i].nbytes() && std::memcmp(r[i].data(), s[i].data(), s[i].nbytes()) != 0))
        std::abort();
  } catch (const nq::Error& e) {
    // Rejecting hostile input with a clear error is the expected outcome; a broken invariant is a finding,
    // and any other exception escapes and crashes the fuzzer.
    if (e.code() == nq::ErrorCode::kInternal) std::abort();
  }
  return 0;
}
