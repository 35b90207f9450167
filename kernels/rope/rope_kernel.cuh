// Device code for RopeGpu (see rope.h for the contract). Included only by rope.cu.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::rope_internal {

using cuda_util::Bf16BitsToFloat;
using cuda_util::FloatToBf16Bits;
using cuda_util::LoadPack;
using cuda_util::Pack;
using cuda_util::StorePack;

// RopeConfig as plain kernel arguments (kLlama3 -> llama3 = true).
struct KernelConfig {
  double theta;
  bool llama3;
  double factor, low_freq_factor, high_freq_factor, original_max_position;
};

// The same fp64 formula as RopeRef's InvFreqDouble (HF _compute_llama3_parameters).
__device__ __forceinline__ double InvFreq(const KernelConfig& c, int i, int head_dim) {
  double f = 1.0 / pow(c.theta, (2.0 * i) / head_dim);
  if (c.llama3) {
    const double old_len = c.original_max_position;
    const double low_freq_wavelen = old_len / c.low_freq_factor;
    const double high_freq_wavelen = old_len / c.high_freq_factor;
    const double wavelen = 2.0 * 3.14159265358979323846 / f;
    if (wavelen > low_freq_wavelen) {
      f = f / c.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth =
          (old_len / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
      f = (1.0 - smooth) * f / c.factor + smooth * f;
    }
  }
  return f;
}

// Grid-stride over tokens. Dynamic shared memory: half doubles (inv_freq) + 2 * half floats
// (this token's cos and sin). Each thread rotates N pairs (x[j..j+N), x[half+j..half+j+N)).
template <int N>
__global__ void RopeKernel(uint16_t* __restrict__ x, const int32_t* __restrict__ positions,
                           int tokens, int heads, int head_dim, KernelConfig config) {
  extern __shared__ double smem[];
  const int half = head_dim / 2;
  double* inv_freq = smem;
  float* cos_t = reinterpret_cast<float*>(inv_freq + half);
  float* sin_t = cos_t + half;
  for (int i = threadIdx.x; i < half; i += blockDim.x) inv_freq[i] = InvFreq(config, i, head_dim);

  const int packs_per_head = half / N;
  const int units = heads * packs_per_head;
  for (int t = blockIdx.x; t < tokens; t += gridDim.x) {
    __syncthreads();  // inv_freq written / previous token's cos/sin no longer read
    const double pos = positions[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      double s, c;
      sincos(pos * inv_freq[i], &s, &c);
      cos_t[i] = static_cast<float>(c);
      sin_t[i] = static_cast<float>(s);
    }
    __syncthreads();
    uint16_t* row = x + static_cast<int64_t>(t) * heads * head_dim;
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const int h = u / packs_per_head;
      const int j = (u - h * packs_per_head) * N;
      uint16_t* v = row + static_cast<int64_t>(h) * head_dim + j;
      Pack<N> a = LoadPack<N>(v);
      Pack<N> b = LoadPack<N>(v + half);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float x1 = Bf16BitsToFloat(a.h[k]);
        const float x2 = Bf16BitsToFloat(b.h[k]);
        const float c = cos_t[j + k];
        const float s = sin_t[j + k];
        a.h[k] = FloatToBf16Bits(x1 * c - x2 * s);
        b.h[k] = FloatToBf16Bits(x2 * c + x1 * s);
      }
      StorePack<N>(v, a);
      StorePack<N>(v + half, b);
    }
  }
}

}  // namespace hipserve::kernels::rope_internal
