// Device-side K/V element access for the decode kernels: raw loads of one lane's 8 elements of a
// row (bf16: 16 bytes, fp8 e5m2: 8 bytes), their exact conversion to fp32 (bf16 through
// kernels/cuda/bf16_pack.cuh), and the address of a
// token's rows in a TieredKvSource (kv_source.h). Included only by .cu files.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/attention_cuda/kv_source.h"
#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::kv_access {

// 8 fp8 e5m2 codes (r.x, r.y; byte i = element i) -> 8 floats. Exact: an e5m2 code is the high
// byte of the fp16 encoding of the same value (sign, 5-bit exponent with bias 15, top 2
// mantissa bits), and fp16 -> fp32 is exact (subnormals included). Equals
// Bf16ToFloat(kvstore::Fp8E5m2ToBf16(code)) for every non-NaN code; NaN codes give NaN.
__device__ __forceinline__ void Fp8x8ToFloat(const uint4& r, float (&f)[8]) {
  const uint32_t w[2] = {r.x, r.y};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    // Bytes (b0, b1) -> fp16x2 (b0 << 8, b1 << 8); likewise (b2, b3).
    const uint32_t lo = __byte_perm(w[i], 0u, 0x1404);
    const uint32_t hi = __byte_perm(w[i], 0u, 0x3424);
    const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&lo));
    const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&hi));
    f[4 * i] = a.x;
    f[4 * i + 1] = a.y;
    f[4 * i + 2] = b.x;
    f[4 * i + 3] = b.y;
  }
}

__device__ __forceinline__ void ToFloat8(const uint4& r, bool fp8, float (&f)[8]) {
  if (fp8) {
    Fp8x8ToFloat(r, f);
  } else {
    cuda_util::Bf16x8ToFloat(r, f);
  }
}

// One lane's 8 elements from device memory (read-only path). `fp8`: 8 bytes into .x/.y.
__device__ __forceinline__ uint4 LoadDevice8(const uint8_t* p, bool fp8) {
  if (fp8) {
    const uint2 x = __ldg(reinterpret_cast<const uint2*>(p));
    return make_uint4(x.x, x.y, 0u, 0u);
  }
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// One lane's 8 fp8 elements from mapped host memory (plain load: not cached as read-only data).
__device__ __forceinline__ uint4 LoadHostFp8x8(const uint8_t* p) {
  const uint2 x = *reinterpret_cast<const uint2*>(p);
  return make_uint4(x.x, x.y, 0u, 0u);
}

// Where one token's K and V rows (this lane's 8 elements) are, and in which format.
struct RowRef {
  const uint8_t* k;
  const uint8_t* v;
  bool fp8;   // element format at k / v
  bool host;  // k / v point into mapped host memory (cold tier)
};

// The slot and page table rows of (batch entry b, KV head h): the entry's own tables
// (TieredKvSource::entries), else list (one_sequence ? 0 : b * num_kv_heads) + h of the shared
// ones.
struct TieredRows {
  const int32_t* slots;
  const uint64_t* pages;
};
__device__ __forceinline__ TieredRows TieredListRows(const TieredKvSource& src, int b,
                                                     int num_kv_heads, int h) {
  if (src.entries != nullptr) {
    const TieredKvTables& e = src.entries[b];
    return {e.slot_table + h * e.slot_stride, e.cold_pages + h * e.page_stride};
  }
  const int64_t list = (src.one_sequence ? 0 : static_cast<int64_t>(b) * num_kv_heads) + h;
  return {src.slot_table + list * src.slot_stride, src.cold_pages + list * src.page_stride};
}

// Token `t` of the (sequence, KV head) whose slot / page table rows start at `slots` / `pages`.
// `elem_off` = this lane's first element within the row; bank rows are in the bank dtype
// (`bank_fp8`), cold rows fp8.
template <int HD>
__device__ __forceinline__ RowRef TieredRow(const TieredKvSource& src, const int32_t* slots,
                                            const uint64_t* pages, int t, int elem_off,
                                            bool bank_fp8) {
  RowRef r;
  const int32_t slot = slots[t];
  if (slot >= 0) {
    const int64_t off = (static_cast<int64_t>(slot) * HD + elem_off) * (bank_fp8 ? 1 : 2);
    r.k = static_cast<const uint8_t*>(src.bank_k) + off;
    r.v = static_cast<const uint8_t*>(src.bank_v) + off;
    r.fp8 = bank_fp8;
    r.host = false;
  } else {
    const uint8_t* page = reinterpret_cast<const uint8_t*>(pages[t / kKvPageTokens]);
    r.k = page + (t % kKvPageTokens) * HD + elem_off;
    r.v = r.k + kKvPageTokens * HD;
    r.fp8 = true;
    r.host = true;
  }
  return r;
}

__device__ __forceinline__ uint4 LoadRef8(const uint8_t* p, bool fp8, bool host) {
  return host ? LoadHostFp8x8(p) : LoadDevice8(p, fp8);
}

}  // namespace hipserve::kernels::kv_access
