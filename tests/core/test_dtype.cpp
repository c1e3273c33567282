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

// Exact ties, which random inputs never hit: every midpoint between two neighbouring finite halves (and bf16s) is a
// float, and IEEE round-to-nearest-even sends it to the neighbour whose last bit is 0; one float ulp either side of
// it goes to the nearer neighbour. The top of the range is the same rule with the next power of two (Inf) as the
// upper neighbour: [65504, 65520) stays 65504, 65520 and above become Inf.
template <typename ToHalf, typename FromHalf>
void check_every_tie(ToHalf to_half, FromHalf from_half, uint32_t last_finite, double inf_neighbour_above_last,
                     const char* what) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t lo = 0; lo <= last_finite; ++lo) {
      const double a = from_half(static_cast<uint16_t>(sign | lo));
      const double b = lo == last_finite ? (sign ? -1.0 : 1.0) * inf_neighbour_above_last
                                         : from_half(static_cast<uint16_t>(sign | (lo + 1)));
      const float mid = static_cast<float>((a + b) / 2);
      ASSERT_EQ(static_cast<double>(mid), (a + b) / 2) << what << ": the midpoint is a float";
      const uint16_t even = static_cast<uint16_t>(sign | ((lo & 1u) ? lo + 1 : lo));
      ASSERT_EQ(to_half(mid), even) << what << " tie above " << std::hex << (sign | lo);
      const float toward_a = std::nextafter(mid, static_cast<float>(a));
      const float toward_b = std::nextafter(mid, static_cast<float>(mid + (b - a)));  // b itself may be 2^128
      ASSERT_EQ(to_half(toward_a), static_cast<uint16_t>(sign | lo)) << what << " just past the tie above " << lo;
      ASSERT_EQ(to_half(toward_b), static_cast<uint16_t>(sign | (lo + 1))) << what << " just before the tie above " << lo;
    }
  }
}

TEST(DType, F16AndBF16TiesGoToEven) {
  // f16: finite magnitudes 0x0000 … 0x7bff (65504), and 0x7c00 (Inf) above them as if it were 65536.
  check_every_tie(f32_to_f16, f16_to_f32, 0x7bffu, 65536.0, "f16");
  EXPECT_EQ(f32_to_f16(65519.996f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  // bf16: finite magnitudes 0x0000 … 0x7f7f, and 0x7f80 (Inf) above them as if it were 2^128.
  check_every_tie(f32_to_bf16, bf16_to_f32, 0x7f7fu, std::ldexp(1.0, 128), "bf16");
}

TEST(DType, NaNsStayNaNsWhateverTheirPayload) {
  for (uint32_t bits : {0x7f800001u, 0x7fc00000u, 0x7f801234u, 0xffbfffffu, 0x7fffe000u}) {
    float f;
    std::memcpy(&f, &bits, 4);
    EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << std::hex << bits;
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << std::hex << bits;
    EXPECT_EQ(f32_to_f16(f) >> 15, bits >> 31) << "the sign is kept";
    EXPECT_EQ(f32_to_bf16(f) >> 15, bits >> 31) << "the sign is kept";
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
