// libFuzzer target: request validation. The input is a serialized hipserve.v1.GenerateRequest
// (what a client sends over gRPC); a request that parses is turned into prompt tokens and a
// SequenceRequest against the byte tokenizer and SmolLM2's, under small limits. Any request
// must give a SequenceRequest or INVALID_ARGUMENT-style Status: no crash, sanitizer report or
// hang; an accepted one respects the limits. Seeds: corpus/request_validation.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/logging.h"
#include "coordinator/request_validation.h"
#include "hipserve/v1/generate.pb.h"
#include "tests/fuzz/fuzz_tokenizers.h"

namespace coord = hipserve::coordinator;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hipserve::common::SetMinLogLevel(hipserve::common::LogLevel::kFatal);
  (void)hipserve::fuzz::GetTokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hipserve::v1::GenerateRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  coord::RequestLimits limits;
  limits.max_context = 256;
  limits.default_max_tokens = 16;
  limits.max_tokens_limit = 128;
  limits.max_prompt_tokens = 200;
  limits.max_stop_strings = 4;
  limits.attention = (size & 1) ? "hip" : "dense";
  const auto& toks = hipserve::fuzz::GetTokenizers();
  for (const coord::Tokenizer* tok : {toks.byte.get(), toks.smollm2.get()}) {
    (void)coord::PromptTokens(req, *tok);
    auto seq = coord::ToSequenceRequest(req, *tok, limits);
    if (!seq.ok()) continue;
    const int prompt = static_cast<int>(seq->prompt.size());
    if (prompt == 0 || prompt > limits.max_prompt_tokens || seq->max_tokens < 0 ||
        prompt + seq->max_tokens > limits.max_context || !tok->Validate(seq->prompt).ok() ||
        static_cast<int>(seq->stop.size()) > limits.max_stop_strings) {
      std::fprintf(stderr, "request_validation_fuzzer: accepted a request outside the limits\n");
      __builtin_trap();
    }
  }
  return 0;
}
