// Device helpers shared by the bf16 elementwise kernels (RMSNorm, RoPE, SwiGLU): bf16 bit
// conversions and N-element packs, where N == 8 is one 16-byte memory transaction.
// Include only from .cu / _kernel.cuh files.
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
