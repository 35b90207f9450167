// Speed presets without weight files: `--model=random:NAME` is a Llama-family model with the
// exact shape and RoPE (llama3 scaling included) of a real checkpoint, seeded random bf16-valued
// weights and a byte-level tokenizer over the whole vocabulary (model_source.h
// ByteLevelTokenizerSpec). Benchmarks use it to measure a real model's cost without downloading
// it; it runs through every code path a loaded model does (Model, sharding, dense and HiP
// attention, sampling).
//
// Presets (RandomModelPresetNames()):
//   llama-3.1-8b     Llama-3.1-8B: vocab 128256, hidden 4096, MLP 14336, 32 layers, 32 heads,
//                    8 KV heads, head_dim 128, rms_eps 1e-5, rope_theta 500000 with llama3
//                    scaling (factor 8, low 1, high 4, original 8192), max_context 131072.
//   llama-3.1-8b-2l  the same with 2 layers (GPU tests: every kernel shape of the 8B, 1.5 B
//                    weights instead of 8 B).
//   tiny-llama3      small dims (vocab 512, hidden 128, 4 layers) with the 8B's RoPE and
//                    context: CPU tests.
// max_context is the pretrained length (HiP's pretrained_context); --max_context may ask for
// more, as with any model (Model does not cap it at the pretrained length).
//
// Memory: ModelWeights holds fp32, so llama-3.1-8b needs ~32 GB of host memory for its weights
// (8.03 B values; --cpu_weights=bf16 converts one tensor at a time, so the peak stays ~32 GB and
// drops to ~16 GB), llama-3.1-8b-2l ~6 GB.
//
// Weights: value i of tensor t is a pure function of (seed, t, i) (splitmix64 of a counter), so
// generation runs in parallel over chunks of every tensor on the shared CPU pool and the
// result does not depend on the thread count. Values are near-normal (Irwin-Hall of four
// 16-bit uniforms, |x| < 3.5 std) rounded to bf16, so CPU fp32 and GPU bf16 see the same
// weights. Scales keep activations sane through any depth: embeddings std 1, Q/K/V/gate/up std
// 1/sqrt(fan_in) (unit-variance outputs of a normalized input), O/down 0.5/sqrt(fan_in) (the
// residual stream grows slowly), LM head 3/sqrt(hidden) (logits std ~3, varied argmax), norms 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/weights.h"

namespace hipserve::worker {

inline constexpr char kRandomModelPrefix[] = "random:";

// Preset names without the "random:" prefix, in a stable order.
std::vector<std::string> RandomModelPresetNames();

// Shape, norms' eps, RoPE and max_context of `preset` (without "random:"); generates nothing.
// dims.name is "random:<preset>". InvalidArgument naming the known presets for any other name.
absl::StatusOr<ModelDims> RandomModelDims(absl::string_view preset);

struct RandomWeightsOptions {
  uint64_t seed = 1234;
  // Threads for generation: 1 = the calling thread only; anything else = the shared CPU pool
  // (common::ParallelFor). The weights are the same either way.
  int threads = 0;
};

// Full (unsharded, world_size 1) weights of shape `dims`: Llama layout, no biases, untied LM
// head (InvalidArgument for qkv_bias or tie_word_embeddings, and for inconsistent sizes).
// Logs progress for large models. dims are copied unchanged into the result.
absl::StatusOr<ModelWeights> MakeRandomWeights(const ModelDims& dims,
                                               const RandomWeightsOptions& options);

// RandomModelDims + MakeRandomWeights; the name becomes "random:<preset>/seed<seed>".
absl::StatusOr<ModelWeights> MakeRandomModel(absl::string_view preset,
                                             const RandomWeightsOptions& options);

}  // namespace hipserve::worker
