// DType table and IEEE half / bfloat16 conversions.
#include "netquant/dtype.h"

#include <cmath>

#include "netquant/error.h"

namespace nq {

namespace {
struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
  bool is_float;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, "F32", 4, true},  {DType::kF16, "F16", 2, true},  {DType::kBF16, "BF16", 2, true},
    {DType::kF64, "F64", 8, true},  {DType::kI8, "I8", 1, false},   {DType::kU8, "U8", 1, false},
    {DType::kI16, "I16", 2, false}, {DType::kI32, "I32", 4, false}, {DType::kI64, "I64", 8, false},
    {DType::kBool, "BOOL", 1, false},
};
const DTypeInfo& info(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i;
  NQ_ASSERT_MSG(false, "unknown dtype " << static_cast<int>(d));
}
}  // namespace

size_t dtype_size(DType d) { return info(d).size; }
bool dtype_is_float(DType d) { return info(d).is_float; }
const char* dtype_name(DType d) { return info(d).name; }
std::optional<DType> dtype_from_name(const std::string& name) {
  for (const auto& i : kDTypes)
    if (name == i.name) return i.dtype;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      u = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow (incl. rounding) -> Inf
  if (abs < 0x38800000u) {  // result is subnormal or zero in half
    // value = abs_float; half subnormal unit = 2^-24. Round to nearest even via float arithmetic in double.
    float a;
    std::memcpy(&a, &abs, 4);
    const double scaled = static_cast<double>(a) * 16777216.0;  // / 2^-24
    double r = std::nearbyint(scaled);                           // default rounding mode: nearest even
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  // normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even
  uint32_t half = ((abs >> 13) - ((127 - 15) << 10));
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace nq
