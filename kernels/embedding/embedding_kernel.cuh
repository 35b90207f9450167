// Device code for EmbeddingGpu (see embedding.h for the contract). Included only by embedding.cu.
#pragma once

#include <cstdint>

namespace hipserve::kernels::embedding_internal {

// One block per token. T is the copy unit: uint4 (8 bf16, 16 bytes) or uint16_t (1 bf16);
// `units` is the row width in units of T.
template <typename T>
__global__ void EmbeddingKernel(const T* __restrict__ table, int64_t vocab_begin, int64_t vocab_end,
                                const int32_t* __restrict__ ids, int units, T* __restrict__ out) {
  const int64_t id = ids[blockIdx.x];
  T* dst = out + static_cast<int64_t>(blockIdx.x) * units;
  if (id >= vocab_begin && id < vocab_end) {
    const T* src = table + (id - vocab_begin) * units;
    for (int i = threadIdx.x; i < units; i += blockDim.x) dst[i] = src[i];
  } else {
    T zero;
    if constexpr (sizeof(T) == 16) {
      zero = make_uint4(0, 0, 0, 0);
    } else {
      zero = 0;
    }
    for (int i = threadIdx.x; i < units; i += blockDim.x) dst[i] = zero;
  }
}

}  // namespace hipserve::kernels::embedding_internal
