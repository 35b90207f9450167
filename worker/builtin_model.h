// Built-in tiny Llama with seeded random weights: same code path as real models, any shape,
// no files. Used by tests and as the model of `hipserve serve --model=builtin:tiny`.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "worker/weights.h"

namespace hipserve::worker {

struct BuiltinModelOptions {
  uint64_t seed = 1234;  // weights are a pure function of the seed and shape
  int vocab_size = 259;  // 256 bytes + 3 specials: matches the "byte" tokenizer
  int hidden = 64;
  int intermediate = 128;
  int num_layers = 2;
  int num_heads = 4;
  int num_kv_heads = 2;
  int head_dim = 16;
  int max_context = 4096;
};

// Full (unsharded) weights, values rounded to bf16 so CPU and GPU see identical weights.
absl::StatusOr<ModelWeights> MakeBuiltinModel(const BuiltinModelOptions& options);

// Slices full weights for `rank` of `world_size` (Megatron split; see weights.h).
// InvalidArgument when world_size does not divide the KV heads, the MLP width or the vocab.
absl::StatusOr<ModelWeights> ShardWeights(ModelWeights full, int rank, int world_size);

}  // namespace hipserve::worker
