// Resolves a --model value to full (unsharded) weights plus the tokenizer description that
// rank 0 hands to the coordinator.
//   "default"                 SmolLM2-135M-Instruct from scripts/fetch-model.sh's cache
//   "builtin:tiny"            seeded random tiny Llama, byte tokenizer (tests, smoke runs)
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
  ModelWeights weights;                // full weights (world_size 1)
  v1::control::TokenizerSpec tokenizer;
};

absl::StatusOr<LoadedSource> LoadModelSource(const std::string& model, uint64_t seed);

}  // namespace hipserve::worker
