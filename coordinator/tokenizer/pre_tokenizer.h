// Internal to hipserve_tokenizer: splits text into the pieces that byte-level BPE encodes one at
// a time, reproducing the Hugging Face `tokenizers` pre-tokenizers (Oniguruma regexes) with RE2.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "re2/re2.h"

namespace hipserve::coordinator {

// Owns a compiled RE2 pattern. Immutable after Create; Split is thread-safe.
//
// RE2 has no lookahead, so the patterns' trailing `\s+(?!\S)|\s+` is compiled as a capture
// group `(\s+)` and the lookahead is applied by hand: a whitespace run of two or more
// characters that is followed by a non-space gives its last character back to the next piece.
// `\s` is spelled out as Unicode White_Space (Oniguruma's meaning), since RE2's `\s` is ASCII.
class PreTokenizer {
 public:
  // `pre` is GGUF's tokenizer.ggml.pre: "smollm" (each \p{N} split off first, then the GPT-2
  // pattern; HF Sequence[Digits(individual_digits), ByteLevel]), "gpt2", "default" and ""
  // (GPT-2 pattern), "llama-bpe"/"llama3" (Llama 3 pattern), "qwen2" (Qwen2 pattern).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(absl::string_view pre);

  // Appends the pieces of `text` to `pieces`, in order; they concatenate to `text` exactly
  // (bytes no pattern matches, e.g. invalid UTF-8, become pieces of their own).
  void Split(absl::string_view text, std::vector<absl::string_view>* pieces) const;

 private:
  PreTokenizer(std::unique_ptr<RE2> pattern, bool split_digits);
  void SplitRegex(absl::string_view text, std::vector<absl::string_view>* pieces) const;

  std::unique_ptr<RE2> pattern_;  // one capture group: the trailing whitespace alternative
  std::unique_ptr<RE2> digit_;    // \p{N}, used when split_digits_
  bool split_digits_;
};

// Returns the pattern (RE2 syntax, lookahead emulated as described above) for `pre`, or
// InvalidArgument naming the supported values.
absl::StatusOr<std::string> PreTokenizerPattern(absl::string_view pre, bool* split_digits);

}  // namespace hipserve::coordinator
