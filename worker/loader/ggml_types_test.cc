// Dequantisation of each supported ggml type against hand-built blocks. Expected values are
// computed here from the quantised integers and scales directly (per element index), not by
// re-running the decoder's loop structure.
#include "worker/loader/ggml_types.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hipserve::worker::loader {
namespace {

void PutHalf(std::string& b, uint16_t h) { b.append(reinterpret_cast<const char*>(&h), 2); }

std::vector<float> Decode(GgmlType type, const std::string& bytes, int64_t n) {
  std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());  // poison
  const absl::Status st =
      DequantizeGgml(static_cast<uint32_t>(type), reinterpret_cast<const uint8_t*>(bytes.data()),
                     bytes.size(), n, out.data());
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

TEST(HalfTest, KnownBitPatterns) {
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
  EXPECT_EQ(HalfToFloat(0x8000), 0.0f);
  EXPECT_EQ(HalfToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(HalfToFloat(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
}

TEST(HalfTest, AllFiniteValuesMatchFormula) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const int sign = (h >> 15) ? -1 : 1;
    const int e = (h >> 10) & 0x1F;
    const int m = h & 0x3FF;
    if (e == 0x1F) continue;
    const double want = e == 0 ? sign * std::ldexp(m, -24) : sign * std::ldexp(1024 + m, e - 25);
    ASSERT_EQ(HalfToFloat(static_cast<uint16_t>(h)), static_cast<float>(want)) << h;
  }
}

TEST(Bf16Test, KnownBitPatterns) {
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0xC040), -3.0f);
  EXPECT_EQ(Bf16ToFloat(0x3E20), 0.15625f);
  EXPECT_EQ(Bf16ToFloat(0x0001), std::ldexp(1.0f, -133));
  EXPECT_EQ(Bf16ToFloat(0x7F80), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(Bf16ToFloat(0x7FC0)));
}

TEST(DequantTest, F32F16Bf16) {
  const std::vector<float> f = {1.5f, -0.25f, 3e-5f, 0.0f};
  std::string b(reinterpret_cast<const char*>(f.data()), 16);
  EXPECT_EQ(Decode(GgmlType::kF32, b, 4), f);
  std::string h;
  for (uint16_t v : {0x3C00, 0xB400, 0x0001, 0x7BFF}) PutHalf(h, v);
  EXPECT_EQ(Decode(GgmlType::kF16, h, 4),
            (std::vector<float>{1.0f, -0.25f, std::ldexp(1.0f, -24), 65504.0f}));
  std::string bf;
  for (uint16_t v : {0x3F80, 0xBE80, 0x4049}) PutHalf(bf, v);
  EXPECT_EQ(Decode(GgmlType::kBF16, bf, 3), (std::vector<float>{1.0f, -0.25f, 3.140625f}));
}

// Two Q8_0 blocks: {fp16 d; int8 q[32]}, x = d * q.
TEST(DequantTest, Q8_0) {
  const uint16_t d_bits[2] = {0x3800 /*0.5*/, 0xB000 /*-0.125*/};
  const float d[2] = {0.5f, -0.125f};
  std::string b;
  std::vector<int8_t> q(64);
  for (int i = 0; i < 64; ++i) q[i] = static_cast<int8_t>(i * 9 - 128);  // -128..439 wraps
  for (int blk = 0; blk < 2; ++blk) {
    PutHalf(b, d_bits[blk]);
    b.append(reinterpret_cast<const char*>(q.data() + 32 * blk), 32);
  }
  const std::vector<float> y = Decode(GgmlType::kQ8_0, b, 64);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(y[i], d[i / 32] * q[i]) << i;
}

// Q4_0: {fp16 d; u8 qs[16]}, element j < 16 is the low nibble of qs[j], element j + 16 the
// high nibble; x = d * (q - 8).
TEST(DequantTest, Q4_0) {
  std::vector<int> q(64);
  for (int i = 0; i < 64; ++i) q[i] = (i * 7 + 3) % 16;
  const float d[2] = {2.0f, -0.0625f};
  std::string b;
  for (int blk = 0; blk < 2; ++blk) {
    PutHalf(b, blk == 0 ? 0x4000 : 0xAC00);
    for (int j = 0; j < 16; ++j) {
      b.push_back(static_cast<char>(q[32 * blk + j] | (q[32 * blk + j + 16] << 4)));
    }
  }
  const std::vector<float> y = Decode(GgmlType::kQ4_0, b, 64);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(y[i], d[i / 32] * (q[i] - 8)) << i;
}

// Q4_1: {fp16 d; fp16 m; u8 qs[16]}, x = d * q + m.
TEST(DequantTest, Q4_1) {
  std::vector<int> q(64);
  for (int i = 0; i < 64; ++i) q[i] = (i * 5 + 1) % 16;
  const float d[2] = {0.25f, 1.0f};
  const float m[2] = {-1.5f, 0.5f};
  std::string b;
  for (int blk = 0; blk < 2; ++blk) {
    PutHalf(b, blk == 0 ? 0x3400 : 0x3C00);
    PutHalf(b, blk == 0 ? 0xBE00 : 0x3800);
    for (int j = 0; j < 16; ++j) {
      b.push_back(static_cast<char>(q[32 * blk + j] | (q[32 * blk + j + 16] << 4)));
    }
  }
  const std::vector<float> y = Decode(GgmlType::kQ4_1, b, 64);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(y[i], d[i / 32] * q[i] + m[i / 32]) << i;
}

// Q6_K super-block of 256: {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}. Element i
// (half = i / 128, r = i % 128, g = r / 32, l = r % 32) has its low 4 bits in
// ql[64*half + 32*(g & 1) + l] (low nibble for g < 2, high for g >= 2), its high 2 bits in
// qh[32*half + l] at bit 2*g, and its scale is scales[i / 16]; x = d * scale * (q - 32).
TEST(DequantTest, Q6_K) {
  constexpr int kN = 512;
  std::vector<int> q(kN);
  for (int i = 0; i < kN; ++i) q[i] = (i * 37 + 11) % 64;
  std::vector<int8_t> sc(32);
  for (int s = 0; s < 32; ++s) sc[s] = static_cast<int8_t>((s * 29) % 127 - 63);
  const float d[2] = {0.125f, -0.5f};
  std::string b;
  for (int blk = 0; blk < 2; ++blk) {
    uint8_t ql[128] = {}, qh[64] = {};
    for (int k = 0; k < 256; ++k) {
      const int v = q[256 * blk + k];
      const int half = k / 128, r = k % 128, g = r / 32, l = r % 32;
      uint8_t& lo = ql[64 * half + 32 * (g & 1) + l];
      lo |= g < 2 ? (v & 0xF) : ((v & 0xF) << 4);
      qh[32 * half + l] |= static_cast<uint8_t>((v >> 4) << (2 * g));
    }
    b.append(reinterpret_cast<const char*>(ql), 128);
    b.append(reinterpret_cast<const char*>(qh), 64);
    b.append(reinterpret_cast<const char*>(sc.data() + 16 * blk), 16);
    PutHalf(b, blk == 0 ? 0x3000 : 0xB800);
  }
  ASSERT_EQ(b.size(), 2u * 210u);
  const std::vector<float> y = Decode(GgmlType::kQ6_K, b, kN);
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(y[i], d[i / 256] * sc[i / 16] * (q[i] - 32)) << i;
  }
}

TEST(GgmlBytesTest, SizesAndErrors) {
  EXPECT_EQ(*GgmlBytes(static_cast<uint32_t>(GgmlType::kQ4_1), 64), 40);
  EXPECT_EQ(*GgmlBytes(static_cast<uint32_t>(GgmlType::kQ6_K), 512), 420);
  EXPECT_EQ(*GgmlBytes(static_cast<uint32_t>(GgmlType::kBF16), 3), 6);
  EXPECT_FALSE(GgmlBytes(static_cast<uint32_t>(GgmlType::kQ8_0), 33).ok());
  EXPECT_FALSE(GgmlBytes(999, 32).ok());
  EXPECT_FALSE(GgmlBytes(static_cast<uint32_t>(GgmlType::kF32), -1).ok());
  EXPECT_FALSE(
      GgmlBytes(static_cast<uint32_t>(GgmlType::kF64), std::numeric_limits<int64_t>::max()).ok());
}

TEST(DequantTest, RejectsUnsupportedAndMismatchedSizes) {
  std::vector<uint8_t> src(144, 0);
  std::vector<float> dst(256);
  absl::Status st = DequantizeGgml(static_cast<uint32_t>(GgmlType::kQ4_K), src.data(), src.size(),
                                   256, dst.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("Q4_K"), std::string::npos) << st;
  EXPECT_NE(st.message().find("Q6_K"), std::string::npos) << st;  // lists the supported ones
  st = DequantizeGgml(static_cast<uint32_t>(GgmlType::kQ8_0), src.data(), 33, 32, dst.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  st = DequantizeGgml(12345, src.data(), 4, 1, dst.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
}

}  // namespace
}  // namespace hipserve::worker::loader
