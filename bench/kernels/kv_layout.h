// Device-side KV re-layouts used to set up bench_decode_kv (benchmark code, not library code).
// All asynchronous on `stream` (a cudaStream_t); pointers are device-visible.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hipserve::bench {

// dst[i] = e5m2 code of the bf16 src[i] (kvstore's codec: RNE, saturating).
cudaError_t Bf16ToFp8Device(void* dst, const void* src, int64_t n, void* stream);

// fp8 K/V [tokens][kv_heads][head_dim] -> kvstore cold pages (FORMAT.md): page (h, p) at
// pages + (h * page_stride + p) * 2 * 64 * head_dim holds K [64][head_dim] then V.
// head_dim multiple of 16.
cudaError_t PackColdPages(void* pages, const void* k, const void* v, int64_t tokens, int kv_heads,
                          int head_dim, int64_t page_stride, void* stream);

// Bank rows: for every (h, t) with slots[h * slot_stride + t] >= 0, copies the row_bytes-byte
// row (t, h) of k / v ([tokens][kv_heads] rows) to that bank row. row_bytes multiple of 16.
cudaError_t ScatterToBank(void* bank_k, void* bank_v, const void* k, const void* v,
                          const int32_t* slots, int64_t tokens, int kv_heads, int row_bytes,
                          int64_t slot_stride, void* stream);

}  // namespace hipserve::bench
