// hipserve::coordinator tokenizer: text <-> token ids for the coordinator.
//
// The coordinator never reads model files: worker rank 0 sends a TokenizerSpec (GGUF
// tokenizer.ggml.* metadata or the equivalent from tokenizer.json) and Tokenizer::Create builds
// the encoder from it. Models:
//   "byte"  built-in test model: ids 0..255 are the raw bytes, control tokens follow
//           (MakeByteTokenizerSpec).
//   "gpt2"  byte-level BPE (SmolLM2, Llama 3, Qwen2, GPT-2): special tokens split off, then the
//           pre-tokenizer regex chosen by `pre`, the GPT-2 byte->unicode alphabet, BPE merges.
//   "llama" SentencePiece-style BPE (Llama 2, Mistral): spaces become U+2581, a U+2581 is
//           prepended, BPE merges over the whole text, bytes without a token fall back to
//           <0xXX> tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace hipserve::coordinator {

// GGUF tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <|im_start|>, <|eot_id|>: matched in text only when parse_special
  kUserDefined = 4,  // added tokens: always matched literally in text
  kUnused = 5,
  kByte = 6,  // <0xXX> byte-fallback tokens of "llama" models
};

struct TokenizerSpec {
  std::string model;                 // "byte", "gpt2" or "llama" (see file comment)
  std::vector<std::string> tokens;   // id -> token text (GPT-2 byte-to-unicode alphabet for gpt2)
  std::vector<std::string> merges;   // "a b", highest priority first
  std::vector<int32_t> token_types;  // TokenType per id; empty = all normal ("byte": ids >= 256
                                     // are control)
  int32_t bos_token_id = -1;         // -1 = none
  std::vector<int32_t> eos_token_ids;
  std::string chat_template;  // the model's Jinja template text, may be empty
  bool add_bos = false;       // Encode(add_special=true) prepends bos_token_id
  std::string pre;            // GGUF tokenizer.ggml.pre ("smollm", "llama-bpe", "qwen2",
                              // "gpt2", "default", ""); used by "gpt2" only
};

// The built-in tiny model's spec: ids 0..255 = bytes, 256 <|endoftext|>, 257 <|im_start|>,
// 258 <|im_end|> (control), BOS none, EOS {256, 258}, ChatML template.
TokenizerSpec MakeByteTokenizerSpec();

// Replaces ill-formed UTF-8 in `bytes` with U+FFFD, one per maximal subpart (what Python's
// bytes.decode("utf-8", "replace") does); an incomplete sequence at the end is one subpart.
std::string SanitizeUtf8(absl::string_view bytes);

class PreTokenizer;

// Owns its copy of the spec and all lookup tables. Immutable after Create; every method is
// const and thread-safe.
class Tokenizer {
 public:
  // InvalidArgument for an unknown model or pre-tokenizer, ids out of range, malformed merges,
  // a "llama" spec without merges.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(const TokenizerSpec& spec);
  ~Tokenizer();

  // add_special: prepend BOS if spec().add_bos. parse_special: control tokens written in the
  // text ("<|im_start|>") become their ids; otherwise they are encoded as plain text.
  // User-defined tokens are always matched. "gpt2": ill-formed UTF-8 is first replaced by
  // U+FFFD (SanitizeUtf8), and characters whose bytes have no token (SmolLM2 lacks e.g. U+0004)
  // are dropped, as Hugging Face `tokenizers` does without an unk token.
  std::vector<int32_t> Encode(absl::string_view text, bool add_special, bool parse_special) const;

  // Concatenated bytes of the tokens (control tokens as their text); may end in the middle of
  // a UTF-8 character. Ids out of range are skipped (call Validate first).
  std::string Decode(absl::Span<const int32_t> ids) const;

  // InvalidArgument naming the first id outside [0, vocab_size()) and the vocab size.
  absl::Status Validate(absl::Span<const int32_t> ids) const;

  int vocab_size() const { return static_cast<int>(spec_.tokens.size()); }
  bool IsEos(int32_t id) const { return eos_.contains(id); }
  const TokenizerSpec& spec() const { return spec_; }

  // The bytes one token decodes to ("" for an id out of range). For "llama" the U+2581 of a
  // word-initial piece decodes to a space here; Decode drops the space the encoder prepended.
  std::string TokenText(int32_t id) const;
  // Text of token `id` in the vocab (token alphabet, not decoded).
  absl::string_view RawToken(int32_t id) const;

 private:
  struct Special {
    std::string text;
    int32_t id;
    bool control;  // matched only when parse_special
  };
  explicit Tokenizer(const TokenizerSpec& spec);
  absl::Status Init();
  // Encodes text that contains no special tokens (one chunk between them).
  void EncodeChunk(absl::string_view text, bool first_chunk, std::vector<int32_t>* out) const;
  void EncodeBpeWord(absl::string_view word, std::vector<int32_t>* out) const;
  void EncodeLlamaChunk(absl::string_view text, bool first_chunk, std::vector<int32_t>* out) const;
  // Runs BPE over initial symbols `ids` in place.
  void ApplyMerges(std::vector<int32_t>* ids) const;

  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  enum class Model { kByte, kGpt2, kLlama };
  Model model_ = Model::kByte;
  TokenizerSpec spec_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::vector<std::string> pieces_;     // id -> decoded bytes
  std::vector<Special> specials_;       // longest first
  std::vector<uint8_t> special_first_;  // 256 entries: some special starts with this byte
  int32_t byte_to_id_[256];             // gpt2: byte's alphabet char; llama: <0xXX>; -1 none
  absl::flat_hash_set<int32_t> eos_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // gpt2 only
  bool ignore_merges_ = false;                   // Llama 3: a word that is a token is not merged
  int32_t unk_id_ = -1;  // llama: first kUnknown token, for bytes without one
};

}  // namespace hipserve::coordinator
