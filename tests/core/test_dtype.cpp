// Half/bfloat16 conversions against exhaustive and brute-force oracles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "netquant/dtype.h"

namespace nq {
namespace {

TEST(DType, F16ToF32RoundTripsEveryHalfExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), h) << "half bits " << h;
  }
}

TEST(DType, F16DecodeMatchesLdexpOracle) {
  for (uint32_t h = 0; h < 0x7c00; h += 7) {  // finite positives
    const int e = static_cast<int>(h >> 10), m = static_cast<int>(h & 0x3ff);
    const double want = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    EXPECT_EQ(static_cast<double>(f16_to_f32(static_cast<uint16_t>(h))), want);
  }
}

// Oracle: the nearest finite half (ties to even mantissa) by scanning all candidates around the value.
uint16_t nearest_half_bruteforce(float f) {
  uint16_t best = 0;
  double best_err = INFINITY;
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const double err = std::fabs(static_cast<double>(f16_to_f32(static_cast<uint16_t>(h))) - std::fabs(f));
    if (err < best_err || (err == best_err && (h & 1u) == 0)) {
      best_err = err;
      best = static_cast<uint16_t>(h);
    }
  }
  return static_cast<uint16_t>(best | (std::signbit(f) ? 0x8000u : 0u));
}

TEST(DType, F32ToF16RoundsToNearestEven) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> expo(-26.f, 15.9f);
  for (int i = 0; i < 300; ++i) {
    float f = std::exp2(expo(rng)) * (rng() % 2 ? -1.f : 1.f);
    EXPECT_EQ(f32_to_f16(f), nearest_half_bruteforce(f)) << f;
  }
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);  // overflow -> +Inf
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST(DType, BF16RoundsToNearestEven) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int i = 0; i < 2000; ++i) {
    const float f = nd(rng);
    const uint16_t b = f32_to_bf16(f);
    const float back = bf16_to_f32(b);
    // neighbours in bf16 must not be closer
    const float up = bf16_to_f32(static_cast<uint16_t>(b + 1)), down = bf16_to_f32(static_cast<uint16_t>(b - 1));
    EXPECT_LE(std::fabs(back - f), std::fabs(up - f));
    EXPECT_LE(std::fabs(back - f), std::fabs(down - f));
  }
}

TEST(DType, NamesRoundTrip) {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI8, DType::kU8, DType::kI16,
                  DType::kI32, DType::kI64, DType::kBool}) {
    ASSERT_TRUE(dtype_from_name(dtype_name(d)).has_value());
    EXPECT_EQ(*dtype_from_name(dtype_name(d)), d);
  }
  EXPECT_FALSE(dtype_from_name("F8_E4M3").has_value());
}

}  // namespace
}  // namespace nq
