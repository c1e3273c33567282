// Element types of tensors, their sizes and safetensors/numpy names, and half-precision conversions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace nq {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI8, kU8, kI16, kI32, kI64, kBool };

size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);
// safetensors spelling: "F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL".
const char* dtype_name(DType dtype);
std::optional<DType> dtype_from_name(const std::string& name);

// IEEE binary16 <-> binary32, round to nearest even; NaN stays NaN, overflow becomes Inf.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
// bfloat16 <-> binary32, round to nearest even.
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);

}  // namespace nq
