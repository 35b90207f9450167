// Device code for SwigluGpu (see swiglu.h for the contract). Included only by swiglu.cu.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::swiglu_internal {

using cuda_util::Bf16BitsToFloat;
using cuda_util::FloatToBf16Bits;
using cuda_util::Pack;

// silu(g) * u in fp32, the reference's expression (g -> -inf gives -0, not NaN).
__device__ __forceinline__ uint16_t Swiglu(uint16_t g_bits, uint16_t u_bits) {
  const float g = Bf16BitsToFloat(g_bits);
  return FloatToBf16Bits(g / (1.f + expf(-g)) * Bf16BitsToFloat(u_bits));
}

// Grid-stride over rows * (cols / N) packs of N elements (N = 8: one 16-byte access).
template <int N>
__global__ void SwigluKernel(const uint16_t* gate, const uint16_t* up, uint16_t* out, int rows,
                             int cols, int64_t in_stride) {
  const int packs_per_row = cols / N;
  const int64_t total = static_cast<int64_t>(rows) * packs_per_row;
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < total;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = u / packs_per_row;
    const int64_t j = (u - r * packs_per_row) * N;
    const int64_t in_off = r * in_stride + j;
    const int64_t out_off = r * cols + j;
    if constexpr (N == 8) {
      Pack<8> g, v, o;
      g.u = *reinterpret_cast<const uint4*>(gate + in_off);
      v.u = *reinterpret_cast<const uint4*>(up + in_off);
#pragma unroll
      for (int k = 0; k < 8; ++k) o.h[k] = Swiglu(g.h[k], v.h[k]);
      *reinterpret_cast<uint4*>(out + out_off) = o.u;
    } else {
      out[out_off] = Swiglu(gate[in_off], up[in_off]);
    }
  }
}

}  // namespace hipserve::kernels::swiglu_internal
