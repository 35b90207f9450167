// Device code for RmsNormGpu (see rmsnorm.h for the contract). Included only by rmsnorm.cu.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::rmsnorm_internal {

using cuda_util::Bf16BitsToFloat;
using cuda_util::FloatToBf16Bits;
using cuda_util::LoadPack;
using cuda_util::Pack;
using cuda_util::StorePack;

// Sum over the block; blockDim.x must be a multiple of 32 (<= 1024). Every thread gets the total.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float warp_sums[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? warp_sums[lane] : 0.f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

// One block per row; each thread owns packs threadIdx.x, threadIdx.x + blockDim.x, ... in both
// passes, so the residual it writes in pass 1 is re-read by the same thread in pass 2.
// `in` and `out` may alias, hence no __restrict__ on them.
template <int N>
__global__ void RmsNormKernel(const uint16_t* in, const uint16_t* __restrict__ weight,
                              uint16_t* out, uint16_t* residual, int dim, float eps) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  const int packs = dim / N;
  const uint16_t* row_in = in + base;
  uint16_t* row_res = residual == nullptr ? nullptr : residual + base;

  float sum_sq = 0.f;
  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    Pack<N> x = LoadPack<N>(row_in + p * N);
    if (row_res != nullptr) {
      const Pack<N> r = LoadPack<N>(row_res + p * N);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        x.h[i] = FloatToBf16Bits(Bf16BitsToFloat(x.h[i]) + Bf16BitsToFloat(r.h[i]));
      }
      StorePack<N>(row_res + p * N, x);
    }
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float f = Bf16BitsToFloat(x.h[i]);
      sum_sq += f * f;
    }
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq) / static_cast<float>(dim) + eps);

  const uint16_t* src = row_res != nullptr ? row_res : row_in;
  uint16_t* row_out = out + base;
  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    const Pack<N> x = LoadPack<N>(src + p * N);
    const Pack<N> w = LoadPack<N>(weight + p * N);
    Pack<N> y;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      y.h[i] = FloatToBf16Bits(Bf16BitsToFloat(x.h[i]) * inv_rms * Bf16BitsToFloat(w.h[i]));
    }
    StorePack<N>(row_out + p * N, y);
  }
}

}  // namespace hipserve::kernels::rmsnorm_internal
