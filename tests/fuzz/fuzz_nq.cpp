// libFuzzer target: the .nq reader (parse_nq) on arbitrary bytes; valid inputs must re-encode to themselves.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "netquant/coding.h"
#include "netquant/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nq::NqLimits limits;
  limits.max_elements = uint64_t{1} << 22;  // bounded memory: a pruned run may legally cost 1 bit per 65535 weights
  try {
    nq::QuantizedModel m = nq::parse_nq(data, size, "fuzz.nq", limits);
    // The format is canonical: whatever parses re-encodes to the same bytes. (Fuzzing builds skip checksum
    // checks, so there the input's CRCs may differ: compare two generations of the writer instead.)
    const std::vector<uint8_t> again = nq::serialize_nq(m);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) __builtin_trap();
#endif
    nq::QuantizedModel m2 = nq::parse_nq(again.data(), again.size(), "fuzz-again.nq", limits);
    if (nq::serialize_nq(m2) != again) __builtin_trap();
  } catch (const nq::Error& e) {
    // Hostile bytes must be reported as a bad file; any other code (an internal assert, the writer refusing
    // what the reader accepted) is a bug.
    if (e.code() != nq::ErrorCode::kBadFile) __builtin_trap();
  }
  return 0;
}
