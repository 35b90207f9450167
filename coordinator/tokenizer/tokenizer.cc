#include "coordinator/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/tokenizer/pre_tokenizer.h"
#include "coordinator/tokenizer/utf8.h"

namespace hipserve::coordinator {
namespace {

constexpr absl::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// ChatML, as the built-in tiny model's template (no default system prompt).
constexpr absl::string_view kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

}  // namespace

TokenizerSpec MakeByteTokenizerSpec() {
  TokenizerSpec spec;
  spec.model = "byte";
  for (int b = 0; b < 256; ++b) {
    spec.tokens.emplace_back(1, static_cast<char>(b));
  }
  spec.tokens.push_back("<|endoftext|>");  // 256
  spec.tokens.push_back("<|im_start|>");   // 257
  spec.tokens.push_back("<|im_end|>");     // 258
  spec.token_types.assign(256, static_cast<int32_t>(TokenType::kByte));
  spec.token_types.resize(259, static_cast<int32_t>(TokenType::kControl));
  spec.eos_token_ids = {256, 258};
  spec.chat_template = std::string(kChatMlTemplate);
  return spec;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(const TokenizerSpec& spec) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer(spec));
  RETURN_IF_ERROR(tok->Init());
  return tok;
}

Tokenizer::Tokenizer(const TokenizerSpec& spec) : spec_(spec) {}
Tokenizer::~Tokenizer() = default;

absl::Status Tokenizer::Init() {
  if (spec_.model == "byte") {
    model_ = Model::kByte;
  } else if (spec_.model == "gpt2") {
    model_ = Model::kGpt2;
  } else if (spec_.model == "llama") {
    model_ = Model::kLlama;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported tokenizer model \"", spec_.model,
                                                   "\"; supported: byte, gpt2, llama"));
  }
  const int n = vocab_size();
  if (n == 0) {
    return absl::InvalidArgumentError("tokenizer spec has no tokens");
  }
  if (model_ == Model::kByte && n < 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte tokenizer needs ids 0..255 for the bytes, vocab size is ", n));
  }
  if (!spec_.token_types.empty() && static_cast<int>(spec_.token_types.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_types has ", spec_.token_types.size(), " entries for ", n, " tokens"));
  }
  if (spec_.bos_token_id < -1 || spec_.bos_token_id >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("bos_token_id ", spec_.bos_token_id, " outside vocab of size ", n));
  }
  for (int32_t id : spec_.eos_token_ids) {
    if (id < 0 || id >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("eos token id ", id, " outside vocab of size ", n));
    }
    eos_.insert(id);
  }

  auto type_of = [&](int32_t id) {
    if (!spec_.token_types.empty()) {
      return static_cast<TokenType>(spec_.token_types[id]);
    }
    if (model_ == Model::kByte) {
      return id < 256 ? TokenType::kByte : TokenType::kControl;
    }
    return TokenType::kNormal;
  };

  token_to_id_.reserve(n);
  for (int32_t id = 0; id < n; ++id) {
    token_to_id_.emplace(spec_.tokens[id], id);  // first wins
  }

  // Special tokens, matched literally before any other processing; longest first so that the
  // match at a position is the longest (HF's leftmost-longest).
  std::vector<int32_t> special_ids;
  for (int32_t id = 0; id < n; ++id) {
    TokenType t = type_of(id);
    if ((t == TokenType::kControl || t == TokenType::kUserDefined) && !spec_.tokens[id].empty()) {
      if (model_ == Model::kByte && id < 256) {
        continue;
      }
      specials_.push_back({spec_.tokens[id], id, t == TokenType::kControl});
    }
  }
  std::stable_sort(specials_.begin(), specials_.end(), [](const Special& a, const Special& b) {
    return a.text.size() > b.text.size();
  });
  special_first_.assign(256, 0);
  for (const Special& s : specials_) {
    special_first_[static_cast<uint8_t>(s.text[0])] = 1;
  }

  // Decoded bytes of every token, and the initial symbol of every byte.
  std::fill(std::begin(byte_to_id_), std::end(byte_to_id_), -1);
  pieces_.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& text = spec_.tokens[id];
    TokenType t = type_of(id);
    if (t == TokenType::kUnknown && unk_id_ < 0) {
      unk_id_ = id;
    }
    std::string& piece = pieces_[id];
    switch (model_) {
      case Model::kByte:
        piece = text;
        break;
      case Model::kGpt2:
        if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) {
          piece = text;
          break;
        }
        for (size_t i = 0; i < text.size();) {
          int len = Utf8SequenceLength(absl::string_view(text).substr(i));
          if (len <= 0) {  // not UTF-8: keep the byte
            piece.push_back(text[i++]);
            continue;
          }
          int b = UnicodeToByte(DecodeUtf8(absl::string_view(text).substr(i), len));
          if (b >= 0) {
            piece.push_back(static_cast<char>(b));
          } else {
            piece.append(text, i, len);
          }
          i += len;
        }
        break;
      case Model::kLlama:
        if (t == TokenType::kByte && text.size() == 6 && text.compare(0, 3, "<0x") == 0 &&
            text[5] == '>') {
          unsigned v = 0;
          if (std::sscanf(text.c_str() + 3, "%2x", &v) == 1) {
            piece = std::string(1, static_cast<char>(v));
            byte_to_id_[v] = id;
            break;
          }
        }
        piece = text;
        if (t == TokenType::kNormal || t == TokenType::kUserDefined) {
          size_t pos = 0;
          while ((pos = piece.find(kSpmSpace.data(), pos, kSpmSpace.size())) != std::string::npos) {
            piece.replace(pos, kSpmSpace.size(), " ");
            ++pos;
          }
        }
        break;
    }
  }
  if (model_ == Model::kByte) {
    for (int b = 0; b < 256; ++b) {
      byte_to_id_[b] = b;
    }
  } else if (model_ == Model::kGpt2) {
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), &ch);
      auto it = token_to_id_.find(ch);
      if (it != token_to_id_.end()) {
        byte_to_id_[b] = it->second;
      }
    }
  }

  if (model_ == Model::kLlama && spec_.merges.empty()) {
    // SentencePiece GGUF files carry scores instead of merges; encoding without either would
    // silently produce character-level tokens.
    return absl::InvalidArgumentError(
        "\"llama\" tokenizer without merges (SentencePiece scores are not supported)");
  }
  if (model_ != Model::kByte) {
    merges_.reserve(spec_.merges.size());
    for (size_t rank = 0; rank < spec_.merges.size(); ++rank) {
      const std::string& m = spec_.merges[rank];
      size_t sp = m.find(' ', 1);  // the first part may itself be a space ("llama" never)
      if (sp == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("merge ", rank, " \"", m, "\" is not of the form \"a b\""));
      }
      auto a = token_to_id_.find(absl::string_view(m).substr(0, sp));
      auto b = token_to_id_.find(absl::string_view(m).substr(sp + 1));
      auto ab = token_to_id_.find(
          absl::StrCat(absl::string_view(m).substr(0, sp), absl::string_view(m).substr(sp + 1)));
      // Merges whose parts or result are not tokens can never apply; HF rejects them, GGUF
      // files sometimes carry them, so skip.
      if (a == token_to_id_.end() || b == token_to_id_.end() || ab == token_to_id_.end()) {
        continue;
      }
      merges_.emplace(PairKey(a->second, b->second),
                      Merge{static_cast<int32_t>(rank), ab->second});  // first rank wins
    }
  }
  if (model_ == Model::kGpt2) {
    ASSIGN_OR_RETURN(pre_tokenizer_, PreTokenizer::Create(spec_.pre));
    ignore_merges_ = spec_.pre == "llama-bpe" || spec_.pre == "llama3";
  }
  return absl::OkStatus();
}

std::vector<int32_t> Tokenizer::Encode(absl::string_view text, bool add_special,
                                       bool parse_special) const {
  std::string sanitized;
  if (model_ == Model::kGpt2 && !IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && spec_.add_bos && spec_.bos_token_id >= 0) {
    out.push_back(spec_.bos_token_id);
  }
  size_t chunk_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const Special* match = nullptr;
    if (special_first_[static_cast<uint8_t>(text[i])]) {
      absl::string_view rest = text.substr(i);
      for (const Special& s : specials_) {
        if ((!s.control || parse_special) && rest.size() >= s.text.size() &&
            rest.compare(0, s.text.size(), s.text) == 0) {
          match = &s;
          break;
        }
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > chunk_start) {
      EncodeChunk(text.substr(chunk_start, i - chunk_start), chunk_start == 0, &out);
    }
    out.push_back(match->id);
    i += match->text.size();
    chunk_start = i;
  }
  if (chunk_start < text.size()) {
    EncodeChunk(text.substr(chunk_start), chunk_start == 0, &out);
  }
  return out;
}

void Tokenizer::EncodeChunk(absl::string_view text, bool first_chunk,
                            std::vector<int32_t>* out) const {
  switch (model_) {
    case Model::kByte:
      for (char c : text) {
        out->push_back(static_cast<uint8_t>(c));
      }
      return;
    case Model::kGpt2: {
      std::vector<absl::string_view> words;
      pre_tokenizer_->Split(text, &words);
      for (absl::string_view w : words) {
        EncodeBpeWord(w, out);
      }
      return;
    }
    case Model::kLlama:
      EncodeLlamaChunk(text, first_chunk, out);
      return;
  }
}

void Tokenizer::EncodeBpeWord(absl::string_view word, std::vector<int32_t>* out) const {
  if (ignore_merges_ && word.size() > 1) {
    std::string mapped;
    for (char c : word) {
      AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &mapped);
    }
    auto it = token_to_id_.find(mapped);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  for (char c : word) {
    int32_t id = byte_to_id_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      ids.push_back(id);  // a byte without a token cannot be encoded: dropped
    }
  }
  ApplyMerges(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
}

void Tokenizer::EncodeLlamaChunk(absl::string_view text, bool first_chunk,
                                 std::vector<int32_t>* out) const {
  std::string norm;
  norm.reserve(text.size() + 3 * (text.size() / 4 + 1));
  if (first_chunk) {
    norm.append(kSpmSpace.data(), kSpmSpace.size());
  }
  for (char c : text) {
    if (c == ' ') {
      norm.append(kSpmSpace.data(), kSpmSpace.size());
    } else {
      norm.push_back(c);
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(norm.size());
  absl::string_view s(norm);
  for (size_t i = 0; i < s.size();) {
    int len = Utf8SequenceLength(s.substr(i));
    if (len <= 0) {
      len = 1;
    }
    auto it = token_to_id_.find(s.substr(i, len));
    if (it != token_to_id_.end()) {
      ids.push_back(it->second);
    } else {
      for (int k = 0; k < len; ++k) {  // byte fallback
        int32_t b = byte_to_id_[static_cast<uint8_t>(s[i + k])];
        if (b >= 0) {
          ids.push_back(b);
        } else if (unk_id_ >= 0 && k == 0) {
          ids.push_back(unk_id_);
        }
      }
    }
    i += len;
  }
  ApplyMerges(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
}

void Tokenizer::ApplyMerges(std::vector<int32_t>* ids) const {
  const int n = static_cast<int>(ids->size());
  if (n < 2) {
    return;
  }
  // Symbols form a linked list over the original positions; candidate merges sit in a heap
  // ordered by (rank, position), HF's order. Stale candidates are skipped when popped.
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<int32_t>& id = *ids;
  std::vector<int32_t> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::vector<Candidate> storage;
  storage.reserve(n);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap(
      std::greater<Candidate>(), std::move(storage));
  auto push = [&](int left) {
    if (left < 0 || next[left] < 0) {
      return;
    }
    auto it = merges_.find(PairKey(id[left], id[next[left]]));
    if (it != merges_.end()) {
      heap.push({it->second.rank, left, it->second.merged});
    }
  };
  for (int i = 0; i + 1 < n; ++i) {
    push(i);
  }
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    int left = c.pos;
    if (id[left] < 0) {
      continue;
    }
    int right = next[left];
    if (right < 0) {
      continue;
    }
    auto it = merges_.find(PairKey(id[left], id[right]));
    if (it == merges_.end() || it->second.merged != c.merged) {
      continue;  // stale
    }
    id[left] = c.merged;
    id[right] = -1;
    next[left] = next[right];
    if (next[right] >= 0) {
      prev[next[right]] = left;
    }
    push(prev[left]);
    push(left);
  }
  int w = 0;
  for (int i = 0; i < n; ++i) {
    if (id[i] >= 0) {
      id[w++] = id[i];
    }
  }
  ids->resize(w);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  bool at_start = true;  // "llama": only control tokens so far
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      continue;
    }
    const std::string& piece = pieces_[id];
    if (model_ == Model::kLlama && at_start) {
      bool control = !spec_.token_types.empty() &&
                     spec_.token_types[id] == static_cast<int32_t>(TokenType::kControl);
      if (!control) {
        at_start = false;
        // Drop the space the encoder prepended (SentencePiece's dummy prefix).
        if (!piece.empty() && piece[0] == ' ') {
          out.append(piece, 1, std::string::npos);
          continue;
        }
      }
    }
    out += piece;
  }
  return out;
}

absl::Status Tokenizer::Validate(absl::Span<const int32_t> ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is out of range: vocab size is ",
                                                     vocab_size()));
    }
  }
  return absl::OkStatus();
}

std::string Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return "";
  }
  return pieces_[id];
}

absl::string_view Tokenizer::RawToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return "";
  }
  return spec_.tokens[id];
}

}  // namespace hipserve::coordinator
