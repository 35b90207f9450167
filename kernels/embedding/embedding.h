// Token embedding lookup for one vocab shard (Megatron vocab-parallel embedding): each rank
// holds rows [vocab_begin, vocab_end) of the table and writes zeros for ids it doesn't own, so
// an all-reduce (sum) over ranks gives the full lookup.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace hipserve::kernels {

struct EmbeddingParams {
  const float* table = nullptr;  // [vocab_end - vocab_begin, hidden] row-major, this shard's rows
  int64_t vocab_begin = 0;       // first global id held by this shard (>= 0)
  int64_t vocab_end = 0;         // one past the last global id held (> vocab_begin)
  int hidden = 0;                // row width (> 0)
  const int32_t* ids = nullptr;  // [num_tokens] global token ids (>= 0)
  int num_tokens = 0;            // > 0
  float* out = nullptr;          // [num_tokens, hidden]; ids outside [begin, end) give zero rows
};

// CPU reference. Validates everything before writing, so on error `out` is untouched.
// InvalidArgument names the offending field (null pointer, bad size, negative id).
absl::Status EmbeddingRef(const EmbeddingParams& p);

// GPU version: a gather of bf16 rows (uint16_t storage, kernels/dtype/bf16.h), device memory
// throughout. Ids outside [vocab_begin, vocab_end) -- negative ones included, since device ids
// can't be validated from the host without a sync -- give zero rows. One block per token;
// 16-byte copies when hidden % 8 == 0 and table/out are 16-byte aligned, scalar otherwise.
struct EmbeddingGpuParams {
  const void* table = nullptr;   // [vocab_end - vocab_begin, hidden] bf16, device
  int64_t vocab_begin = 0;       // >= 0
  int64_t vocab_end = 0;         // > vocab_begin
  int hidden = 0;                // > 0
  const int32_t* ids = nullptr;  // [num_tokens] global ids, device
  int num_tokens = 0;            // > 0
  void* out = nullptr;           // [num_tokens, hidden] bf16, device
};
// `stream` is a cudaStream_t (null = default stream). Asynchronous; CPU builds return
// UnimplementedError. InvalidArgument names the offending field.
absl::Status EmbeddingGpu(const EmbeddingGpuParams& p, void* stream);

}  // namespace hipserve::kernels
