// DType: the element types tensors, collectives and KV pages use, and KvDtype, the subset K/V
// rows may hold (KV pages, cache banks, the attention and mask kernels' K/V). The one home of
// both enums: kvstore::KvDtype is kernels::KvDtype (kvstore/kv_types.h).
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

// Element type of K/V rows in device memory, KV pages or a cache bank; the KV members of DType,
// same values. fp8 e5m2 codes decode exactly (every e5m2 value is an fp16 / bf16 / fp32 value;
// e5m2 is the top byte of the fp16 encoding), bit-identical to kvstore::Fp8E5m2ToBf16.
enum class KvDtype : int {
  kBf16 = static_cast<int>(DType::kBf16),
  kFp8E5m2 = static_cast<int>(DType::kFp8E5m2),
};

inline constexpr DType ToDType(KvDtype d) { return static_cast<DType>(d); }

// Bytes of one element; 0 for a value outside the enum.
inline int KvDtypeBytes(KvDtype d) {
  switch (d) {
    case KvDtype::kBf16:
    case KvDtype::kFp8E5m2:
      return static_cast<int>(DTypeSize(ToDType(d)));
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

// "bf16" / "fp8_e5m2"; "?" for a value outside the enum.
inline const char* KvDtypeName(KvDtype d) {
  switch (d) {
    case KvDtype::kBf16:
    case KvDtype::kFp8E5m2:
      return DTypeName(ToDType(d));
  }
  return "?";
}

}  // namespace hipserve::kernels
