// Dense causal prefill attention on the GPU, FlashAttention-2 style: one thread block per
// (tile of kPrefillBlockM query rows, query head); K/V tiles of 64 keys are staged in shared
// memory by cp.async (two stages: the next tile loads while the current one computes), Q K^T
// and P V run on the tensor cores (mma.sync m16n8k16 bf16, fp32 accumulate) with an online
// softmax (running max, running sum) in registers. Grouped-query heads: query head h reads KV
// head h / (num_heads / num_kv_heads). Keys are used as stored: rotate q and k (RoPE) before.
//
// Causality and chunked prefill: query i sits at position q_offset + i and sees keys
// [0, q_offset + i]; num_kv = q_offset + num_q (the chunk's own keys are the last num_q rows of
// k/v). Batch 1: one sequence per call (packed / varlen batches are not supported yet; call once
// per sequence).
//
// Numerics: bf16 q/out; K/V bf16 or fp8 e5m2 (`kv_dtype`; fp8 codes are decoded exactly to bf16
// in shared memory, so fp8 K/V give the bf16 kernel's result on the decoded values); fp32
// scores, softmax and accumulation (probabilities are rounded to bf16 for the P V product, as in
// FlashAttention); the output is rounded to bf16 once.
// Supported: head_dim 64, 128; kv_dtype bf16, fp8_e5m2; anything else returns InvalidArgument
// naming the supported values.
//
// Thread-safety: reentrant. Asynchronous on `stream` (a cudaStream_t, null = legacy default
// stream); no allocation, so a call can be captured in a CUDA graph. CPU builds return
// UnimplementedError.
#pragma once

#include "absl/status/status.h"
#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::kernels {

inline constexpr int kPrefillBlockM = 64;  // query rows per thread block
inline constexpr int kPrefillBlockN = 64;  // keys per shared-memory tile

struct DensePrefillAttentionGpuParams {
  // Device memory, 16-byte aligned, rows contiguous (no extra strides). q / out bf16 (uint16_t
  // storage, kernels/dtype/bf16.h); k / v in `kv_dtype` (bf16, or fp8 e5m2 codes: uint8_t,
  // kvstore/FORMAT.md).
  const void* q = nullptr;  // [num_q, num_heads, head_dim] bf16
  const void* k = nullptr;  // [num_kv, num_kv_heads, head_dim] kv_dtype, num_kv = q_offset + num_q
  const void* v = nullptr;  // [num_kv, num_kv_heads, head_dim] kv_dtype
  KvDtype kv_dtype = KvDtype::kBf16;  // element type of k and v
  void* out = nullptr;                // [num_q, num_heads, head_dim] bf16; must not alias q, k, v
  int num_q = 0;                      // > 0: query rows of this chunk
  int q_offset = 0;                   // >= 0: position of query 0 (0 for a whole-prompt prefill)
  int num_heads = 0;                  // > 0, multiple of num_kv_heads
  int num_kv_heads = 0;               // > 0
  int head_dim = 0;                   // 64 or 128
  float scale = 0.f;                  // softmax scale (finite, > 0), usually 1/sqrt(head_dim)
};

// Runs the attention. `stream` is a cudaStream_t.
absl::Status DensePrefillAttentionGpu(const DensePrefillAttentionGpuParams& p, void* stream);

}  // namespace hipserve::kernels
