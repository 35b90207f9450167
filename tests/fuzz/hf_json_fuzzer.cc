// libFuzzer target: the Hugging Face JSON readers (config.json and tokenizer.json). The first
// byte picks the reader; the rest is the document. Seeds: corpus/hf_json.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/logging.h"
#include "worker/loader/model_config.h"
#include "worker/loader/tokenizer_data.h"

namespace loader = hipserve::worker::loader;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hipserve::common::SetMinLogLevel(hipserve::common::LogLevel::kFatal);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      (void)loader::ConfigFromHfJson(text);
      break;
    case 1:
      (void)loader::TokenizerFromHfJson(text, "", "", "");
      break;
    default:  // the same document as every file of the directory
      (void)loader::TokenizerFromHfJson(text, text, text, text);
      break;
  }
  return 0;
}
