// libFuzzer target: chat templating. Fuzzed: the model's template text and special tokens
// (format detection, the ChatML default system prompt), the messages and
// add_generation_prompt. The prompt is then encoded as the server does (parse_special).
// Checked: ChatML and plain prompts contain every message's content verbatim.
// Seeds: corpus/chat_template.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/logging.h"
#include "coordinator/tokenizer/chat_template.h"
#include "tests/fuzz/fuzz_tokenizers.h"

namespace coord = hipserve::coordinator;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hipserve::common::SetMinLogLevel(hipserve::common::LogLevel::kFatal);
  (void)hipserve::fuzz::GetTokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const coord::Tokenizer& tok = hipserve::fuzz::GetTokenizers().Pick(in.ConsumeIntegral<uint8_t>());
  coord::TokenizerSpec spec;
  spec.model = "byte";
  spec.chat_template = in.ConsumeRandomLengthString(512);
  const int n_specials = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < n_specials; ++i) spec.tokens.push_back(in.ConsumeRandomLengthString(32));
  const coord::ChatTemplate tmpl = coord::DetectChatTemplate(spec);
  const bool add_generation_prompt = in.ConsumeBool();
  static const char* const kRoles[] = {"system", "user", "assistant", "tool"};
  std::vector<coord::ChatMessageIn> msgs;
  while (in.remaining_bytes() > 0 && msgs.size() < 16) {
    coord::ChatMessageIn m;
    const uint8_t r = in.ConsumeIntegral<uint8_t>();
    m.role = r < 200 ? kRoles[r % 4] : in.ConsumeRandomLengthString(16);
    m.content = in.ConsumeRandomLengthString(256);
    msgs.push_back(std::move(m));
  }
  const std::string prompt = coord::ApplyChatTemplate(tmpl, msgs, add_generation_prompt);
  if (tmpl.format != coord::ChatFormat::kLlama3) {
    for (const auto& m : msgs) {
      if (prompt.find(m.content) == std::string::npos) {
        std::fprintf(stderr, "chat_template_fuzzer: content missing from the prompt\n");
        __builtin_trap();
      }
    }
  }
  for (coord::ChatFormat f :
       {coord::ChatFormat::kChatML, coord::ChatFormat::kLlama3, coord::ChatFormat::kPlain}) {
    (void)coord::ApplyChatTemplate(f, msgs, add_generation_prompt);
  }
  const std::vector<int32_t> ids = tok.Encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  if (!tok.Validate(ids).ok()) __builtin_trap();
  return 0;
}
