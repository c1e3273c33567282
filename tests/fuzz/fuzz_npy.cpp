// libFuzzer target for the .npy parser (header dict literal, dtypes, sizes): nq::Error is the only acceptable failure.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "netquant/error.h"
#include "netquant/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    nq::Tensor t = nq::parse_npy(data, size, "fuzz.npy");
    const auto* p = static_cast<const uint8_t*>(t.data());
    uint64_t sum = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    volatile uint64_t sink = sum;
    (void)sink;
    // Round trip: what parses must serialize and parse back to the same tensor.
    const std::string again = nq::serialize_npy(t);
    nq::Tensor r = nq::parse_npy(reinterpret_cast<const uint8_t*>(again.data()), again.size(), "again");
    if (r.dtype() != t.dtype() || r.shape() != t.shape() ||
        (t.nbytes() && std::memcmp(r.data(), t.data(), t.nbytes()) != 0))
      std::abort();
  } catch (const nq::Error& e) {
    // Rejecting hostile input with a clear error is the expected outcome; a broken invariant is a finding,
    // and any other exception escapes and crashes the fuzzer.
    if (e.code() == nq::ErrorCode::kInternal) std::abort();
  }
  return 0;
}
