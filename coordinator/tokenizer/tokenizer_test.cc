#include "coordinator/tokenizer/tokenizer.h"

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/tokenizer/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hipserve::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SmolLM2Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto spec = testing::LoadSmolLM2Spec();
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto tok = Tokenizer::Create(*spec);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  static const Tokenizer* tokenizer_;
};
const Tokenizer* SmolLM2Test::tokenizer_ = nullptr;

// Expected ids come from Hugging Face `tokenizers` (scripts/tokenizer/make_expected.py).
TEST_F(SmolLM2Test, MatchesReferenceIds) {
  auto expected = testing::LoadJson("smollm2_expected.json");
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto& cases = (*expected)["cases"];
  ASSERT_GE(cases.size(), 40u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(::testing::Message() << "text: \"" << text << "\"");
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->Encode(text, /*add_special=*/true, /*parse_special=*/true), ids);
    EXPECT_EQ(tokenizer_->Encode(text, true, /*parse_special=*/false),
              c["ids_no_special"].get<std::vector<int32_t>>());
    if (c["round_trip"].get<bool>()) {
      EXPECT_EQ(tokenizer_->Decode(ids), text);
    }
  }
}

TEST_F(SmolLM2Test, SpecFields) {
  EXPECT_EQ(tokenizer_->vocab_size(), 49152);
  EXPECT_TRUE(tokenizer_->IsEos(2));
  EXPECT_FALSE(tokenizer_->IsEos(0));
  EXPECT_EQ(tokenizer_->spec().pre, "smollm");
  EXPECT_EQ(tokenizer_->TokenText(1), "<|im_start|>");
  EXPECT_EQ(tokenizer_->TokenText(216), " ");  // "Ġ"
  EXPECT_EQ(tokenizer_->RawToken(216), "\xC4\xA0");
  EXPECT_EQ(tokenizer_->TokenText(-1), "");
  // add_bos is false for SmolLM2: add_special adds nothing.
  EXPECT_THAT(tokenizer_->Encode("<|im_start|>", true, true), ElementsAre(1));
}

// Valid UTF-8 survives a round trip; ill-formed bytes come back as U+FFFD.
TEST_F(SmolLM2Test, RandomBytesRoundTrip) {
  std::mt19937 rng(1234);
  const std::vector<std::string> atoms = {"a",    "Z",          " ", "  ",      "\n", "\t",
                                          "7",    "'s",         "é", "日",      "😀",  "\xE2\x80",
                                          "\xFF", "<|im_end|>", ".", "\xC2\xA0"};
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    int n = rng() % 40;
    for (int i = 0; i < n; ++i) {
      if (rng() % 4 == 0) {
        s.push_back(static_cast<char>(0x80 + rng() % 64));  // a stray continuation byte
      } else {
        s += atoms[rng() % atoms.size()];
      }
    }
    const std::string valid = SanitizeUtf8(s);
    EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(s, false, false)), valid);
    EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(s, false, true)), valid);
    EXPECT_EQ(tokenizer_->Encode(s, false, true), tokenizer_->Encode(valid, false, true));
  }
}

TEST_F(SmolLM2Test, ValidateNamesBadIdAndVocabSize) {
  EXPECT_TRUE(tokenizer_->Validate({0, 1, 49151}).ok());
  EXPECT_TRUE(tokenizer_->Validate({}).ok());
  absl::Status s = tokenizer_->Validate({5, 49152, -3});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("49152 at position 1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("vocab size is 49152"));
  s = tokenizer_->Validate({-3});
  EXPECT_THAT(std::string(s.message()), HasSubstr("-3 at position 0"));
}

// Encode/Decode are const and share no mutable state: concurrent calls agree with serial ones.
TEST_F(SmolLM2Test, ConcurrentEncodeMatchesSerial) {
  const std::string text = "Hello 12345 \xE6\x97\xA5\xE6\x9C\xAC <|im_end|> world!\n\n  x";
  const std::vector<int32_t> serial = tokenizer_->Encode(text, false, true);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (tokenizer_->Encode(text, false, true) != serial) {
          ++mismatches;
        }
        if (tokenizer_->Decode(serial) != text) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(ByteTokenizerTest, RoundTripAndSpecials) {
  auto tok = Tokenizer::Create(MakeByteTokenizerSpec());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.vocab_size(), 259);
  EXPECT_TRUE(t.IsEos(256));
  EXPECT_TRUE(t.IsEos(258));
  EXPECT_FALSE(t.IsEos(257));
  EXPECT_THAT(t.Encode("hi", true, true), ElementsAre('h', 'i'));
  EXPECT_THAT(t.Encode(std::string("\xFF\0a", 3), true, true), ElementsAre(255, 0, 'a'));
  std::string bytes;
  for (int b = 0; b < 256; ++b) {
    bytes.push_back(static_cast<char>(b));
  }
  std::vector<int32_t> ids = t.Encode(bytes, false, false);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(ids[b], b);
  }
  EXPECT_EQ(t.Decode(ids), bytes);
  EXPECT_THAT(t.Encode("<|im_start|>x<|im_end|>", false, true), ElementsAre(257, 'x', 258));
  EXPECT_EQ(t.Encode("<|im_start|>", false, false).size(), 12u);
  EXPECT_EQ(t.Decode({257, 'o', 'k', 258}), "<|im_start|>ok<|im_end|>");
  EXPECT_EQ(t.TokenText(256), "<|endoftext|>");
  EXPECT_FALSE(t.Validate({259}).ok());
}

TEST(TokenizerCreateTest, RejectsBadSpecs) {
  TokenizerSpec spec = MakeByteTokenizerSpec();
  spec.model = "wordpiece";
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = MakeByteTokenizerSpec();
  spec.token_types.pop_back();
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = MakeByteTokenizerSpec();
  spec.eos_token_ids = {259};
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = MakeByteTokenizerSpec();
  spec.model = "llama";
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec = MakeByteTokenizerSpec();
  spec.model = "gpt2";
  spec.pre = "no-such-pre";
  auto s = Tokenizer::Create(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no-such-pre"));
}

// A tiny GPT-2 style vocab: bytes as the GPT-2 alphabet, a few merges.
TokenizerSpec TinyGpt2Spec() {
  TokenizerSpec spec;
  spec.model = "gpt2";
  spec.pre = "gpt2";
  for (char c : std::string("abcd")) {
    spec.tokens.emplace_back(1, c);  // 0..3
  }
  spec.tokens.push_back("\xC4\xA0");  // 4: "Ġ" = space
  spec.tokens.push_back("ab");        // 5
  spec.tokens.push_back("abc");       // 6
  spec.tokens.push_back("cd");        // 7
  spec.tokens.push_back("abcd");      // 8: no merge makes it
  spec.tokens.push_back("<s>");       // 9
  spec.merges = {"a b", "c d", "ab c"};
  spec.token_types.assign(spec.tokens.size(), 1);
  spec.token_types[9] = 3;
  spec.bos_token_id = 9;
  return spec;
}

TEST(Gpt2TokenizerTest, MergesByRankAndAddsBos) {
  TokenizerSpec spec = TinyGpt2Spec();
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  // "abcd": a b -> ab (rank 0), then c d (rank 1) before ab c (rank 2).
  EXPECT_THAT((*tok)->Encode("abcd", true, true), ElementsAre(5, 7));
  EXPECT_THAT((*tok)->Encode("abc a", true, true), ElementsAre(6, 4, 0));
  spec.add_bos = true;
  tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok());
  EXPECT_THAT((*tok)->Encode("ab", true, true), ElementsAre(9, 5));
  EXPECT_THAT((*tok)->Encode("ab", false, true), ElementsAre(5));
}

TEST(Gpt2TokenizerTest, Llama3IgnoresMergesForWholeWords) {
  TokenizerSpec spec = TinyGpt2Spec();
  spec.pre = "llama-bpe";
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("abcd", false, true), ElementsAre(8));
}

// SentencePiece-style: U+2581 for spaces, a prefix U+2581, <0xXX> byte fallback.
TEST(LlamaTokenizerTest, EncodeDecodeWithByteFallback) {
  const std::string sp = "\xE2\x96\x81";
  TokenizerSpec spec;
  spec.model = "llama";
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.token_types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    spec.tokens.push_back(buf);
    spec.token_types.push_back(6);
  }
  for (const std::string& t : {sp, std::string("h"), std::string("i"), sp + "h", sp + "hi"}) {
    spec.tokens.push_back(t);
    spec.token_types.push_back(1);
  }
  const int32_t kSp = 259, kH = 260, kI = 261, kSpH = 262, kSpHi = 263;
  spec.merges = {sp + " h", sp + "h i"};
  spec.bos_token_id = 1;
  spec.eos_token_ids = {2};
  spec.add_bos = true;
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_THAT(t.Encode("hi hi", true, true), ElementsAre(1, kSpHi, kSpHi));
  EXPECT_THAT(t.Encode("ih", false, true), ElementsAre(kSp, kI, kH));
  // "é" has no token: two byte tokens C3 A9.
  EXPECT_THAT(t.Encode("h\xC3\xA9", false, true), ElementsAre(kSpH, 3 + 0xC3, 3 + 0xA9));
  for (std::string s : {"hi hi", " hi", "h\xC3\xA9 i", "", "  "}) {
    EXPECT_EQ(t.Decode(t.Encode(s, false, true)), s) << s;
  }
  EXPECT_EQ(t.TokenText(kSpHi), " hi");
  EXPECT_EQ(t.Decode({1, kSpHi, kSpHi, 2}), "<s>hi hi</s>");  // control tokens as text
}

}  // namespace
}  // namespace hipserve::coordinator
