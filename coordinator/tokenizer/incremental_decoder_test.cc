#include "coordinator/tokenizer/incremental_decoder.h"

#include <random>
#include <string>
#include <vector>

#include "coordinator/tokenizer/test_data.h"
#include "gtest/gtest.h"

namespace hipserve::coordinator {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::unique_ptr<Tokenizer> ByteTokenizer() {
  auto tok = Tokenizer::Create(MakeByteTokenizerSpec());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return std::move(tok).value();
}

// Feeds `bytes` one byte token at a time; returns the outputs of each Add and of Flush.
std::vector<std::string> Feed(const Tokenizer& tok, const std::string& bytes) {
  IncrementalDecoder dec(tok);
  std::vector<std::string> out;
  for (char c : bytes) {
    out.push_back(dec.Add(static_cast<uint8_t>(c)));
  }
  out.push_back(dec.Flush());
  return out;
}

TEST(IncrementalDecoderTest, HoldsBackSplitCharacters) {
  auto tok = ByteTokenizer();
  // "é" = C3 A9, "😀" = F0 9F 98 80.
  EXPECT_EQ(Feed(*tok, "a\xC3\xA9"), (std::vector<std::string>{"a", "", "\xC3\xA9", ""}));
  EXPECT_EQ(Feed(*tok, "\xF0\x9F\x98\x80!"),
            (std::vector<std::string>{"", "", "", "\xF0\x9F\x98\x80", "!", ""}));
}

TEST(IncrementalDecoderTest, ReplacesInvalidBytes) {
  auto tok = ByteTokenizer();
  EXPECT_EQ(Feed(*tok,
                 "\xFF"
                 "a"),
            (std::vector<std::string>{kFffd, "a", ""}));
  // A truncated sequence followed by ASCII: one U+FFFD for the maximal subpart E2 82.
  EXPECT_EQ(Feed(*tok,
                 "\xE2\x82"
                 "A"),
            (std::vector<std::string>{"", "", kFffd + "A", ""}));
  // Surrogates (ED A0 80) are ill-formed: ED, A0, 80 each become U+FFFD.
  EXPECT_EQ(Feed(*tok, "\xED\xA0\x80"), (std::vector<std::string>{"", kFffd + kFffd, kFffd, ""}));
  // An unfinished character at the end comes out of Flush.
  EXPECT_EQ(Feed(*tok, "x\xF0\x9F"), (std::vector<std::string>{"x", "", "", kFffd}));
}

// Whatever the split, the streamed text equals the whole text sanitised at once, and valid
// UTF-8 comes out unchanged.
TEST(IncrementalDecoderTest, StreamEqualsSanitizedWhole) {
  auto tok = ByteTokenizer();
  std::mt19937 rng(7);
  const std::vector<std::string> atoms = {
      "a",        "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x98\x80",
      "\xE2\x82", "\xFF",     "\x80",         "\xF4\x90\x80\x80"};
  for (int iter = 0; iter < 500; ++iter) {
    std::string s;
    bool valid = true;
    for (int i = 0, n = rng() % 12; i < n; ++i) {
      size_t k = rng() % atoms.size();
      valid = valid && k < 4;
      s += atoms[k];
    }
    std::string streamed;
    for (const std::string& piece : Feed(*tok, s)) {
      streamed += piece;
    }
    EXPECT_EQ(streamed, SanitizeUtf8(s));
    if (valid) {
      EXPECT_EQ(streamed, s);
    }
  }
}

TEST(IncrementalDecoderTest, SmolLM2TokensSplittingCharacters) {
  auto spec = testing::LoadSmolLM2Spec();
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto tok = Tokenizer::Create(*spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "Emoji: \xF0\x9F\x98\x80\xF0\x9F\x91\x8D \xE6\x97\xA5\xE6\x9C\xAC";
  std::vector<int32_t> ids = (*tok)->Encode(text, false, true);
  IncrementalDecoder dec(**tok);
  std::string streamed;
  int empty_adds = 0;
  for (int32_t id : ids) {
    std::string piece = dec.Add(id);
    empty_adds += piece.empty();
    streamed += piece;
  }
  streamed += dec.Flush();
  EXPECT_EQ(streamed, text);
  EXPECT_GT(empty_adds, 0);  // some character really was split across tokens
}

}  // namespace
}  // namespace hipserve::coordinator
