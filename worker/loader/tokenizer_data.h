// TokenizerData: the vocabulary, merges and special tokens of a byte-level BPE tokenizer, as
// stored in GGUF (tokenizer.ggml.*) or Hugging Face tokenizer.json / tokenizer_config.json.
// Plain data; the tokenizer itself lives in coordinator/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hipserve::worker::loader {

class GgufFile;

// Token types, llama.cpp's llama_token_type values (GGUF tokenizer.ggml.token_type).
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

struct TokenizerData {
  // "gpt2": byte-level BPE (GPT-2 byte<->unicode mapping; Llama 3, Qwen2, SmolLM).
  // "llama": SentencePiece-style BPE with byte fallback tokens <0xXX> (Llama 2, Mistral).
  std::string model;
  std::vector<std::string> tokens;   // [vocab] token id -> token text (as in the source)
  std::vector<std::string> merges;   // ranked merges "left right", best first
  std::vector<int32_t> token_types;  // [vocab] TokenType
  int32_t bos = -1;                  // -1: none
  std::vector<int32_t> eos;          // all end-of-sequence / end-of-turn ids, de-duplicated
  std::string chat_template;         // Jinja text; empty when the source has none
  bool add_bos = false;              // prepend bos when encoding a prompt
  // Pre-tokenizer name in llama.cpp's vocabulary ("smollm", "llama3", "qwen2", "gpt2",
  // "default"); for HF sources derived from the pre_tokenizer in tokenizer.json.
  std::string pre;
};

// From tokenizer.ggml.* and tokenizer.chat_template. Every id is checked against the vocab.
absl::StatusOr<TokenizerData> TokenizerFromGguf(const GgufFile& gguf);

// From the texts of tokenizer.json (required) and tokenizer_config.json,
// generation_config.json and config.json (each may be empty). Only BPE models are accepted.
absl::StatusOr<TokenizerData> TokenizerFromHfJson(const std::string& tokenizer_json,
                                                  const std::string& tokenizer_config_json,
                                                  const std::string& generation_config_json,
                                                  const std::string& config_json);

// Reads those files from a Hugging Face model directory.
absl::StatusOr<TokenizerData> TokenizerFromHfDir(const std::string& dir);

}  // namespace hipserve::worker::loader
