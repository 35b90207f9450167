// TokenizerData from Hugging Face tokenizer.json / tokenizer_config.json in the shapes the
// supported families ship (Llama 3 byte-level BPE, Llama 2 SentencePiece-style BPE).
#include "worker/loader/tokenizer_data.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hipserve::worker::loader {
namespace {

// Llama 3 shape: byte-level BPE, split regex, merges as pairs, bos added by the
// TemplateProcessing post-processor, several eos ids in generation_config.json.
constexpr char kLlama3Tokenizer[] = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 5, "content": "<|begin_of_text|>", "special": true},
    {"id": 6, "content": "<|end_of_text|>", "special": true},
    {"id": 7, "content": "<|eot_id|>", "special": true},
    {"id": 9, "content": "<tool>", "special": false}],
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
  "post_processor": {"type": "Sequence", "processors": [
    {"type": "ByteLevel"},
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}],
     "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [5]}}}]},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "ignore_merges": true,
            "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4},
            "merges": [["a", "b"], ["\u0120", "ab"]]}})";

constexpr char kLlama3Config[] = R"({
  "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
  "chat_template": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{% endfor %}"})";
constexpr char kLlama3Generation[] = R"({"bos_token_id": 5, "eos_token_id": [6, 7]})";

TEST(HfTokenizerTest, Llama3Shape) {
  auto t = TokenizerFromHfJson(kLlama3Tokenizer, kLlama3Config, kLlama3Generation, "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->model, "gpt2");
  EXPECT_EQ(t->pre, "llama3");
  ASSERT_EQ(t->tokens.size(), 10u);
  EXPECT_EQ(t->tokens[3], "\xC4\xA0");
  EXPECT_EQ(t->tokens[8], "[PAD8]");  // hole in the id space
  EXPECT_EQ(t->token_types,
            (std::vector<int32_t>{kTokenNormal, kTokenNormal, kTokenNormal, kTokenNormal,
                                  kTokenNormal, kTokenControl, kTokenControl, kTokenControl,
                                  kTokenUnused, kTokenUserDefined}));
  EXPECT_EQ(t->merges, (std::vector<std::string>{"a b", "\xC4\xA0 ab"}));
  EXPECT_EQ(t->bos, 5);
  EXPECT_EQ(t->eos, (std::vector<int32_t>{7, 6}));
  EXPECT_TRUE(t->add_bos);
  EXPECT_NE(t->chat_template.find("start_header_id"), std::string::npos);
}

// Llama 2 shape: SentencePiece-style BPE with byte fallback, string merges, add_bos in
// tokenizer_config, chat_template given as a named list.
constexpr char kLlama2Tokenizer[] = R"({
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true},
                   {"id": 1, "content": "<s>", "special": true},
                   {"id": 2, "content": "</s>", "special": true}],
  "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581"},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace"}, {"type": "ByteFallback"}]},
  "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
            "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "\u2581a": 4, "b": 5},
            "merges": ["\u2581 a"]}})";
constexpr char kLlama2Config[] = R"({
  "add_bos_token": true, "bos_token": {"content": "<s>", "lstrip": false},
  "eos_token": {"content": "</s>"},
  "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})";

TEST(HfTokenizerTest, Llama2Shape) {
  auto t = TokenizerFromHfJson(kLlama2Tokenizer, kLlama2Config, "", R"({"eos_token_id": 2})");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->model, "llama");
  EXPECT_EQ(t->pre, "default");
  EXPECT_EQ(t->tokens.size(), 6u);
  EXPECT_EQ(t->token_types[0], kTokenUnknown);
  EXPECT_EQ(t->token_types[1], kTokenControl);
  EXPECT_EQ(t->token_types[3], kTokenByte);
  EXPECT_EQ(t->token_types[4], kTokenNormal);
  EXPECT_EQ(t->bos, 1);
  EXPECT_EQ(t->eos, std::vector<int32_t>{2});
  EXPECT_TRUE(t->add_bos);
  EXPECT_EQ(t->chat_template, "D");
}

void ExpectError(const std::string& tok, absl::StatusCode code, const std::string& part) {
  auto t = TokenizerFromHfJson(tok, "", "", "");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), code) << t.status();
  EXPECT_NE(t.status().message().find(part), std::string::npos)
      << "'" << part << "' not in: " << t.status();
}

TEST(HfTokenizerTest, Errors) {
  ExpectError("{", absl::StatusCode::kInvalidArgument, "invalid JSON");
  ExpectError(R"({"model": {"type": "Unigram", "vocab": []}})", absl::StatusCode::kUnimplemented,
              "'Unigram'");
  ExpectError(R"({"model": {"type": "BPE"}})", absl::StatusCode::kInvalidArgument, "no 'vocab'");
  ExpectError(R"({"model": {"type": "BPE", "vocab": {"a": -1}}})",
              absl::StatusCode::kInvalidArgument, "vocab entry 'a' has an invalid id");
  ExpectError(R"({"model": {"type": "BPE", "vocab": {"a": 99999999999}}})",
              absl::StatusCode::kInvalidArgument, "invalid id");
  ExpectError(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}})",
              absl::StatusCode::kInvalidArgument, "merges entry");
  ExpectError(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}})",
              absl::StatusCode::kInvalidArgument, "id 0 is both");
}

}  // namespace
}  // namespace hipserve::worker::loader
