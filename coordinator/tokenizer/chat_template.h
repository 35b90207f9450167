// Chat prompt formatting for the chat formats the server knows (no general Jinja engine): the
// model's Jinja template text is only inspected to pick the format and its default system
// prompt.
#pragma once

#include <string>

#include "absl/types/span.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace hipserve::coordinator {

struct ChatMessageIn {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

enum class ChatFormat {
  kChatML,  // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen2)
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  kPlain,   // role: content\n, for models without a known template
};

// A format plus what the model's template adds on its own.
struct ChatTemplate {
  ChatFormat format = ChatFormat::kPlain;
  // System message the template inserts when the first message is not a system message
  // (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
  // Empty = none. Used by kChatML only.
  std::string default_system_prompt;
};

// From the template text (<|im_start|> -> ChatML, <|start_header_id|> -> Llama 3); without a
// template, from the special tokens in the vocab; otherwise kPlain.
ChatFormat DetectChatFormat(const TokenizerSpec& spec);
// DetectChatFormat plus the ChatML default system prompt found in the template.
ChatTemplate DetectChatTemplate(const TokenizerSpec& spec);

// The prompt text, equal to what the model's Jinja template renders with bos_token = "": the
// BOS token is not part of the text (Tokenizer::Encode(add_special=true) adds it). Control
// tokens appear as text, so encode with parse_special = true. Llama 3 trims each content's
// leading and trailing whitespace, as its template does.
std::string ApplyChatTemplate(const ChatTemplate& chat_template,
                              absl::Span<const ChatMessageIn> messages, bool add_generation_prompt);
std::string ApplyChatTemplate(ChatFormat format, absl::Span<const ChatMessageIn> messages,
                              bool add_generation_prompt);

}  // namespace hipserve::coordinator
