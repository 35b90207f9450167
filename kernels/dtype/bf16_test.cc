#include "kernels/dtype/bf16.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace hipserve::kernels {
namespace {

float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(Bf16Test, ExactValuesRoundTrip) {
  for (float f : {0.f, -0.f, 1.f, -2.5f, 3.140625f, 65280.f, 1e-38f}) {
    const float r = RoundToBf16(f);
    if (f == 1e-38f) continue;  // not exact in bf16; only checks no crash
    EXPECT_EQ(r, f);
  }
  EXPECT_EQ(FloatToBf16(1.f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.f), 0xc000);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.f);
}

TEST(Bf16Test, RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(RoundToBf16(FromBits(0x3f808000u)), 1.f);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up to even.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f818000u)), 0x3f82);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808001u)), 0x3f81);
  // Just below halfway rounds down.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f807fffu)), 0x3f80);
}

TEST(Bf16Test, SpecialValues) {
  EXPECT_TRUE(std::isnan(RoundToBf16(std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload lives only in the low 16 bits must not become Inf.
  EXPECT_TRUE(std::isnan(RoundToBf16(FromBits(0x7f800001u))));
  EXPECT_TRUE(std::isnan(RoundToBf16(FromBits(0xff800001u))));
  EXPECT_EQ(RoundToBf16(INFINITY), INFINITY);
  EXPECT_EQ(RoundToBf16(-INFINITY), -INFINITY);
  // FLT_MAX is beyond the largest bf16 and rounds to Inf.
  EXPECT_EQ(RoundToBf16(std::numeric_limits<float>::max()), INFINITY);
}

TEST(Bf16Test, InPlaceMatchesScalar) {
  float x[4] = {1.001f, -7.77f, 1e5f, 3e-3f};
  float y[4];
  std::memcpy(y, x, sizeof(x));
  RoundToBf16InPlace(y, 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(y[i], RoundToBf16(x[i]));
    EXPECT_LE(std::fabs(y[i] - x[i]), std::fabs(x[i]) * 0x1.0p-8);
  }
  RoundToBf16InPlace(nullptr, 0);  // no-op
}

}  // namespace
}  // namespace hipserve::kernels
