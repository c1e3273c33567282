// libFuzzer target for the model-JSON parser (`train --model net.json`): layer types, sizes, the shape walk.
// nq::Error is the only acceptable failure; the parameters are never allocated (parse_net_spec checks shapes only).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "netquant/error.h"
#include "nn/model_internal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nq::nn::NetSpec spec = nq::nn::parse_net_spec(std::string(reinterpret_cast<const char*>(data), size));
    // What parses has a consistent layout: offsets tile the parameters, every count positive.
    int64_t offset = 0;
    for (const nq::nn::ParamInfo& p : nq::nn::param_layout(spec)) {
      if (p.offset != offset || p.numel <= 0 || p.fan_in <= 0) std::abort();
      offset += p.numel;
    }
    if (offset != nq::nn::param_count(spec)) std::abort();
  } catch (const nq::Error& e) {
    if (e.code() == nq::ErrorCode::kInternal) std::abort();
  }
  return 0;
}
