// Device helper shared by the CUDA backend's two fp8 KV writers: the offloaded tiers' append
// (worker/cuda_kv_tiers.cu) and the GPU-resident pool's (worker/cuda_kv_encode.cu). Both encode
// with kvstore's codec (kvstore/fp8_e5m2.h: round to nearest even, saturating), so the pool and
// the tiers hold the same codes for the same bf16 rows. Device code only.
#pragma once

#include <cstdint>

#include "kvstore/fp8_e5m2.h"

namespace hipserve::worker {

// Encodes 8 bf16 (one uint4) into 8 fp8 e5m2 codes (one uint2), element order kept.
__device__ __forceinline__ uint2 EncodeFp8x8(uint4 x) {
  const uint32_t w[4] = {x.x, x.y, x.z, x.w};
  uint32_t out[2] = {0, 0};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const uint16_t b = static_cast<uint16_t>(w[j / 2] >> (16 * (j % 2)));
    out[j / 4] |= static_cast<uint32_t>(kvstore::Bf16ToFp8E5m2(b)) << (8 * (j % 4));
  }
  return make_uint2(out[0], out[1]);
}

}  // namespace hipserve::worker
