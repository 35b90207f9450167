// Shared kvstore vocabulary: ID types, page geometry, dtypes.
#pragma once

#include <cstdint>

#include "common/strong_id.h"

namespace hipserve::kvstore {

using common::KvHeadId;
using common::LayerId;
using common::PageId;
using common::SequenceId;

// Tokens per page. A page holds one layer and one local KV head: K [64][head_dim] then
// V [64][head_dim] (kvstore/FORMAT.md).
inline constexpr int kPageTokens = 64;

// Element type of hot pages and cache banks. The cold tier is always kFp8E5m2.
enum class KvDtype { kBf16, kFp8E5m2 };

inline int DtypeBytes(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kBf16:
      return 2;
    case KvDtype::kFp8E5m2:
      return 1;
  }
  return 0;
}

inline const char* DtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kBf16:
      return "bf16";
    case KvDtype::kFp8E5m2:
      return "fp8_e5m2";
  }
  return "?";
}

// Bytes of one page (K and V) with `head_dim` elements of `elem_bytes` per token row.
inline int64_t PageBytes(int head_dim, int elem_bytes) {
  return int64_t{2} * kPageTokens * head_dim * elem_bytes;
}

}  // namespace hipserve::kvstore
