// libFuzzer target: the GGUF parser and everything that reads a parsed GGUF file (tensor
// decode, model config, tokenizer data, the whole model). Any input must give a Status: no
// crash, sanitizer report, hang or huge allocation. Seeds: corpus/gguf.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/logging.h"
#include "worker/loader/file_bytes.h"
#include "worker/loader/gguf.h"
#include "worker/loader/load.h"
#include "worker/loader/model_config.h"
#include "worker/loader/tokenizer_data.h"

namespace loader = hipserve::worker::loader;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hipserve::common::SetMinLogLevel(hipserve::common::LogLevel::kFatal);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto g = loader::GgufFile::Parse(
      loader::FileBytes::FromString(std::string(reinterpret_cast<const char*>(data), size)));
  if (!g.ok()) return 0;
  for (const loader::GgufTensorInfo& t : g->tensors()) {
    auto r = g->ReadTensor(t);
    if (r.ok() && static_cast<int64_t>(r->data.size()) != t.n_elements) __builtin_trap();
  }
  (void)loader::ConfigFromGguf(*g);
  (void)loader::TokenizerFromGguf(*g);
  (void)loader::LoadModelFromGguf(*g);
  return 0;
}
