// Host-side checks of the probe-key source shared by HipDecodeMaskGpu and HipPrefillMaskGpu
// (internal to kernels/hip_cuda; the device side is mask_key_load.cuh).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/cuda/param_checks.h"

namespace hipserve::kernels::hip_mask_internal {

// Validates `dtype`, the contiguous `k` (when !IsTiered(tiered)) or the tiered source for tokens
// [0, max_len) of every list. Per-entry tables (tiered.entries) are accepted only when
// `allow_entries` (decode); their strides live in device memory and are not checked. `fn`
// prefixes the InvalidArgument messages.
inline absl::Status ValidateMaskKeySource(const char* fn, KvDtype dtype, const void* k,
                                          const TieredKvSource& tiered, int64_t max_len,
                                          bool allow_entries = false) {
  using internal::Aligned16;
  using internal::Invalid;
  if (absl::Status s = internal::CheckKvDtype(fn, dtype, "k_dtype"); !s.ok()) return s;
  if (!IsTiered(tiered)) {
    if (k == nullptr) return Invalid(fn, "k must be non-null (or pass a tiered source)");
    if (!Aligned16(k)) return Invalid(fn, "k must be 16-byte aligned");
    return absl::OkStatus();
  }
  if (tiered.entries != nullptr) {
    if (!allow_entries) return Invalid(fn, "tiered.entries (per-entry tables) is decode-only");
    if (tiered.bank_k == nullptr) return Invalid(fn, "tiered: bank_k must be non-null");
    if (!Aligned16(tiered.bank_k)) return Invalid(fn, "tiered: bank_k must be 16-byte aligned");
    return absl::OkStatus();
  }
  if (tiered.bank_k == nullptr || tiered.cold_pages == nullptr) {
    return Invalid(fn, "tiered: bank_k and cold_pages must be non-null");
  }
  if (!Aligned16(tiered.bank_k)) return Invalid(fn, "tiered: bank_k must be 16-byte aligned");
  if (tiered.slot_stride < max_len) {
    return Invalid(
        fn, absl::StrCat("tiered.slot_stride ", tiered.slot_stride, " < ", max_len, " tokens"));
  }
  const int64_t pages = (max_len + kKvPageTokens - 1) / kKvPageTokens;
  if (tiered.page_stride < pages) {
    return Invalid(fn, absl::StrCat("tiered.page_stride ", tiered.page_stride, " < ", pages,
                                    " pages of ", max_len, " tokens"));
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels::hip_mask_internal
