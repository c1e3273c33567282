// libFuzzer target: the .nq reader (parse_nq) on arbitrary bytes; valid inputs must re-encode to the same model, and
// their codes layout (codes_layout) must look up to their values.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "coding/codes_lookup.h"
#include "netquant/coding.h"
#include "netquant/error.h"

namespace {

// The same decoded model: every tensor's layout and codebook sizes, and every weight's value bit for bit (levels
// of equal value, or +0 and -0, may trade places and indices with them).
bool same_model(const nq::QuantizedModel& a, const nq::QuantizedModel& b) {
  if (a.method != b.method || a.scope.kind != b.scope.kind || a.scope.group != b.scope.group ||
      a.tensors.size() != b.tensors.size() || a.codebooks.size() != b.codebooks.size())
    return false;
  for (size_t c = 0; c < a.codebooks.size(); ++c)
    if (a.codebooks[c].size() != b.codebooks[c].size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const nq::QuantizedTensor& x = a.tensors[i];
    const nq::QuantizedTensor& y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.quantized != y.quantized ||
        x.problem_size != y.problem_size || x.num_problems != y.num_problems || x.first_codebook != y.first_codebook)
      return false;
  }
  const nq::TensorSet da = a.dequantize(), db = b.dequantize();
  if (da.size() != db.size()) return false;
  for (size_t i = 0; i < da.size(); ++i)
    if (da[i].nbytes() != db[i].nbytes() || std::memcmp(da[i].data(), db[i].data(), da[i].nbytes()) != 0) return false;
  return true;
}

// The codes layout of a parsed model: every weight looked up in its row of the table is its dequantized value. A
// file may name its tensors so that the layout's names collide ("W" and "W.codes"), or pad one long codebook among
// many short ones into a table far larger than the file: those refusals (kInvalidArgument, kUnsupported) are allowed.
bool codes_look_up_the_values(const nq::QuantizedModel& m) {
  nq::TensorSet layout;
  try {
    layout = nq::codes_layout(m);
  } catch (const nq::Error& e) {
    if (e.code() == nq::ErrorCode::kInvalidArgument || e.code() == nq::ErrorCode::kUnsupported) return true;
    throw;
  }
  std::string why;
  const auto looked_up = nq::testing::look_up_codes(layout, &why);
  const nq::TensorSet values = m.dequantize();
  if (!looked_up || looked_up->size() != values.size()) return false;
  for (size_t i = 0; i < values.size(); ++i) {
    const nq::Tensor& v = values[i];
    const nq::Tensor& got = (*looked_up)[i];
    if (got.name() != v.name() || got.dtype() != v.dtype() || got.shape() != v.shape() ||
        (v.nbytes() != 0 && std::memcmp(got.data(), v.data(), v.nbytes()) != 0))
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nq::NqLimits limits;
  limits.max_elements = uint64_t{1} << 22;  // bounded memory: a pruned run may legally cost 1 bit per 65535 weights
  try {
    nq::QuantizedModel m = nq::parse_nq(data, size, "fuzz.nq", limits);
    // Whatever parses re-encodes to a file that reads as the same model, and the writer is canonical on its own
    // output: a second generation is the first's bytes. (The input's own bytes may differ: a codebook's levels may
    // be stored in any order, and the writer picks one, README "Order of a codebook's levels"; fuzzing builds also
    // skip checksum checks.)
    const std::vector<uint8_t> again = nq::serialize_nq(m);
    nq::QuantizedModel m2 = nq::parse_nq(again.data(), again.size(), "fuzz-again.nq", limits);
    if (!same_model(m, m2)) __builtin_trap();
    if (nq::serialize_nq(m2) != again) __builtin_trap();
    if (!codes_look_up_the_values(m)) __builtin_trap();
  } catch (const nq::Error& e) {
    // Hostile bytes must be reported as a bad file; any other code (an internal assert, the writer refusing
    // what the reader accepted) is a bug.
    if (e.code() != nq::ErrorCode::kBadFile) __builtin_trap();
  }
  return 0;
}
