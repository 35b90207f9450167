// Resolves a --model value to full (unsharded) weights plus the tokenizer description that
// rank 0 hands to the coordinator.
//   "default"                 SmolLM2-135M-Instruct from scripts/fetch-model.sh's cache
//   "builtin:tiny"            seeded random tiny Llama, byte tokenizer (tests, smoke runs)
//   "builtin:tiny6"           the same with 6 KV heads / 12 heads (TP = 1, 2, 3 tests)
//   "random:NAME"             a real model's shape with seeded random weights and a byte-level
//                             tokenizer, e.g. random:llama-3.1-8b (worker/random_model.h)
//   /path/model.gguf          GGUF file
//   /path/hf_dir/             Hugging Face directory (config.json + *.safetensors)
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "hipserve/v1/worker.pb.h"
#include "worker/weights.h"

namespace hipserve::worker {

inline constexpr char kBuiltinTiny[] = "builtin:tiny";
inline constexpr char kDefaultModel[] = "default";
inline constexpr char kDefaultModelFile[] = "SmolLM2-135M-Instruct.Q4_1.gguf";

// $HIPSERVE_MODEL_CACHE (or ~/.cache/hipserve/models) / kDefaultModelFile.
std::string DefaultModelPath();

struct LoadedSource {
  ModelWeights weights;  // full weights (world_size 1)
  v1::control::TokenizerSpec tokenizer;
};

// The tokenizer of random:* models: the byte tokenizer's ids and encoding (0..255 the bytes,
// 256 <|endoftext|>, 257 <|im_start|>, 258 <|im_end|>; EOS {256, 258}; no BOS; ChatML), written
// as a byte-level "gpt2" spec without merges so that the coordinator's table covers the model's
// whole vocabulary: ids 259.. are ordinary tokens " a", " b", ..., " z", " aa", ... (bijective
// base 26) that text never encodes to but that decode to harmless word-like text. Every id the
// model can sample, and every id a benchmark sends as a prompt, is valid on both sides (the
// "byte" spec of builtin:tiny has 259 entries: the coordinator would reject prompt ids past
// them). InvalidArgument for vocab_size < 259.
absl::StatusOr<v1::control::TokenizerSpec> ByteLevelTokenizerSpec(int vocab_size);

// seed: weights of builtin:tiny and random:* (0 = their default, 1234); ignored for files.
absl::StatusOr<LoadedSource> LoadModelSource(const std::string& model, uint64_t seed);

}  // namespace hipserve::worker
