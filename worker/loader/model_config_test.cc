// ModelConfig from Hugging Face config.json (real configs of the supported families) and
// from GGUF metadata.
#include "worker/loader/model_config.h"

#include <string>

#include "gtest/gtest.h"
#include "worker/loader/gguf.h"
#include "worker/loader/testing/writers.h"

namespace hipserve::worker::loader {
namespace {

// Verbatim from HuggingFaceTB/SmolLM2-135M-Instruct.
constexpr char kSmolLM2[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
  "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 9,
  "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
  "use_cache": true, "vocab_size": 49152})";

// meta-llama/Llama-3.1-8B-Instruct.
constexpr char kLlama31[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

// Qwen/Qwen2-0.5B-Instruct.
constexpr char kQwen2[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

// mistralai/Mistral-7B-Instruct-v0.3.
constexpr char kMistral[] = R"({
  "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 32768})";

TEST(HfConfigTest, SmolLM2) {
  auto c = ConfigFromHfJson(kSmolLM2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, "llama");
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->num_heads, 9);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_FLOAT_EQ(c->rms_eps, 1e-5f);
  EXPECT_EQ(c->rope_theta, 100000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c->max_position, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->qkv_bias);
}

TEST(HfConfigTest, Llama31RopeScaling) {
  auto c = ConfigFromHfJson(kLlama31);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c->max_position, 131072);
  EXPECT_FALSE(c->tie_word_embeddings);
  // Older configs spell it "type".
  std::string old = kLlama31;
  old.replace(old.find("\"rope_type\""), 11, "\"type\"");
  auto c2 = ConfigFromHfJson(old);
  ASSERT_TRUE(c2.ok()) << c2.status();
  EXPECT_EQ(c2->rope_scaling.type, RopeScalingType::kLlama3);
}

TEST(HfConfigTest, Qwen2AndMistral) {
  auto q = ConfigFromHfJson(kQwen2);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->arch, "qwen2");
  EXPECT_TRUE(q->qkv_bias);
  EXPECT_EQ(q->head_dim, 64);
  EXPECT_FLOAT_EQ(q->rms_eps, 1e-6f);
  auto m = ConfigFromHfJson(kMistral);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->arch, "mistral");
  EXPECT_EQ(m->num_kv_heads, 8);
  EXPECT_FALSE(m->qkv_bias);
}

void ExpectError(const std::string& json, absl::StatusCode code, const std::string& part) {
  auto c = ConfigFromHfJson(json);
  ASSERT_FALSE(c.ok()) << json;
  EXPECT_EQ(c.status().code(), code) << c.status();
  EXPECT_NE(c.status().message().find(part), std::string::npos)
      << "'" << part << "' not in: " << c.status();
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

TEST(HfConfigTest, Errors) {
  ExpectError("{", absl::StatusCode::kInvalidArgument, "invalid JSON");
  ExpectError(Replace(kSmolLM2, "\"model_type\": \"llama\"", "\"model_type\": \"gemma\""),
              absl::StatusCode::kUnimplemented, "model_type 'gemma'");
  ExpectError(Replace(kSmolLM2, "\"hidden_size\": 576,", ""), absl::StatusCode::kInvalidArgument,
              "missing 'hidden_size'");
  ExpectError(Replace(kSmolLM2, "\"hidden_size\": 576", "\"hidden_size\": \"576\""),
              absl::StatusCode::kInvalidArgument, "'hidden_size' is string, expected an integer");
  ExpectError(Replace(kSmolLM2, "\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4"),
              absl::StatusCode::kInvalidArgument, "num_kv_heads 4 must divide num_heads 9");
  ExpectError(Replace(kSmolLM2, "\"vocab_size\": 49152", "\"vocab_size\": 99999999999"),
              absl::StatusCode::kInvalidArgument, "vocab_size 99999999999");
  ExpectError(Replace(kSmolLM2, "\"rope_scaling\": null",
                      R"("rope_scaling": {"type": "linear", "factor": 2.0})"),
              absl::StatusCode::kUnimplemented, "type 'linear'");
  ExpectError(Replace(kSmolLM2, "\"rope_theta\": 100000", "\"rope_theta\": 1e300"),
              absl::StatusCode::kInvalidArgument, "rope_theta inf");
  ExpectError(Replace(kLlama31, "\"low_freq_factor\": 1.0,", ""),
              absl::StatusCode::kInvalidArgument, "llama3 needs");
  ExpectError(Replace(kLlama31, "\"high_freq_factor\": 4.0", "\"high_freq_factor\": 0.5"),
              absl::StatusCode::kInvalidArgument, "0 < low < high");
}

using testing::GgufWriter;

GgufWriter SmolGguf() {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddString("general.name", "Smol");
  w.AddU32("llama.block_count", 30);
  w.AddU32("llama.context_length", 8192);
  w.AddU32("llama.embedding_length", 576);
  w.AddU32("llama.feed_forward_length", 1536);
  w.AddU32("llama.attention.head_count", 9);
  w.AddU32("llama.attention.head_count_kv", 3);
  w.AddF32("llama.rope.freq_base", 100000.0f);
  w.AddF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.AddU32("llama.rope.dimension_count", 64);
  return w;
}

TEST(GgufConfigTest, LlamaKeys) {
  GgufWriter w = SmolGguf();
  w.AddU32("llama.vocab_size", 49152);
  auto g = GgufFile::Parse(FileBytes::FromString(w.Build()));
  ASSERT_TRUE(g.ok()) << g.status();
  auto c = ConfigFromGguf(*g);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, "llama");
  EXPECT_EQ(c->name, "Smol");
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rope_theta, 100000.0f);
  EXPECT_EQ(c->max_position, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);  // no output.weight
}

TEST(GgufConfigTest, VocabFromTokensAndErrors) {
  {
    GgufWriter w = SmolGguf();
    w.AddStringArray("tokenizer.ggml.tokens", std::vector<std::string>(7, "x"));
    auto g = GgufFile::Parse(FileBytes::FromString(w.Build()));
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(ConfigFromGguf(*g)->vocab_size, 7);
  }
  {
    GgufWriter w = SmolGguf();
    auto g = GgufFile::Parse(FileBytes::FromString(w.Build()));
    EXPECT_EQ(ConfigFromGguf(*g).status().code(), absl::StatusCode::kNotFound);
  }
  {
    GgufWriter w;
    w.AddString("general.architecture", "llama");
    auto g = GgufFile::Parse(FileBytes::FromString(w.Build()));
    auto c = ConfigFromGguf(*g);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(c.status().message().find("llama.embedding_length"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddString("general.architecture", "gemma2");
    auto g = GgufFile::Parse(FileBytes::FromString(w.Build()));
    EXPECT_EQ(ConfigFromGguf(*g).status().code(), absl::StatusCode::kUnimplemented);
  }
  {
    GgufWriter w = SmolGguf();
    w.AddU32("llama.vocab_size", 49152);
    w.AddString("llama.attention.layer_norm_rms_epsilon_typo", "x");
    w.AddU32("llama.attention.key_length", 32);  // != rope.dimension_count
    auto g = GgufFile::Parse(FileBytes::FromString(w.Build()));
    auto c = ConfigFromGguf(*g);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented) << c.status();
  }
}

}  // namespace
}  // namespace hipserve::worker::loader
