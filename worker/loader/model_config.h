// ModelConfig: the hyper-parameters of a Llama-family decoder, from GGUF metadata or a
// Hugging Face config.json. Plain data.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace hipserve::worker::loader {

class GgufFile;

enum class RopeScalingType { kNone, kLlama3 };
const char* RopeScalingName(RopeScalingType t);

// Llama 3.1 "llama3" frequency-dependent RoPE scaling (HF rope_scaling with rope_type llama3).
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string arch;  // "llama", "mistral" or "qwen2"
  std::string name;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless the source says otherwise
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  int64_t max_position = 0;  // pretrained context length
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections have biases (qwen2)
};

// Checks that every size is positive and plausible (each dim <= 2^20, vocab <= 2^24,
// layers <= 1024), num_heads % num_kv_heads == 0, and the rope scaling values are sane.
absl::Status ValidateConfig(const ModelConfig& c);

// From GGUF metadata: general.architecture ("llama" or "qwen2"; mistral GGUFs use "llama")
// and the <arch>.* keys. vocab_size falls back to the tokenizer.ggml.tokens length.
// tie_word_embeddings is true when the file has no output.weight tensor; qkv_bias when it
// has blk.0.attn_q.bias. GGUF has no llama3 rope-scaling keys (llama.cpp bakes the factors
// into a rope_freqs.weight tensor, see LoadedModel::rope_freqs), so rope_scaling stays none.
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf);

// From the text of a Hugging Face config.json (model_type llama / mistral / qwen2). Rope
// scaling types other than llama3 are rejected as Unimplemented.
absl::StatusOr<ModelConfig> ConfigFromHfJson(const std::string& json_text,
                                             const std::string& what = "config.json");

}  // namespace hipserve::worker::loader
