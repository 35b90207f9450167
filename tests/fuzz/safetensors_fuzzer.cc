// libFuzzer target: the safetensors parser (header JSON, offsets, dtypes) and reading every
// tensor it accepts. Any input must give a Status: no crash, sanitizer report or hang.
// Seeds: corpus/safetensors.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/logging.h"
#include "worker/loader/file_bytes.h"
#include "worker/loader/safetensors.h"

namespace loader = hipserve::worker::loader;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hipserve::common::SetMinLogLevel(hipserve::common::LogLevel::kFatal);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = loader::SafetensorsFile::Parse(
      loader::FileBytes::FromString(std::string(reinterpret_cast<const char*>(data), size)));
  if (!f.ok()) return 0;
  for (const auto& [name, info] : f->tensors()) (void)f->Read(name);
  return 0;
}
