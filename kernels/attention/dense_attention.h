// Dense causal attention with grouped-query heads over already-rotated q/k (the baseline and
// short-context path; HiP sparse attention lives elsewhere).
#pragma once

#include "absl/status/status.h"

namespace hipserve::kernels {

struct DenseAttentionParams {
  const float* q = nullptr;  // [num_q, num_heads, head_dim]
  const float* k = nullptr;  // [num_kv, num_kv_heads, head_dim]
  const float* v = nullptr;  // [num_kv, num_kv_heads, head_dim]
  float* out = nullptr;      // [num_q, num_heads, head_dim]; must not alias q, k or v
  int num_q = 0;             // > 0
  int num_kv = 0;            // > 0
  int num_heads = 0;         // > 0, multiple of num_kv_heads
  int num_kv_heads = 0;      // > 0; query head h reads kv head h / (num_heads / num_kv_heads)
  int head_dim = 0;          // > 0
  int q_offset = 0;          // query i sits at key position q_offset + i and sees keys
                             // [0, q_offset + i]; needs q_offset >= 0, q_offset + num_q <= num_kv
  float scale = 0.f;         // softmax scale (> 0, finite), usually 1/sqrt(head_dim)
};

// InvalidArgument naming the first bad field (shared by every implementation).
absl::Status ValidateDenseAttention(const DenseAttentionParams& p);

// CPU reference: fp32, two-pass softmax (max, then exp-sum) per (query, head).
// Prefill: q_offset = 0, num_q = num_kv. Decode: num_q = 1, q_offset = num_kv - 1.
absl::Status DenseAttentionRef(const DenseAttentionParams& p);

// The CPU serving path: same contract and validation as DenseAttentionRef, computed per KV
// head and block of queries as two sgemm calls (Q K^T, then P V through OpenBLAS) with a
// causal softmax in between, so the GQA group's query heads share each pass over K and V.
// Results differ from the reference only by fp32 summation order.
absl::Status DenseAttentionBlocked(const DenseAttentionParams& p);

}  // namespace hipserve::kernels
