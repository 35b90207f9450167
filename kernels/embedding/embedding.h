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

}  // namespace hipserve::kernels
