// Tokenizers shared by the tokenizer, chat template and request validation fuzz targets: the
// built-in byte tokenizer, SmolLM2's byte-level BPE (tests/data/tokenizer) and a tiny
// SentencePiece-style ("llama") vocabulary with byte fallback. Built once per process.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

#ifndef HIPSERVE_TOKENIZER_TESTDATA
#error "HIPSERVE_TOKENIZER_TESTDATA must name tests/data/tokenizer"
#endif

namespace hipserve::fuzz {

using coordinator::Tokenizer;
using coordinator::TokenizerSpec;
using coordinator::TokenType;

inline std::unique_ptr<Tokenizer> MustCreate(const TokenizerSpec& spec) {
  auto t = Tokenizer::Create(spec);
  if (!t.ok()) {
    std::fprintf(stderr, "fuzz: tokenizer %s: %s\n", spec.model.c_str(),
                 t.status().ToString().c_str());
    std::abort();
  }
  return *std::move(t);
}

inline TokenizerSpec SmolLM2Spec() {
  const std::string path = std::string(HIPSERVE_TOKENIZER_TESTDATA) + "/smollm2_vocab.json";
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "fuzz: cannot read %s\n", path.c_str());
    std::abort();
  }
  TokenizerSpec spec;
  spec.model = j["model"].get<std::string>();
  spec.pre = j["pre"].get<std::string>();
  spec.tokens = j["tokens"].get<std::vector<std::string>>();
  spec.merges = j["merges"].get<std::vector<std::string>>();
  spec.token_types = j["token_types"].get<std::vector<int32_t>>();
  spec.bos_token_id = j["bos_token_id"].get<int32_t>();
  spec.eos_token_ids = j["eos_token_ids"].get<std::vector<int32_t>>();
  spec.add_bos = j["add_bos"].get<bool>();
  spec.chat_template = j["chat_template"].get<std::string>();
  return spec;
}

// <unk> <s> </s>, <0x00>..<0xFF>, then a few pieces and merges over "▁", "a", "b".
inline TokenizerSpec TinyLlamaSpec() {
  TokenizerSpec spec;
  spec.model = "llama";
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.token_types = {static_cast<int32_t>(TokenType::kUnknown),
                      static_cast<int32_t>(TokenType::kControl),
                      static_cast<int32_t>(TokenType::kControl)};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    spec.tokens.push_back(buf);
    spec.token_types.push_back(static_cast<int32_t>(TokenType::kByte));
  }
  for (const char* p : {"\xe2\x96\x81", "a", "b",
                        "\xe2\x96\x81"
                        "a",
                        "ab",
                        "\xe2\x96\x81"
                        "ab",
                        "<|user|>"}) {
    spec.tokens.push_back(p);
    spec.token_types.push_back(static_cast<int32_t>(TokenType::kNormal));
  }
  spec.token_types.back() = static_cast<int32_t>(TokenType::kUserDefined);
  spec.merges = {"\xe2\x96\x81 a", "a b",
                 "\xe2\x96\x81"
                 "a b"};
  spec.bos_token_id = 1;
  spec.eos_token_ids = {2};
  spec.add_bos = true;
  return spec;
}

struct Tokenizers {
  std::unique_ptr<Tokenizer> byte = MustCreate(coordinator::MakeByteTokenizerSpec());
  std::unique_ptr<Tokenizer> smollm2 = MustCreate(SmolLM2Spec());
  std::unique_ptr<Tokenizer> llama = MustCreate(TinyLlamaSpec());
  const Tokenizer& Pick(uint8_t selector) const {
    switch (selector % 3) {
      case 0:
        return *byte;
      case 1:
        return *smollm2;
      default:
        return *llama;
    }
  }
};

inline const Tokenizers& GetTokenizers() {
  static const Tokenizers* t = new Tokenizers();
  return *t;
}

}  // namespace hipserve::fuzz
