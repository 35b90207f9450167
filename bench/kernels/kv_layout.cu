// Device-side KV re-layouts for bench_decode_kv (benchmark setup only, not library code).
#include <cuda_runtime.h>

#include <cstdint>

#include "bench/kernels/kv_layout.h"
#include "kvstore/fp8_e5m2.h"

namespace hipserve::bench {
namespace {

__global__ void ToFp8Kernel(uint8_t* out, const uint16_t* in, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = kvstore::Bf16ToFp8E5m2(in[i]);
  }
}

// 16-byte vector i of a [tokens][kv_heads][vecs] layout: its token t, head h and vector vec.
struct RowVec {
  int64_t t;
  int h;
  int vec;
};
__device__ __forceinline__ RowVec At(int64_t i, int kv_heads, int vecs) {
  const int64_t th = i / vecs;
  return {th / kv_heads, static_cast<int>(th % kv_heads), static_cast<int>(i % vecs)};
}

__device__ __forceinline__ void Copy16(uint8_t* dst, const uint8_t* src) {
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
}

// One thread per 16 bytes of a token row of one head.
__global__ void ColdPagesKernel(uint8_t* pages, const uint8_t* k, const uint8_t* v, int64_t tokens,
                                int kv_heads, int head_dim, int64_t page_stride) {
  const int vecs = head_dim / 16;
  const int64_t total = tokens * kv_heads * vecs;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const auto [t, h, vec] = At(i, kv_heads, vecs);
    const int64_t src = (t * kv_heads + h) * head_dim + vec * 16;
    uint8_t* page = pages + (h * page_stride + t / 64) * (2 * 64 * head_dim);
    uint8_t* dk = page + (t % 64) * head_dim + vec * 16;
    Copy16(dk, k + src);
    Copy16(dk + 64 * head_dim, v + src);
  }
}

__global__ void ScatterKernel(uint8_t* bank_k, uint8_t* bank_v, const uint8_t* k, const uint8_t* v,
                              const int32_t* slots, int64_t tokens, int kv_heads, int row_bytes,
                              int64_t slot_stride) {
  const int vecs = row_bytes / 16;
  const int64_t total = tokens * kv_heads * vecs;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const auto [t, h, vec] = At(i, kv_heads, vecs);
    const int32_t slot = slots[h * slot_stride + t];
    if (slot < 0) continue;
    const int64_t src = (t * kv_heads + h) * row_bytes + vec * 16;
    const int64_t dst = int64_t{slot} * row_bytes + vec * 16;
    Copy16(bank_k + dst, k + src);
    Copy16(bank_v + dst, v + src);
  }
}

}  // namespace

cudaError_t Bf16ToFp8Device(void* dst, const void* src, int64_t n, void* stream) {
  ToFp8Kernel<<<1024, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<uint8_t*>(dst), static_cast<const uint16_t*>(src), n);
  return cudaGetLastError();
}

cudaError_t PackColdPages(void* pages, const void* k, const void* v, int64_t tokens, int kv_heads,
                          int head_dim, int64_t page_stride, void* stream) {
  ColdPagesKernel<<<1024, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<uint8_t*>(pages), static_cast<const uint8_t*>(k), static_cast<const uint8_t*>(v),
      tokens, kv_heads, head_dim, page_stride);
  return cudaGetLastError();
}

cudaError_t ScatterToBank(void* bank_k, void* bank_v, const void* k, const void* v,
                          const int32_t* slots, int64_t tokens, int kv_heads, int row_bytes,
                          int64_t slot_stride, void* stream) {
  ScatterKernel<<<1024, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<uint8_t*>(bank_k), static_cast<uint8_t*>(bank_v), static_cast<const uint8_t*>(k),
      static_cast<const uint8_t*>(v), slots, tokens, kv_heads, row_bytes, slot_stride);
  return cudaGetLastError();
}

}  // namespace hipserve::bench
