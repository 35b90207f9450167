#include "coordinator/tokenizer/chat_template.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hipserve::coordinator {
namespace {

constexpr absl::string_view kImStart = "<|im_start|>";
constexpr absl::string_view kImEnd = "<|im_end|>";
constexpr absl::string_view kStartHeader = "<|start_header_id|>";

bool VocabHas(const TokenizerSpec& spec, absl::string_view token) {
  for (const std::string& t : spec.tokens) {
    if (t == token) {
      return true;
    }
  }
  return false;
}

// Reads a constant system prompt from a Jinja string literal of the form
// '<|im_start|>system\n...<|im_end|>' starting at `pos` (just after "system"). Returns false if
// the text between is not constant (e.g. "' + messages[0]['content'] + '").
bool ReadConstantSystem(absl::string_view t, size_t pos, std::string* out) {
  if (absl::StartsWith(t.substr(pos), "\n")) {
    pos += 1;
  } else if (absl::StartsWith(t.substr(pos), "\\n")) {
    pos += 2;
  } else {
    return false;
  }
  out->clear();
  while (pos < t.size()) {
    if (absl::StartsWith(t.substr(pos), kImEnd)) {
      return !out->empty();
    }
    char c = t[pos];
    if (c == '\'' || c == '"' || c == '{' || c == '}') {
      return false;
    }
    if (c == '\\' && pos + 1 < t.size()) {
      char e = t[pos + 1];
      out->push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
      pos += 2;
      continue;
    }
    out->push_back(c);
    ++pos;
  }
  return false;
}

// Python's str.strip() on ASCII whitespace, which is what Jinja's `trim` does for the
// characters that occur in practice.
absl::string_view Trim(absl::string_view s) {
  auto ws = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (!s.empty() && ws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && ws(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

ChatFormat DetectChatFormat(const TokenizerSpec& spec) {
  const std::string& t = spec.chat_template;
  if (absl::StrContains(t, kImStart)) {
    return ChatFormat::kChatML;
  }
  if (absl::StrContains(t, kStartHeader)) {
    return ChatFormat::kLlama3;
  }
  if (t.empty()) {
    if (VocabHas(spec, kImStart)) {
      return ChatFormat::kChatML;
    }
    if (VocabHas(spec, kStartHeader)) {
      return ChatFormat::kLlama3;
    }
  }
  return ChatFormat::kPlain;
}

ChatTemplate DetectChatTemplate(const TokenizerSpec& spec) {
  ChatTemplate result;
  result.format = DetectChatFormat(spec);
  if (result.format != ChatFormat::kChatML) {
    return result;
  }
  const std::string marker = absl::StrCat(kImStart, "system");
  absl::string_view t = spec.chat_template;
  for (size_t pos = t.find(marker); pos != absl::string_view::npos; pos = t.find(marker, pos + 1)) {
    std::string system;
    if (ReadConstantSystem(t, pos + marker.size(), &system)) {
      result.default_system_prompt = std::move(system);
      break;
    }
  }
  return result;
}

std::string ApplyChatTemplate(const ChatTemplate& chat_template,
                              absl::Span<const ChatMessageIn> messages,
                              bool add_generation_prompt) {
  std::string out;
  switch (chat_template.format) {
    case ChatFormat::kChatML:
      if (!chat_template.default_system_prompt.empty() && !messages.empty() &&
          messages[0].role != "system") {
        absl::StrAppend(&out, kImStart, "system\n", chat_template.default_system_prompt, kImEnd,
                        "\n");
      }
      for (const ChatMessageIn& m : messages) {
        absl::StrAppend(&out, kImStart, m.role, "\n", m.content, kImEnd, "\n");
      }
      if (add_generation_prompt) {
        absl::StrAppend(&out, kImStart, "assistant\n");
      }
      break;
    case ChatFormat::kLlama3:
      for (const ChatMessageIn& m : messages) {
        absl::StrAppend(&out, kStartHeader, m.role, "<|end_header_id|>\n\n", Trim(m.content),
                        "<|eot_id|>");
      }
      if (add_generation_prompt) {
        absl::StrAppend(&out, kStartHeader, "assistant<|end_header_id|>\n\n");
      }
      break;
    case ChatFormat::kPlain:
      for (const ChatMessageIn& m : messages) {
        absl::StrAppend(&out, m.role, ": ", m.content, "\n");
      }
      if (add_generation_prompt) {
        out += "assistant:";
      }
      break;
  }
  return out;
}

std::string ApplyChatTemplate(ChatFormat format, absl::Span<const ChatMessageIn> messages,
                              bool add_generation_prompt) {
  ChatTemplate t;
  t.format = format;
  return ApplyChatTemplate(t, messages, add_generation_prompt);
}

}  // namespace hipserve::coordinator
