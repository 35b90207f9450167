#include "coordinator/tokenizer/chat_template.h"

#include <string>
#include <vector>

#include "coordinator/tokenizer/test_data.h"
#include "gtest/gtest.h"

namespace hipserve::coordinator {
namespace {

std::vector<ChatMessageIn> Messages(const nlohmann::json& j) {
  std::vector<ChatMessageIn> out;
  for (const auto& m : j) {
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

// Expected prompts are the real templates rendered by jinja2 (make_expected.py).
TEST(ChatTemplateTest, SmolLM2MatchesJinja) {
  auto spec = testing::LoadSmolLM2Spec();
  ASSERT_TRUE(spec.ok()) << spec.status();
  ChatTemplate t = DetectChatTemplate(*spec);
  EXPECT_EQ(t.format, ChatFormat::kChatML);
  EXPECT_EQ(t.default_system_prompt,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  auto expected = testing::LoadJson("chat_expected.json");
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_GE((*expected)["smollm2"].size(), 5u);
  for (const auto& c : (*expected)["smollm2"]) {
    SCOPED_TRACE(c.dump());
    EXPECT_EQ(ApplyChatTemplate(t, Messages(c["messages"]), c["add_generation_prompt"].get<bool>()),
              c["text"].get<std::string>());
  }
}

TEST(ChatTemplateTest, Llama3MatchesJinja) {
  auto expected = testing::LoadJson("chat_expected.json");
  ASSERT_TRUE(expected.ok()) << expected.status();
  TokenizerSpec spec;
  spec.chat_template = (*expected)["llama3_template"].get<std::string>();
  EXPECT_EQ(DetectChatFormat(spec), ChatFormat::kLlama3);
  ASSERT_GE((*expected)["llama3"].size(), 5u);
  for (const auto& c : (*expected)["llama3"]) {
    SCOPED_TRACE(c.dump());
    EXPECT_EQ(ApplyChatTemplate(ChatFormat::kLlama3, Messages(c["messages"]),
                                c["add_generation_prompt"].get<bool>()),
              c["text"].get<std::string>());
  }
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kLlama3, {{"user", "Hi"}}, true),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, DetectsFromVocabWithoutTemplate) {
  TokenizerSpec spec = MakeByteTokenizerSpec();
  EXPECT_EQ(DetectChatFormat(spec), ChatFormat::kChatML);
  EXPECT_EQ(DetectChatTemplate(spec).default_system_prompt, "");
  spec.chat_template.clear();
  EXPECT_EQ(DetectChatFormat(spec), ChatFormat::kChatML);
  spec.tokens.back() = "<|start_header_id|>";
  spec.tokens[257] = "<|begin_of_text|>";
  EXPECT_EQ(DetectChatFormat(spec), ChatFormat::kLlama3);
  spec.tokens.resize(256);
  spec.token_types.resize(256);
  EXPECT_EQ(DetectChatFormat(spec), ChatFormat::kPlain);
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kPlain, {{"user", "hi"}}, true), "user: hi\nassistant:");
}

TEST(ChatTemplateTest, ByteModelEncodesChatMLControlTokens) {
  auto tok = Tokenizer::Create(MakeByteTokenizerSpec());
  ASSERT_TRUE(tok.ok());
  std::string prompt =
      ApplyChatTemplate(DetectChatTemplate((*tok)->spec()), {{"user", "hi"}}, true);
  EXPECT_EQ(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  std::vector<int32_t> ids = (*tok)->Encode(prompt, true, /*parse_special=*/true);
  std::vector<int32_t> expected = {257, 'u', 's', 'e', 'r', '\n', 'h', 'i', 258, '\n', 257};
  for (char c : std::string("assistant\n")) {
    expected.push_back(c);
  }
  EXPECT_EQ(ids, expected);
}

}  // namespace
}  // namespace hipserve::coordinator
