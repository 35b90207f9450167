// fp8 e5m2 <-> bf16 codec used by the cold tier and the cache banks (rules in kvstore/FORMAT.md).
//
// Header-only; the fp8 codec is usable from host code and CUDA device code. All values are raw
// bit patterns: bf16 as uint16_t, fp8 e5m2 as uint8_t. The bf16 <-> float codec is kernels'
// (kernels/dtype/bf16.h on the host, kernels/cuda/bf16_pack.cuh on the device); kvstore names
// it here for its callers.
// Encode (bf16 -> e5m2): round to nearest, ties to even; finite values beyond the largest
// finite e5m2 (57344) saturate to +-57344; +-Inf stays +-Inf (0x7C/0xFC); NaN becomes
// sign|0x7F; bf16 subnormals and magnitudes below 2^-17 become signed zero.
// Decode (e5m2 -> bf16) is exact: every e5m2 value is a bf16 value.
#pragma once

#include <cstdint>

#include "kernels/dtype/bf16.h"

#if defined(__CUDACC__)
#define HIPSERVE_HD __host__ __device__ __forceinline__
#else
#define HIPSERVE_HD inline
#endif

namespace hipserve::kvstore {

inline constexpr uint8_t kFp8E5m2MaxFinite = 0x7B;  // 57344
inline constexpr uint8_t kFp8E5m2Inf = 0x7C;
inline constexpr uint8_t kFp8E5m2NaN = 0x7F;

HIPSERVE_HD uint8_t Bf16ToFp8E5m2(uint16_t b) {
  const uint8_t sign = static_cast<uint8_t>((b >> 8) & 0x80);
  const int exp = (b >> 7) & 0xFF;
  const int man = b & 0x7F;
  if (exp == 0xFF) return sign | (man != 0 ? kFp8E5m2NaN : kFp8E5m2Inf);
  if (exp == 0) return sign;  // bf16 zero or subnormal (< 2^-126): rounds to zero
  const int e = exp - 127;    // value = sig * 2^(e-7), sig in [128, 255]
  if (e > 15) return sign | kFp8E5m2MaxFinite;
  const int sig = 0x80 | man;
  const int te = e < -14 ? -14 : e;  // e5m2 exponent of the result (subnormals use -14)
  const int shift = 5 + (te - e);    // keep 2 fraction bits at exponent te
  if (shift > 9) return sign;        // below half of the smallest subnormal
  int q = sig >> shift;
  const int rem = sig & ((1 << shift) - 1);
  const int half = 1 << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;
  // q in [0, 8]; q >= 4 means a normal number (a carry to 8 bumps the exponent).
  const int code = ((te + 14) << 2) + q;
  return sign | static_cast<uint8_t>(code > kFp8E5m2MaxFinite ? kFp8E5m2MaxFinite : code);
}

HIPSERVE_HD uint16_t Fp8E5m2ToBf16(uint8_t c) {
  const uint16_t sign = static_cast<uint16_t>((c & 0x80) << 8);
  const int ef = (c >> 2) & 0x1F;
  const int mf = c & 3;
  if (ef == 31) return sign | (mf != 0 ? 0x7FC0 : 0x7F80);
  if (ef == 0) {
    if (mf == 0) return sign;
    // mf * 2^-16: 1 -> 2^-16, 2 -> 2^-15, 3 -> 1.5 * 2^-15.
    if (mf == 1) return sign | static_cast<uint16_t>((127 - 16) << 7);
    if (mf == 2) return sign | static_cast<uint16_t>((127 - 15) << 7);
    return sign | static_cast<uint16_t>(((127 - 15) << 7) | 0x40);
  }
  return sign | static_cast<uint16_t>(((ef + 112) << 7) | (mf << 5));
}

// bf16 <-> float on the host (round to nearest even; NaN stays NaN): kernels/dtype/bf16.h.
using kernels::Bf16ToFloat;
using kernels::FloatToBf16;

}  // namespace hipserve::kvstore
