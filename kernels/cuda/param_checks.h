// Host-side parameter checks shared by the CUDA ops' entry points (`<op>.cu`, and host headers
// they include such as hip_cuda/mask_key_source.h): the InvalidArgument message format, pointer
// alignment, the K/V dtype set and the tiered K/V bank pointers, plus the integer helpers the
// launch plans use. Plain C++ (no CUDA types), so it also compiles in host-only translation
// units. Every message is "<fn>: <what>", with `fn` the public entry point's name.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::kernels::internal {

// InvalidArgument "<fn>: <what>".
inline absl::Status Invalid(absl::string_view fn, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(fn, ": ", what));
}

// 16-byte aligned: the vector (uint4 / cp.async 16) paths need it.
inline bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// The K/V element types the attention and mask kernels read: bf16 and fp8 e5m2. `field` names
// the parameter in the message ("kv_dtype", "k_dtype").
inline absl::Status CheckKvDtype(absl::string_view fn, KvDtype d,
                                 absl::string_view field = "kv_dtype") {
  switch (d) {
    case KvDtype::kBf16:
    case KvDtype::kFp8E5m2:
      return absl::OkStatus();
  }
  return Invalid(fn, absl::StrCat(field, " ", static_cast<int>(d),
                                  " is not supported (supported: bf16, fp8_e5m2)"));
}

// The bank and cold-page pointers of a tiered K/V source that reads both K and V (BSA decode and
// prefill): non-null (cold_pages unless per-entry tables are given), banks 16-byte aligned.
// Call only when IsTiered(t).
inline absl::Status CheckTieredKvPointers(absl::string_view fn, const TieredKvSource& t) {
  if (t.bank_k == nullptr || t.bank_v == nullptr ||
      (t.cold_pages == nullptr && t.entries == nullptr)) {
    return Invalid(fn, "tiered: bank_k, bank_v and cold_pages must be non-null");
  }
  if (!Aligned16(t.bank_k) || !Aligned16(t.bank_v)) {
    return Invalid(fn, "tiered: bank_k and bank_v must be 16-byte aligned");
  }
  return absl::OkStatus();
}

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Smallest e with 2^e >= c (0 for c <= 1).
inline int CeilLog2(int c) {
  int it = 0;
  while ((int64_t{1} << it) < c) ++it;
  return it;
}

}  // namespace hipserve::kernels::internal
