#include "coordinator/tokenizer/pre_tokenizer.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/tokenizer/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hipserve::coordinator {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Split(const std::string& pre, absl::string_view text) {
  static auto* cache = new std::map<std::string, std::unique_ptr<PreTokenizer>>();
  auto& p = (*cache)[pre];
  if (p == nullptr) {
    auto created = PreTokenizer::Create(pre);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) {
      return {};
    }
    p = std::move(created).value();
  }
  std::vector<absl::string_view> pieces;
  p->Split(text, &pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

// Pieces from HF pre-tokenizers running the original Oniguruma patterns, lookahead included
// (scripts/tokenizer/make_expected.py).
TEST(PreTokenizerTest, MatchesReferencePieces) {
  auto expected = testing::LoadJson("pretokenizer_expected.json");
  ASSERT_TRUE(expected.ok()) << expected.status();
  int checked = 0;
  for (const char* pre : {"smollm", "gpt2", "llama-bpe", "qwen2"}) {
    ASSERT_TRUE(expected->contains(pre)) << pre;
    for (const auto& c : (*expected)[pre]) {
      const std::string text = c["text"].get<std::string>();
      SCOPED_TRACE(::testing::Message() << pre << " \"" << text << "\"");
      EXPECT_EQ(Split(pre, text), c["pieces"].get<std::vector<std::string>>());
      ++checked;
    }
  }
  EXPECT_GE(checked, 200);
}

TEST(PreTokenizerTest, Gpt2WhitespaceLookahead) {
  // `\s+(?!\S)` leaves the last space of a run to the following word.
  EXPECT_THAT(Split("gpt2", "a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(Split("gpt2", "a \n b"), ElementsAre("a", " \n", " b"));
  EXPECT_THAT(Split("gpt2", "a\nb"), ElementsAre("a", "\n", "b"));
  EXPECT_THAT(Split("gpt2", "a  "), ElementsAre("a", "  "));
  // Unicode White_Space counts as \s (RE2's own \s is ASCII only).
  EXPECT_THAT(Split("gpt2",
                    "a\xC2\xA0\xC2\xA0"
                    "b"),
              ElementsAre("a", "\xC2\xA0", "\xC2\xA0", "b"));
  EXPECT_THAT(Split("gpt2", "I'm 42!"), ElementsAre("I", "'m", " 42", "!"));
}

TEST(PreTokenizerTest, SmolLM2SplitsEveryDigit) {
  EXPECT_THAT(Split("smollm", "x 123"), ElementsAre("x", " ", "1", "2", "3"));
  EXPECT_THAT(Split("smollm", "a  1"), ElementsAre("a", "  ", "1"));
}

TEST(PreTokenizerTest, Llama3AndQwen2Digits) {
  EXPECT_THAT(Split("llama-bpe", "12345"), ElementsAre("123", "45"));
  EXPECT_THAT(Split("qwen2", "123"), ElementsAre("1", "2", "3"));
  EXPECT_THAT(Split("llama-bpe", "I'M ok\n\n  x"),
              ElementsAre("I", "'M", " ok", "\n\n", " ", " x"));
}

TEST(PreTokenizerTest, InvalidUtf8StaysCovered) {
  std::string text = "ab\xFF\xFE cd\xE2\x82";
  std::string joined;
  for (const std::string& p : Split("gpt2", text)) {
    joined += p;
  }
  EXPECT_EQ(joined, text);
}

TEST(PreTokenizerTest, UnknownNameIsInvalidArgument) {
  EXPECT_EQ(PreTokenizer::Create("bogus").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::coordinator
