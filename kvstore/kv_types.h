// Shared kvstore vocabulary: ID types, page geometry, dtypes.
#pragma once

#include <cstdint>

#include "common/strong_id.h"
#include "kernels/dtype/dtype.h"

namespace hipserve::kvstore {

using common::KvHeadId;
using common::LayerId;
using common::PageId;
using common::SequenceId;

// Tokens per page. A page holds one layer and one local KV head: K [64][head_dim] then
// V [64][head_dim] (kvstore/FORMAT.md).
inline constexpr int kPageTokens = 64;

// Element type of hot pages and cache banks. The cold tier is always kFp8E5m2. One type with
// the kernels' (kernels/dtype/dtype.h), so stores hand it to kernels without a cast.
using KvDtype = kernels::KvDtype;

inline int DtypeBytes(KvDtype dtype) { return kernels::KvDtypeBytes(dtype); }
inline const char* DtypeName(KvDtype dtype) { return kernels::KvDtypeName(dtype); }

// Bytes of one page (K and V) with `head_dim` elements of `elem_bytes` per token row.
inline int64_t PageBytes(int head_dim, int elem_bytes) {
  return int64_t{2} * kPageTokens * head_dim * elem_bytes;
}

}  // namespace hipserve::kvstore
