// DType: the element types tensors, collectives and KV pages use. The one home of the enum;
// kernels/attention_cuda/kv_source.h's KvDtype and kvstore::KvDtype name the subset KV pages
// may hold (same numeric values for the shared members).
#pragma once

#include <cstdint>

namespace hipserve::kernels {

enum class DType : int {
  kBf16 = 0,     // uint16_t storage (kernels/dtype/bf16.h)
  kFp8E5m2 = 1,  // uint8_t codes (kvstore/FORMAT.md)
  kFloat32 = 2,
  kInt32 = 3,
};

inline int64_t DTypeSize(DType d) {
  switch (d) {
    case DType::kBf16:
      return 2;
    case DType::kFp8E5m2:
      return 1;
    case DType::kFloat32:
      return 4;
    case DType::kInt32:
      return 4;
  }
  return 0;
}

inline const char* DTypeName(DType d) {
  switch (d) {
    case DType::kBf16:
      return "bf16";
    case DType::kFp8E5m2:
      return "fp8_e5m2";
    case DType::kFloat32:
      return "fp32";
    case DType::kInt32:
      return "int32";
  }
  return "?";
}

}  // namespace hipserve::kernels
