// Bit-exact check of the fp8 e5m2 codec against an independent conversion written with
// double arithmetic: decode via ldexp, encode as "nearest finite code by exhaustive search,
// ties to the even code", plus the NaN/Inf rules of FORMAT.md.
#include "kvstore/fp8_e5m2.h"

#include <cmath>
#include <cstdint>

#include "gtest/gtest.h"

namespace hipserve::kvstore {
namespace {

double RefBf16ToDouble(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 7) & 0xFF, man = b & 0x7F;
  double mag = exp == 0 ? std::ldexp(man, -133) : std::ldexp(128 + man, exp - 134);
  if (exp == 0xFF) mag = man ? NAN : INFINITY;
  return sign ? -mag : mag;
}

double RefFp8ToDouble(uint8_t c) {
  const int sign = c >> 7, ef = (c >> 2) & 0x1F, mf = c & 3;
  double mag = ef == 0 ? std::ldexp(mf, -16) : std::ldexp(4 + mf, ef - 17);
  if (ef == 31) mag = mf ? NAN : INFINITY;
  return sign ? -mag : mag;
}

uint8_t RefEncode(uint16_t b) {
  const double x = RefBf16ToDouble(b);
  const uint8_t sign = (b >> 15) ? 0x80 : 0x00;
  if (std::isnan(x)) return sign | 0x7F;
  if (std::isinf(x)) return sign | 0x7C;
  // Saturation: anything at or beyond the largest finite value maps to it.
  if (std::fabs(x) >= RefFp8ToDouble(0x7B)) return sign | 0x7B;
  // Nearest among the finite codes of the same sign; ties go to the even code. Below 2^16
  // every difference here is exact in double.
  uint8_t best = sign;
  double best_err = INFINITY;
  for (int mag = 0; mag <= 0x7B; ++mag) {
    const uint8_t c = sign | static_cast<uint8_t>(mag);
    const double err = std::fabs(RefFp8ToDouble(c) - x);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = c;
      best_err = err;
    }
  }
  return best;
}

TEST(Fp8E5m2Test, EncodeMatchesReferenceForAllBf16) {
  int mismatches = 0;
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint8_t got = Bf16ToFp8E5m2(static_cast<uint16_t>(b));
    const uint8_t want = RefEncode(static_cast<uint16_t>(b));
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "bf16 0x" << std::hex << b << " (" << RefBf16ToDouble(b) << "): got 0x"
                    << int{got} << " want 0x" << int{want};
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Fp8E5m2Test, DecodeIsExactForAllCodes) {
  for (int c = 0; c < 256; ++c) {
    const uint16_t b = Fp8E5m2ToBf16(static_cast<uint8_t>(c));
    const double want = RefFp8ToDouble(static_cast<uint8_t>(c));
    const double got = RefBf16ToDouble(b);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
      EXPECT_EQ(b >> 15, c >> 7) << c;
    } else {
      EXPECT_EQ(got, want) << c;
      EXPECT_EQ(std::signbit(got), std::signbit(want)) << c;
      // Round trip of every non-NaN code is the identity.
      EXPECT_EQ(Bf16ToFp8E5m2(b), c);
    }
  }
}

TEST(Fp8E5m2Test, DocumentedEdgeCases) {
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(57344.0f)), 0x7B);
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(1e30f)), 0x7B);  // saturates
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(-1e30f)), 0xFB);
  EXPECT_EQ(Bf16ToFp8E5m2(0x7F80), 0x7C);                              // +Inf
  EXPECT_EQ(Bf16ToFp8E5m2(0xFF80), 0xFC);                              // -Inf
  EXPECT_EQ(Bf16ToFp8E5m2(0x7FC1), 0x7F);                              // NaN
  EXPECT_EQ(Bf16ToFp8E5m2(0x8000), 0x80);                              // -0
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(std::ldexp(1.0f, -17))), 0x00);  // tie -> even (0)
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(std::ldexp(1.5f, -17))), 0x01);
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(1.125f)), 0x3C);  // tie between 1.0 and 1.25 -> 1.0
  EXPECT_EQ(Bf16ToFp8E5m2(FloatToBf16(1.375f)), 0x3E);  // tie between 1.25 and 1.5 -> 1.5
  EXPECT_EQ(Fp8E5m2ToBf16(0x7F), 0x7FC0);
}

TEST(Fp8E5m2Test, FloatToBf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);  // tie -> even
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(3.0f, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(Bf16ToFloat(0x3F81), 1.0f + std::ldexp(1.0f, -7));
}

}  // namespace
}  // namespace hipserve::kvstore
