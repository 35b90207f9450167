// bfloat16 <-> float conversion on the host: the one host home of the bf16 codec (kvstore and
// the CPU backend include it; device code uses kernels/cuda/bf16_pack.cuh, same bits). bf16
// values are stored as uint16_t (the upper 16 bits of an IEEE-754 binary32), the same bit layout
// the GPU uses, so buffers can be copied between host and device unchanged. The CPU backend
// uses RoundToBf16* to emulate the places where the GPU stores bf16 (DESIGN.md "Numerics").
// The scalar conversions are inline so that header-only users (kvstore) need no link step.
#pragma once

#include <cstdint>
#include <cstring>

namespace hipserve::kernels {

// Round-to-nearest-even. NaN stays NaN (quiet bit forced so it can't turn into Inf);
// +-Inf stay +-Inf; finite values beyond the bf16 range round to +-Inf as in IEEE.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign and payload top, force quiet.
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit.
  const uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;
  return static_cast<uint16_t>(bits >> 16);
}

// Exact: every bf16 is representable as float.
inline float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Bf16ToFloat(FloatToBf16(f)).
inline float RoundToBf16(float f) { return Bf16ToFloat(FloatToBf16(f)); }

// Rounds x[0..n) to bf16 precision in place. n <= 0 is a no-op.
void RoundToBf16InPlace(float* x, int64_t n);

// Converts n values; n <= 0 is a no-op.
void FloatToBf16Array(const float* in, uint16_t* out, int64_t n);
void Bf16ToFloatArray(const uint16_t* in, float* out, int64_t n);

}  // namespace hipserve::kernels
