#include "coordinator/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace hipserve::coordinator {
namespace {

// Unicode White_Space, which is what Oniguruma's `\s` matches in UTF-8 mode.
constexpr absl::string_view kWhiteSpace =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

// Patterns as published in the models' tokenizer.json, with `\s+(?!\S)|\s+` replaced by
// `(\s+)` (see PreTokenizer). `WS` stands for kWhiteSpace inside a character class.
constexpr absl::string_view kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^WS\\p{L}\\p{N}]+|([WS]+)";
constexpr absl::string_view kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^WS\\p{L}\\p{N}]+[\\r\\n]*|[WS]*[\\r\\n]+|([WS]+)";
constexpr absl::string_view kQwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^WS\\p{L}\\p{N}]+[\\r\\n]*|[WS]*[\\r\\n]+|([WS]+)";

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

absl::StatusOr<std::string> PreTokenizerPattern(absl::string_view pre, bool* split_digits) {
  absl::string_view pattern;
  *split_digits = false;
  if (pre == "smollm") {
    pattern = kGpt2;
    *split_digits = true;
  } else if (pre == "gpt2" || pre == "default" || pre.empty()) {
    pattern = kGpt2;
  } else if (pre == "llama-bpe" || pre == "llama3") {
    pattern = kLlama3;
  } else if (pre == "qwen2") {
    pattern = kQwen2;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported pre-tokenizer \"", pre,
                     "\"; supported: smollm, gpt2, default, llama-bpe, llama3, qwen2"));
  }
  return absl::StrReplaceAll(pattern, {{"WS", kWhiteSpace}});
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(absl::string_view pre) {
  bool split_digits = false;
  auto pattern = PreTokenizerPattern(pre, &split_digits);
  if (!pattern.ok()) {
    return pattern.status();
  }
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(*pattern, options);
  if (!re->ok()) {
    return absl::InternalError(
        absl::StrCat("pre-tokenizer regex for \"", pre, "\" does not compile: ", re->error()));
  }
  return std::unique_ptr<PreTokenizer>(new PreTokenizer(std::move(re), split_digits));
}

PreTokenizer::PreTokenizer(std::unique_ptr<RE2> pattern, bool split_digits)
    : pattern_(std::move(pattern)),
      digit_(std::make_unique<RE2>("\\p{N}")),
      split_digits_(split_digits) {}

void PreTokenizer::Split(absl::string_view text, std::vector<absl::string_view>* pieces) const {
  if (!split_digits_) {
    SplitRegex(text, pieces);
    return;
  }
  // HF Digits(individual_digits=true): every \p{N} character is a piece of its own, and the
  // regex then runs on the text between them (its lookahead stops at those boundaries).
  re2::StringPiece sp(text.data(), text.size());
  size_t pos = 0;
  re2::StringPiece m;
  while (pos < text.size() && digit_->Match(sp, pos, text.size(), RE2::UNANCHORED, &m, 1)) {
    size_t start = m.data() - text.data();
    if (start > pos) {
      SplitRegex(text.substr(pos, start - pos), pieces);
    }
    pieces->push_back(text.substr(start, m.size()));
    pos = start + m.size();
  }
  if (pos < text.size()) {
    SplitRegex(text.substr(pos), pieces);
  }
}

void PreTokenizer::SplitRegex(absl::string_view text,
                              std::vector<absl::string_view>* pieces) const {
  re2::StringPiece sp(text.data(), text.size());
  re2::StringPiece m[2];
  size_t pos = 0;
  while (pos < text.size()) {
    if (!pattern_->Match(sp, pos, text.size(), RE2::UNANCHORED, m, 2) || m[0].empty()) {
      pieces->push_back(text.substr(pos));  // only unmatchable bytes are left
      return;
    }
    size_t start = m[0].data() - text.data();
    size_t end = start + m[0].size();
    if (start > pos) {
      pieces->push_back(text.substr(pos, start - pos));  // e.g. invalid UTF-8
    }
    if (m[1].data() != nullptr && end < text.size()) {
      // `\s+(?!\S)`: the run is maximal, so a non-space follows; give back its last character
      // unless that would leave the run empty (then plain `\s+` takes the single character).
      size_t last = end - 1;
      while (last > start && IsContinuationByte(text[last])) {
        --last;
      }
      if (last > start) {
        end = last;
      }
    }
    pieces->push_back(text.substr(start, end - start));
    pos = end;
  }
}

}  // namespace hipserve::coordinator
