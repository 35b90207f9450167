// The device home of bf16 (the host one is kernels/dtype/bf16.h; both use the same bits, the
// upper half of an IEEE-754 binary32, stored as uint16_t): conversions of single values, packed
// pairs (element 2i in the low half of a 32-bit word, the mma / memory order) and 8-element
// groups, plus the N-element packs of the elementwise kernels (RMSNorm, RoPE, SwiGLU), where
// N == 8 is one 16-byte memory transaction. Include only from .cu / _kernel.cuh files.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace hipserve::kernels::cuda_util {

__device__ __forceinline__ float Bf16BitsToFloat(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}

// Round-to-nearest-even, NaN preserved (matches FloatToBf16 on the host).
__device__ __forceinline__ uint16_t FloatToBf16Bits(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// The low / high element of a packed bf16 pair -> float (exact).
__device__ __forceinline__ float Bf16LoToFloat(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float Bf16HiToFloat(uint32_t w) {
  return __uint_as_float(w & 0xffff0000u);
}

// Element `hi` (0: low half, 1: high half) of a packed bf16 pair -> float (exact); one select
// on the bits, for a runtime `hi`.
__device__ __forceinline__ float Bf16PairElemToFloat(uint32_t w, int hi) {
  return __uint_as_float(hi ? (w & 0xffff0000u) : (w << 16));
}

// 8 bf16 (one 16-byte load, element 2i in the low half of word i) -> f[0..8) (exact).
__device__ __forceinline__ void Bf16x8ToFloat(const uint4& r, float* f) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = Bf16LoToFloat(w[i]);
    f[2 * i + 1] = Bf16HiToFloat(w[i]);
  }
}

// Two floats -> a packed bf16 pair (`lo` in the low half), each rounded to nearest even.
__device__ __forceinline__ uint32_t PackBf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Two floats that hold bf16 values already -> a packed pair, by truncation (no rounding: the
// caller guarantees the low 16 bits are zero).
__device__ __forceinline__ uint32_t PackExactBf16x2(float lo, float hi) {
  return (__float_as_uint(lo) >> 16) | (__float_as_uint(hi) & 0xffff0000u);
}

template <int N>
union Pack {
  uint16_t h[N];
};
template <>
union Pack<8> {
  uint16_t h[8];
  uint4 u;
};

template <int N>
__device__ __forceinline__ Pack<N> LoadPack(const uint16_t* p) {
  Pack<N> v;
  if constexpr (N == 8) {
    v.u = *reinterpret_cast<const uint4*>(p);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) v.h[i] = p[i];
  }
  return v;
}

template <int N>
__device__ __forceinline__ void StorePack(uint16_t* p, const Pack<N>& v) {
  if constexpr (N == 8) {
    *reinterpret_cast<uint4*>(p) = v.u;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = v.h[i];
  }
}

}  // namespace hipserve::kernels::cuda_util
