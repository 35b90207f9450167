// The declared instantiation set of the decode kernels, in one place: head_dim {64, 128} x
// group bound {4, 8} x KV dtype {bf16, fp8 e5m2} (x dense / BSA). In-kernel RoPE and tiered
// reads are block-uniform runtime options of the BSA kernels, not template parameters, so a
// 2-core build compiles 16 decode kernels. Anything outside the set is InvalidArgument naming
// the supported values. Included only by decode_attention.cu.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::kernels::decode_attention_internal {

inline absl::Status CheckKvDtype(const char* fn, KvDtype d) {
  switch (d) {
    case KvDtype::kBf16:
    case KvDtype::kFp8E5m2:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(fn, ": kv_dtype ", static_cast<int>(d),
                                                 " is not supported (supported: bf16, fp8_e5m2)"));
}

// Calls fn.template operator()<HD, MAXG, FP8>() for the instance that serves the shape.
// Requires a validated shape (head_dim 64 / 128, group 1..8, a supported dtype).
template <typename Fn>
auto DispatchDecode(int head_dim, int group, KvDtype dtype, Fn&& fn) {
  const bool wide = group > 4;
  const bool fp8 = dtype == KvDtype::kFp8E5m2;
  if (head_dim == 64) {
    if (wide) return fp8 ? fn.template operator()<64, 8, true>() : fn.template operator()<64, 8, false>();
    return fp8 ? fn.template operator()<64, 4, true>() : fn.template operator()<64, 4, false>();
  }
  if (wide) return fp8 ? fn.template operator()<128, 8, true>() : fn.template operator()<128, 8, false>();
  return fp8 ? fn.template operator()<128, 4, true>() : fn.template operator()<128, 4, false>();
}

}  // namespace hipserve::kernels::decode_attention_internal
